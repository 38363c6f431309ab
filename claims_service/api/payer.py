"""PayerService: a payer follows adjudications (and its members' visits and emergency accesses) as
a resumable stream, works its pended claims, issues payments, reads its members' accumulators and
reviews emergency accesses to their histories. The payer id comes from its credential."""

from __future__ import annotations

from typing import Any

from claims.v1 import common_pb2, payer_pb2, payer_pb2_grpc
from claims_service.api.converters import decision_pb, issued_payment_pb, receipt_pb, remittance_835_pb
from claims_service.api.interceptors import principal
from claims_service.api.reads import ReadSide, wait_budget
from claims_service.commands import Commands
from claims_service.domain.formats import is_npi
from claims_service.domain.payment import run_of_trace
from claims_service.errors import ValidationError
from claims_service.x12.remittance import RemittancePayer, remittance_835

DEFAULT_MAX_PAYMENTS = 100


class PayerServicer(payer_pb2_grpc.PayerServiceServicer):
    def __init__(self, service: Commands, reads: ReadSide) -> None:
        self.service = service
        self.reads = reads

    async def SubscribeAdjudications(self, request: Any, context: Any) -> Any:
        async for item in self.reads.adjudications(principal().party_id, request.after_position):
            if isinstance(item, common_pb2.Heartbeat):
                yield payer_pb2.SubscribeAdjudicationsResponse(heartbeat=item)
            else:
                yield payer_pb2.SubscribeAdjudicationsResponse(notice=item)

    def ListEmergencyAccesses(self, request: Any, context: Any) -> Any:
        return self.reads.emergency_accesses(principal().party_id, request, context=context)

    def ListPendedClaims(self, request: Any, context: Any) -> Any:
        claims, token = self.reads.pended_claims(principal().party_id, request, context=context)
        return payer_pb2.ListPendedClaimsResponse(claims=claims, next_page_token=token)

    def ResolvePendedClaim(self, request: Any, context: Any) -> Any:
        resolution = request.WhichOneof("resolution")
        approve = deny = None
        if resolution == "approve":
            approve = [{"line_number": line.line_number, "allowed_cents": line.allowed_cents}
                       for line in request.approve.lines]
        elif resolution == "deny":
            deny = (request.deny.group, request.deny.carc)
        else:
            raise ValidationError.single("resolution", "set approve or deny")
        receipt, decision = self.service.resolve_pended_claim(
            actor=principal().actor, payer_id=principal().party_id, claim_id=request.claim_id,
            note=request.note, approve=approve, deny=deny,
        )
        return payer_pb2.ResolvePendedClaimResponse(receipt=receipt_pb(receipt), decision=decision_pb(decision))

    def IssuePayments(self, request: Any, context: Any) -> Any:
        if request.provider_id and not is_npi(request.provider_id):
            raise ValidationError.single("provider_id", "must be a valid NPI (10 digits, check digit) or empty")
        if request.max_payments < 0 or request.min_position < 0:
            field = "max_payments" if request.max_payments < 0 else "min_position"
            raise ValidationError.single(field, "must not be negative")
        limit = request.max_payments or DEFAULT_MAX_PAYMENTS
        due = self.reads.payments_due(principal().party_id, request.provider_id or None, min(limit, 1000),
                                      min_position=request.min_position, context=context)
        issued, receipt = self.service.issue_payments(actor=principal().actor, payer_id=principal().party_id,
                                                      payment_ids=due)
        payments = [issued_payment_pb(payment) for payment in issued]
        run = run_of_trace(issued[0].trace_number) if issued else None
        return payer_pb2.IssuePaymentsResponse(payments=payments, receipt=receipt_pb(receipt), run_id=run or "")

    def GetMemberAccumulators(self, request: Any, context: Any) -> Any:
        return self.reads.member_accumulators(principal().party_id, request, context=context)

    def GetRemittance835(self, request: Any, context: Any) -> Any:
        if request.min_position < 0:
            raise ValidationError.single("min_position", "must not be negative")
        p = request.payer
        payer = RemittancePayer(payer_id=principal().party_id, name=p.name, tax_id=p.tax_id, address_line=p.address_line,
                                city=p.city, state=p.state, postal_code=p.postal_code, contact=p.contact)
        text, run, summaries = remittance_835(
            self.reads.pool, payer, run_id=request.run_id or None, provider_id=request.provider_id or None,
            now=self.service.now, min_position=request.min_position or None, timeout=wait_budget(context),
            hub=self.reads.hub)
        return remittance_835_pb(text, run, summaries)
