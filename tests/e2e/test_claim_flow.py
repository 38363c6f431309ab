"""One claim's whole path over a real gRPC channel: set-up by an administrator, submission with a
receipt, adjudication, the payer's stream, read-your-writes, payments, a dispute with a replay,
and verification — each step as the party that would take it."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from claims.v1 import admin_pb2, common_pb2, dispute_pb2, ledger_pb2, payer_pb2, provider_pb2
from claims_service.ledger import merkle
from claims_service.adjudication.bundles import verify_claim_bundle as verify_bundle
from claims_service.ledger.note import parse_and_verify
from tests import world

DAY = "2026-10-15"


def set_up(parties) -> None:
    admin = parties.admin.admin
    terms = admin_pb2.PlanTerms(
        deductible_cents=world.TERMS["deductible_cents"], oop_max_cents=world.TERMS["oop_max_cents"],
        timely_filing_days=world.TERMS["timely_filing_days"], in_network_only=True,
        review_threshold_cents=world.TERMS["review_threshold_cents"],
        non_covered_procedures=world.TERMS["non_covered_procedures"],
        benefit_limits=world.TERMS["benefit_limits"], prior_auth_required=world.TERMS["prior_auth_required"],
        cost_share={k: admin_pb2.CostShare(**v) for k, v in world.TERMS["cost_share"].items()},
    )
    admin.EnrollMember(admin_pb2.EnrollMemberRequest(member_id=world.MEMBER, payer_id=world.PAYER,
                                                     plan_id=world.PLAN, effective_date="2026-01-01", terms=terms))
    try:
        admin.RegisterProvider(admin_pb2.RegisterProviderRequest(npi=world.NPI, name="Riverside", taxonomy="207Q00000X"))
    except grpc.RpcError as error:  # registered already, to be issued its key (conftest.register_parties)
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    admin.RecordCredential(admin_pb2.RecordCredentialRequest(npi=world.NPI, licence_number="MD-1", state="NY",
                                                             valid_from="2020-01-01", valid_to="2030-12-31"))
    admin.PublishFeeSchedule(admin_pb2.PublishFeeScheduleRequest(
        contract_id=world.CONTRACT, payer_id=world.PAYER, version=1, effective_date="2026-01-01",
        entries=[admin_pb2.FeeScheduleEntry(procedure_code=c, allowed_cents=v) for c, v in world.FEES.items()]))
    admin.JoinNetwork(admin_pb2.JoinNetworkRequest(npi=world.NPI, payer_id=world.PAYER, contract_id=world.CONTRACT,
                                                   effective_date="2026-01-01"))
    admin.DeployRuleSet(admin_pb2.DeployRuleSetRequest(version="2026.1", effective_date="2026-01-01"))


def claim_request(key: str, code: str = "99213", billed: int = 12_000, units: int = 1) -> provider_pb2.SubmitClaimRequest:
    return provider_pb2.SubmitClaimRequest(
        idempotency_key=key, member_id=world.MEMBER, payer_id=world.PAYER, diagnosis_codes=["E119"],
        place_of_service="11",
        lines=[common_pb2.ServiceLine(line_number=1, procedure_code=code, units=units, billed_cents=billed,
                                      diagnosis_pointers=[1], date_of_service=DAY)],
    )


def wait_decided(parties, claim_id: str, position: int, *, client=None) -> common_pb2.Claim:
    """The claim once decided (or as it is after 20 s), read by its provider (``client``: the
    parties' provider unless another is named)."""
    reader = (client or parties.provider).provider
    deadline = time.monotonic() + 20
    while True:
        claim = reader.GetClaim(provider_pb2.GetClaimRequest(claim_id=claim_id, min_position=position)).claim
        if claim.status != common_pb2.CLAIM_STATUS_SUBMITTED or time.monotonic() > deadline:
            return claim
        time.sleep(0.1)


def test_a_claim_goes_from_submission_to_payment_and_its_history_verifies(parties):
    set_up(parties)
    # 1. The payer subscribes before anything is submitted.
    notices: list[common_pb2.AdjudicationNotice] = []
    stream = parties.payer.payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(), timeout=60)

    def listen() -> None:
        try:
            for item in stream:
                if item.WhichOneof("kind") == "notice":
                    notices.append(item.notice)
        except grpc.RpcError:
            pass

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()

    # 2. The provider submits; the receipt names the ledger position and the event's hash.
    submitted = parties.provider.provider.SubmitClaim(claim_request("flow-1"))
    assert submitted.receipt.position > 0 and len(submitted.receipt.event_hash) == 32

    # 3. The same request again is the same claim and the same receipt.
    again = parties.provider.provider.SubmitClaim(claim_request("flow-1"))
    assert (again.claim_id, again.receipt.position) == (submitted.claim_id, submitted.receipt.position)

    # 4. The provider reads its own write, then sees the decision.
    claim = wait_decided(parties, submitted.claim_id, submitted.receipt.position)
    assert claim.status == common_pb2.CLAIM_STATUS_ADJUDICATED
    assert claim.decision.total_paid_cents == 1_500 and claim.decision.total_patient_responsibility_cents == 7_500

    # 5. The payer's stream delivered the notice.
    deadline = time.monotonic() + 10
    while not notices and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [n.claim_id for n in notices] == [submitted.claim_id]
    stream.cancel()

    # 6. The payer issues the payment; the provider reads the remittance.
    time.sleep(0.5)
    issued = parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest())
    assert [p.amount_cents for p in issued.payments] == [1_500] and issued.payments[0].trace_number
    remittance = parties.provider.provider.GetRemittance(provider_pb2.GetRemittanceRequest(
        claim_id=submitted.claim_id, min_position=issued.receipt.position))
    assert remittance.payments[0].status == common_pb2.PAYMENT_STATUS_ISSUED

    # 7. A dispute team reads the history, replays the decision, and upholds it.
    opened = parties.dispute.dispute.OpenDispute(dispute_pb2.OpenDisputeRequest(claim_id=submitted.claim_id, reason="check"))
    history = parties.dispute.dispute.GetClaimHistory(dispute_pb2.GetClaimHistoryRequest(
        claim_id=submitted.claim_id, min_position=opened.receipt.position))
    types = [e.event_type for e in history.events]
    assert types[:2] == ["Claim.Submitted", "Claim.Adjudicated"] and "Payment.Issued" in types
    replay = parties.dispute.dispute.ReplayAdjudication(dispute_pb2.ReplayAdjudicationRequest(claim_id=submitted.claim_id))
    assert replay.identical and replay.replayed.total_paid_cents == 1_500
    parties.dispute.dispute.ResolveDispute(dispute_pb2.ResolveDisputeRequest(
        claim_id=submitted.claim_id, dispute_id=opened.dispute_id, resolution=dispute_pb2.DISPUTE_RESOLUTION_UPHELD))

    # 8. The ledger verifies, and the claim's bundle checks out offline.
    verified = parties.dispute.dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest())
    assert verified.intact and verified.events > 10
    key = parties.dispute.ledger.GetPublicKey(ledger_pb2.GetPublicKeyRequest())

    # 9. The provider's receipt names a leaf: a signed checkpoint covering it, and the proof.
    leaf = submitted.receipt.leaf_index
    checkpoint = parties.provider.ledger.GetCheckpoint(ledger_pb2.GetCheckpointRequest(min_tree_size=leaf + 1)).checkpoint
    signed = parse_and_verify(checkpoint.note, key.verifier_key)
    proof = parties.provider.ledger.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(leaf_index=leaf, tree_size=signed.size))
    assert proof.event_hash == submitted.receipt.event_hash
    assert merkle.verify_inclusion(merkle.leaf_hash(submitted.receipt.event_hash), leaf, signed.size,
                                   list(proof.audit_path), signed.root_hash)
    bundle = parties.dispute.ledger.ExportClaimBundle(ledger_pb2.ExportClaimBundleRequest(claim_id=submitted.claim_id)).bundle
    report = verify_bundle(bundle, key.verifier_key)
    assert report.ok, report.failures
    assert report.replay.startswith("identical")


