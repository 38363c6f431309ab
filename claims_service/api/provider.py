"""ProviderService: a provider records visits and submits, corrects and voids its own claims,
reads their status and remittances, and reads a member's history across providers under the
member's consent or a declared emergency. The provider's NPI comes from its credential, never from
the request."""

from __future__ import annotations

from typing import Any

from claims.v1 import common_pb2, provider_pb2, provider_pb2_grpc
from claims_service.api.converters import lines_from_pb, optional, parse_date, receipt_pb, x12_response_pb
from claims_service.api import attachment
from claims_service.api.interceptors import principal
from claims_service.api.reads import ReadSide
from claims_service.attachments import Attachments
from claims_service.commands import Commands
from claims_service.x12.intake import submit_interchange


def claim_fields(request: Any) -> dict[str, Any]:
    return {
        "provider_id": principal().party_id,
        "member_id": request.member_id,
        "payer_id": request.payer_id,
        "visit_id": optional(request.visit_id),
        "diagnosis_codes": list(request.diagnosis_codes),
        "place_of_service": request.place_of_service,
        "lines": lines_from_pb(request.lines),
        "idempotency_key": request.idempotency_key,
    }


class ProviderServicer(provider_pb2_grpc.ProviderServiceServicer):
    def __init__(self, service: Commands, reads: ReadSide, attachments: Attachments | None = None) -> None:
        self.service = service
        self.reads = reads
        self.attachments = attachments

    async def UploadAttachment(self, request_iterator: Any, context: Any) -> Any:
        return await attachment.upload(self.attachments, request_iterator)

    def RecordVisit(self, request: Any, context: Any) -> Any:
        receipt = self.service.record_visit(
            actor=principal().actor,
            visit_id=request.visit_id,
            provider_id=principal().party_id,
            member_id=request.member_id,
            payer_id=request.payer_id,
            date_of_service=parse_date(request.date_of_service, "date_of_service"),
            place_of_service=request.place_of_service,
            diagnosis_codes=list(request.diagnosis_codes),
            emergency=request.emergency,
        )
        return provider_pb2.RecordVisitResponse(receipt=receipt_pb(receipt))

    def SubmitClaim(self, request: Any, context: Any) -> Any:
        submitted = self.service.submit_claim(actor=principal().actor, **claim_fields(request))
        return provider_pb2.SubmitClaimResponse(claim_id=submitted.claim_id, receipt=receipt_pb(submitted.receipt))

    def CorrectClaim(self, request: Any, context: Any) -> Any:
        corrected = self.service.correct_claim(
            actor=principal().actor, original_claim_id=request.claim_id, **claim_fields(request)
        )
        return provider_pb2.CorrectClaimResponse(claim_id=corrected.claim_id, receipt=receipt_pb(corrected.receipt))

    def VoidClaim(self, request: Any, context: Any) -> Any:
        receipt = self.service.void_claim(
            actor=principal().actor, provider_id=principal().party_id, claim_id=request.claim_id, reason=request.reason
        )
        return provider_pb2.VoidClaimResponse(receipt=receipt_pb(receipt))

    def GetClaim(self, request: Any, context: Any) -> Any:
        claim = self.reads.claim(request.claim_id, provider_id=principal().party_id,
                                 min_position=request.min_position, context=context)
        return provider_pb2.GetClaimResponse(claim=claim)

    def ListClaims(self, request: Any, context: Any) -> Any:
        claims, token = self.reads.provider_claims(principal().party_id, request, context=context)
        return provider_pb2.ListClaimsResponse(claims=claims, next_page_token=token)

    async def WatchClaims(self, request: Any, context: Any) -> Any:
        async for position, item in self.reads.watch_claims(principal().party_id, request.after_position):
            if isinstance(item, common_pb2.Heartbeat):
                yield provider_pb2.WatchClaimsResponse(position=position, heartbeat=item)
            else:
                yield provider_pb2.WatchClaimsResponse(position=position, claim=item)

    def GetRemittance(self, request: Any, context: Any) -> Any:
        payments = self.reads.remittance(request, provider_id=principal().party_id, context=context)
        return provider_pb2.GetRemittanceResponse(payments=payments)

    def GetMemberHistory(self, request: Any, context: Any) -> Any:
        return self.reads.member_history(principal().party_id, request, self.service.consent_in_force, context=context)

    def SubmitX12(self, request: Any, context: Any) -> Any:
        result = submit_interchange(self.service, actor=principal().actor, provider_id=principal().party_id,
                                    data=request.interchange)
        return x12_response_pb(result)
