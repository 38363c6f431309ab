"""MemberService: a member reads their own claims, decisions, explanations of benefits and
accumulators, grants and revokes providers' access to their claim history, and lists who read
their data. The member id comes from the credential, never from the request."""

from __future__ import annotations

from typing import Any

from claims.v1 import member_pb2, member_pb2_grpc
from claims_service.api.converters import CONSENT_SCOPES, instant, parse_instant, receipt_pb
from claims_service.api.interceptors import principal
from claims_service.api.reads import ReadSide
from claims_service.commands import Commands
from claims_service.errors import ValidationError


class MemberServicer(member_pb2_grpc.MemberServiceServicer):
    def __init__(self, service: Commands, reads: ReadSide) -> None:
        self.service = service
        self.reads = reads

    def GetOwnClaim(self, request: Any, context: Any) -> Any:
        return member_pb2.GetOwnClaimResponse(claim=self.reads.own_claim(principal().party_id, request, context=context))

    def ListOwnClaims(self, request: Any, context: Any) -> Any:
        return self.reads.own_claims(principal().party_id, request, context=context)

    def GetExplanationOfBenefit(self, request: Any, context: Any) -> Any:
        explanation = self.reads.own_eob(principal().party_id, request, context=context)
        return member_pb2.GetExplanationOfBenefitResponse(explanation=explanation)

    def ListExplanationsOfBenefit(self, request: Any, context: Any) -> Any:
        return self.reads.own_eobs(principal().party_id, request, context=context)

    def GetOwnAccumulators(self, request: Any, context: Any) -> Any:
        return self.reads.own_accumulators(principal().party_id, request, context=context)

    def GrantConsent(self, request: Any, context: Any) -> Any:
        scope = CONSENT_SCOPES.get(request.scope)
        if scope is None:
            raise ValidationError.single("scope", "must be CLAIM_HISTORY or CLAIM_HISTORY_WITH_DECISIONS")
        if request.ttl_seconds < 0:
            raise ValidationError.single("ttl_seconds", "must not be negative")
        expires_at = self.service.consent_expiry(expires_at=parse_instant(request.expires_at, "expires_at"),
                                                 ttl_seconds=request.ttl_seconds)
        who = principal()
        grant_id, receipt = self.service.grant_consent(actor=who.actor, member_id=who.party_id,
                                                       provider_id=request.provider_id, scope=scope,
                                                       expires_at=expires_at)
        return member_pb2.GrantConsentResponse(grant_id=grant_id, expires_at=instant(expires_at),
                                               receipt=receipt_pb(receipt))

    def RevokeConsent(self, request: Any, context: Any) -> Any:
        who = principal()
        receipt, already = self.service.revoke_consent(actor=who.actor, member_id=who.party_id,
                                                       provider_id=request.provider_id, reason=request.reason)
        return member_pb2.RevokeConsentResponse(receipt=receipt_pb(receipt), already_revoked=already)

    def ListConsents(self, request: Any, context: Any) -> Any:
        return self.reads.consents(principal().party_id, request, context=context)

    def ListAccessLog(self, request: Any, context: Any) -> Any:
        return self.reads.access_log(principal().party_id, request, context=context)
