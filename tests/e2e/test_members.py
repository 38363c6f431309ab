"""Members as parties, over a real gRPC channel (#16, points 1-4): a visit reaches the payer before
its claim; a member reads their own data and nobody else's, and every read of it by anyone is in
their access log; a provider reads another provider's claims for a member only under the member's
consent (not before it, not after its revocation or expiry); an emergency access is allowed,
recorded, told to the payers at once and shown to the member."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import pytest

from claims.v1 import admin_pb2, common_pb2, ledger_pb2, member_pb2, payer_pb2, provider_pb2
from tests import world
from tests.e2e.conftest import KEYHOLDER_MEMBER, OTHER_PAYER
from tests.e2e.test_claim_flow import DAY, claim_request, set_up, wait_decided

Code = grpc.StatusCode
MEMBER = KEYHOLDER_MEMBER  # the member whose key the parties hold (enrolled with both payers)


def member_claim(key: str, **fields: Any) -> provider_pb2.SubmitClaimRequest:
    request = claim_request(key)
    request.member_id = MEMBER
    for name, value in fields.items():
        setattr(request, name, value)
    return request


def refused(call: Callable[..., Any], request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request)
    return info.value


@contextmanager
def notices(client: Any, after: int = 0) -> Iterator[list[common_pb2.AdjudicationNotice]]:
    """A payer's notices as they arrive, from a stream opened now (heartbeats left out)."""
    received: list[common_pb2.AdjudicationNotice] = []
    stream = client.payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(after_position=after),
                                                 timeout=120)

    def listen() -> None:
        try:
            for item in stream:
                if item.WhichOneof("kind") == "notice":
                    received.append(item.notice)
        except grpc.RpcError:
            pass

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stream.cancel()
        thread.join(5)


