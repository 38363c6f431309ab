"""Pure conversions between protobuf messages and the command/query layer's plain values.

Dates travel as ISO-8601 strings ("YYYY-MM-DD"); an empty string means "none" where a field is
optional. A string that is not a date is refused here with the field's path; every other check is
the domain's (so the rules live in one place).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

from adjudicator import PEND_REASONS
from claims.v1 import common_pb2, member_pb2, payer_pb2, provider_pb2
from claims_service.application import Receipt
from claims_service.domain.formats import MAX_YEAR, MIN_YEAR
from claims_service.errors import FieldViolation, ValidationError
from claims_service.ledger.checkpointer import StoredCheckpoint
from projections.access import AccessEntry, ConsentEntry, EmergencyAccessEntry
from projections.benefits import Accumulators, Eob
from projections.claims import ClaimStatus, Notice
from projections.payments import Payment


def parse_date(value: str, field: str, *, required: bool = True) -> date | None:
    if not value:
        if required:
            raise ValidationError.single(field, "is required (YYYY-MM-DD)")
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError.single(field, "must be a date as YYYY-MM-DD") from None


INSTANT = re.compile(r"([0-9]{4})-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")


def parse_instant(value: str, field: str) -> datetime | None:
    """An RFC 3339 instant with its offset ("2027-01-31T00:00:00Z"), as an aware datetime; None
    for an empty string. Fractions beyond microseconds are cut."""
    if not value:
        return None
    match = INSTANT.fullmatch(value)
    try:
        if match is None or not MIN_YEAR <= int(match.group(1)) <= MAX_YEAR:
            raise ValueError
        fraction = (match.group(2) or "")[:7]
        head = value[: match.start(2)] if match.group(2) else value[: match.start(3)]
        offset = "+00:00" if match.group(3) == "Z" else match.group(3)
        return datetime.fromisoformat(head + fraction + offset)
    except ValueError:
        raise ValidationError.single(field, 'must be an RFC 3339 instant with its offset, e.g. "2027-01-31T00:00:00Z"'
                                     ) from None


def instant(moment: datetime | None) -> str:
    """An aware datetime as an RFC 3339 UTC instant ("2027-01-31T00:00:00Z"); "" for None."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def optional(value: str) -> str | None:
    return value or None


def lines_from_pb(lines: Any, field: str = "lines") -> list[dict[str, Any]]:
    converted = []
    violations: list[FieldViolation] = []
    for i, line in enumerate(lines):
        try:
            day = parse_date(line.date_of_service, f"{field}[{i}].date_of_service")
        except ValidationError as error:
            violations += error.violations
            day = None
        converted.append(
            {
                "line_number": line.line_number,
                "procedure_code": line.procedure_code,
                "modifiers": list(line.modifiers),
                "diagnosis_pointers": list(line.diagnosis_pointers),
                "units": line.units,
                "billed_cents": line.billed_cents,
                "date_of_service": day,
            }
        )
    if violations:
        raise ValidationError(violations)
    return converted


def receipt_pb(receipt: Receipt | None) -> common_pb2.Receipt | None:
    if receipt is None:
        return None
    return common_pb2.Receipt(position=receipt.position, event_hash=receipt.event_hash, leaf_index=receipt.leaf_index,
                              checkpoint=checkpoint_pb(receipt.checkpoint))


def checkpoint_pb(stored: StoredCheckpoint | None) -> common_pb2.SignedCheckpoint | None:
    if stored is None:
        return None
    return common_pb2.SignedCheckpoint(note=stored.note, tree_size=stored.tree_size, root_hash=stored.root_hash)


def decision_pb(decision: dict[str, Any] | None) -> common_pb2.Decision | None:
    if not decision:
        return None
    return common_pb2.Decision(
        outcome=common_pb2.Outcome.Value(f"OUTCOME_{decision['outcome']}"),
        lines=[line_result_pb(line) for line in decision["lines"]],
        total_billed_cents=decision["total_billed_cents"],
        total_allowed_cents=decision["total_allowed_cents"],
        total_paid_cents=decision["total_paid_cents"],
        total_patient_responsibility_cents=decision["total_patient_responsibility_cents"],
        ruleset_version=decision.get("ruleset_version", ""),
        ruleset_hash=decision.get("ruleset_hash", ""),
    )


