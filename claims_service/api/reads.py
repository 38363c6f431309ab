"""The read side as the servicers see it: projection queries and feeds, converted to protobuf.

Every read that returns a member's data records it in the access log before it answers
(``accessed``; ``api.access`` says how and at what cost): the member, what was returned and under
which grant.

Each read waits (up to the call's deadline) for the read model to reach the caller's
`min_position` — the position in a write's receipt — and otherwise fails, at the deadline, with the
DEADLINE_EXCEEDED of `ProjectionLagError` (a position beyond the ledger's head: OUT_OF_RANGE at
once, `PositionBeyondHeadError`). Streams are async generators on the server's event loop
(`projections.streams`), woken by the process's one `NotificationHub`; they end when the client
goes away. The projection runners that feed the tables run in the worker process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import grpc
from eventsourcing.application import AggregateNotFoundError
from psycopg_pool import ConnectionPool

from claims.v1 import common_pb2, member_pb2, payer_pb2, provider_pb2
from claims_service.api.access import AccessLog, Seen
from claims_service.api.converters import (
    CONSENT_SCOPE_VALUES,
    STATUS_NAME,
    access_record_pb,
    claim_status_pb,
    consent_pb,
    decision_pb,
    emergency_access_pb,
    eob_pb,
    history_claim_pb,
    iso,
    notice_pb,
    own_accumulators_pb,
    parse_date,
    pend_reasons_pb,
    payment_pb,
    receipt_pb,
)
from claims_service.api.interceptors import method, principal
from claims_service.application import LedgerApplication, Receipt
from claims_service.domain.access import EmergencyAccess
from claims_service.domain.consent import check_reason
from claims_service.domain.ids import time_ordered_id
from claims_service.errors import ClaimNotFoundError, MemberNotFoundError, PaymentNotFoundError, ValidationError
from projections.access import member_access_log, member_consents, payer_emergency_accesses
from projections.benefits import BenefitsModel, explanation_of_benefits, member_accumulators, member_payers, patient_eobs
from projections.claims import ClaimStatusModel, claims_by_id, get_claim, list_claims, member_claims, payer_worklist
from projections.feed import Heartbeat, NotificationHub
from projections.reading import valid_claim_id, wait_for_position
from projections.store import fast_json
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
    def __init__(self, ledger: LedgerApplication, database_url: str, *, access: AccessLog, pool_size: int = 16,
                 read_url: str | None = None) -> None:
        """``read_url``: a streaming replica of ``database_url`` to read from (CLAIMS_READ_DATABASE_URL);
        what waits for a position waits for the replica to have replayed it (``projections.feed``)."""
        self.ledger = ledger
        self.access = access
        self.pool = ConnectionPool(read_url or database_url, min_size=2, max_size=pool_size, open=False,
                                   kwargs={"autocommit": True, "application_name": "claims-reads"}, configure=fast_json)
        self.hub = NotificationHub(read_url or database_url, primary_url=database_url)
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

    # --- the access log -------------------------------------------------------------------------

    def accessed(self, seen: Seen, *, grant: str | None = None, before: Any = ()) -> Receipt | None:
        """Record that the call being served read these members' data (``api.access``), and wait
        for the record's commit; the call answers after. ``grant`` defaults to the caller's role's."""
        return self.access.record(principal(), method(), seen, grant=grant, before=before)

    def _stream_recorder(self, seen: Any) -> Any:
        """``before_send`` for a stream: records each batch (``seen(items)``) as the caller's read."""
        who, called = principal(), method()

        async def record(items: Any) -> None:
            await self.access.arecord(who, called, seen(items))

        return record

    # --- providers ------------------------------------------------------------------------------

    def claim(self, claim_id: str, *, provider_id: str | None, min_position: int, context: Any) -> common_pb2.Claim:
        claim = get_claim(self.pool, claim_id, provider_id=provider_id, **self._waits(min_position, context))
        self.accessed([(claim.member_id, f"claim:{claim.claim_id}")])
        return claim_status_pb(claim)

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
        self.accessed((c.member_id, f"claim:{c.claim_id}") for c in page.claims)
        return [claim_status_pb(c) for c in page.claims], page.next_page_token

    async def watch_claims(self, provider_id: str, after: int) -> AsyncIterator[tuple[int, Any]]:
        """(position, Claim) for every change, or (position, Heartbeat)."""
        if after < 0:
            raise ValidationError.single("after_position", "must not be negative")
        record = self._stream_recorder(lambda claims: [(c.member_id, f"claim:{c.claim_id}") for c in claims])
        async for item in self.streams.stream(CLAIM_CHANGES, provider_id, after, before_send=record):
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
        self.accessed((c.member_id, f"payment:{p.payment_id}") for p in payments for c in p.claims)
        return [payment_pb(p) for p in payments]

    # --- payers ---------------------------------------------------------------------------------

    async def adjudications(self, payer_id: str, after: int) -> AsyncIterator[Any]:
        if after < 0:
            raise ValidationError.single("after_position", "must not be negative")
        record = self._stream_recorder(lambda notices: [
            (n.member_id, f"claim:{n.claim_id}" if n.claim_id else f"notice:{n.position}") for n in notices])
        async for item in self.streams.stream(ADJUDICATIONS, payer_id, after, before_send=record):
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
        self.accessed((item.member_id, f"claim:{item.claim_id}") for item in page.items)
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
        self.accessed([(acc.member_id, f"accumulators:{acc.payer_id}/{acc.plan_year}")])
        return payer_pb2.GetMemberAccumulatorsResponse(
            member_id=acc.member_id, plan_year=acc.plan_year, plan_id=acc.plan_id,
            deductible_cents=acc.deductible_cents or 0, deductible_met_cents=acc.deductible_met_cents,
            oop_max_cents=acc.oop_max_cents or 0, oop_met_cents=acc.oop_met_cents, last_position=acc.last_position,
        )

    def emergency_accesses(self, payer_id: str, request: Any, *, context: Any) -> payer_pb2.ListEmergencyAccessesResponse:
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = payer_emergency_accesses(self.pool, payer_id, member_id=request.member_id or None,
                                        page_size=request.page_size or 50, page_token=request.page_token or None,
                                        **self._waits(request.min_position, context))
        self.accessed((e.member_id, f"emergency-access:{e.access_id}") for e in page.accesses)
        return payer_pb2.ListEmergencyAccessesResponse(accesses=[emergency_access_pb(e) for e in page.accesses],
                                                       next_page_token=page.next_page_token)

    # --- providers: a member's history under consent or emergency --------------------------------

    def member_history(self, provider_id: str, request: Any, consent_in_force: Callable[[str, str], dict[str, Any] | None],
                       *, context: Any) -> provider_pb2.GetMemberHistoryResponse:
        """The member's claims of every provider, if the member's consent for this provider is in
        force (``consent_in_force(member_id, provider_id)``, read from the ledger: a revocation
        counts at once) or the caller declares an emergency; NOT_FOUND otherwise, as for a member
        that does not exist. An emergency is declared in the same commit as the read's record,
        naming the payers that cover the member (NOT_FOUND when none does)."""
        member_id = request.member_id
        if not member_id:
            raise ValidationError.single("member_id", "is required")
        reason = check_reason(request.emergency_reason, "emergency_reason") if request.emergency_reason else ""
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        waits = self._waits(request.min_position, context)
        wait_for_position(self.pool, ClaimStatusModel.name, waits["min_position"], timeout=waits["timeout"], hub=self.hub)
        missing = MemberNotFoundError("member_id: no such member, or no consent of theirs for this provider")
        who = principal()
        if reason:
            payers = member_payers(self.pool, member_id)
            if not payers:
                raise missing
            declaration = EmergencyAccess.declare(access_id=time_ordered_id(), actor=who.actor, key_id=who.key_id, provider_id=provider_id,
                                                  member_id=member_id, reason=reason, payer_ids=payers)
            scope, grant_id, grant, before = "claim_history", declaration.access_id, declaration.grant, [declaration]
        else:
            in_force = consent_in_force(member_id, provider_id)
            if in_force is None:
                raise missing
            scope, grant_id, before = in_force["scope"], in_force["grant_id"], []
            grant = f"consent:{grant_id}"
        page = member_claims(self.pool, member_id, page_size=request.page_size or 50,
                             page_token=request.page_token or None)
        seen = [(member_id, f"claim:{c.claim_id}") for c in page.claims] or [(member_id, "history")]
        receipt = self.accessed(seen, grant=grant, before=before)
        decisions = scope == "claim_history_with_decisions"
        return provider_pb2.GetMemberHistoryResponse(
            claims=[history_claim_pb(c, decisions=decisions) for c in page.claims], next_page_token=page.next_page_token,
            scope=CONSENT_SCOPE_VALUES[scope], grant_id=grant_id, emergency=bool(reason), receipt=receipt_pb(receipt))

    # --- members: their own data ------------------------------------------------------------------

    def own_claim(self, member_id: str, request: Any, *, context: Any) -> common_pb2.Claim:
        claim = get_claim(self.pool, request.claim_id, member_id=member_id, **self._waits(request.min_position, context))
        self.accessed([(member_id, f"claim:{claim.claim_id}")])
        return claim_status_pb(claim)

    def own_claims(self, member_id: str, request: Any, *, context: Any) -> member_pb2.ListOwnClaimsResponse:
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = member_claims(self.pool, member_id, page_size=request.page_size or 50,
                             page_token=request.page_token or None, **self._waits(request.min_position, context))
        self.accessed((member_id, f"claim:{c.claim_id}") for c in page.claims)
        return member_pb2.ListOwnClaimsResponse(claims=[claim_status_pb(c) for c in page.claims],
                                                next_page_token=page.next_page_token)

    def own_eob(self, member_id: str, request: Any, *, context: Any) -> member_pb2.ExplanationOfBenefit:
        eob = explanation_of_benefits(self.pool, request.claim_id, member_id=member_id,
                                      **self._waits(request.min_position, context))
        self.accessed([(member_id, f"eob:{eob.claim_id}")])
        return eob_pb(eob)

    def own_eobs(self, member_id: str, request: Any, *, context: Any) -> member_pb2.ListExplanationsOfBenefitResponse:
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = patient_eobs(self.pool, member_id, page_size=request.page_size or 50,
                            page_token=request.page_token or None, **self._waits(request.min_position, context))
        self.accessed((member_id, f"eob:{eob.claim_id}") for eob in page.eobs)
        return member_pb2.ListExplanationsOfBenefitResponse(explanations=[eob_pb(eob) for eob in page.eobs],
                                                            next_page_token=page.next_page_token)

    def own_accumulators(self, member_id: str, request: Any, *, context: Any) -> member_pb2.GetOwnAccumulatorsResponse:
        if not 1900 <= request.plan_year <= 2199:
            raise ValidationError.single("plan_year", "must be a year between 1900 and 2199")
        waits = self._waits(request.min_position, context)
        wait_for_position(self.pool, BenefitsModel.name, waits["min_position"], timeout=waits["timeout"], hub=self.hub)
        payers = member_payers(self.pool, member_id)
        if request.payer_id:
            if request.payer_id not in payers:
                raise MemberNotFoundError("payer_id: this payer does not cover you")
            payers = [request.payer_id]
        found = [member_accumulators(self.pool, payer_id, member_id, request.plan_year) for payer_id in payers]
        self.accessed((member_id, f"accumulators:{acc.payer_id}/{acc.plan_year}") for acc in found)
        return member_pb2.GetOwnAccumulatorsResponse(accumulators=[own_accumulators_pb(acc) for acc in found])

    def access_log(self, member_id: str, request: Any, *, context: Any) -> member_pb2.ListAccessLogResponse:
        """Not itself recorded: it holds who read, not the member's health data."""
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = member_access_log(self.pool, member_id, emergency_only=request.emergency_only,
                                 page_size=request.page_size or 50, page_token=request.page_token or None,
                                 **self._waits(request.min_position, context))
        return member_pb2.ListAccessLogResponse(records=[access_record_pb(e) for e in page.entries],
                                                next_page_token=page.next_page_token)

    def consents(self, member_id: str, request: Any, *, context: Any) -> member_pb2.ListConsentsResponse:
        if request.page_size < 0:
            raise ValidationError.single("page_size", "must not be negative")
        page = member_consents(self.pool, member_id, page_size=request.page_size or 50,
                               page_token=request.page_token or None, **self._waits(request.min_position, context))
        return member_pb2.ListConsentsResponse(consents=[consent_pb(c) for c in page.consents],
                                               next_page_token=page.next_page_token)

    # --- disputes -------------------------------------------------------------------------------

    def claim_history(self, claim_id: str, *, min_position: int, context: Any) -> list[common_pb2.HistoryEvent]:
        entries = claim_timeline(self.pool, claim_id, **self._waits(min_position, context))
        if not entries:
            raise ClaimNotFoundError(f"claim {claim_id} not found")
        self.accessed([(self._member_of(claim_id), f"claim:{valid_claim_id(claim_id)}")])
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


    def _member_of(self, claim_id: str) -> str:
        """The member a claim is of: from the read model, else (not projected yet) the ledger."""
        claim_id = valid_claim_id(claim_id)
        found = claims_by_id(self.pool, [claim_id]).get(claim_id)
        if found is not None:
            return found.member_id
        try:
            return str(self.ledger.repository.get(UUID(claim_id)).member_id)
        except AggregateNotFoundError:
            raise ClaimNotFoundError(f"claim {claim_id} not found") from None


__all__ = ["ReadSide"]
