"""AdminService: set up payers' members and plans, providers, contracts, rule sets and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from claims.v1 import admin_pb2, admin_pb2_grpc, common_pb2
from claims_service.api.converters import instant, parse_date, parse_instant, receipt_pb
from claims_service.api.interceptors import principal
from claims_service.commands import Commands
from claims_service.domain.apikey import ApiKey
from claims_service.erasure import Eraser
from claims_service.errors import ValidationError
from projections.reading import Pager

ROLE_NAMES = {
    common_pb2.ROLE_PROVIDER: "provider",
    common_pb2.ROLE_PAYER: "payer",
    common_pb2.ROLE_DISPUTE: "dispute",
    common_pb2.ROLE_ADMIN: "admin",
    common_pb2.ROLE_MEMBER: "member",
}
ROLE_VALUES = {name: value for value, name in ROLE_NAMES.items()}


def terms_from_pb(terms: admin_pb2.PlanTerms) -> dict[str, Any]:
    return {
        "deductible_cents": terms.deductible_cents,
        "oop_max_cents": terms.oop_max_cents,
        "cost_share": {k: {"copay_cents": v.copay_cents, "coinsurance_bp": v.coinsurance_bp} for k, v in terms.cost_share.items()},
        "timely_filing_days": terms.timely_filing_days,
        "in_network_only": terms.in_network_only,
        "review_threshold_cents": terms.review_threshold_cents,
        "non_covered_procedures": list(terms.non_covered_procedures),
        "benefit_limits": dict(terms.benefit_limits),
        "prior_auth_required": list(terms.prior_auth_required),
    }


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, service: Commands, eraser: Eraser | None = None) -> None:
        self.service = service
        self.eraser = eraser or Eraser(service.ledger, service._save)

    def EraseMember(self, request: Any, context: Any) -> Any:
        report = self.eraser.erase(request.member_id, actor=principal().actor)
        return admin_pb2.EraseMemberResponse(
            receipt=receipt_pb(report.receipt), already_erased=report.already_erased, key_id=report.key_id,
            streams=report.streams, sealed_events=report.sealed_events, legacy_events=report.legacy_events,
            attachments=report.attachments, read_model_rows=report.read_model_rows)

    def EnrollMember(self, request: Any, context: Any) -> Any:
        if not request.HasField("terms"):
            raise ValidationError.single("terms", "is required")
        receipt = self.service.enroll_member(
            actor=principal().actor,
            member_id=request.member_id,
            payer_id=request.payer_id,
            plan_id=request.plan_id,
            effective_date=parse_date(request.effective_date, "effective_date"),
            termination_date=parse_date(request.termination_date, "termination_date", required=False),
            terms=terms_from_pb(request.terms),
        )
        return admin_pb2.EnrollMemberResponse(receipt=receipt_pb(receipt))

    def TerminateCoverage(self, request: Any, context: Any) -> Any:
        receipt = self.service.terminate_coverage(
            actor=principal().actor,
            payer_id=request.payer_id,
            member_id=request.member_id,
            termination_date=parse_date(request.termination_date, "termination_date"),
        )
        return admin_pb2.TerminateCoverageResponse(receipt=receipt_pb(receipt))

    def RecordPriorAuthorization(self, request: Any, context: Any) -> Any:
        receipt = self.service.authorize_prior(
            actor=principal().actor,
            payer_id=request.payer_id,
            member_id=request.member_id,
            auth_id=request.auth_id,
            procedure_code=request.procedure_code,
            units=request.units,
            valid_from=parse_date(request.valid_from, "valid_from"),
            valid_to=parse_date(request.valid_to, "valid_to"),
        )
        return admin_pb2.RecordPriorAuthorizationResponse(receipt=receipt_pb(receipt))

    def RegisterProvider(self, request: Any, context: Any) -> Any:
        receipt = self.service.register_provider(
            actor=principal().actor, npi=request.npi, name=request.name, taxonomy=request.taxonomy
        )
        return admin_pb2.RegisterProviderResponse(receipt=receipt_pb(receipt))

    def RecordCredential(self, request: Any, context: Any) -> Any:
        revoked_on = parse_date(request.revoked_on, "revoked_on", required=request.revoked)
        receipt = self.service.record_credential(
            actor=principal().actor,
            npi=request.npi,
            licence_number=request.licence_number,
            state=request.state,
            valid_from=None if request.revoked else parse_date(request.valid_from, "valid_from"),
            valid_to=None if request.revoked else parse_date(request.valid_to, "valid_to"),
            revoked_on=revoked_on if request.revoked else None,
        )
        return admin_pb2.RecordCredentialResponse(receipt=receipt_pb(receipt))

    def JoinNetwork(self, request: Any, context: Any) -> Any:
        receipt = self.service.join_network(
            actor=principal().actor,
            npi=request.npi,
            payer_id=request.payer_id,
            contract_id=request.contract_id,
            effective_date=parse_date(request.effective_date, "effective_date"),
            end_date=parse_date(request.end_date, "end_date", required=False),
        )
        return admin_pb2.JoinNetworkResponse(receipt=receipt_pb(receipt))

    def PublishFeeSchedule(self, request: Any, context: Any) -> Any:
        fees: dict[str, int] = {}
        for i, entry in enumerate(request.entries):
            key = f"{entry.procedure_code}:{entry.modifier}" if entry.modifier else entry.procedure_code
            if key in fees:
                raise ValidationError.single(f"entries[{i}]", f"{key} is listed twice")
            fees[key] = entry.allowed_cents
        receipt = self.service.publish_fee_schedule(
            actor=principal().actor,
            contract_id=request.contract_id,
            payer_id=request.payer_id,
            version=request.version,
            effective_date=parse_date(request.effective_date, "effective_date"),
            fees=fees,
        )
        return admin_pb2.PublishFeeScheduleResponse(receipt=receipt_pb(receipt))

    def DeployRuleSet(self, request: Any, context: Any) -> Any:
        receipt, content_hash = self.service.deploy_ruleset(
            actor=principal().actor,
            version=request.version,
            effective_date=parse_date(request.effective_date, "effective_date"),
        )
        return admin_pb2.DeployRuleSetResponse(receipt=receipt_pb(receipt), ruleset_hash=content_hash)

    def CreateApiKey(self, request: Any, context: Any) -> Any:
        role = ROLE_NAMES.get(request.role)
        if role is None:
            raise ValidationError.single("role", "must be PROVIDER, PAYER, DISPUTE or ADMIN")
        expires_at = self.service.key_expiry(expires_at=parse_instant(request.expires_at, "expires_at"),
                                             ttl_seconds=request.ttl_seconds)
        api_key, key_id, receipt = self.service.create_api_key(
            actor=principal().actor, role=role, party_id=request.party_id, label=request.label, expires_at=expires_at
        )
        return admin_pb2.CreateApiKeyResponse(api_key=api_key, key_id=key_id, receipt=receipt_pb(receipt),
                                              expires_at=instant(expires_at))

    def RevokeApiKey(self, request: Any, context: Any) -> Any:
        receipt, already = self.service.revoke_api_key(actor=principal().actor, key_id=request.key_id,
                                                       reason=request.reason)
        return admin_pb2.RevokeApiKeyResponse(receipt=receipt_pb(receipt), already_revoked=already)

    def ListApiKeys(self, request: Any, context: Any) -> Any:
        pager = Pager("api_keys", {}, request.page_size, request.page_token)
        found = self.service.api_keys(after_position=pager.key[0] if pager.key else 0, limit=pager.limit)
        page, token = pager.page(found, key=lambda item: [item[0]])
        now = self.service.now()
        return admin_pb2.ListApiKeysResponse(keys=[api_key_pb(key, now) for _, key in page], next_page_token=token)


def api_key_pb(key: ApiKey, now: datetime) -> admin_pb2.ApiKeyInfo:
    """What may be shown of a key: never its secret's hash."""
    return admin_pb2.ApiKeyInfo(
        key_id=key.key_id, role=ROLE_VALUES[key.role], party_id=key.party_id, label=key.label,
        created_at=instant(key.created_on), created_by=key.issued_by, expires_at=instant(key.expires_at),
        expired=key.expired(now), revoked=key.revoked, revoked_at=instant(key.revoked_at),
        revoke_reason=key.revoke_reason,
    )