def service_line_pb(line: dict[str, Any]) -> common_pb2.ServiceLine:
    day = line["date_of_service"]
    return common_pb2.ServiceLine(
        line_number=line["line_number"],
        procedure_code=line["procedure_code"],
        modifiers=line.get("modifiers", []),
        diagnosis_pointers=line.get("diagnosis_pointers", []),
        units=line["units"],
        billed_cents=line["billed_cents"],
        date_of_service=day.isoformat() if isinstance(day, date) else str(day),
    )


CLAIM_STATUS = {
    "submitted": common_pb2.CLAIM_STATUS_SUBMITTED,
    "adjudicated": common_pb2.CLAIM_STATUS_ADJUDICATED,
    "pended": common_pb2.CLAIM_STATUS_PENDED,
    "voided": common_pb2.CLAIM_STATUS_VOIDED,
    "replaced": common_pb2.CLAIM_STATUS_REPLACED,
}
STATUS_NAME = {v: k for k, v in CLAIM_STATUS.items()}


def iso(day: Any) -> str:
    if day is None:
        return ""
    return day.isoformat() if hasattr(day, "isoformat") else str(day)


def claim_pb(row: dict[str, Any]) -> common_pb2.Claim:
    """A claim from a read-model row (or any mapping with the same keys)."""
    lines = row.get("lines") or []
    if isinstance(lines, str):
        lines = json.loads(lines)
    decision = row.get("decision")
    if isinstance(decision, str):
        decision = json.loads(decision)
    return common_pb2.Claim(
        claim_id=str(row["claim_id"]),
        provider_id=row["provider_id"],
        member_id=row["member_id"],
        payer_id=row["payer_id"],
        status=CLAIM_STATUS.get(row["status"], common_pb2.CLAIM_STATUS_UNSPECIFIED),
        frequency_code=row.get("frequency_code") or "",
        replaces_claim_id=str(row.get("replaces_claim_id") or ""),
        diagnosis_codes=list(row.get("diagnosis_codes") or []),
        place_of_service=row.get("place_of_service") or "",
        lines=[service_line_pb(line) for line in lines],
        received_on=iso(row.get("received_on")),
        decision=decision_pb(decision),
        last_position=row.get("last_position") or 0,
        visit_id=row.get("visit_id") or "",
        pend_reasons=pend_reasons_pb(row.get("pend_reasons")),
    )


def pend_reasons_pb(codes: list[str] | None) -> list[common_pb2.PendReason]:
    return [common_pb2.PendReason(remark_code=code, description=PEND_REASONS.get(code, "")) for code in codes or []]


def payment_status(status: str) -> int:
    return {"scheduled": common_pb2.PAYMENT_STATUS_SCHEDULED, "issued": common_pb2.PAYMENT_STATUS_ISSUED,
            "cancelled": common_pb2.PAYMENT_STATUS_CANCELLED, "recouped": common_pb2.PAYMENT_STATUS_RECOUPED}.get(
        status, common_pb2.PAYMENT_STATUS_UNSPECIFIED)


def line_result_pb(line: dict[str, Any]) -> common_pb2.LineResult:
    return common_pb2.LineResult(
        line_number=line["line_number"],
        billed_cents=line.get("billed_cents") or 0,
        allowed_cents=line.get("allowed_cents") or 0,
        paid_cents=line.get("paid_cents") or 0,
        patient_responsibility_cents=line.get("patient_responsibility_cents") or 0,
        adjustments=[common_pb2.Adjustment(group=a["group"], carc=a["carc"], amount_cents=a["amount_cents"])
                     for a in line.get("adjustments", [])],
        remarks=line.get("remarks", []),
        status=line.get("status") or "",
    )


def payment_pb(payment: Payment) -> common_pb2.Payment:
    """A remittance whose total is the sum of its entries: what it paid, then each recoupment
    (negative). A cancelled payment shows what had been scheduled, with its status saying that
    none of it was paid."""
    return common_pb2.Payment(
        payment_id=payment.payment_id, payer_id=payment.payer_id, provider_id=payment.provider_id,
        trace_number=payment.trace_number or "", amount_cents=sum(c.paid_cents for c in payment.claims),
        status=payment_status(payment.status), issued_on=iso(payment.issued_on),
        claims=[common_pb2.PaymentClaim(claim_id=c.claim_id, member_id=c.member_id, amount_cents=c.paid_cents,
                                        lines=[line_result_pb(line) for line in c.lines],
                                        recoupment=c.entry > 0, reason=c.reason or "")
                for c in payment.claims],
        scheduled_cents=payment.amount_cents, recouped_cents=payment.reversed_cents,
        cancel_reason=payment.cancel_reason or "",
    )


