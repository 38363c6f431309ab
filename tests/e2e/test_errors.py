"""Bad input over a real channel: clear statuses with field-level details, and nothing written."""

from __future__ import annotations

import time

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from claims.v1 import common_pb2, payer_pb2, provider_pb2
from tests.e2e.test_claim_flow import claim_request, set_up


def ledger_size(parties) -> int:
    with psycopg.connect(parties.service.ledger.database_url) as conn:
        return conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]


def field_violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r.lines[0].__setattr__("billed_cents", -5), "lines[0].billed_cents"),
    (lambda r: r.lines[0].__setattr__("date_of_service", "2026-13-45"), "lines[0].date_of_service"),
    (lambda r: r.lines[0].__setattr__("date_of_service", "0001-01-01"), "lines[0].date_of_service"),
    (lambda r: r.lines[0].__setattr__("procedure_code", "'; DROP TABLE ledger_events; --"), "lines[0].procedure_code"),
    (lambda r: r.diagnosis_codes.__setitem__(0, "E11.9"), "diagnosis_codes[0]"),
    (lambda r: r.lines[0].diagnosis_pointers.__setitem__(0, 7), "lines[0].diagnosis_pointers[0]"),
    (lambda r: r.__setattr__("idempotency_key", ""), "idempotency_key"),
])
def test_invalid_claims_are_refused_with_the_field_named_and_nothing_written(parties, mutate, field):
    set_up(parties)
    before = ledger_size(parties)
    request = claim_request("bad")
    mutate(request)
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.SubmitClaim(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(refused.value), refused.value.details()
    assert ledger_size(parties) == before


def test_more_than_fifty_lines_are_refused(parties):
    request = claim_request("many")
    template = request.lines[0]
    del request.lines[:]
    for n in range(51):
        line = request.lines.add()
        line.CopyFrom(template)
        line.line_number = n + 1
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.SubmitClaim(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lines" in field_violations(refused.value)


def test_the_same_key_with_a_different_body_is_already_exists(parties):
    set_up(parties)
    parties.provider.provider.SubmitClaim(claim_request("key-1"))
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.SubmitClaim(claim_request("key-1", billed=99_999))
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_garbled_bytes_are_invalid_argument_not_internal(parties):
    call = parties.channel.unary_unary("/claims.v1.ProviderService/SubmitClaim")
    with pytest.raises(grpc.RpcError) as refused:
        call(b"\xff\xff\xff\x0f garbage", metadata=parties.provider.metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_read_beyond_the_ledger_head_is_out_of_range_at_once(parties):
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.ListClaims(provider_pb2.ListClaimsRequest(min_position=10**9), timeout=10)
    assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE, refused.value.details()
    assert time.monotonic() - started < 2.0


def test_an_unknown_enum_value_is_handled(parties):
    request = provider_pb2.ListClaimsRequest(status=42)
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.ListClaims(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert common_pb2.ClaimStatus.Name(1) == "CLAIM_STATUS_SUBMITTED"


def test_a_claim_id_in_another_spelling_is_refused_and_nothing_written(parties):
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(claim_request("spelling"))
    before = ledger_size(parties)
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.VoidClaim(provider_pb2.VoidClaimRequest(
            claim_id=submitted.claim_id.upper(), reason="wrong patient"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused.value) == ["claim_id"]
    assert ledger_size(parties) == before


@pytest.mark.parametrize("request_fields, field", [
    ({"provider_id": "not-an-npi"}, "provider_id"),
    ({"provider_id": "1234567890"}, "provider_id"),  # the check digit is wrong
    ({"max_payments": -1}, "max_payments"),
    ({"min_position": -1}, "min_position"),
])
def test_a_payment_run_with_bad_arguments_is_refused_not_an_empty_success(parties, request_fields, field):
    set_up(parties)
    before = ledger_size(parties)
    with pytest.raises(grpc.RpcError) as refused:
        parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest(**request_fields))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(refused.value) == [field]
    assert ledger_size(parties) == before


def test_an_unknown_member_is_not_found_without_echoing_its_id(parties):
    set_up(parties)
    with pytest.raises(grpc.RpcError) as refused:
        parties.payer.payer.GetMemberAccumulators(payer_pb2.GetMemberAccumulatorsRequest(
            member_id="M-SECRET-4711", plan_year=2026))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "M-SECRET-4711" not in refused.value.details()
