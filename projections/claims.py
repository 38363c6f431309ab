"""Read model "claim_status": every claim's current state, the payers' worklists of pended
claims, and the adjudication notices payers receive as a feed — its writer
(``ClaimStatusModel``), its rows (``ClaimStatus``, ``WorklistItem``, ``Notice`` and their pages)
and its queries (``get_claim``, ``list_claims``, ``claim_changes``, ``payer_worklist``,
``adjudication_notices``, ``claims_by_id``, ``change_times``; waiting, checks and pages as
``reading`` describes).

Tables (migrations/0005_claim_status.sql): ``claim_status`` (one row per claim),
``payer_worklist`` (pended claims, removed when a reviewer resolves them) and
``adjudication_notices`` (one row per event a payer is told of: adjudicated, pended, review
resolved, dispute resolved, voided, replaced, payment cancelled, payment recouped; and, without a
claim, a member's visit and an emergency access to a member's history — append-only, so a payer's
feed is an index range scan; migrations/0019_members.sql).

A visit is told to the payer the provider named, as its claims are: who (member, provider),
when, where and whether it is an emergency (``EMERGENCY_PLACES_OF_SERVICE`` or declared), never
its diagnoses. An emergency access is told to every payer that covered the member when it was
declared (the declaration names them), one row per payer at the declaration's position.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

from claims_service.domain.formats import EMERGENCY_PLACES_OF_SERVICE
from claims_service.errors import ClaimNotFoundError, ValidationError
from projections.events import Notification, Topics
from projections.reading import (
    Hub,
    Pager,
    Source,
    Where,
    checked,
    from_row,
    one_of,
    row_limit,
    rows,
    select,
    select_one,
    valid_claim_id,
    wait_for_position,
)
from projections.store import AppendTable, Batch, ReadModel, Row, Table

log = logging.getLogger(__name__)

NOTICE_KINDS = {
    Topics.CLAIM_ADJUDICATED: "adjudicated",
    Topics.CLAIM_PENDED: "pended",
    Topics.CLAIM_REVIEW_RESOLVED: "review_resolved",
    Topics.CLAIM_DISPUTE_RESOLVED: "dispute_resolved",
    Topics.CLAIM_VOIDED: "voided",
    Topics.CLAIM_CORRECTED: "replaced",
}
PAYMENT_NOTICE_KINDS = {
    Topics.PAYMENT_CANCELLED: "payment_cancelled",
    Topics.PAYMENT_RECOUPED: "payment_recouped",
}
# Notices of a member without a claim.
MEMBER_NOTICE_KINDS = {
    Topics.VISIT_RECORDED: "visit",
    Topics.EMERGENCY_ACCESS_DECLARED: "emergency_access",
}


def paid_claim_ids(n: Notification) -> list[str]:
    """The claims a cancelled or recouped payment was for."""
    p = n.payload
    return list(p["claim_ids"]) if n.topic == Topics.PAYMENT_CANCELLED else list(p["lines"])


def decision_columns(decision: dict[str, Any] | None) -> dict[str, Any]:
    """The claim-level columns that come from a decision (all None without one)."""
    if decision is None:
        return {
            "outcome": None,
            "total_allowed_cents": None,
            "total_paid_cents": None,
            "total_patient_responsibility_cents": None,
            "decision": None,
        }
    return {
        "outcome": decision.get("outcome"),
        "total_allowed_cents": decision.get("total_allowed_cents"),
        "total_paid_cents": decision.get("total_paid_cents"),
        "total_patient_responsibility_cents": decision.get("total_patient_responsibility_cents"),
        "decision": decision,
    }


def dates_of_service(lines: Sequence[dict[str, Any]]) -> tuple[str, str]:
    days = [line["date_of_service"] for line in lines]  # ISO text: orders like dates
    return min(days), max(days)


class ClaimStatusModel(ReadModel):
    name = "claim_status"
    tables = ("claim_status", "payer_worklist", "adjudication_notices", "claim_changes")
    topics = frozenset(
        {
            Topics.CLAIM_SUBMITTED,
            Topics.CLAIM_ADJUDICATED,
            Topics.CLAIM_PENDED,
            Topics.CLAIM_REVIEW_RESOLVED,
            Topics.CLAIM_CORRECTED,
            Topics.CLAIM_VOIDED,
            Topics.CLAIM_DISPUTE_OPENED,
            Topics.CLAIM_DISPUTE_RESOLVED,
            *PAYMENT_NOTICE_KINDS,
            *MEMBER_NOTICE_KINDS,
        }
    )

    handlers: ClassVar[dict[str, str]] = {
        Topics.CLAIM_SUBMITTED: "_submitted",
        Topics.CLAIM_ADJUDICATED: "_decided",
        Topics.CLAIM_PENDED: "_decided",
        Topics.CLAIM_REVIEW_RESOLVED: "_review_resolved",
        Topics.CLAIM_CORRECTED: "_corrected",
        Topics.CLAIM_VOIDED: "_voided",
        Topics.CLAIM_DISPUTE_OPENED: "_dispute_opened",
        Topics.CLAIM_DISPUTE_RESOLVED: "_dispute_resolved",
    }

    def apply(self, batch: Batch, notifications: Sequence[Notification]) -> None:
        mine = [n for n in notifications if n.topic in self.topics]
        if not mine:
            return
        claims = batch.table("claim_status", ("claim_id",))
        worklist = batch.table("payer_worklist", ("claim_id",))
        notices = batch.append_table("adjudication_notices")
        changes = batch.append_table("claim_changes")
        wanted = {str(n.stream_id) for n in mine if n.topic != Topics.CLAIM_SUBMITTED and n.topic not in PAYMENT_NOTICE_KINDS
                  and n.topic not in MEMBER_NOTICE_KINDS}
        for n in mine:
            if n.topic in PAYMENT_NOTICE_KINDS:
                wanted.update(paid_claim_ids(n))
        claims.prefetch("claim_id", wanted)
        for n in mine:
            if n.topic in PAYMENT_NOTICE_KINDS:
                self._payment_notice(notices, claims, n)
                continue
            if n.topic in MEMBER_NOTICE_KINDS:
                self._member_notices(notices, n)
                continue
            handler = getattr(self, self.handlers[n.topic])
            if n.topic == Topics.CLAIM_SUBMITTED:
                handler(claims, n)
                changes.add({"position": n.position, **claims.get(str(n.stream_id))})
                continue
            claim = claims.get(str(n.stream_id))
            if claim is None:
                log.error("claim_status: %r has no submitted claim; skipped", n)
                continue
            handler(claim, n, worklist)
            claim["last_position"] = n.position
            claim["stream_version"] = n.version
            claims.put(claim)
            # A copy: a later event of the same batch updates `claim` in place.
            changes.add({"position": n.position, **claim})
            if n.topic in NOTICE_KINDS:
                self._notice(notices, claim, n)

    # --- events ----------------------------------------------------------------------------

    def _submitted(self, claims: Table, n: Notification) -> None:
        p = n.payload
        first, last = dates_of_service(p["lines"])
        claims.put(
            {
                "claim_id": str(n.stream_id),
                "provider_id": p["provider_id"],
                "payer_id": p["payer_id"],
                "member_id": p["member_id"],
                "visit_id": p.get("visit_id"),
                "status": "submitted",
                "frequency_code": p["frequency_code"],
                "replaces_claim_id": p.get("replaces_claim_id"),
                "replaced_by": None,
                "void_reason": None,
                "place_of_service": p["place_of_service"],
                "received_on": p["received_on"],
                "first_date_of_service": first,
                "last_date_of_service": last,
                "diagnosis_codes": p["diagnosis_codes"],
                "lines": p["lines"],
                "total_billed_cents": sum(line["billed_cents"] for line in p["lines"]),
                **decision_columns(None),
                "ruleset_version": None,
                "ruleset_hash": None,
                "review": None,
                "pend_reasons": [],
                "disputes": [],
                "open_dispute_id": None,
                "submitted_position": n.position,
                "last_position": n.position,
                "stream_version": n.version,
            }
        )

    def _decided(self, claim: Row, n: Notification, worklist: Table) -> None:
        p = n.payload
        pended = n.topic == Topics.CLAIM_PENDED
        claim.update(decision_columns(p["decision"]))
        claim["status"] = "pended" if pended else "adjudicated"
        claim["ruleset_version"] = p["ruleset_version"]
        claim["ruleset_hash"] = p["ruleset_hash"]
        if pended:
            claim["pend_reasons"] = p.get("pend_reasons") or []
            decision = p["decision"]
            worklist.put(
                {
                    "claim_id": claim["claim_id"],
                    "payer_id": claim["payer_id"],
                    "provider_id": claim["provider_id"],
                    "member_id": claim["member_id"],
                    "received_on": claim["received_on"],
                    "pended_position": n.position,
                    "total_billed_cents": claim["total_billed_cents"],
                    "reasons": [
                        {
                            "line_number": line["line_number"],
                            "adjustments": line.get("adjustments", []),
                            "remarks": line.get("remarks", []),
                        }
                        for line in decision.get("lines", [])
                        if line.get("status") == "pended"
                    ],
                    "decision": decision,
                    "pend_reasons": claim["pend_reasons"],
                }
            )

    def _review_resolved(self, claim: Row, n: Notification, worklist: Table) -> None:
        p = n.payload
        claim.update(decision_columns(p["decision"]))
        claim["status"] = "adjudicated"
        claim["review"] = {"reviewer": p["reviewer"], "note": p.get("note", "")}
        worklist.delete(claim["claim_id"])

    def _corrected(self, claim: Row, n: Notification, worklist: Table) -> None:
        claim["status"] = "replaced"
        claim["replaced_by"] = n.payload["replacement_claim_id"]

    def _voided(self, claim: Row, n: Notification, worklist: Table) -> None:
        claim["status"] = "voided"
        claim["void_reason"] = n.payload["reason"]

    def _dispute_opened(self, claim: Row, n: Notification, worklist: Table) -> None:
        p = n.payload
        claim["disputes"] = [
            *claim["disputes"],
            {
                "dispute_id": p["dispute_id"],
                "reason": p["reason"],
                "opened_by": p["opened_by"],
                "opened_position": n.position,
                "resolution": None,
                "note": None,
                "resolved_position": None,
            },
        ]
        claim["open_dispute_id"] = p["dispute_id"]

    def _dispute_resolved(self, claim: Row, n: Notification, worklist: Table) -> None:
        p = n.payload
        disputes = []
        for dispute in claim["disputes"]:
            if dispute["dispute_id"] == p["dispute_id"]:
                dispute = {**dispute, "resolution": p["resolution"], "note": p.get("note", ""), "resolved_position": n.position}
            disputes.append(dispute)
        claim["disputes"] = disputes
        claim["open_dispute_id"] = None
        if p.get("decision") is not None:
            claim.update(decision_columns(p["decision"]))

    def _notice(self, notices: AppendTable, claim: Row, n: Notification) -> None:
        p = n.payload
        kind = NOTICE_KINDS[n.topic]
        notices.add(
            {
                **self._notice_columns(claim, n),
                "kind": kind,
                "dispute_id": p.get("dispute_id"),
                "resolution": p.get("resolution"),
                "pend_reasons": claim["pend_reasons"] if kind == "pended" else None,
                "reason": p.get("reason") if kind == "voided" else None,
                "replaced_by": p.get("replacement_claim_id"),
            }
        )

    def _payment_notice(self, notices: AppendTable, claims: Table, n: Notification) -> None:
        """A cancelled or recouped payment, told to the payer of its claim (a payment is for one
        claim; a position holds one notice, so a payment for several is told on its first)."""
        claim = next((c for c in map(claims.get, paid_claim_ids(n)) if c is not None), None)
        if claim is None:
            log.error("claim_status: %r names no known claim; no notice", n)
            return
        p = n.payload
        notices.add(
            {
                **self._notice_columns(claim, n),
                "kind": PAYMENT_NOTICE_KINDS[n.topic],
                "payment_id": p["payment_id"],
                "amount_cents": p["amount_cents"],
                "reason": p["reason"],
            }
        )

    @staticmethod
    def _member_notices(notices: AppendTable, n: Notification) -> None:
        """A visit, told to its payer; an emergency access, told to each payer of the member."""
        p = n.payload
        common = {"position": n.position, "member_id": p["member_id"], "provider_id": p["provider_id"],
                  "kind": MEMBER_NOTICE_KINDS[n.topic], "recorded_at": p.get("timestamp")}
        if n.topic == Topics.VISIT_RECORDED:
            emergency = bool(p.get("emergency")) or p["place_of_service"] in EMERGENCY_PLACES_OF_SERVICE
            notices.add({**common, "payer_id": p["payer_id"], "visit_id": p["visit_id"],
                         "date_of_service": p["date_of_service"], "place_of_service": p["place_of_service"],
                         "emergency": emergency})
            return
        for payer_id in p["payer_ids"]:
            notices.add({**common, "payer_id": payer_id, "reason": p["reason"], "access_id": str(n.stream_id)})

    @staticmethod
    def _notice_columns(claim: Row, n: Notification) -> dict[str, Any]:
        return {
            "position": n.position,
            "payer_id": claim["payer_id"],
            "claim_id": claim["claim_id"],
            "member_id": claim["member_id"],
            "provider_id": claim["provider_id"],
            "status": claim["status"],
            "outcome": claim["outcome"],
            "decision": claim["decision"],
            "recorded_at": n.payload.get("timestamp"),
        }


# --- rows --------------------------------------------------------------------------------------

CLAIM_STATUSES = ("submitted", "adjudicated", "pended", "voided", "replaced")


@dataclass(frozen=True, slots=True)
class ClaimStatus:
    claim_id: str
    provider_id: str
    payer_id: str
    member_id: str
    visit_id: str | None
    status: str
    frequency_code: str
    replaces_claim_id: str | None
    replaced_by: str | None
    void_reason: str | None
    place_of_service: str
    received_on: date
    first_date_of_service: date
    last_date_of_service: date
    diagnosis_codes: list[str]
    lines: list[dict[str, Any]]
    outcome: str | None
    total_billed_cents: int
    total_allowed_cents: int | None
    total_paid_cents: int | None
    total_patient_responsibility_cents: int | None
    decision: dict[str, Any] | None
    ruleset_version: str | None
    ruleset_hash: str | None
    review: dict[str, Any] | None
    disputes: list[dict[str, Any]]
    open_dispute_id: str | None
    submitted_position: int
    last_position: int
    stream_version: int
    pend_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClaimPage:
    claims: list[ClaimStatus]
    next_page_token: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class WorklistItem:
    claim_id: str
    payer_id: str
    provider_id: str
    member_id: str
    received_on: date
    pended_position: int
    total_billed_cents: int
    reasons: list[dict[str, Any]]
    decision: dict[str, Any]
    pend_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WorklistPage:
    items: list[WorklistItem]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class Notice:
    """An adjudication notice for a payer (see ``feed``); a visit or an emergency access has no
    claim (``claim_id``, ``status`` None)."""

    position: int
    payer_id: str
    claim_id: str | None
    member_id: str
    provider_id: str
    kind: str  # adjudicated / pended / review_resolved / dispute_resolved / voided / replaced /
    # payment_cancelled / payment_recouped / visit / emergency_access
    status: str | None
    outcome: str | None
    decision: dict[str, Any] | None
    dispute_id: str | None
    resolution: str | None
    recorded_at: datetime | None
    pend_reasons: list[str] | None = None
    payment_id: str | None = None
    amount_cents: int | None = None
    reason: str | None = None
    replaced_by: str | None = None
    visit_id: str | None = None
    date_of_service: date | None = None
    place_of_service: str | None = None
    emergency: bool | None = None
    access_id: str | None = None


# --- queries -----------------------------------------------------------------------------------


@checked
def get_claim(
    source: Source,
    claim_id: str,
    *,
    provider_id: str | None = None,
    payer_id: str | None = None,
    member_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> ClaimStatus:
    """``get_claim(source, claim_id, *, provider_id=None, payer_id=None, member_id=None,
    min_position=None, timeout=None, hub=None) -> ClaimStatus``; ``ClaimNotFoundError`` when it
    does not exist or belongs to another provider / payer / member than the one given."""
    claim_id = valid_claim_id(claim_id)
    wait_for_position(source, ClaimStatusModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("claim_id = %s", claim_id).party(provider_id, payer_id).given("member_id = %s", member_id)
    return select_one(source, ClaimStatus, "claim_status", where, ClaimNotFoundError(f"claim {claim_id} not found"))



def claims_by_id(source: Source, claim_ids: Sequence[str]) -> dict[str, ClaimStatus]:
    """``claims_by_id(source, claim_ids) -> dict[str, ClaimStatus]``: the claims of these ids that
    the read model holds, by id, in one read (no waiting, no party filter: for ids the caller was
    already allowed to see through another read model, such as the FHIR endpoint's EOBs)."""
    found = select(source, ClaimStatus, "claim_status", Where("claim_id = ANY(%s)", list(claim_ids)))
    return {claim.claim_id: claim for claim in found}


def change_times(source: Source, positions: Sequence[int]) -> dict[int, datetime]:
    """``change_times(source, positions) -> dict[int, datetime]``: when each claim change at these
    ledger positions was recorded (its event's timestamp, from the payers' notices, which hold one
    for every change but a submission)."""
    found = rows(source, "adjudication_notices", Where("position = ANY(%s)", list(positions)))
    return {row["position"]: row["recorded_at"] for row in found if row["recorded_at"] is not None}

@checked
def list_claims(
    source: Source,
    provider_id: str,
    *,
    status: str | None = None,
    received_from: date | None = None,
    received_to: date | None = None,
    member_id: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> ClaimPage:
    """``list_claims(source, provider_id, *, status=None, received_from=None, received_to=None,
    member_id=None, page_size=50, page_token=None, min_position=None, timeout=None, hub=None)
    -> ClaimPage``: the provider's claims, newest submission first; dates inclusive."""
    one_of(status, CLAIM_STATUSES, "status")
    if received_from and received_to and received_from > received_to:
        raise ValidationError.single("received_to", "must not be before received_from")
    filters = {"provider_id": provider_id, "status": status, "from": received_from, "to": received_to, "member_id": member_id}
    pager = Pager("claims", filters, page_size, page_token)
    wait_for_position(source, ClaimStatusModel.name, min_position, timeout=timeout, hub=hub)
    where = (
        Where("provider_id = %s", provider_id)
        .given("status = %s", status)
        .given("member_id = %s", member_id)
        .given("received_on >= %s", received_from)
        .given("received_on <= %s", received_to)
    )
    if pager.key is not None:
        where.add("submitted_position < %s", int(pager.key[0]))
    found = select(source, ClaimStatus, "claim_status", where, order="submitted_position DESC", limit=pager.limit)
    return ClaimPage(*pager.page(found, lambda claim: [claim.submitted_position]))


@checked
def member_claims(
    source: Source,
    member_id: str,
    *,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> ClaimPage:
    """``member_claims(source, member_id, *, page_size=50, page_token=None, min_position=None,
    timeout=None, hub=None) -> ClaimPage``: a member id's claims of every provider and payer,
    newest submission first (the member's own reads; a provider's under consent or emergency)."""
    pager = Pager("member_claims", {"member_id": member_id}, page_size, page_token)
    wait_for_position(source, ClaimStatusModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("member_id = %s", member_id)
    if pager.key is not None:
        where.add("submitted_position < %s", int(pager.key[0]))
    found = select(source, ClaimStatus, "claim_status", where, order="submitted_position DESC", limit=pager.limit)
    return ClaimPage(*pager.page(found, lambda claim: [claim.submitted_position]))


@checked
def claim_changes(source: Source, provider_id: str | Sequence[str], after_position: int, *,
                  limit: int = 100) -> list[ClaimStatus]:
    """``claim_changes(source, provider_id, after_position, *, limit=100) -> list[ClaimStatus]``:
    every change of the provider's (or providers') claims after ``after_position``, in ledger
    order, each with the claim as it stood after that change (``last_position`` is the change's
    position; WatchClaims)."""
    where = _parties("provider_id", provider_id).add("position > %s", after_position)
    found = rows(source, "claim_changes", where, order="position", limit=row_limit(limit))
    return [from_row(ClaimStatus, {**row, "last_position": row["position"]}) for row in found]


@checked
def payer_worklist(
    source: Source,
    payer_id: str,
    *,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> WorklistPage:
    """``payer_worklist(source, payer_id, *, page_size=50, page_token=None, min_position=None,
    timeout=None, hub=None) -> WorklistPage``: the payer's pended claims, oldest first."""
    pager = Pager("worklist", {"payer_id": payer_id}, page_size, page_token)
    wait_for_position(source, ClaimStatusModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("payer_id = %s AND pended_position > %s", payer_id, int(pager.key[0]) if pager.key else 0)
    found = select(source, WorklistItem, "payer_worklist", where, order="pended_position", limit=pager.limit)
    return WorklistPage(*pager.page(found, lambda item: [item.pended_position]))


@checked
def adjudication_notices(source: Source, payer_id: str | Sequence[str], after_position: int, *,
                         limit: int = 100) -> list[Notice]:
    """``adjudication_notices(source, payer_id, after_position, *, limit=100) -> list[Notice]``:
    the payer's (or payers') notices after the position, in ledger order."""
    where = _parties("payer_id", payer_id).add("position > %s", after_position)
    return select(source, Notice, "adjudication_notices", where, order="position", limit=row_limit(limit))


def _parties(column: str, party: str | Sequence[str]) -> Where:
    """One party (an index range scan on (party, position)) or several (the live feeds read every
    subscribed party's rows above one position at once)."""
    if isinstance(party, str):
        return Where(f"{column} = %s", party)
    return Where(f"{column} = ANY(%s)", list(party))