def notice_pb(notice: Notice) -> common_pb2.AdjudicationNotice:
    return common_pb2.AdjudicationNotice(
        position=notice.position, claim_id=notice.claim_id, payer_id=notice.payer_id, member_id=notice.member_id,
        provider_id=notice.provider_id, status=CLAIM_STATUS.get(notice.status, common_pb2.CLAIM_STATUS_UNSPECIFIED),
        decision=decision_pb(notice.decision), kind=NOTICE_KINDS.get(notice.kind, common_pb2.NOTICE_KIND_UNSPECIFIED),
        pend_reasons=pend_reasons_pb(notice.pend_reasons), payment_id=notice.payment_id or "",
        amount_cents=notice.amount_cents or 0, reason=notice.reason or "", replaced_by_claim_id=notice.replaced_by or "",
        visit_id=notice.visit_id or "", date_of_service=iso(notice.date_of_service),
        place_of_service=notice.place_of_service or "", emergency=bool(notice.emergency),
        access_id=notice.access_id or "",
    )


NOTICE_KINDS = {
    "adjudicated": common_pb2.NOTICE_KIND_ADJUDICATED,
    "pended": common_pb2.NOTICE_KIND_PENDED,
    "review_resolved": common_pb2.NOTICE_KIND_REVIEW_RESOLVED,
    "dispute_resolved": common_pb2.NOTICE_KIND_DISPUTE_RESOLVED,
    "voided": common_pb2.NOTICE_KIND_VOIDED,
    "replaced": common_pb2.NOTICE_KIND_REPLACED,
    "payment_cancelled": common_pb2.NOTICE_KIND_PAYMENT_CANCELLED,
    "payment_recouped": common_pb2.NOTICE_KIND_PAYMENT_RECOUPED,
    "visit": common_pb2.NOTICE_KIND_VISIT,
    "emergency_access": common_pb2.NOTICE_KIND_EMERGENCY_ACCESS,
}

# --- members --------------------------------------------------------------------------------

CONSENT_SCOPES = {
    common_pb2.CONSENT_SCOPE_CLAIM_HISTORY: "claim_history",
    common_pb2.CONSENT_SCOPE_CLAIM_HISTORY_WITH_DECISIONS: "claim_history_with_decisions",
}
CONSENT_SCOPE_VALUES = {name: value for value, name in CONSENT_SCOPES.items()}
ROLE_VALUES = {"provider": common_pb2.ROLE_PROVIDER, "payer": common_pb2.ROLE_PAYER, "dispute": common_pb2.ROLE_DISPUTE,
               "admin": common_pb2.ROLE_ADMIN, "member": common_pb2.ROLE_MEMBER}


def history_claim_pb(claim: ClaimStatus, *, decisions: bool) -> common_pb2.Claim:
    """A claim of a member's history as a provider reads it: without its decision and pend
    reasons unless the consent's scope includes decisions."""
    found = claim_status_pb(claim)
    if not decisions:
        found.ClearField("decision")
        del found.pend_reasons[:]
    return found


def eob_pb(eob: Eob) -> member_pb2.ExplanationOfBenefit:
    return member_pb2.ExplanationOfBenefit(
        claim_id=eob.claim_id, payer_id=eob.payer_id, provider_id=eob.provider_id,
        status=CLAIM_STATUS.get(eob.claim_status, common_pb2.CLAIM_STATUS_UNSPECIFIED),
        outcome=common_pb2.Outcome.Value(f"OUTCOME_{eob.outcome}") if eob.outcome else common_pb2.OUTCOME_UNSPECIFIED,
        received_on=iso(eob.received_on), first_date_of_service=iso(eob.first_date_of_service),
        lines=[member_pb2.ExplanationOfBenefitLine(
            line_number=line["line_number"], date_of_service=iso(line.get("date_of_service")),
            procedure_code=line.get("procedure_code") or "", modifiers=line.get("modifiers") or [],
            units=line.get("units") or 0, billed_cents=line.get("billed_cents") or 0,
            allowed_cents=line.get("allowed_cents") or 0, paid_cents=line.get("paid_cents") or 0,
            you_owe_cents=line.get("you_owe_cents") or 0, status=line.get("status") or "",
            adjustments=[common_pb2.Adjustment(group=a["group"], carc=a["carc"], amount_cents=a["amount_cents"])
                         for a in line.get("adjustments") or []],
            remarks=line.get("remarks") or []) for line in eob.lines],
        total_billed_cents=eob.total_billed_cents, total_allowed_cents=eob.total_allowed_cents or 0,
        total_paid_cents=eob.total_paid_cents or 0, total_you_owe_cents=eob.total_you_owe_cents or 0,
        last_position=eob.last_position,
    )