def until(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def access_log(parties: Any, **request: Any) -> list[member_pb2.AccessRecord]:
    return list(parties.member.member.ListAccessLog(member_pb2.ListAccessLogRequest(page_size=500, **request)).records)


def logged(parties: Any, at_least: int, what: str, **request: Any) -> list[member_pb2.AccessRecord]:
    """The member's access log once the read model holds the records of the reads made so far."""
    return until(lambda: (found := access_log(parties, **request)) and len(found) >= at_least and found, what)


# --- 1. visits --------------------------------------------------------------------------------------


def test_a_visit_reaches_the_payer_on_its_stream_before_the_claim_in_ledger_order_and_resumably(parties):
    set_up(parties)
    provider = parties.provider.provider
    with notices(parties.payer) as seen, notices(parties.other_payer) as others:
        # An emergency room visit (place of service 23: an emergency whatever the flag says).
        visit = provider.RecordVisit(provider_pb2.RecordVisitRequest(
            visit_id="V-ER-1", member_id=world.MEMBER, payer_id=world.PAYER, date_of_service=DAY,
            place_of_service="23", diagnosis_codes=["S72001A"]))
        # An emergency admitted straight to a bed, flagged by the provider; and an office visit.
        admitted = provider.RecordVisit(provider_pb2.RecordVisitRequest(
            visit_id="V-ADMIT-1", member_id=world.MEMBER, payer_id=world.PAYER, date_of_service=DAY,
            place_of_service="21", diagnosis_codes=["I214"], emergency=True))
        office = provider.RecordVisit(provider_pb2.RecordVisitRequest(
            visit_id="V-OFFICE-1", member_id=world.MEMBER, payer_id=world.PAYER, date_of_service=DAY,
            place_of_service="11", diagnosis_codes=["E119"]))
        claim = member_claim("visit-claim", member_id=world.MEMBER, visit_id="V-ER-1")
        submitted = provider.SubmitClaim(claim)
        wait_decided(parties, submitted.claim_id, submitted.receipt.position)
        until(lambda: any(n.claim_id == submitted.claim_id for n in seen), "the claim's adjudication notice")
        time.sleep(0.3)
        kinds = [(n.kind, n.visit_id or n.claim_id) for n in seen]
        assert kinds == [(common_pb2.NOTICE_KIND_VISIT, "V-ER-1"), (common_pb2.NOTICE_KIND_VISIT, "V-ADMIT-1"),
                         (common_pb2.NOTICE_KIND_VISIT, "V-OFFICE-1"),
                         (common_pb2.NOTICE_KIND_ADJUDICATED, submitted.claim_id)]
        assert others == []  # another payer hears nothing of it
    er, bed, desk, adjudicated = seen
    assert [n.position for n in seen] == sorted(n.position for n in seen)
    assert (er.position, bed.position, desk.position) == (visit.receipt.position, admitted.receipt.position,
                                                          office.receipt.position)
    # What a payer needs to open a case, nothing more: no diagnosis, no claim, no decision.
    assert (er.member_id, er.provider_id, er.payer_id, er.date_of_service, er.place_of_service, er.emergency) == (
        world.MEMBER, world.NPI, world.PAYER, DAY, "23", True)
    assert (bed.emergency, bed.place_of_service, desk.emergency) == (True, "21", False)
    assert not er.claim_id and not er.HasField("decision") and er.status == common_pb2.CLAIM_STATUS_UNSPECIFIED
    assert "S72001A" not in er.SerializeToString().decode("latin-1")
    # Resumable: after the first visit's position the stream starts with the second.
    with notices(parties.payer, after=er.position) as resumed:
        until(lambda: len(resumed) >= 3, "the notices after the first visit")
    assert [n.position for n in resumed[:3]] == [bed.position, desk.position, adjudicated.position]


# --- 2. the member as a principal ------------------------------------------------------------------


def test_a_member_reads_their_own_claims_decisions_eobs_and_accumulators_and_nobody_elses(parties):
    set_up(parties)
    provider, member = parties.provider.provider, parties.member.member
    mine = provider.SubmitClaim(member_claim("member-own"))
    theirs = provider.SubmitClaim(claim_request("member-other"))  # world.MEMBER's
    decided = wait_decided(parties, mine.claim_id, mine.receipt.position)
    wait_decided(parties, theirs.claim_id, theirs.receipt.position)

    claims = member.ListOwnClaims(member_pb2.ListOwnClaimsRequest(min_position=decided.last_position)).claims
    assert [c.claim_id for c in claims] == [mine.claim_id]
    own = member.GetOwnClaim(member_pb2.GetOwnClaimRequest(claim_id=mine.claim_id)).claim
    assert own.decision.total_paid_cents == decided.decision.total_paid_cents == 1_500
    for call, request in (
        (member.GetOwnClaim, member_pb2.GetOwnClaimRequest(claim_id=theirs.claim_id)),
        (member.GetExplanationOfBenefit, member_pb2.GetExplanationOfBenefitRequest(claim_id=theirs.claim_id)),
        (parties.member.ledger.ExportClaimBundle, ledger_pb2.ExportClaimBundleRequest(claim_id=theirs.claim_id)),
    ):
        assert refused(call, request).code() == Code.NOT_FOUND
    eob = member.GetExplanationOfBenefit(member_pb2.GetExplanationOfBenefitRequest(
        claim_id=mine.claim_id, min_position=decided.last_position)).explanation
    assert (eob.total_billed_cents, eob.total_paid_cents, eob.total_you_owe_cents) == (12_000, 1_500, 7_500)
    assert eob.outcome == common_pb2.OUTCOME_PAID and eob.lines[0].procedure_code == "99213"
    listed = member.ListExplanationsOfBenefit(member_pb2.ListExplanationsOfBenefitRequest()).explanations
    assert [e.claim_id for e in listed] == [mine.claim_id]
    accumulators = member.GetOwnAccumulators(member_pb2.GetOwnAccumulatorsRequest(
        plan_year=2026, min_position=decided.last_position)).accumulators
    by_payer = {a.payer_id: a for a in accumulators}
    assert set(by_payer) == {world.PAYER, OTHER_PAYER}  # enrolled with both
    assert by_payer[world.PAYER].deductible_met_cents == 5_000 and by_payer[OTHER_PAYER].deductible_met_cents == 0
    # A member calls no other party's service.
    error = refused(parties.member.provider.ListClaims, provider_pb2.ListClaimsRequest())
    assert error.code() == Code.PERMISSION_DENIED
    # A member key is issued only for a member id some payer enrols.
    unknown = refused(parties.admin.admin.CreateApiKey, admin_pb2.CreateApiKeyRequest(
        role=common_pb2.ROLE_MEMBER, party_id="M-SECRET-404", label="nobody"))
    assert unknown.code() == Code.NOT_FOUND and "M-SECRET-404" not in unknown.details()
    assert parties.admin.admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(
        role=common_pb2.ROLE_MEMBER, party_id=world.MEMBER, label="the other member")).api_key
    # Their EOBs over HTTP too, and nobody else's.
    with httpx.Client(base_url=parties.fhir_url, headers={"Authorization": f"Bearer {parties.keys['member']}"},
                      timeout=20) as fhir:
        assert fhir.get(f"/ExplanationOfBenefit/{mine.claim_id}").status_code == 200
        assert fhir.get(f"/ExplanationOfBenefit/{theirs.claim_id}").status_code == 404
        bundle = fhir.get("/ExplanationOfBenefit", params={"patient": world.MEMBER}).json()
        assert not bundle.get("entry")

    # Every read of the member's data, by anyone, is in their access log: the provider's, the
    # payer's stream, the member's own (gRPC and FHIR); the other member's reads are not.
    provider.GetClaim(provider_pb2.GetClaimRequest(claim_id=mine.claim_id))
    with notices(parties.payer) as seen:
        until(lambda: any(n.claim_id == mine.claim_id for n in seen), "the payer's notice")
    records = until(lambda: [r for r in access_log(parties) if r.role == common_pb2.ROLE_PAYER] and access_log(parties),
                    "the payer's read in the access log")
    assert all(r.resources for r in records) and all(theirs.claim_id not in " ".join(r.resources) for r in records)
    by_reader = {(r.role, r.method, r.grant) for r in records}
    assert (common_pb2.ROLE_PROVIDER, "claims.v1.ProviderService/GetClaim", "provider") in by_reader
    assert (common_pb2.ROLE_PAYER, "claims.v1.PayerService/SubscribeAdjudications", "payer") in by_reader
    assert (common_pb2.ROLE_MEMBER, "claims.v1.MemberService/GetOwnClaim", "self") in by_reader
    assert (common_pb2.ROLE_MEMBER, "fhir ExplanationOfBenefit", "self") in by_reader
    got = next(r for r in records if r.method == "claims.v1.ProviderService/GetClaim")
    assert (got.party_id, got.resources, got.emergency) == (world.NPI, [f"claim:{mine.claim_id}"], False)
    assert got.accessed_at.endswith("Z") and got.key_id
    # Newest first, each a ledger event.
    assert [r.position for r in records] == sorted((r.position for r in records), reverse=True)


