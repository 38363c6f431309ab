"""The status codes of README "Status codes", per RPC, over a real channel.

Every RPC (enumerated from the generated descriptors, so a new one is checked without touching this
file) gets the checks its fields call for — a negative position, size, index, count or page size is
INVALID_ARGUMENT naming the field; a `min_position` beyond the ledger's head is OUT_OF_RANGE at
once; no credential is UNAUTHENTICATED, another role's PERMISSION_DENIED — and the cases listed for
it below. Then, across RPCs: what a call waits for and does not get within its deadline is
DEADLINE_EXCEEDED; a stored event that cannot be read is DATA_LOSS naming its position; a receipt
given again carries the checkpoint that covers it. Every code seen is one the README's table lists,
and the table lists every code the service's errors name.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

import claims_service
import projections
from claims.v1 import admin_pb2, attachment_pb2, common_pb2, dispute_pb2, ledger_pb2, payer_pb2, provider_pb2
from claims_service.errors import ClaimsError
from claims_service.ledger import merkle
from claims_service.ledger.tree import TREE_LOCK_KEY
from tests import world
from tests.e2e.test_claim_flow import claim_request, set_up, wait_decided
from tests.e2e.test_errors import field_violations, ledger_size
from tests.e2e.test_fuzz import METHODS, LedgerWatch, Method, filled, plausible

README = Path(__file__).resolve().parents[2] / "README.md"
Code = grpc.StatusCode

# Fields that count or point into the ledger: negative is INVALID_ARGUMENT in every RPC.
COUNTING = {"min_position", "after_position", "page_size", "max_payments", "leaf_index", "tree_size", "old_size",
            "new_size", "min_tree_size", "expect_head_position"}
INTS = {FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64}
FAR = 2**63 - 1
# A party whose role may not call the service (LedgerService is open to every role).
WRONG_PARTY = {"claims.v1.ProviderService": "payer", "claims.v1.PayerService": "provider",
               "claims.v1.DisputeService": "provider", "claims.v1.AdminService": "provider",
               "claims.v1.AttachmentService": "admin",
               "claims.v1.MemberService": "provider"}


def readme_codes() -> list[str]:
    section = README.read_text(encoding="utf-8").split("## Status codes", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z_]+)` \|", section, flags=re.MULTILINE)


# --- calling -----------------------------------------------------------------------------------------


@dataclass
class Answer:
    code: grpc.StatusCode
    details: str
    seconds: float
    error: grpc.RpcError | None

    @property
    def fields(self) -> list[str]:
        return field_violations(self.error) if self.error is not None else []


def call(parties: Any, method: Method, request: Message | bytes, *, party: str | None = None,
         metadata: Any = None, timeout: float = 20.0) -> Answer:
    """One call with raw bytes, as `party` (default: the service's own); a stream is read to its
    first message or its end."""
    payload = request if isinstance(request, bytes) else request.SerializeToString()
    if metadata is None:
        metadata = getattr(parties, party or method.party).metadata
    started = time.monotonic()
    try:
        if method.streaming:
            stream = parties.channel.unary_stream(method.path, request_serializer=None,
                                                  response_deserializer=method.response.FromString)(
                payload, metadata=metadata, timeout=timeout)
            next(iter(stream), None)
            stream.cancel()
        else:
            parties.channel.unary_unary(method.path, request_serializer=None,
                                        response_deserializer=method.response.FromString)(
                payload, metadata=metadata, timeout=timeout)
    except grpc.RpcError as error:
        return Answer(error.code(), error.details() or "", time.monotonic() - started, error)
    return Answer(Code.OK, "", time.monotonic() - started, None)


class World:
    """The test world of `set_up`, and a claim decided in it, made when first asked for."""

    def __init__(self, parties: Any) -> None:
        self.parties = parties
        set_up(parties)
        self._claim: provider_pb2.SubmitClaimResponse | None = None

    @property
    def claim(self) -> provider_pb2.SubmitClaimResponse:
        if self._claim is None:
            self._claim = self.parties.provider.provider.SubmitClaim(claim_request("status-world"))
            wait_decided(self.parties, self._claim.claim_id, self._claim.receipt.position)
        return self._claim

    @property
    def claim_id(self) -> str:
        return self.claim.claim_id


@dataclass(frozen=True)
class Case:
    what: str
    request: Callable[[World], Message | bytes]
    code: grpc.StatusCode
    field: str | None = None  # the field INVALID_ARGUMENT must name
    at_once: bool = False  # answered without waiting (well before its 20 s deadline)
    party: str | None = None
    metadata: Any = None


def unknown() -> str:
    return str(uuid.uuid4())


def generic_cases(method: Method) -> list[Case]:
    """What every RPC owes because of its fields and its service."""
    cases = [Case("bytes that are no message", lambda w: b"\xff\xff\xff\x0f garbage", Code.INVALID_ARGUMENT),
             Case("no credential", lambda w: method.request(), Code.UNAUTHENTICATED, metadata=())]
    if method.service in WRONG_PARTY:
        cases.append(Case("another role's key", lambda w: method.request(), Code.PERMISSION_DENIED,
                          party=WRONG_PARTY[method.service]))

    def base() -> Message:
        return filled(method.request.DESCRIPTOR, plausible(unknown(), method.name), copies=1)

    for field in method.request.DESCRIPTOR.fields:
        if field.name not in COUNTING or field.cpp_type not in INTS or field.is_repeated:
            continue

        def negative(w: World, name: str = field.name) -> Message:
            request = base()
            setattr(request, name, -1)
            return request

        cases.append(Case(f"{field.name} -1", negative, Code.INVALID_ARGUMENT, field=field.name, at_once=True))
        if field.name == "min_position" and not method.streaming:
            def beyond(w: World) -> Message:
                request = base()
                request.min_position = FAR
                return request

            cases.append(Case("min_position beyond the head", beyond, Code.OUT_OF_RANGE, at_once=True))
    return cases


def correction(claim_id: str) -> provider_pb2.CorrectClaimRequest:
    body = claim_request("status-correction")
    return provider_pb2.CorrectClaimRequest(claim_id=claim_id, idempotency_key=body.idempotency_key,
                                            member_id=body.member_id, payer_id=body.payer_id,
                                            diagnosis_codes=body.diagnosis_codes, place_of_service=body.place_of_service,
                                            lines=body.lines)


def terms() -> admin_pb2.PlanTerms:
    t = world.TERMS
    return admin_pb2.PlanTerms(
        deductible_cents=t["deductible_cents"], oop_max_cents=t["oop_max_cents"],
        timely_filing_days=t["timely_filing_days"], in_network_only=True,
        review_threshold_cents=t["review_threshold_cents"], non_covered_procedures=t["non_covered_procedures"],
        benefit_limits=t["benefit_limits"], prior_auth_required=t["prior_auth_required"],
        cost_share={k: admin_pb2.CostShare(**v) for k, v in t["cost_share"].items()})


P, PR, D, A, L, AT = provider_pb2, payer_pb2, dispute_pb2, admin_pb2, ledger_pb2, attachment_pb2
SPECIFIC: dict[str, list[Case]] = {
    # ProviderService
    "RecordVisit": [
        Case("a date that is no date", lambda w: P.RecordVisitRequest(
            visit_id="v-1", member_id=world.MEMBER, payer_id=world.PAYER, date_of_service="2026-02-30",
            place_of_service="11", diagnosis_codes=["E119"]), Code.INVALID_ARGUMENT, field="date_of_service"),
    ],
    "SubmitClaim": [
        Case("a claim", lambda w: claim_request("status-1"), Code.OK),
        Case("the same key, another body", lambda w: claim_request("status-1", billed=13_000), Code.ALREADY_EXISTS),
        Case("a negative amount", lambda w: claim_request("status-2", billed=-1), Code.INVALID_ARGUMENT,
             field="lines[0].billed_cents"),
    ],
    "CorrectClaim": [
        Case("an unknown claim", lambda w: correction(unknown()), Code.NOT_FOUND),
        Case("a claim id that is no UUID", lambda w: correction("claim-1"), Code.INVALID_ARGUMENT, field="claim_id"),
    ],
    "VoidClaim": [
        Case("an unknown claim", lambda w: P.VoidClaimRequest(claim_id=unknown(), reason="x"), Code.NOT_FOUND),
        Case("a void", lambda w: P.VoidClaimRequest(claim_id=w.claim_id, reason="billed in error"), Code.OK),
        Case("the same void again", lambda w: P.VoidClaimRequest(claim_id=w.claim_id, reason="again"),
             Code.FAILED_PRECONDITION),
    ],
    "GetClaim": [
        Case("a claim", lambda w: P.GetClaimRequest(claim_id=w.claim_id, min_position=w.claim.receipt.position), Code.OK),
        Case("an unknown claim", lambda w: P.GetClaimRequest(claim_id=unknown()), Code.NOT_FOUND),
        Case("a claim id that is no UUID", lambda w: P.GetClaimRequest(claim_id="x"), Code.INVALID_ARGUMENT,
             field="claim_id"),
    ],
    "ListClaims": [
        Case("a page", lambda w: P.ListClaimsRequest(page_size=10**6), Code.OK),
        Case("a date that is no date", lambda w: P.ListClaimsRequest(received_from="2026-13-01"),
             Code.INVALID_ARGUMENT, field="received_from"),
        Case("a forged page token", lambda w: P.ListClaimsRequest(page_token="forged"), Code.INVALID_ARGUMENT,
             field="page_token"),
    ],
    "GetRemittance": [
        Case("no selector", lambda w: P.GetRemittanceRequest(), Code.INVALID_ARGUMENT, field="selector"),
        Case("an unknown trace number", lambda w: P.GetRemittanceRequest(trace_number="TRN0"), Code.NOT_FOUND),
    ],
    # PayerService
    "ListPendedClaims": [
        Case("a page", lambda w: PR.ListPendedClaimsRequest(), Code.OK),
    ],
    "ResolvePendedClaim": [
        Case("neither approve nor deny", lambda w: PR.ResolvePendedClaimRequest(claim_id=w.claim_id),
             Code.INVALID_ARGUMENT, field="resolution"),
        Case("a claim that is not pended", lambda w: PR.ResolvePendedClaimRequest(
            claim_id=w.claim_id, deny=PR.PendedClaimDenial(group="CO", carc="50")), Code.FAILED_PRECONDITION),
        Case("an unknown claim", lambda w: PR.ResolvePendedClaimRequest(
            claim_id=unknown(), deny=PR.PendedClaimDenial(group="CO", carc="50")), Code.NOT_FOUND),
    ],
    "IssuePayments": [
        Case("a run", lambda w: PR.IssuePaymentsRequest(min_position=w.claim.receipt.position), Code.OK),
    ],
    "GetMemberAccumulators": [
        Case("a member", lambda w: PR.GetMemberAccumulatorsRequest(member_id=world.MEMBER, plan_year=2026), Code.OK),
        Case("an unknown member", lambda w: PR.GetMemberAccumulatorsRequest(member_id="M-0", plan_year=2026),
             Code.NOT_FOUND),
        Case("year 0", lambda w: PR.GetMemberAccumulatorsRequest(member_id=world.MEMBER, plan_year=0),
             Code.INVALID_ARGUMENT, field="plan_year"),
    ],
    # DisputeService
    "OpenDispute": [
        Case("an unknown claim", lambda w: D.OpenDisputeRequest(claim_id=unknown(), reason="x"), Code.NOT_FOUND),
        Case("a dispute", lambda w: D.OpenDisputeRequest(claim_id=w.claim_id, reason="checking"), Code.OK),
    ],
    "GetClaimHistory": [
        Case("a history", lambda w: D.GetClaimHistoryRequest(claim_id=w.claim_id, min_position=w.claim.receipt.position),
             Code.OK),
        Case("an unknown claim", lambda w: D.GetClaimHistoryRequest(claim_id=unknown()), Code.NOT_FOUND),
    ],
    "ReplayAdjudication": [
        Case("a replay", lambda w: D.ReplayAdjudicationRequest(claim_id=w.claim_id), Code.OK),
        Case("an unknown rule set", lambda w: D.ReplayAdjudicationRequest(claim_id=w.claim_id, ruleset_version="1999.9"),
             Code.INVALID_ARGUMENT, field="ruleset_version"),
        Case("an unknown claim", lambda w: D.ReplayAdjudicationRequest(claim_id=unknown()), Code.NOT_FOUND),
    ],
    "ResolveDispute": [
        Case("no resolution", lambda w: D.ResolveDisputeRequest(claim_id=w.claim_id, dispute_id="D-1"),
             Code.INVALID_ARGUMENT, field="resolution"),
    ],
    "VerifyLedger": [
        Case("the whole ledger", lambda w: D.VerifyLedgerRequest(), Code.OK),
        Case("a hash without its position", lambda w: D.VerifyLedgerRequest(expect_head_hash=bytes(32)),
             Code.INVALID_ARGUMENT, field="expect_head_hash"),
    ],
    # AdminService
    "EnrollMember": [
        Case("no terms", lambda w: A.EnrollMemberRequest(member_id="M-2", payer_id=world.PAYER, plan_id=world.PLAN,
                                                         effective_date="2026-01-01"), Code.INVALID_ARGUMENT, field="terms"),
        Case("a member enrolled already", lambda w: A.EnrollMemberRequest(
            member_id=world.MEMBER, payer_id=world.PAYER, plan_id=world.PLAN, effective_date="2026-01-01", terms=terms()),
             Code.ALREADY_EXISTS),
    ],
    "TerminateCoverage": [
        Case("an unknown member", lambda w: A.TerminateCoverageRequest(member_id="M-0", payer_id=world.PAYER,
                                                                       termination_date="2026-12-31"), Code.NOT_FOUND),
    ],
    "RecordPriorAuthorization": [
        Case("a date that is no date", lambda w: A.RecordPriorAuthorizationRequest(
            member_id=world.MEMBER, payer_id=world.PAYER, auth_id="PA-1", procedure_code="73721", units=1,
            valid_from="2026-01-01", valid_to="2026-02-30"), Code.INVALID_ARGUMENT, field="valid_to"),
    ],
    "RegisterProvider": [
        Case("a provider registered already", lambda w: A.RegisterProviderRequest(
            npi=world.NPI, name="Riverside", taxonomy="207Q00000X"), Code.ALREADY_EXISTS),
    ],
    "JoinNetwork": [
        Case("a date that is no date", lambda w: A.JoinNetworkRequest(
            npi=world.NPI, payer_id=world.PAYER, contract_id=world.CONTRACT, effective_date="01/01/2026"),
             Code.INVALID_ARGUMENT, field="effective_date"),
    ],
    "PublishFeeSchedule": [
        Case("a procedure priced twice", lambda w: A.PublishFeeScheduleRequest(
            contract_id=world.CONTRACT, payer_id=world.PAYER, version=2, effective_date="2026-06-01",
            entries=[A.FeeScheduleEntry(procedure_code="99213", allowed_cents=1)] * 2),
             Code.INVALID_ARGUMENT, field="entries[1]"),
    ],
    "DeployRuleSet": [
        Case("a date that is no date", lambda w: A.DeployRuleSetRequest(version="2026.1", effective_date=""),
             Code.INVALID_ARGUMENT, field="effective_date"),
    ],
    "CreateApiKey": [
        Case("no role", lambda w: A.CreateApiKeyRequest(label="x"), Code.INVALID_ARGUMENT, field="role"),
    ],
    "EraseMember": [
        Case("no member id", lambda w: A.EraseMemberRequest(), Code.INVALID_ARGUMENT, field="member_id"),
        Case("a member the ledger holds nothing of", lambda w: A.EraseMemberRequest(member_id="M-NOBODY"), Code.NOT_FOUND),
    ],
    "UploadAttachment": [
        Case("no media type", lambda w: P.UploadAttachmentRequest(claim_id=w.claim_id, chunk=b"x"), Code.INVALID_ARGUMENT,
             field="media_type"),
        Case("an unknown claim", lambda w: P.UploadAttachmentRequest(claim_id=unknown(), media_type="text/plain",
                                                                     chunk=b"x"), Code.NOT_FOUND),
        Case("a document", lambda w: P.UploadAttachmentRequest(claim_id=w.claim_id, media_type="text/plain",
                                                               chunk=b"a referral letter"), Code.OK),
    ],
    # AttachmentService (as the claim's payer)
    "GetClaimAttachments": [
        Case("a claim", lambda w: AT.GetClaimAttachmentsRequest(claim_id=w.claim_id), Code.OK),
        Case("an unknown claim", lambda w: AT.GetClaimAttachmentsRequest(claim_id=unknown()), Code.NOT_FOUND),
        Case("a claim id that is no UUID", lambda w: AT.GetClaimAttachmentsRequest(claim_id="x"), Code.INVALID_ARGUMENT,
             field="claim_id"),
    ],
    "GetAttachment": [
        Case("an attachment the claim does not have",
             lambda w: AT.GetAttachmentRequest(claim_id=w.claim_id, attachment_id=unknown()), Code.NOT_FOUND),
        Case("an unknown claim", lambda w: AT.GetAttachmentRequest(claim_id=unknown(), attachment_id=unknown()),
             Code.NOT_FOUND),
    ],
    # LedgerService (in this order: the first checkpoint is signed by the third case)
    "GetCheckpoint": [
        Case("the latest, before any", lambda w: L.GetCheckpointRequest(), Code.NOT_FOUND),
        Case("more leaves than the ledger has events", lambda w: L.GetCheckpointRequest(min_tree_size=FAR),
             Code.OUT_OF_RANGE, at_once=True),
        Case("one covering the first leaf", lambda w: L.GetCheckpointRequest(min_tree_size=1), Code.OK),
        Case("the latest", lambda w: L.GetCheckpointRequest(), Code.OK),
    ],
    "GetInclusionProof": [
        Case("a leaf", lambda w: L.GetInclusionProofRequest(leaf_index=0, tree_size=1), Code.OK),
        Case("a leaf outside the tree", lambda w: L.GetInclusionProofRequest(leaf_index=5, tree_size=5),
             Code.INVALID_ARGUMENT, field="tree_size"),
        Case("a tree larger than the ledger", lambda w: L.GetInclusionProofRequest(leaf_index=0, tree_size=FAR),
             Code.OUT_OF_RANGE, at_once=True),
    ],
    "GetConsistencyProof": [
        Case("two sizes", lambda w: L.GetConsistencyProofRequest(old_size=1, new_size=2), Code.OK),
        Case("from size 0", lambda w: L.GetConsistencyProofRequest(old_size=0, new_size=2), Code.INVALID_ARGUMENT,
             field="old_size"),
        Case("backwards", lambda w: L.GetConsistencyProofRequest(old_size=3, new_size=2), Code.INVALID_ARGUMENT,
             field="new_size"),
        Case("to a tree larger than the ledger", lambda w: L.GetConsistencyProofRequest(old_size=1, new_size=FAR),
             Code.OUT_OF_RANGE, at_once=True),
    ],
    "ExportClaimBundle": [
        Case("a bundle", lambda w: L.ExportClaimBundleRequest(claim_id=w.claim_id), Code.OK),
        Case("an unknown claim", lambda w: L.ExportClaimBundleRequest(claim_id=unknown()), Code.NOT_FOUND),
        Case("a claim id that is no UUID", lambda w: L.ExportClaimBundleRequest(claim_id="x"), Code.INVALID_ARGUMENT,
             field="claim_id"),
    ],
    "GetPublicKey": [
        Case("the key", lambda w: L.GetPublicKeyRequest(), Code.OK),
    ],
}


# --- per RPC ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_each_rpc_answers_with_the_documented_codes(parties, method):
    world_ = World(parties)
    documented = set(readme_codes())
    failures = []
    watch = LedgerWatch(parties.service.ledger.database_url)
    settled = False
    for case in generic_cases(method) + SPECIFIC.get(method.name, []):
        request = case.request(world_)
        if not settled:  # a write before (the world's claim, a case) may have set the workers going
            watch.settle()
            settled = True
        before = ledger_size(parties)
        answer = call(parties, method, request, party=case.party, metadata=case.metadata)
        settled = answer.code != Code.OK or not method.writes
        what = f"{method.name}({case.what}) -> {answer.code.name} {answer.details[:200]!r}"
        if answer.code != Code.OK:
            assert answer.code.name in documented, f"{what}: a code the README does not list"
            assert answer.code != Code.INTERNAL, what
        if answer.code != case.code:
            failures.append(f"{what}, expected {case.code.name}")
        elif case.field is not None and case.field not in answer.fields:
            failures.append(f"{what}: the violations name {answer.fields}, not {case.field}")
        elif case.at_once and answer.seconds > 2.0:
            failures.append(f"{what}: answered after {answer.seconds:.1f} s, not at once")
        elif answer.code != Code.OK and not method.streaming and ledger_size(parties) != before:
            failures.append(f"{what}: refused, yet wrote to the ledger")
    watch.close()
    assert not failures, "\n".join(failures)


def test_every_rpc_with_a_count_or_a_position_is_checked_for_it():
    counted = {m.name for m in METHODS if any(f.name in COUNTING for f in m.request.DESCRIPTOR.fields)}
    assert {"GetClaim", "ListClaims", "GetRemittance", "WatchClaims", "SubscribeAdjudications", "ListPendedClaims",
            "IssuePayments", "GetMemberAccumulators", "GetClaimHistory", "VerifyLedger", "GetCheckpoint",
            "GetInclusionProof", "GetConsistencyProof"} <= counted
    assert set(SPECIFIC) - {m.name for m in METHODS} == set(), "a case for an RPC that does not exist"


# --- across RPCs ------------------------------------------------------------------------------------


def test_what_is_not_reached_within_the_deadline_is_deadline_exceeded(parties):
    set_up(parties)
    parties.service.workers.stop()  # from here on nothing projects, builds the tree or signs
    late = parties.provider.provider.SubmitClaim(claim_request("late"))
    failures, told = [], []
    waiting = [method for method in METHODS
               if not method.streaming and "min_position" in method.request.DESCRIPTOR.fields_by_name]

    def late_call(method: Method) -> Answer:
        request = filled(method.request.DESCRIPTOR, plausible(late.claim_id, method.name), copies=1)
        request.min_position = late.receipt.position
        return call(parties, method, request, timeout=1.5)

    # All at once: each waits on its own deadline (the server has threads for many more).
    with ThreadPoolExecutor(max_workers=len(waiting)) as pool:
        answers = list(pool.map(late_call, waiting))
    for method, answer in zip(waiting, answers, strict=True):
        if answer.code != Code.DEADLINE_EXCEEDED:
            failures.append(f"{method.name}: {answer.code.name} {answer.details!r}")
        elif not 1.0 <= answer.seconds < 1.7:
            failures.append(f"{method.name}: answered after {answer.seconds:.2f} s")
        # The server answers itself, a little before the client would give up (unless it is slow).
        told += [method.name] if "read model" in answer.details else []
    assert not failures, "\n".join(failures)
    assert len(told) >= 4, told

    # The tree: with its builder stopped, a proof builds what it needs...
    ledger = parties.dispute.ledger
    leaf = late.receipt.leaf_index
    proof = ledger.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(leaf_index=leaf, tree_size=leaf + 1))
    assert proof.event_hash == late.receipt.event_hash
    # ...and while another builder holds the tree, waits for it until the deadline.
    later = parties.provider.provider.SubmitClaim(claim_request("later")).receipt
    size = later.leaf_index + 1
    tree_told: list[str] = []
    with psycopg.connect(parties.service.ledger.database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (TREE_LOCK_KEY,))
        for name, call_ in (
            ("GetInclusionProof", lambda: ledger.GetInclusionProof(
                ledger_pb2.GetInclusionProofRequest(leaf_index=0, tree_size=size), timeout=1.5)),
            ("GetConsistencyProof", lambda: ledger.GetConsistencyProof(
                ledger_pb2.GetConsistencyProofRequest(old_size=1, new_size=size), timeout=1.5)),
            ("GetCheckpoint", lambda: ledger.GetCheckpoint(ledger_pb2.GetCheckpointRequest(min_tree_size=size), timeout=1.5)),
        ):
            with pytest.raises(grpc.RpcError) as late_tree:
                call_()
            assert late_tree.value.code() == Code.DEADLINE_EXCEEDED, (name, late_tree.value.details())
            tree_told += [name] if "the tree has reached" in late_tree.value.details() else []
        holder.execute("SELECT pg_advisory_unlock(%s)", (TREE_LOCK_KEY,))
    assert tree_told, "the server never answered DEADLINE_EXCEEDED itself"
    signed = ledger.GetCheckpoint(ledger_pb2.GetCheckpointRequest(min_tree_size=size)).checkpoint
    assert signed.tree_size >= size


def test_an_event_that_cannot_be_read_is_data_loss_naming_its_position(parties):
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(claim_request("damaged"))
    wait_decided(parties, submitted.claim_id, submitted.receipt.position)
    position = submitted.receipt.position  # the claim's first event
    # Once the auditor has passed it (an event altered before that halts the whole service,
    # tests/e2e/test_tamper_drills.py); the evidence reads below check the stream's hashes anyway.
    deadline = time.monotonic() + 20
    while (parties.service.interceptor._integrity.last_audit or {}).get("position", 0) < position:
        assert time.monotonic() < deadline, "the auditor never passed the claim's events"
        time.sleep(0.1)
    # As the superuser: the service's own role can get past the append-only triggers in no way.
    with psycopg.connect(parties.database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # past the append-only triggers
        conn.execute("UPDATE ledger_events SET state = %s WHERE notification_id = %s", (b"\x00garbled", position))
    before = ledger_size(parties)
    claim_id = submitted.claim_id
    calls = {
        "ReplayAdjudication": lambda: parties.dispute.dispute.ReplayAdjudication(
            dispute_pb2.ReplayAdjudicationRequest(claim_id=claim_id)),
        "ExportClaimBundle": lambda: parties.dispute.ledger.ExportClaimBundle(
            ledger_pb2.ExportClaimBundleRequest(claim_id=claim_id)),
        "OpenDispute": lambda: parties.dispute.dispute.OpenDispute(
            dispute_pb2.OpenDisputeRequest(claim_id=claim_id, reason="checking")),
        "VoidClaim": lambda: parties.provider.provider.VoidClaim(
            provider_pb2.VoidClaimRequest(claim_id=claim_id, reason="billed in error")),
        "CorrectClaim": lambda: parties.provider.provider.CorrectClaim(correction(claim_id)),
        "ResolvePendedClaim": lambda: parties.payer.payer.ResolvePendedClaim(payer_pb2.ResolvePendedClaimRequest(
            claim_id=claim_id, deny=payer_pb2.PendedClaimDenial(group="CO", carc="50"))),
    }
    for name, damaged in calls.items():
        with pytest.raises(grpc.RpcError) as lost:
            damaged()
        assert lost.value.code() == Code.DATA_LOSS, (name, lost.value.code(), lost.value.details())
        assert f"position {position}" in lost.value.details(), (name, lost.value.details())
    assert ledger_size(parties) == before
    # The read models hold what was projected while the event was whole.
    claim = parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(claim_id=claim_id)).claim
    assert claim.status == common_pb2.CLAIM_STATUS_ADJUDICATED


def test_a_receipt_given_again_carries_the_checkpoint_that_covers_it(parties):
    set_up(parties)
    request = claim_request("receipt-checkpoint")
    first = parties.provider.provider.SubmitClaim(request).receipt
    assert not first.HasField("checkpoint")  # a fresh write: no checkpoint covers it yet
    signed = parties.provider.ledger.GetCheckpoint(
        ledger_pb2.GetCheckpointRequest(min_tree_size=first.leaf_index + 1)).checkpoint
    again = parties.provider.provider.SubmitClaim(request).receipt  # the idempotent retry
    assert (again.position, again.event_hash, again.leaf_index) == (first.position, first.event_hash, first.leaf_index)
    assert again.HasField("checkpoint") and again.checkpoint == signed
    proof = parties.provider.ledger.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(
        leaf_index=again.leaf_index, tree_size=again.checkpoint.tree_size))
    assert merkle.verify_inclusion(merkle.leaf_hash(again.event_hash), again.leaf_index, again.checkpoint.tree_size,
                                   list(proof.audit_path), again.checkpoint.root_hash)
    fresh = parties.provider.provider.SubmitClaim(claim_request("receipt-checkpoint-2")).receipt
    assert not fresh.HasField("checkpoint")  # beyond the checkpoint


# --- the table ---------------------------------------------------------------------------------------


def _error_classes() -> set[type[ClaimsError]]:
    for package in (claims_service, projections):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    found, todo = set(), [ClaimsError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_the_readme_table_lists_each_code_once_and_every_code_the_service_names():
    codes = readme_codes()
    assert len(codes) == len(set(codes)) and len(codes) >= 12
    assert set(codes) <= set(Code.__members__), set(codes) - set(Code.__members__)
    named = {cls.status for cls in _error_classes()}
    assert named <= set(codes), named - set(codes)
    assert {"UNAVAILABLE", "INTERNAL", "UNAUTHENTICATED", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED"} <= set(codes)
