"""The read side as the servicers see it: projection queries and feeds, converted to protobuf.

Each read waits (up to the call's deadline) for the read model to reach the caller's
`min_position` — the position in a write's receipt — and otherwise fails with the retryable
UNAVAILABLE of `ProjectionLagError`. Streams run on the process's one `NotificationHub` and stop
when the client goes away. The projection runners that feed the tables run in the worker process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import grpc
from psycopg_pool import ConnectionPool

from claims.v1 import common_pb2, payer_pb2
from claims_service.api.converters import CLAIM_STATUS, STATUS_NAME, claim_pb, decision_pb, iso, parse_date, pend_reasons_pb
from claims_service.application import Ledger
from claims_service.errors import ClaimNotFoundError, PaymentNotFoundError, ValidationError
from projections import queries
from projections.feed import Heartbeat, NotificationHub

DEFAULT_WAIT = 10.0  # seconds, when a call carries no deadline
DEADLINE_MARGIN = 0.1  # leave time to send the retryable error before the client gives up


def wait_budget(context: grpc.ServicerContext | None) -> float:
    remaining = context.time_remaining() if context is not None else None
    if remaining is None:
        return DEFAULT_WAIT
    return max(0.0, min(DEFAULT_WAIT, remaining - DEADLINE_MARGIN))


def stop_when_gone(context: grpc.ServicerContext) -> threading.Event:
    stop = threading.Event()
    context.add_callback(stop.set)
    return stop


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


def payment_pb(payment: queries.Payment) -> common_pb2.Payment:
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


def notice_pb(notice: queries.Notice) -> common_pb2.AdjudicationNotice:
    return common_pb2.AdjudicationNotice(
        position=notice.position, claim_id=notice.claim_id, payer_id=notice.payer_id, member_id=notice.member_id,
        provider_id=notice.provider_id, status=CLAIM_STATUS.get(notice.status, common_pb2.CLAIM_STATUS_UNSPECIFIED),
        decision=decision_pb(notice.decision), kind=NOTICE_KINDS.get(notice.kind, common_pb2.NOTICE_KIND_UNSPECIFIED),
        pend_reasons=pend_reasons_pb(notice.pend_reasons), payment_id=notice.payment_id or "",
        amount_cents=notice.amount_cents or 0, reason=notice.reason or "", replaced_by_claim_id=notice.replaced_by or "",
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
}


def claim_status_pb(claim: queries.ClaimStatus) -> common_pb2.Claim:
    return claim_pb(vars(claim) if hasattr(claim, "__dict__") else {f: getattr(claim, f) for f in claim.__slots__})


class ReadSide:
    def __init__(self, ledger: Ledger, database_url: str, *, pool_size: int = 16) -> None:
        self.ledger = ledger
        self.pool = ConnectionPool(database_url, min_size=2, max_size=pool_size, open=False,
                                   kwargs={"autocommit": True, "application_name": "claims-reads"})
        self.hub = NotificationHub(database_url)

    def start(self) -> None:
        self.pool.open(wait=True, timeout=30)
        self.hub.start()

    def close(self) -> None:
        self.hub.close()
        self.pool.close()

    def _waits(self, min_position: int, context: Any) -> dict[str, Any]:
        if min_position < 0:
            raise ValidationError.single("min_position", "must not be negative")
        return {"min_position": min_position or None, "timeout": wait_budget(context), "hub": self.hub}

    # --- providers ------------------------------------------------------------------------------

    def claim(self, claim_id: str, *, provider_id: str | None, min_position: int, context: Any) -> common_pb2.Claim:
        return claim_status_pb(queries.get_claim(self.pool, claim_id, provider_id=provider_id,
                                                 **self._waits(min_position, context)))

    def provider_claims(self, provider_id: str, request: Any, *, context: Any) -> tuple[list[common_pb2.Claim], str]:
        if request.status and request.status not in STATUS_NAME:
            raise ValidationError.single("status", "unknown claim status")
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = queries.list_claims(
            self.pool, provider_id,
            status=STATUS_NAME.get(request.status),
            received_from=parse_date(request.received_from, "received_from", required=False),
            received_to=parse_date(request.received_to, "received_to", required=False),
            member_id=request.member_id or None,
            page_size=request.page_size or 50,
            page_token=request.page_token or None,
            **self._waits(request.min_position, context),
        )
        return [claim_status_pb(c) for c in page.claims], page.next_page_token

    def watch_claims(self, provider_id: str, after: int, context: Any) -> Iterator[tuple[int, common_pb2.Claim]]:
        if after < 0:
            raise ValidationError.single("after_position", "must not be negative")
        for item in self.hub.claim_updates(provider_id, after, stop_when_gone(context)):
            if not isinstance(item, Heartbeat):
                yield item.last_position, claim_status_pb(item)

    def remittance(self, request: Any, *, provider_id: str, context: Any) -> list[common_pb2.Payment]:
        waits = self._waits(request.min_position, context)
        selector = request.WhichOneof("selector")
        if selector == "payment_id":
            payments = [queries.get_payment(self.pool, request.payment_id, provider_id=provider_id, **waits)]
        elif selector == "claim_id":
            payments = queries.payments_for_claim(self.pool, request.claim_id, provider_id=provider_id, **waits)
            if not payments:
                # None yet for one of this provider's claims; a missing or another provider's claim
                # is NOT_FOUND, as everywhere else.
                queries.get_claim(self.pool, request.claim_id, provider_id=provider_id, **waits)
        elif selector == "trace_number":
            payments = queries.payment_by_trace(self.pool, request.trace_number, provider_id=provider_id, **waits)
            if not payments:
                raise PaymentNotFoundError(f"no payment with trace number {request.trace_number}")
        else:
            raise ValidationError.single("selector", "set payment_id, claim_id or trace_number")
        return [payment_pb(p) for p in payments]

    # --- payers ---------------------------------------------------------------------------------

    def adjudications(self, payer_id: str, after: int, context: Any) -> Iterator[Any]:
        if after < 0:
            raise ValidationError.single("after_position", "must not be negative")
        for item in self.hub.adjudications(payer_id, after, stop_when_gone(context)):
            yield common_pb2.Heartbeat(position=item.position) if isinstance(item, Heartbeat) else notice_pb(item)

    def pended_claims(self, payer_id: str, request: Any, *, context: Any) -> tuple[list[common_pb2.Claim], str]:
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = queries.payer_worklist(self.pool, payer_id, page_size=request.page_size or 50,
                                      page_token=request.page_token or None, **self._waits(request.min_position, context))
        claims = [common_pb2.Claim(claim_id=item.claim_id, provider_id=item.provider_id, payer_id=item.payer_id,
                                   member_id=item.member_id, status=common_pb2.CLAIM_STATUS_PENDED,
                                   received_on=iso(item.received_on), decision=decision_pb(item.decision),
                                   last_position=item.pended_position, pend_reasons=pend_reasons_pb(item.pend_reasons))
                  for item in page.items]
        return claims, page.next_page_token

    def payments_due(self, payer_id: str, provider_id: str | None, limit: int, *, min_position: int,
                     context: Any) -> list[str]:
        due = queries.scheduled_payments_due(self.pool, payer_id, provider_id=provider_id, limit=limit,
                                             **self._waits(min_position, context))
        return [p.payment_id for p in due]

    def payments_pb(self, payments: list[Any]) -> list[common_pb2.Payment]:
        """Freshly issued payments (aggregates), before the read model has them."""
        return [
            common_pb2.Payment(
                payment_id=p.payment_id, payer_id=p.payer_id, provider_id=p.provider_id, trace_number=p.trace_number,
                amount_cents=p.amount_cents, scheduled_cents=p.amount_cents, status=common_pb2.PAYMENT_STATUS_ISSUED,
                issued_on=iso(p.issued_on),
                claims=[common_pb2.PaymentClaim(claim_id=claim_id, amount_cents=sum(line["paid_cents"] for line in lines),
                                                lines=[common_pb2.LineResult(line_number=line["line_number"],
                                                                             paid_cents=line["paid_cents"]) for line in lines])
                        for claim_id, lines in p.lines.items()],
            )
            for p in payments
        ]

    def member_accumulators(self, payer_id: str, request: Any, *, context: Any) -> payer_pb2.GetMemberAccumulatorsResponse:
        if not request.member_id:
            raise ValidationError.single("member_id", "is required")
        if not 1900 <= request.plan_year <= 2199:
            raise ValidationError.single("plan_year", "must be a year between 1900 and 2199")
        acc = queries.member_accumulators(self.pool, payer_id, request.member_id, request.plan_year,
                                          **self._waits(request.min_position, context))
        return payer_pb2.GetMemberAccumulatorsResponse(
            member_id=acc.member_id, plan_year=acc.plan_year, plan_id=acc.plan_id,
            deductible_cents=acc.deductible_cents or 0, deductible_met_cents=acc.deductible_met_cents,
            oop_max_cents=acc.oop_max_cents or 0, oop_met_cents=acc.oop_met_cents, last_position=acc.last_position,
        )

    # --- disputes -------------------------------------------------------------------------------

    def claim_history(self, claim_id: str, *, min_position: int, context: Any) -> list[common_pb2.HistoryEvent]:
        entries = queries.claim_timeline(self.pool, claim_id, **self._waits(min_position, context))
        if not entries:
            raise ClaimNotFoundError(f"claim {claim_id} not found")
        return [
            common_pb2.HistoryEvent(
                position=e.position, stream_id=str(e.stream_id), stream_version=e.stream_version,
                event_type=e.event_type,
                payload_json=e.payload if e.payload_encoding == "json" else json.dumps({"base64": e.payload}),
                hash=e.hash, prev_hash=e.prev_hash, stream_prev_hash=e.stream_prev_hash,
                recorded_at=e.recorded_at.isoformat() if e.recorded_at else "",
            )
            for e in entries
        ]


__all__ = ["ReadSide"]