# --- 3. consent ------------------------------------------------------------------------------------


def history(parties: Any, **request: Any) -> provider_pb2.GetMemberHistoryResponse:
    return parties.other_provider.provider.GetMemberHistory(provider_pb2.GetMemberHistoryRequest(
        member_id=MEMBER, **request))


def test_another_providers_claims_need_the_members_consent_in_force(parties):
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(member_claim("consent-claim"))
    decided = wait_decided(parties, submitted.claim_id, submitted.receipt.position)
    member = parties.member.member

    def not_found(**request: Any) -> None:
        error = refused(lambda r: parties.other_provider.provider.GetMemberHistory(r),
                        provider_pb2.GetMemberHistoryRequest(member_id=MEMBER, **request))
        assert error.code() == Code.NOT_FOUND, error.details()
        assert MEMBER not in error.details()

    # No grant: NOT_FOUND, exactly as for a member id nobody has.
    not_found(min_position=decided.last_position)
    unknown = refused(lambda r: parties.other_provider.provider.GetMemberHistory(r),
                      provider_pb2.GetMemberHistoryRequest(member_id="M-NOBODY"))
    assert unknown.code() == Code.NOT_FOUND and unknown.details() == refused(
        lambda r: parties.other_provider.provider.GetMemberHistory(r),
        provider_pb2.GetMemberHistoryRequest(member_id=MEMBER)).details()

    # Granted, without decisions: the other provider's claim, clinical part only.
    granted = member.GrantConsent(member_pb2.GrantConsentRequest(
        provider_id=world.OTHER_NPI, scope=common_pb2.CONSENT_SCOPE_CLAIM_HISTORY, ttl_seconds=3600))
    read = history(parties)
    assert [c.claim_id for c in read.claims] == [submitted.claim_id]
    assert read.claims[0].provider_id == world.NPI and list(read.claims[0].diagnosis_codes) == ["E119"]
    assert not read.claims[0].HasField("decision")
    assert (read.grant_id, read.scope, read.emergency) == (granted.grant_id, common_pb2.CONSENT_SCOPE_CLAIM_HISTORY,
                                                           False)
    assert read.receipt.position > granted.receipt.position
    # A new grant with decisions replaces it.
    wider = member.GrantConsent(member_pb2.GrantConsentRequest(
        provider_id=world.OTHER_NPI, scope=common_pb2.CONSENT_SCOPE_CLAIM_HISTORY_WITH_DECISIONS, ttl_seconds=3600))
    assert history(parties).claims[0].decision.total_paid_cents == 1_500
    # The grant covers the other provider only.
    error = refused(lambda r: parties.provider.provider.GetMemberHistory(r),
                    provider_pb2.GetMemberHistoryRequest(member_id=MEMBER))
    assert error.code() == Code.NOT_FOUND

    # Revoked: NOT_FOUND again, at once; revoking again writes nothing.
    revoked = member.RevokeConsent(member_pb2.RevokeConsentRequest(provider_id=world.OTHER_NPI, reason="new doctor"))
    not_found()
    again = member.RevokeConsent(member_pb2.RevokeConsentRequest(provider_id=world.OTHER_NPI))
    assert again.already_revoked and again.receipt == revoked.receipt
    never = refused(member.RevokeConsent, member_pb2.RevokeConsentRequest(provider_id=world.NPI))
    assert never.code() == Code.NOT_FOUND

    # A grant that lapses: read while it is in force, NOT_FOUND once it expired.
    short = member.GrantConsent(member_pb2.GrantConsentRequest(
        provider_id=world.OTHER_NPI, scope=common_pb2.CONSENT_SCOPE_CLAIM_HISTORY, ttl_seconds=2))
    assert history(parties).grant_id == short.grant_id
    time.sleep(2.2)
    not_found()

    # Bad grants write nothing.
    for request, field in (
        (member_pb2.GrantConsentRequest(provider_id=world.OTHER_NPI, ttl_seconds=60), "scope"),
        (member_pb2.GrantConsentRequest(provider_id="123", scope=1, ttl_seconds=60), "provider_id"),
        (member_pb2.GrantConsentRequest(provider_id=world.OTHER_NPI, scope=1), "ttl_seconds"),
        (member_pb2.GrantConsentRequest(provider_id=world.OTHER_NPI, scope=1, expires_at="2020-01-01T00:00:00Z"),
         "expires_at"),
    ):
        assert refused(member.GrantConsent, request).code() == Code.INVALID_ARGUMENT, field
    assert refused(member.GrantConsent, member_pb2.GrantConsentRequest(
        provider_id="1999999992", scope=1, ttl_seconds=60)).code() == Code.NOT_FOUND  # a valid NPI, not registered

    # The member sees their grants, and the reads made under them.
    consents = member.ListConsents(member_pb2.ListConsentsRequest(min_position=short.receipt.position)).consents
    assert [(c.provider_id, c.grant_id, c.revoked_at) for c in consents] == [(world.OTHER_NPI, short.grant_id, "")]
    records = logged(parties, 3, "the reads under consent")
    grants = {r.grant for r in records if r.role == common_pb2.ROLE_PROVIDER and r.party_id == world.OTHER_NPI}
    assert grants == {f"consent:{granted.grant_id}", f"consent:{wider.grant_id}", f"consent:{short.grant_id}"}


