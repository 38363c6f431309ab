"""Command inputs: strict pydantic models, validated before any event exists.

Validation has two layers, both producing field paths:

* pydantic checks each field's type and shape (strict mode: no coercion, so
  ``"12"`` is not an int, ``True`` is not an int, a ``datetime`` is not a date,
  a tuple is not a list);
* ``violations()`` checks rules across fields (pointers into the diagnosis
  list, line numbering, totals) and names the exact field that breaks them.

``Model.checked(**data)`` runs both and raises ``claims_service.errors.
ValidationError``. Rules that depend on stored state (a voided claim, an
earlier contract version) live in the aggregates and raise ``StateError``.

Events never carry these models, only ``model_dump(mode="python")`` dicts or
plain fields, so that the stored format does not depend on pydantic.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import date
from typing import Annotated, Any, Literal, Self

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from claims_service.domain.codesets import BillableIcd10Cm
from claims_service.domain.formats import (
    EMERGENCY_PLACES_OF_SERVICE,
    MAX_CENTS,
    MAX_DIAGNOSES,
    MAX_LINES,
    MAX_MODIFIERS,
    MAX_POINTERS,
    Actor,
    BasisPoints,
    Cents,
    ClaimId,
    CostShareCategory,
    FeeKey,
    Identifier,
    LedgerDate,
    Modifier,
    Note,
    Npi,
    PlaceOfService,
    ProcedureCode,
    Sha256Hex,
    ShortText,
    Taxonomy,
    Units,
    UsState,
)
from claims_service.errors import FieldViolation, ValidationError, field_path, from_pydantic

# --- plain data ---------------------------------------------------------------

_RESERVED_KEYS = frozenset({"_type_", "_data_"})


def plain_violations(value: Any, path: str) -> list[FieldViolation]:
    """Violations that stop ``value`` from being stored in an event as is.

    Allowed: str, int, bool, None, date, list, dict with str keys. Floats are
    refused (money is integer cents and decisions must replay bit for bit),
    tuples are refused (they would come back as lists and break equality), and
    so is a dict shaped like the transcoder's own ``{"_type_", "_data_"}``
    envelope (it would be decoded as something else).
    """
    if _is_plain(value):
        return []  # the common case, without building a path for every element
    found: list[FieldViolation] = []
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if item is None or type(item) in (str, int, bool, date):
            continue
        if type(item) is list:
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
        elif type(item) is dict:
            if set(item) == _RESERVED_KEYS:
                found.append(FieldViolation(where, 'must not be exactly {"_type_", "_data_"}'))
                continue
            for key, v in reversed(list(item.items())):
                if type(key) is not str:
                    found.append(FieldViolation(where, "dictionary keys must be strings"))
                else:
                    stack.append((v, field_path((key,), where)))
        else:
            found.append(
                FieldViolation(
                    where,
                    f"{type(item).__name__} is not allowed (use str, int, bool, None, "
                    "date, list or dict)",
                )
            )
    return found


_PLAIN_SCALARS = frozenset({str, int, bool, date, type(None)})


def _is_plain(value: Any) -> bool:
    """``plain_violations(value, ...) == []``, checked without the paths. A scalar inside a
    container is checked in place rather than by a call of its own: most values are scalars, and
    the calls were most of the cost (a decision's facts: 22 µs, now 11)."""
    kind = type(value)
    if kind is dict:
        if len(value) == 2 and value.keys() == _RESERVED_KEYS:
            return False
        for k, v in value.items():
            if type(k) is not str or (type(v) not in _PLAIN_SCALARS and not _is_plain(v)):
                return False
        return True
    if kind is list:
        for v in value:
            if type(v) not in _PLAIN_SCALARS and not _is_plain(v):
                return False
        return True
    return kind in _PLAIN_SCALARS


_CONTAINERS = frozenset({dict, list})


def copy_plain(value: Any) -> Any:
    """Copy plain data (dicts and lists; everything else in it is immutable).

    Events and aggregate state must not share mutable containers with each
    other or with the caller; ``copy.deepcopy`` does the same an order of
    magnitude slower, which shows at a thousand claims a second. Only
    containers are copied by a call of their own.
    """
    kind = type(value)
    if kind is dict:
        return {k: copy_plain(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if kind is list:
        return [copy_plain(v) if type(v) in _CONTAINERS else v for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8, dates as ISO strings."""

    def default(obj: Any) -> Any:
        if type(obj) is date:
            return obj.isoformat()
        msg = f"{type(obj).__name__} is not canonical JSON"
        raise TypeError(msg)

    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default
    ).encode("utf-8")


def _duplicates(items: list[Any], path: str, what: str) -> list[FieldViolation]:
    if len(set(items)) == len(items):
        return []
    counts = Counter(items)
    return [
        FieldViolation(f"{path}[{i}]", f"duplicate {what}")
        for i, item in enumerate(items)
        if counts[item] > 1 and items.index(item) != i
    ]


# --- base -----------------------------------------------------------------------


class Model(BaseModel):
    """Strict, closed, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def violations(self) -> list[FieldViolation]:
        """Rules across fields; empty when the model is valid."""
        return []

    @classmethod
    def checked(cls, **data: Any) -> Self:
        """Validate ``data`` fully or raise our ``ValidationError``."""
        try:
            model = cls.model_validate(data)
        except pydantic.ValidationError as exc:
            raise from_pydantic(exc) from None
        found = model.violations()
        if found:
            raise ValidationError(found)
        return model


class Command(Model):
    actor: Actor
    """The principal that caused the command, recorded on its event."""


# --- member coverage --------------------------------------------------------------


class CostShare(Model):
    copay_cents: Cents
    coinsurance_bp: BasisPoints


class PlanTerms(Model):
    """A plan's benefit terms: exactly these keys, all required."""

    deductible_cents: Cents
    oop_max_cents: Cents
    cost_share: dict[CostShareCategory, CostShare]
    timely_filing_days: int = Field(ge=1, le=3650)
    in_network_only: bool
    review_threshold_cents: Cents
    non_covered_procedures: list[ProcedureCode] = Field(max_length=10_000)
    benefit_limits: dict[ProcedureCode, Annotated[int, Field(ge=0, le=1_000_000)]] = Field(
        max_length=10_000
    )
    prior_auth_required: list[ProcedureCode] = Field(max_length=10_000)

    def violations(self, path: str = "terms") -> list[FieldViolation]:
        found = []
        if "default" not in self.cost_share:
            found.append(FieldViolation(f"{path}.cost_share", 'must have a "default" category'))
        if self.deductible_cents > self.oop_max_cents:
            found.append(
                FieldViolation(f"{path}.deductible_cents", "must not exceed oop_max_cents")
            )
        found += _duplicates(
            self.non_covered_procedures, f"{path}.non_covered_procedures", "procedure code"
        )
        found += _duplicates(
            self.prior_auth_required, f"{path}.prior_auth_required", "procedure code"
        )
        return found


class EnrolMember(Command):
    member_id: Identifier
    payer_id: Identifier
    plan_id: Identifier
    effective_date: LedgerDate
    termination_date: LedgerDate | None = None
    terms: PlanTerms

    def violations(self) -> list[FieldViolation]:
        found = self.terms.violations("terms")
        if self.termination_date is not None and self.termination_date < self.effective_date:
            found.append(FieldViolation("termination_date", "must not precede effective_date"))
        return found


class ChangeCoverage(Command):
    """New plan/terms from ``effective_on``, and/or new coverage dates.

    ``None`` means "unchanged". Clearing a termination is done by passing a
    later ``termination_date``; there is no un-terminate.
    """

    effective_on: LedgerDate
    plan_id: Identifier | None = None
    terms: PlanTerms | None = None
    effective_date: LedgerDate | None = None
    termination_date: LedgerDate | None = None

    def violations(self) -> list[FieldViolation]:
        found = self.terms.violations("terms") if self.terms is not None else []
        if (
            self.plan_id is None
            and self.terms is None
            and self.effective_date is None
            and self.termination_date is None
        ):
            found.append(
                FieldViolation(
                    "terms",
                    "nothing to change: give plan_id, terms, effective_date or termination_date",
                )
            )
        if (
            self.effective_date is not None
            and self.termination_date is not None
            and self.termination_date < self.effective_date
        ):
            found.append(FieldViolation("termination_date", "must not precede effective_date"))
        return found


class TerminateCoverage(Command):
    termination_date: LedgerDate


class AuthorizePrior(Command):
    auth_id: Identifier
    procedure_code: ProcedureCode
    units: Units
    valid_from: LedgerDate
    valid_to: LedgerDate

    def violations(self) -> list[FieldViolation]:
        if self.valid_to < self.valid_from:
            return [FieldViolation("valid_to", "must not precede valid_from")]
        return []


# --- provider ----------------------------------------------------------------------


class RegisterProvider(Command):
    npi: Npi
    name: ShortText
    taxonomy: Taxonomy


class VerifyCredential(Command):
    licence_number: Identifier
    state: UsState
    valid_from: LedgerDate
    valid_to: LedgerDate

    def violations(self) -> list[FieldViolation]:
        if self.valid_to < self.valid_from:
            return [FieldViolation("valid_to", "must not precede valid_from")]
        return []


class RevokeCredential(Command):
    licence_number: Identifier
    revoked_on: LedgerDate


class ExpireCredential(Command):
    licence_number: Identifier
    expired_on: LedgerDate


class JoinNetwork(Command):
    payer_id: Identifier
    contract_id: Identifier
    effective_date: LedgerDate
    end_date: LedgerDate | None = None

    def violations(self) -> list[FieldViolation]:
        if self.end_date is not None and self.end_date < self.effective_date:
            return [FieldViolation("end_date", "must not precede effective_date")]
        return []


class LeaveNetwork(Command):
    payer_id: Identifier
    contract_id: Identifier
    end_date: LedgerDate


# --- contract ----------------------------------------------------------------------

MAX_FEES = 20_000


class PublishFeeSchedule(Command):
    version: int = Field(ge=1, le=1_000_000)
    effective_date: LedgerDate
    fees: dict[FeeKey, Cents] = Field(min_length=1, max_length=MAX_FEES)


class PublishContract(PublishFeeSchedule):
    contract_id: Identifier
    payer_id: Identifier


# --- visit -------------------------------------------------------------------------


class RecordVisit(Command):
    visit_id: Identifier
    provider_id: Npi
    member_id: Identifier
    payer_id: Identifier
    date_of_service: LedgerDate
    place_of_service: PlaceOfService
    diagnosis_codes: list[BillableIcd10Cm] = Field(min_length=1, max_length=MAX_DIAGNOSES)
    emergency: bool = False
    """Declared by the provider; a visit at an emergency place of service is one anyway."""

    def violations(self) -> list[FieldViolation]:
        return _duplicates(self.diagnosis_codes, "diagnosis_codes", "diagnosis code")

    @property
    def is_emergency(self) -> bool:
        """Declared so, or at a place of service that is an emergency by itself (23)."""
        return self.emergency or self.place_of_service in EMERGENCY_PLACES_OF_SERVICE

    def body(self) -> dict[str, Any]:
        """The visit as recorded: what a retry with the same visit id must repeat (the actor
        aside, as for a claim: another user of the same provider sends the same visit)."""
        return {**self.model_dump(mode="python", exclude={"actor"}), "emergency": self.is_emergency}


# --- claim -------------------------------------------------------------------------


class ClaimLine(Model):
    line_number: int = Field(ge=1, le=MAX_LINES)
    procedure_code: ProcedureCode
    modifiers: list[Modifier] = Field(default_factory=list, max_length=MAX_MODIFIERS)
    diagnosis_pointers: list[int] = Field(min_length=1, max_length=MAX_POINTERS)
    units: Units
    billed_cents: Cents
    date_of_service: LedgerDate


class SubmitClaim(Command):
    """A professional claim (837P-like) as the provider sends it.

    ``received_on`` is stamped by the service, not sent by the provider, and
    is therefore left out of the body hash, as is ``actor``: a retry of the same
    request on another day, by another user of the same provider, is the
    same request.
    """

    provider_id: Npi
    member_id: Identifier
    payer_id: Identifier
    visit_id: Identifier | None = None
    frequency_code: Literal["1", "7"] = "1"
    replaces_claim_id: ClaimId | None = None
    diagnosis_codes: list[BillableIcd10Cm] = Field(min_length=1, max_length=MAX_DIAGNOSES)
    place_of_service: PlaceOfService
    lines: list[ClaimLine] = Field(min_length=1, max_length=MAX_LINES)
    idempotency_key: Identifier
    received_on: LedgerDate

    def violations(self) -> list[FieldViolation]:
        found = _duplicates(self.diagnosis_codes, "diagnosis_codes", "diagnosis code")
        if self.frequency_code == "7" and self.replaces_claim_id is None:
            found.append(
                FieldViolation("replaces_claim_id", "is required for a replacement claim (7)")
            )
        if self.frequency_code == "1" and self.replaces_claim_id is not None:
            found.append(
                FieldViolation("replaces_claim_id", "must be empty for an original claim (1)")
            )
        n_diagnoses = len(self.diagnosis_codes)
        total = 0
        for i, line in enumerate(self.lines):
            where = f"lines[{i}]"
            if line.line_number != i + 1:
                found.append(
                    FieldViolation(f"{where}.line_number", f"must be {i + 1} (lines numbered 1..n)")
                )
            for j, pointer in enumerate(line.diagnosis_pointers):
                if not 1 <= pointer <= n_diagnoses:
                    found.append(
                        FieldViolation(
                            f"{where}.diagnosis_pointers[{j}]",
                            f"must point at a diagnosis 1..{n_diagnoses}",
                        )
                    )
            found += _duplicates(
                line.diagnosis_pointers, f"{where}.diagnosis_pointers", "pointer"
            )
            found += _duplicates(line.modifiers, f"{where}.modifiers", "modifier")
            if line.date_of_service > self.received_on:
                found.append(
                    FieldViolation(f"{where}.date_of_service", "must not be after received_on")
                )
            total += line.billed_cents
        if total > MAX_CENTS:
            found.append(FieldViolation("lines", f"total billed must not exceed {MAX_CENTS} cents"))
        return found

    def body(self) -> dict[str, Any]:
        """The request body that the idempotency key stands for."""
        return self.model_dump(mode="python", exclude={"actor", "received_on"})

    def body_hash(self) -> str:
        """Hex SHA-256 of the canonical JSON of the validated body.

        Computed after validation (identifiers stripped, defaults filled), so
        retries that differ only in insignificant whitespace hash the same.
        """
        return hashlib.sha256(canonical_json(self.body())).hexdigest()


class Decide(Command):
    """An adjudication result (``Adjudicated`` or ``Pended``)."""

    decision: dict[str, Any]
    facts: dict[str, Any]
    ruleset_version: Identifier
    ruleset_hash: Sha256Hex

    def violations(self) -> list[FieldViolation]:
        return plain_violations(self.decision, "decision") + plain_violations(
            self.facts, "facts"
        )


class ResolveReview(Command):
    decision: dict[str, Any]
    reviewer: Identifier
    note: Note = ""
    resolution: dict[str, Any]
    facts: dict[str, Any]

    def violations(self) -> list[FieldViolation]:
        return (plain_violations(self.decision, "decision") + plain_violations(self.resolution, "resolution")
                + plain_violations(self.facts, "facts"))


class CorrectClaim(Command):
    replacement_claim_id: ClaimId


class VoidClaim(Command):
    reason: ShortText


class OpenDispute(Command):
    dispute_id: Identifier
    reason: ShortText


class ResolveDispute(Command):
    dispute_id: Identifier
    resolution: Literal["upheld", "overturned"]
    decision: dict[str, Any] | None = None
    note: Note = ""
    facts: dict[str, Any] | None = None

    def violations(self) -> list[FieldViolation]:
        if self.facts is not None and (found := plain_violations(self.facts, "facts")):
            return found
        if self.resolution == "overturned" and self.decision is None:
            return [FieldViolation("decision", "is required when the resolution is overturned")]
        if self.resolution == "upheld" and self.decision is not None:
            return [FieldViolation("decision", "must be empty when the resolution is upheld")]
        if self.decision is not None:
            return plain_violations(self.decision, "decision")
        return []


# --- payment -----------------------------------------------------------------------


class PaymentLine(Model):
    line_number: int = Field(ge=1, le=MAX_LINES)
    paid_cents: Cents


class SchedulePayment(Command):
    """``lines`` maps each claim id to what is paid per claim line."""

    payment_id: Identifier
    payer_id: Identifier
    provider_id: Npi
    claim_ids: list[ClaimId] = Field(min_length=1, max_length=1000)
    amount_cents: Cents
    lines: dict[ClaimId, list[PaymentLine]]

    def violations(self) -> list[FieldViolation]:
        found = _duplicates(self.claim_ids, "claim_ids", "claim id")
        for claim_id in self.claim_ids:
            if claim_id not in self.lines:
                found.append(
                    FieldViolation(field_path((claim_id,), "lines"), "missing: every claim needs its lines")
                )
        total = 0
        for claim_id, lines in self.lines.items():
            where = field_path((claim_id,), "lines")
            if claim_id not in self.claim_ids:
                found.append(FieldViolation(where, "is not in claim_ids"))
            if not lines:
                found.append(FieldViolation(where, "must have at least one line"))
            found += _duplicates([line.line_number for line in lines], where, "line number")
            total += sum(line.paid_cents for line in lines)
        if total != self.amount_cents:
            found.append(
                FieldViolation("amount_cents", "must equal the sum of the lines' paid_cents")
            )
        return found


class IssuePayment(Command):
    trace_number: Identifier
    issued_on: LedgerDate


class CancelPayment(Command):
    reason: ShortText


class RecoupPayment(Command):
    """``lines`` maps each claim id to what is taken back per claim line (more than zero in all)."""

    reason: ShortText
    lines: dict[ClaimId, list[PaymentLine]] = Field(min_length=1)

    def violations(self) -> list[FieldViolation]:
        found = []
        for claim_id, lines in self.lines.items():
            where = field_path((claim_id,), "lines")
            if not lines:
                found.append(FieldViolation(where, "must have at least one line"))
            found += _duplicates([line.line_number for line in lines], where, "line number")
        if sum(line.paid_cents for lines in self.lines.values() for line in lines) <= 0:
            found.append(FieldViolation("lines", "must take back more than zero"))
        return found