def own_accumulators_pb(acc: Accumulators) -> member_pb2.OwnAccumulators:
    return member_pb2.OwnAccumulators(
        payer_id=acc.payer_id, plan_year=acc.plan_year, plan_id=acc.plan_id, deductible_cents=acc.deductible_cents or 0,
        deductible_met_cents=acc.deductible_met_cents, oop_max_cents=acc.oop_max_cents or 0,
        oop_met_cents=acc.oop_met_cents, last_position=acc.last_position,
    )


def access_record_pb(entry: AccessEntry) -> member_pb2.AccessRecord:
    return member_pb2.AccessRecord(
        position=entry.position, accessed_at=instant(entry.accessed_at),
        role=ROLE_VALUES.get(entry.role, common_pb2.ROLE_UNSPECIFIED), party_id=entry.party_id, key_id=entry.key_id,
        method=entry.method, resources=entry.resources, grant=entry.access_grant,
        emergency=entry.emergency_reason is not None, emergency_reason=entry.emergency_reason or "",
    )


def consent_pb(entry: ConsentEntry) -> member_pb2.ConsentGrant:
    return member_pb2.ConsentGrant(
        grant_id=entry.grant_id, provider_id=entry.provider_id,
        scope=CONSENT_SCOPE_VALUES.get(entry.scope, common_pb2.CONSENT_SCOPE_UNSPECIFIED),
        granted_at=instant(entry.granted_at), expires_at=instant(entry.expires_at), revoked_at=instant(entry.revoked_at),
        revoke_reason=entry.revoke_reason or "", last_position=entry.last_position,
    )


def emergency_access_pb(entry: EmergencyAccessEntry) -> common_pb2.EmergencyAccess:
    return common_pb2.EmergencyAccess(
        access_id=entry.access_id, position=entry.position, member_id=entry.member_id, provider_id=entry.provider_id,
        reason=entry.reason, declared_at=instant(entry.declared_at), claim_ids=entry.claim_ids, key_id=entry.key_id,
    )


def claim_status_pb(claim: ClaimStatus) -> common_pb2.Claim:
    return claim_pb(vars(claim) if hasattr(claim, "__dict__") else {f: getattr(claim, f) for f in claim.__slots__})


def issued_payment_pb(payment: Any) -> common_pb2.Payment:
    """A payment just issued (the aggregate), before the read model has it: what it pays per line."""
    return common_pb2.Payment(
        payment_id=payment.payment_id, payer_id=payment.payer_id, provider_id=payment.provider_id,
        trace_number=payment.trace_number, amount_cents=payment.amount_cents, scheduled_cents=payment.amount_cents,
        status=common_pb2.PAYMENT_STATUS_ISSUED, issued_on=iso(payment.issued_on),
        claims=[common_pb2.PaymentClaim(claim_id=claim_id, amount_cents=sum(line["paid_cents"] for line in lines),
                                        lines=[line_result_pb(line) for line in lines])
                for claim_id, lines in payment.lines.items()],
    )


def x12_response_pb(result: Any) -> Any:
    """SubmitX12's answer from an `x12.intake.IntakeResult`."""
    return provider_pb2.SubmitX12Response(
        ta1=result.ta1.encode("ascii", "replace"), ack_999=result.ack_999.encode("ascii", "replace"),
        ack_277ca=result.ack_277ca.encode("ascii", "replace"),
        claims=[provider_pb2.X12ClaimResult(
            patient_control_number=c.claim.pcn, frequency_code=c.claim.frequency, accepted=c.accepted,
            claim_id=c.claim_id, receipt=receipt_pb(c.receipt), status=":".join(p for p in c.status if p),
            field=c.field, description=c.message) for c in result.claims],
    )


def remittance_835_pb(text: str, run_id: str, summaries: Any) -> Any:
    """GetRemittance835's answer: the interchange and a summary per provider (`x12.remittance`)."""
    return payer_pb2.GetRemittance835Response(
        interchange=text.encode("ascii", "replace"), run_id=run_id,
        remittances=[payer_pb2.Remittance835Summary(
            provider_id=s.provider_id, trace_number=s.trace_number, amount_cents=s.amount_cents, claims=s.claims,
            provider_adjustment_cents=s.provider_adjustment_cents) for s in summaries],
    )