# --- 4. emergency access ---------------------------------------------------------------------------


def test_an_emergency_access_is_allowed_recorded_told_to_the_payers_and_shown_to_the_member(parties):
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(member_claim("emergency-claim"))
    decided = wait_decided(parties, submitted.claim_id, submitted.receipt.position)
    reason = "unconscious on arrival, no consent obtainable"
    with notices(parties.payer, after=decided.last_position) as seen, \
            notices(parties.other_payer, after=decided.last_position) as other_seen:
        read = history(parties, emergency_reason=reason)
        assert [c.claim_id for c in read.claims] == [submitted.claim_id]
        assert read.emergency and read.scope == common_pb2.CONSENT_SCOPE_CLAIM_HISTORY
        assert not read.claims[0].HasField("decision")  # clinical history only
        assert read.receipt.position > 0 and len(read.receipt.event_hash) == 32
        # Both payers that cover the member hear of it at once.
        for stream in (seen, other_seen):
            notice = until(lambda s=stream: next((n for n in s if n.kind == common_pb2.NOTICE_KIND_EMERGENCY_ACCESS),
                                                  None), "the emergency notice")
            assert (notice.member_id, notice.provider_id, notice.reason, notice.access_id) == (
                MEMBER, world.OTHER_NPI, reason, read.grant_id)
            assert not notice.claim_id
    # The payer lists it for review, with what was read.
    accesses = until(lambda: parties.payer.payer.ListEmergencyAccesses(
        payer_pb2.ListEmergencyAccessesRequest(member_id=MEMBER)).accesses, "the payer's review list")
    [access] = accesses
    assert (access.access_id, access.member_id, access.provider_id, access.reason, list(access.claim_ids)) == (
        read.grant_id, MEMBER, world.OTHER_NPI, reason, [submitted.claim_id])
    assert access.position < read.receipt.position and access.declared_at.endswith("Z")
    others = parties.other_payer.payer.ListEmergencyAccesses(payer_pb2.ListEmergencyAccessesRequest()).accesses
    assert [a.access_id for a in others] == [read.grant_id]
    # The member sees it in their access log, with the reason.
    [record] = logged(parties, 1, "the emergency access in the log", emergency_only=True)
    assert (record.role, record.party_id, record.grant, record.emergency_reason, list(record.resources)) == (
        common_pb2.ROLE_PROVIDER, world.OTHER_NPI, f"emergency:{read.grant_id}", reason, [f"claim:{submitted.claim_id}"])
    assert record.emergency and record.method == "claims.v1.ProviderService/GetMemberHistory"
    # Still no consent: without declaring an emergency, NOT_FOUND.
    assert refused(lambda r: parties.other_provider.provider.GetMemberHistory(r),
                   provider_pb2.GetMemberHistoryRequest(member_id=MEMBER)).code() == Code.NOT_FOUND
    # An emergency for a member no payer covers is NOT_FOUND, and writes nothing; a reason with a
    # control character is INVALID_ARGUMENT.
    for member_id, why, code in (("M-NOBODY", reason, Code.NOT_FOUND), (MEMBER, "bad\x07reason", Code.INVALID_ARGUMENT)):
        error = refused(lambda r: parties.other_provider.provider.GetMemberHistory(r),
                        provider_pb2.GetMemberHistoryRequest(member_id=member_id, emergency_reason=why))
        assert error.code() == code, error.details()
    assert len(parties.payer.payer.ListEmergencyAccesses(payer_pb2.ListEmergencyAccessesRequest()).accesses) == 1