def test_a_pended_claim_is_worked_by_the_payer(parties):
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(claim_request("big", code="99214", billed=1_500_000))
    claim = wait_decided(parties, submitted.claim_id, submitted.receipt.position)
    assert claim.status == common_pb2.CLAIM_STATUS_PENDED
    worklist = parties.payer.payer.ListPendedClaims(payer_pb2.ListPendedClaimsRequest(min_position=claim.last_position))
    assert [c.claim_id for c in worklist.claims] == [submitted.claim_id]
    # Over the review threshold, and the payer can tell (N10), here and on the claim itself.
    assert [r.remark_code for r in worklist.claims[0].pend_reasons] == ["N10"]
    assert "review threshold" in worklist.claims[0].pend_reasons[0].description
    resolved = parties.payer.payer.ResolvePendedClaim(payer_pb2.ResolvePendedClaimRequest(
        claim_id=submitted.claim_id, note="reviewed",
        approve=payer_pb2.PendedClaimApproval(lines=[payer_pb2.PendedLineApproval(line_number=1, allowed_cents=13_000)])))
    # The plan's cost share, as for any claim: 130.00 allowed, 25.00 office-visit copay, then the
    # 50.00 deductible: 55.00 paid, labelled PAID as the engine labels it.
    assert resolved.decision.total_paid_cents == 5_500
    assert resolved.decision.outcome == common_pb2.OUTCOME_PAID
    assert resolved.decision.lines[0].billed_cents == 1_500_000
    after = parties.payer.payer.ListPendedClaims(payer_pb2.ListPendedClaimsRequest(min_position=resolved.receipt.position))
    assert list(after.claims) == []


def test_a_void_is_recorded_and_cannot_be_repeated(parties):
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(claim_request("void-me"))
    wait_decided(parties, submitted.claim_id, submitted.receipt.position)
    voided = parties.provider.provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=submitted.claim_id, reason="wrong patient"))
    claim = parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(
        claim_id=submitted.claim_id, min_position=voided.receipt.position)).claim
    assert claim.status == common_pb2.CLAIM_STATUS_VOIDED
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=submitted.claim_id, reason="again"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_payer_stream_interrupted_and_resumed_misses_nothing_and_repeats_nothing(parties):
    set_up(parties)
    claim_ids = [parties.provider.provider.SubmitClaim(claim_request(f"resume-{n}", billed=12_000 + n)).claim_id
                 for n in range(12)]
    wanted = set(claim_ids)

    def read(after: int, stop_after: int | None, seen: frozenset[str] = frozenset()) -> list[common_pb2.AdjudicationNotice]:
        stream = parties.payer.payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(after_position=after), timeout=30)
        got: list[common_pb2.AdjudicationNotice] = []
        for item in stream:
            if item.WhichOneof("kind") == "notice":
                got.append(item.notice)
            if (stop_after is not None and len(got) >= stop_after) or wanted <= seen | {n.claim_id for n in got}:
                break
        stream.cancel()  # the client goes away mid-stream
        return got

    first = read(0, stop_after=5)
    seen = frozenset(n.claim_id for n in first)
    rest = read(first[-1].position, stop_after=None, seen=seen) if seen != wanted else []
    positions = [n.position for n in first + rest]
    assert positions == sorted(positions) and len(positions) == len(set(positions))
    assert {n.claim_id for n in first + rest} == wanted
