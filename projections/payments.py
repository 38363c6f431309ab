"""Read model "payments": payments (scheduled, issued, cancelled, recouped) and, per paid claim,
the lines with their CAS adjustments as decided when the payment was scheduled — what an X12 835
remittance needs — followed by each recoupment as an entry of its own with negative amounts, so
that a remittance's total is always the sum of its entries.

Tables (migrations/0007_payments.sql, 0013_money_lifecycle.sql): ``payments``,
``payment_claims`` (append-only: entry 0 is what the payment pays on a claim, entry n its n-th
recoupment), ``remittance_claims`` (this projection's own copy of each claim's submitted lines and
decision in force, so it never reads another projection's tables).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from projections.events import Notification, Topics
from projections.store import AppendTable, Batch, ReadModel, Table

log = logging.getLogger(__name__)

CLAIM_TOPICS = frozenset(
    {
        Topics.CLAIM_SUBMITTED,
        Topics.CLAIM_ADJUDICATED,
        Topics.CLAIM_PENDED,
        Topics.CLAIM_REVIEW_RESOLVED,
        Topics.CLAIM_DISPUTE_RESOLVED,
        Topics.CLAIM_VOIDED,
        Topics.CLAIM_CORRECTED,
    }
)
PAYMENT_TOPICS = frozenset(
    {Topics.PAYMENT_SCHEDULED, Topics.PAYMENT_ISSUED, Topics.PAYMENT_CANCELLED, Topics.PAYMENT_RECOUPED, Topics.PAYMENT_REVERSED}
)
RECOUPMENTS = frozenset({Topics.PAYMENT_RECOUPED, Topics.PAYMENT_REVERSED})


class PaymentsModel(ReadModel):
    name = "payments"
    tables = ("payments", "payment_claims", "remittance_claims")
    topics = CLAIM_TOPICS | PAYMENT_TOPICS

    def apply(self, batch: Batch, notifications: Sequence[Notification]) -> None:
        mine = [n for n in notifications if n.topic in self.topics]
        if not mine:
            return
        payments = batch.table("payments", ("stream_id",))
        paid_claims = batch.append_table("payment_claims")
        claims = batch.table("remittance_claims", ("claim_id",))
        payments.prefetch("stream_id", {str(n.stream_id) for n in mine if n.topic in PAYMENT_TOPICS and n.topic != Topics.PAYMENT_SCHEDULED})
        wanted = {str(n.stream_id) for n in mine if n.topic in CLAIM_TOPICS and n.topic != Topics.CLAIM_SUBMITTED}
        for n in mine:
            if n.topic == Topics.PAYMENT_SCHEDULED:
                wanted.update(n.payload["claim_ids"])
            elif n.topic == Topics.PAYMENT_RECOUPED:
                wanted.update(n.payload["lines"])
        claims.prefetch("claim_id", wanted)
        for n in mine:
            if n.topic in CLAIM_TOPICS:
                self._claim_event(claims, n)
            elif n.topic == Topics.PAYMENT_SCHEDULED:
                self._scheduled(payments, paid_claims, claims, n)
            else:
                payment = payments.get(str(n.stream_id))
                if payment is None:
                    log.error("payments: %r for a payment never scheduled; skipped", n)
                    continue
                p = n.payload
                if n.topic == Topics.PAYMENT_ISSUED:
                    payment.update(status="issued", trace_number=p["trace_number"], issued_on=p["issued_on"], issued_position=n.position)
                elif n.topic == Topics.PAYMENT_CANCELLED:
                    payment.update(status="cancelled", cancel_reason=p["reason"], cancelled_position=n.position)
                else:
                    self._recouped(payment, paid_claims, claims, n)
                payment["last_position"] = n.position
                payments.put(payment)

    def _claim_event(self, claims: Table, n: Notification) -> None:
        p = n.payload
        if n.topic == Topics.CLAIM_SUBMITTED:
            claims.put(
                {
                    "claim_id": str(n.stream_id),
                    "payer_id": p["payer_id"],
                    "provider_id": p["provider_id"],
                    "member_id": p["member_id"],
                    "frequency_code": p["frequency_code"],
                    "status": "submitted",
                    "lines": p["lines"],
                    "decision": None,
                    "last_position": n.position,
                }
            )
            return
        claim = claims.get(str(n.stream_id))
        if claim is None:
            log.error("payments: %r has no submitted claim; skipped", n)
            return
        if n.topic == Topics.CLAIM_VOIDED:
            claim["status"] = "voided"
        elif n.topic == Topics.CLAIM_CORRECTED:
            claim["status"] = "replaced"
        elif n.topic == Topics.CLAIM_PENDED:
            claim["status"] = "pended"
        elif n.topic != Topics.CLAIM_DISPUTE_RESOLVED:
            claim["status"] = "adjudicated"
        if p.get("decision") is not None:
            claim["decision"] = p["decision"]
        claim["last_position"] = n.position
        claims.put(claim)

    def _recouped(self, payment: dict[str, Any], paid_claims: AppendTable, claims: Table, n: Notification) -> None:
        """A recoupment: the payment's net goes down, and each claim it touches gets an entry of
        negative amounts (a legacy reversal, recorded without lines, is put on the first claim)."""
        p = n.payload
        by_claim = p.get("lines") or {payment["claim_ids"][0]: []}
        payment["reversed_cents"] += p["amount_cents"]
        payment["reversals"] = [
            *payment["reversals"],
            {"reason": p["reason"], "amount_cents": p["amount_cents"], "position": n.position},
        ]
        payment["status"] = "recouped"
        entry = len(payment["reversals"])
        for claim_id, taken in by_claim.items():
            claim = claims.get(claim_id) or {}
            lines = [{**line, "paid_cents": -line["paid_cents"]} for line in remittance_lines(claim, taken)]
            paid_claims.add(
                {
                    **self._claim_entry(payment, claim_id, claim, lines, n.position),
                    "paid_cents": -sum(line["paid_cents"] for line in taken) if taken else -p["amount_cents"],
                    "entry": entry,
                    "reason": p["reason"],
                }
            )

    @staticmethod
    def _claim_entry(payment: dict[str, Any], claim_id: str, claim: dict[str, Any], lines: list[dict[str, Any]],
                     position: int) -> dict[str, Any]:
        decision = claim.get("decision") or {}
        return {
            "payment_id": payment["payment_id"],
            "claim_id": claim_id,
            "payer_id": payment["payer_id"],
            "provider_id": payment["provider_id"],
            "member_id": claim.get("member_id", ""),
            "frequency_code": claim.get("frequency_code", "1"),
            "outcome": decision.get("outcome"),
            "billed_cents": sum(line["billed_cents"] or 0 for line in lines),
            "patient_responsibility_cents": decision.get("total_patient_responsibility_cents"),
            "lines": lines,
            "scheduled_position": position,
        }

    def _scheduled(self, payments: Table, paid_claims: AppendTable, claims: Table, n: Notification) -> None:
        p = n.payload
        payments.put(
            {
                "stream_id": str(n.stream_id),
                "payment_id": p["payment_id"],
                "payer_id": p["payer_id"],
                "provider_id": p["provider_id"],
                "status": "scheduled",
                "amount_cents": p["amount_cents"],
                "reversed_cents": 0,
                "claim_ids": p["claim_ids"],
                "trace_number": None,
                "issued_on": None,
                "reversals": [],
                "cancel_reason": None,
                "cancelled_position": None,
                "scheduled_position": n.position,
                "issued_position": None,
                "last_position": n.position,
            }
        )
        for claim_id in p["claim_ids"]:
            claim = claims.get(claim_id) or {}
            paid_lines = p["lines"].get(claim_id, [])
            paid_claims.add(
                {
                    **self._claim_entry(p, claim_id, claim, remittance_lines(claim, paid_lines), n.position),
                    "paid_cents": sum(line["paid_cents"] for line in paid_lines),
                    "entry": 0,
                    "reason": None,
                }
            )


def remittance_lines(claim: dict[str, Any], paid_lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each paid line with what the claim said (procedure, units, date) and what the decision in
    force said (billed, allowed, patient responsibility, adjustments, remarks)."""
    submitted = {line["line_number"]: line for line in claim.get("lines", [])}
    decided = {line["line_number"]: line for line in (claim.get("decision") or {}).get("lines", [])}
    lines = []
    for paid in paid_lines:
        number = paid["line_number"]
        s = submitted.get(number, {})
        d = decided.get(number, {})
        lines.append(
            {
                "line_number": number,
                "procedure_code": s.get("procedure_code"),
                "modifiers": s.get("modifiers", []),
                "units": s.get("units"),
                "date_of_service": s.get("date_of_service"),
                "billed_cents": d.get("billed_cents", s.get("billed_cents")),
                "allowed_cents": d.get("allowed_cents"),
                "paid_cents": paid["paid_cents"],
                "patient_responsibility_cents": d.get("patient_responsibility_cents"),
                "adjustments": d.get("adjustments", []),
                "remarks": d.get("remarks", []),
            }
        )
    return lines
