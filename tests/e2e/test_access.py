"""Authentication and authorisation over a real channel: every role against every service."""

from __future__ import annotations

import grpc
import pytest

from claims.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    dispute_pb2,
    ledger_pb2,
    member_pb2,
    payer_pb2,
    provider_pb2,
    provider_pb2_grpc,
)
from tests.e2e.test_claim_flow import claim_request, set_up, wait_decided

# One cheap call per service, and the roles allowed to make it.
PROBES = {
    "provider": (lambda c: c.provider.GetClaim(provider_pb2.GetClaimRequest(claim_id="00000000-0000-0000-0000-000000000000")), {"provider"}),
    "payer": (lambda c: c.payer.ListPendedClaims(payer_pb2.ListPendedClaimsRequest()), {"payer", "other_payer"}),
    "dispute": (lambda c: c.dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest()), {"dispute"}),
    "admin": (lambda c: c.admin.DeployRuleSet(admin_pb2.DeployRuleSetRequest(version="2026.1", effective_date="2026-01-01")), {"admin"}),
    "member": (lambda c: c.member.ListOwnClaims(member_pb2.ListOwnClaimsRequest()), {"member"}),
    "ledger": (lambda c: c.ledger.GetPublicKey(ledger_pb2.GetPublicKeyRequest()), {"admin", "provider", "other_provider", "payer", "other_payer", "dispute", "member"}),
}
ROLES = ("admin", "provider", "other_provider", "payer", "other_payer", "dispute", "member")


@pytest.mark.parametrize("service", list(PROBES))
def test_each_service_admits_its_roles_and_refuses_the_others(parties, service):
    probe, allowed = PROBES[service]
    if service == "provider":
        allowed = {"provider", "other_provider"}
    for role in ROLES:
        client = getattr(parties, role)
        if role in allowed:
            try:
                probe(client)
            except grpc.RpcError as error:  # allowed in, but the probe's target may not exist
                assert error.code() not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED), role
        else:
            with pytest.raises(grpc.RpcError) as refused:
                probe(client)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, role


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer nonsense"),),
                                      (("authorization", "Bearer ck_000000000000_" + "A" * 52),),
                                      (("authorization", "Basic dXNlcjpwYXNz"),)])
def test_no_call_succeeds_without_a_valid_credential(parties, metadata):
    stub = provider_pb2_grpc.ProviderServiceStub(parties.channel)
    with pytest.raises(grpc.RpcError) as refused:
        stub.SubmitClaim(claim_request("anon"), metadata=metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    admin = admin_pb2_grpc.AdminServiceStub(parties.channel)
    with pytest.raises(grpc.RpcError) as refused:
        admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(), metadata=metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_another_providers_claim_is_not_found_and_cannot_be_voided(parties):
    set_up(parties)
    mine = parties.provider.provider.SubmitClaim(claim_request("mine"))
    wait_decided(parties, mine.claim_id, mine.receipt.position)
    for call in (
        lambda: parties.other_provider.provider.GetClaim(provider_pb2.GetClaimRequest(
            claim_id=mine.claim_id, min_position=mine.receipt.position)),
        lambda: parties.other_provider.provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=mine.claim_id, reason="x")),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    listed = parties.other_provider.provider.ListClaims(provider_pb2.ListClaimsRequest(min_position=mine.receipt.position))
    assert list(listed.claims) == []


def test_a_payer_sees_only_its_members_notices(parties):
    set_up(parties)
    mine = parties.provider.provider.SubmitClaim(claim_request("for-acme"))
    claim = wait_decided(parties, mine.claim_id, mine.receipt.position)
    other = parties.other_payer.payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(), timeout=3)
    notices = []
    with pytest.raises(grpc.RpcError) as ended:
        for item in other:
            if item.WhichOneof("kind") == "notice":
                notices.append(item.notice)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert notices == [] and claim.payer_id != "PAYER-OTHER"


def test_a_key_created_by_an_admin_works_and_is_stored_only_as_a_hash(parties):
    created = parties.admin.admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(
        role=common_pb2.ROLE_PROVIDER, party_id="1245319599", label="new"))
    assert created.api_key.startswith("ck_")
    stub = provider_pb2_grpc.ProviderServiceStub(parties.channel)
    listed = stub.ListClaims(provider_pb2.ListClaimsRequest(), metadata=(("authorization", f"Bearer {created.api_key}"),), timeout=10)
    assert list(listed.claims) == []
    import psycopg

    with psycopg.connect(parties.service.ledger.database_url) as conn:
        stored = b"".join(bytes(r[0]) for r in conn.execute("SELECT state FROM ledger_events"))
    secret = created.api_key.rsplit("_", 1)[1]
    assert secret.encode() not in stored
