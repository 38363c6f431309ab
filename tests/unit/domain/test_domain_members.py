"""Members as parties, in the domain: a visit's emergency, a member's consent (grant, replace,
revoke, lapse), an access record and an emergency declaration, and the member role of API keys."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

import pytest

from claims_service.domain.access import EmergencyAccess, MemberAccess
from claims_service.domain.apikey import ApiKey
from claims_service.domain.consent import Consent
from claims_service.domain.values import RecordVisit
from claims_service.domain.visit import Visit
from claims_service.errors import DuplicateRequestError, ValidationError

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
NPI = "1234567893"


def visit_kwargs(**overrides: object) -> dict[str, object]:
    kwargs: dict[str, object] = {"actor": f"provider:{NPI}", "visit_id": "V-1", "provider_id": NPI, "member_id": "M-1",
                                 "payer_id": "P-1", "date_of_service": date(2026, 10, 15), "place_of_service": "11",
                                 "diagnosis_codes": ["E119"]}
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize(("place", "declared", "emergency"), [
    ("11", False, False), ("11", True, True), ("21", True, True), ("23", False, True), ("23", True, True),
])
def test_a_visit_is_an_emergency_when_declared_or_in_the_emergency_room(place: str, declared: bool,
                                                                       emergency: bool) -> None:
    visit = Visit.record(**visit_kwargs(place_of_service=place, emergency=declared))
    assert visit.emergency is emergency
    # A retry says the same, whether or not it repeats the flag the place implies.
    visit.ensure_same_request(RecordVisit.checked(**visit_kwargs(place_of_service=place, emergency=declared)))
    if place == "23":
        visit.ensure_same_request(RecordVisit.checked(**visit_kwargs(place_of_service=place, emergency=not declared)))


def test_a_visit_retried_with_another_emergency_flag_is_another_visit() -> None:
    visit = Visit.record(**visit_kwargs())
    with pytest.raises(DuplicateRequestError):
        visit.ensure_same_request(RecordVisit.checked(**visit_kwargs(emergency=True)))


def test_a_visit_recorded_before_the_flag_existed_reads_as_its_place_says() -> None:
    visit = Visit.record(**visit_kwargs(place_of_service="23"))
    event = visit.collect_events()[0]
    del event.__dict__["emergency"]  # as a stored event of before reads: the class default
    old = event.mutate(None)
    assert old.emergency is False and old.is_emergency
    old.ensure_same_request(RecordVisit.checked(**visit_kwargs(place_of_service="23")))


def consent() -> Consent:
    return Consent.open(member_id="M-1", provider_id=NPI)


def test_a_grant_is_in_force_until_it_expires_or_is_revoked() -> None:
    c = consent()
    assert c.in_force(NOW) is None
    c.give(actor="member:M-1", grant_id="g-1", scope="claim_history", expires_at=NOW + timedelta(hours=1), now=NOW)
    assert c.in_force(NOW)["grant_id"] == "g-1"
    assert c.in_force(NOW + timedelta(hours=1)) is None  # lapsed
    c.give(actor="member:M-1", grant_id="g-2", scope="claim_history_with_decisions",
           expires_at=NOW + timedelta(days=30), now=NOW)
    assert c.in_force(NOW + timedelta(hours=2))["scope"] == "claim_history_with_decisions"  # replaced
    assert c.revoke(actor="member:M-1", reason="new doctor")
    assert c.in_force(NOW) is None
    assert not c.revoke(actor="member:M-1", reason="")  # the first revocation stands
    kinds = [type(e).__name__ for e in c.collect_events()]
    assert kinds == ["Opened", "Granted", "Granted", "Revoked"]


@pytest.mark.parametrize(("scope", "expires_at", "field"), [
    ("everything", NOW + timedelta(hours=1), "scope"),
    ("claim_history", NOW, "expires_at"),
    ("claim_history", NOW + timedelta(days=367), "expires_at"),
    ("claim_history", datetime(2026, 12, 1), "expires_at"),  # no offset
])
def test_a_grant_needs_a_known_scope_and_an_expiry_within_a_year(scope: str, expires_at: datetime, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        consent().give(actor="member:M-1", grant_id="g", scope=scope, expires_at=expires_at, now=NOW)
    assert info.value.fields == [field]


def test_access_records_and_emergency_declarations_are_streams_of_their_own() -> None:
    first = UUID(int=1)
    access = MemberAccess.record(access_id=first, actor=f"provider:{NPI}", key_id="k1", member_id="M-1",
                                 method="claims.v1.ProviderService/GetClaim", resources=["claim:c-1"], grant="provider")
    assert (access.id, access.version, access.resources, access.grant) == (first, 1, ["claim:c-1"], "provider")
    declared = EmergencyAccess.declare(access_id=UUID(int=2), actor=f"provider:{NPI}", key_id="k1", provider_id=NPI,
                                       member_id="M-1", reason="unconscious", payer_ids=["P-2", "P-1", "P-2"])
    assert declared.payer_ids == ["P-1", "P-2"] and declared.grant == f"emergency:{UUID(int=2)}"


def test_a_member_key_acts_for_a_member_id() -> None:
    key = ApiKey.issue(actor="admin:team", key_id="abcdefabcdef", role="member", party_id="M-1", label="",
                       secret_sha256="0" * 64, now=NOW)
    assert key.principal == "member:M-1"
    for party in ("", " M-1", "M\x001"):
        with pytest.raises(ValidationError):
            ApiKey.issue(actor="admin:team", key_id="abcdefabcdef", role="member", party_id=party, label="",
                         secret_sha256="0" * 64, now=NOW)
