"""Intake over a real channel: diagnosis codes checked against the ICD-10-CM code set (an unknown or
a non-billable code is INVALID_ARGUMENT naming the field, never the code, and writes nothing), a
procedure no fee schedule prices held for a reviewer rather than paid, and a visit recorded once
(a retry gets the first receipt, a different visit under the same id is ALREADY_EXISTS)."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from claims.v1 import common_pb2, payer_pb2, provider_pb2
from tests import world
from tests.e2e.test_claim_flow import DAY, claim_request, set_up, wait_decided
from tests.e2e.test_errors import ledger_size

UNKNOWN_DIAGNOSIS = "Q9999X"  # well formed, in no ICD-10-CM release
CATEGORY = "E11"  # type 2 diabetes: billed as E119, E1165, ...
UNPRICED_PROCEDURE = "99999"  # well formed; no fee schedule prices it, no table of the rule set knows it


def violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(error)
    found = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value


def visit_request(visit_id: str = "V-7", **overrides) -> provider_pb2.RecordVisitRequest:
    fields = {"visit_id": visit_id, "member_id": world.MEMBER, "payer_id": world.PAYER, "date_of_service": DAY,
              "place_of_service": "11", "diagnosis_codes": ["E119", "I10"]}
    fields.update(overrides)
    return provider_pb2.RecordVisitRequest(**fields)


@pytest.mark.parametrize(("code", "says"), [
    (UNKNOWN_DIAGNOSIS, "is not in the ICD-10-CM code set"),
    (CATEGORY, "not a billable code"),
])
def test_a_diagnosis_outside_the_code_set_is_refused_at_every_intake_naming_the_field_not_the_code(
        parties, code, says):
    set_up(parties)
    provider = parties.provider.provider
    original = provider.SubmitClaim(claim_request("original"))
    wait_decided(parties, original.claim_id, original.receipt.position)
    before = ledger_size(parties)

    claim = claim_request("bad-code")
    claim.diagnosis_codes.append(code)
    correction = provider_pb2.CorrectClaimRequest(
        claim_id=original.claim_id, idempotency_key="bad-correction", member_id=world.MEMBER, payer_id=world.PAYER,
        diagnosis_codes=["E119", code], place_of_service="11", lines=claim.lines)
    for call, request in ((provider.SubmitClaim, claim), (provider.CorrectClaim, correction),
                          (provider.RecordVisit, visit_request(diagnosis_codes=["E119", code]))):
        error = refused(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        [(field, description)] = violations(error)
        assert field == "diagnosis_codes[1]" and says in description
        assert code not in error.details() and code not in description
    assert ledger_size(parties) == before


def test_a_procedure_no_fee_schedule_prices_is_held_for_a_reviewer_not_paid(parties):
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(claim_request("unpriced", code=UNPRICED_PROCEDURE))
    claim = wait_decided(parties, submitted.claim_id, submitted.receipt.position)
    assert claim.status == common_pb2.CLAIM_STATUS_PENDED
    assert [r.remark_code for r in claim.pend_reasons] == ["N448"]
    assert claim.decision.total_paid_cents == 0
    issued = parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest(min_position=claim.last_position))
    assert list(issued.payments) == []


def test_a_visit_retried_with_the_same_body_gets_the_first_receipt_and_writes_nothing(parties):
    provider = parties.provider.provider
    first = provider.RecordVisit(visit_request())
    before = ledger_size(parties)
    again = provider.RecordVisit(visit_request())
    assert again.receipt == first.receipt and first.receipt.position > 0
    assert ledger_size(parties) == before


def test_a_visit_id_reused_for_another_visit_is_already_exists_without_echoing_it(parties):
    provider = parties.provider.provider
    provider.RecordVisit(visit_request("V-SECRET-99"))
    before = ledger_size(parties)
    for change in ({"member_id": "M-SECRET-4711"}, {"diagnosis_codes": ["I10", "E119"]}, {"date_of_service": "2026-10-16"}):
        error = refused(provider.RecordVisit, visit_request("V-SECRET-99", **change))
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS, error.details()
        assert error.details().startswith("visit_id: ")
        assert "V-SECRET-99" not in error.details() and "M-SECRET-4711" not in error.details()
    assert ledger_size(parties) == before
    # Another provider's visit of the same id is its own.
    assert parties.other_provider.provider.RecordVisit(visit_request("V-SECRET-99")).receipt.position > 0
