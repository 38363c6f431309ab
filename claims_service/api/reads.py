"""The read side as the servicers see it: projection queries and feeds, converted to protobuf.

Each read waits (up to the call's deadline) for the read model to reach the caller's
`min_position` — the position in a write's receipt — and otherwise fails, at the deadline, with the
DEADLINE_EXCEEDED of `ProjectionLagError` (a position beyond the ledger's head: OUT_OF_RANGE at
once, `PositionBeyondHeadError`). Streams are async generators on the server's event loop
(`projections.streams`), woken by the process's one `NotificationHub`; they end when the client
goes away. The projection runners that feed the tables run in the worker process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from psycopg_pool import ConnectionPool

from claims.v1 import common_pb2, payer_pb2
from claims_service.api.converters import (
    STATUS_NAME,
    claim_status_pb,
    decision_pb,
    iso,
    notice_pb,
    parse_date,
    pend_reasons_pb,
    payment_pb,
)
from claims_service.application import LedgerApplication
from claims_service.errors import ClaimNotFoundError, PaymentNotFoundError, ValidationError
from projections.benefits import member_accumulators
from projections.claims import get_claim, list_claims, payer_worklist
from projections.feed import Heartbeat, NotificationHub
from projections.streams import ADJUDICATIONS, CLAIM_CHANGES, FeedStreams
from projections.payments import get_payment, payment_by_trace, payments_for_claim, scheduled_payments_due
from projections.timeline import claim_timeline

DEFAULT_WAIT = 10.0  # seconds, when a call carries no deadline
DEADLINE_MARGIN = 0.1  # leave time to send the retryable error before the client gives up


def wait_budget(context: grpc.ServicerContext | None) -> float:
    remaining = context.time_remaining() if context is not None else None
    if remaining is None:
        return DEFAULT_WAIT
    return max(0.0, min(DEFAULT_WAIT, remaining - DEADLINE_MARGIN))


class ReadSide:
    def __init__(self, ledger: LedgerApplication, database_url: str, *, pool_size: int = 16) -> None:
        self.ledger = ledger
        self.pool = ConnectionPool(database_url, min_size=2, max_size=pool_size, open=False,
                                   kwargs={"autocommit": True, "application_name": "claims-reads"})
        self.hub = NotificationHub(database_url)
        # The streams' table reads: a few threads of their own, never the unary calls'.
        self._feed_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feed")
        self.streams = FeedStreams(self.hub, self._feed_executor)

    def start(self) -> None:
        self.pool.open(wait=True, timeout=30)
        self.hub.start()

    def close(self) -> None:
        self.hub.close()
        self._feed_executor.shutdown(wait=True, cancel_futures=True)
        self.pool.close()

    def _waits(self, min_position: int, context: Any) -> dict[str, Any]:
        if min_position < 0:
            raise ValidationError.single("min_position", "must not be negative")
        return {"min_position": min_position or None, "timeout": wait_budget(context), "hub": self.hub}

    # --- providers ------------------------------------------------------------------------------

    def claim(self, claim_id: str, *, provider_id: str | None, min_position: int, context: Any) -> common_pb2.Claim:
        return claim_status_pb(get_claim(self.pool, claim_id, provider_id=provider_id,
                                         **self._waits(min_position, context)))

    def provider_claims(self, provider_id: str, request: Any, *, context: Any) -> tuple[list[common_pb2.Claim], str]:
        if request.status and request.status not in STATUS_NAME:
            raise ValidationError.single("status", "unknown claim status")
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = list_claims(
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

    async def watch_claims(self, provider_id: str, after: int) -> AsyncIterator[tuple[int, Any]]:
        """(position, Claim) for every change, or (position, Heartbeat)."""
        if after < 0:
            raise ValidationError.single("after_position", "must not be negative")
        async for item in self.streams.stream(CLAIM_CHANGES, provider_id, after):
            if isinstance(item, Heartbeat):
                yield item.position, common_pb2.Heartbeat(position=item.position)
            else:
                yield item.last_position, claim_status_pb(item)

    def remittance(self, request: Any, *, provider_id: str, context: Any) -> list[common_pb2.Payment]:
        waits = self._waits(request.min_position, context)
        selector = request.WhichOneof("selector")
        if selector == "payment_id":
            payments = [get_payment(self.pool, request.payment_id, provider_id=provider_id, **waits)]
        elif selector == "claim_id":
            payments = payments_for_claim(self.pool, request.claim_id, provider_id=provider_id, **waits)
            if not payments:
                # None yet for one of this provider's claims; a missing or another provider's claim
                # is NOT_FOUND, as everywhere else.
                get_claim(self.pool, request.claim_id, provider_id=provider_id, **waits)
        elif selector == "trace_number":
            payments = payment_by_trace(self.pool, request.trace_number, provider_id=provider_id, **waits)
            if not payments:
                raise PaymentNotFoundError(f"no payment with trace number {request.trace_number}")
        else:
            raise ValidationError.single("selector", "set payment_id, claim_id or trace_number")
        return [payment_pb(p) for p in payments]

    # --- payers ---------------------------------------------------------------------------------

    async def adjudications(self, payer_id: str, after: int) -> AsyncIterator[Any]:
        if after < 0:
            raise ValidationError.single("after_position", "must not be negative")
        async for item in self.streams.stream(ADJUDICATIONS, payer_id, after):
            yield common_pb2.Heartbeat(position=item.position) if isinstance(item, Heartbeat) else notice_pb(item)

    def pended_claims(self, payer_id: str, request: Any, *, context: Any) -> tuple[list[common_pb2.Claim], str]:
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = payer_worklist(self.pool, payer_id, page_size=request.page_size or 50,
                              page_token=request.page_token or None, **self._waits(request.min_position, context))
        claims = [common_pb2.Claim(claim_id=item.claim_id, provider_id=item.provider_id, payer_id=item.payer_id,
                                   member_id=item.member_id, status=common_pb2.CLAIM_STATUS_PENDED,
                                   received_on=iso(item.received_on), decision=decision_pb(item.decision),
                                   last_position=item.pended_position, pend_reasons=pend_reasons_pb(item.pend_reasons))
                  for item in page.items]
        return claims, page.next_page_token

    def payments_due(self, payer_id: str, provider_id: str | None, limit: int, *, min_position: int,
                     context: Any) -> list[str]:
        due = scheduled_payments_due(self.pool, payer_id, provider_id=provider_id, limit=limit,
                                     **self._waits(min_position, context))
        return [p.payment_id for p in due]

    def member_accumulators(self, payer_id: str, request: Any, *, context: Any) -> payer_pb2.GetMemberAccumulatorsResponse:
        if not request.member_id:
            raise ValidationError.single("member_id", "is required")
        if not 1900 <= request.plan_year <= 2199:
            raise ValidationError.single("plan_year", "must be a year between 1900 and 2199")
        acc = member_accumulators(self.pool, payer_id, request.member_id, request.plan_year,
                                  **self._waits(request.min_position, context))
        return payer_pb2.GetMemberAccumulatorsResponse(
            member_id=acc.member_id, plan_year=acc.plan_year, plan_id=acc.plan_id,
            deductible_cents=acc.deductible_cents or 0, deductible_met_cents=acc.deductible_met_cents,
            oop_max_cents=acc.oop_max_cents or 0, oop_met_cents=acc.oop_met_cents, last_position=acc.last_position,
        )

    # --- disputes -------------------------------------------------------------------------------

    def claim_history(self, claim_id: str, *, min_position: int, context: Any) -> list[common_pb2.HistoryEvent]:
        entries = claim_timeline(self.pool, claim_id, **self._waits(min_position, context))
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
