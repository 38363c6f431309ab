"""API keys in the domain: who a key may act for, its expiry, its revocation, and keys issued
before expiry existed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent

from claims_service.domain.apikey import MAX_LIFETIME, ApiKey, check_key_id, new_key, secret_hash
from claims_service.domain.transcodings import register_domain_transcodings
from claims_service.errors import ValidationError

NPI = "1234567893"
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
ADMIN = "admin:root"


def issue(**overrides: Any) -> ApiKey:
    kwargs: dict[str, Any] = {"actor": ADMIN, "key_id": "abcdef123456", "role": "payer", "party_id": "PAYER-ACME",
                              "label": "billing", "secret_sha256": "0" * 64, "now": NOW}
    kwargs.update(overrides)
    return ApiKey.issue(**kwargs)


def refused_field(**overrides: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        issue(**overrides)
    return info.value


# --- parties -----------------------------------------------------------------------------------------


def test_keys_for_each_role_with_its_party():
    assert issue(role="provider", party_id=NPI).principal == f"provider:{NPI}"
    assert issue(role="payer", party_id="PAYER-ACME").principal == "payer:PAYER-ACME"
    assert issue(role="dispute", party_id="").principal == "dispute:team"
    assert issue(role="admin", party_id="").principal == "admin:team"


@pytest.mark.parametrize(("role", "party_id"), [
    ("provider", "not-an-npi"),
    ("provider", "1234567890"),            # ten digits, wrong check digit
    ("provider", f" {NPI}"),
    ("provider", f"{NPI}\n"),
    ("provider", "１２３４５６７８９３"),  # full-width digits
    ("payer", "PAYER-ACME "),
    ("payer", " PAYER-ACME"),
    ("payer", "PAYER\x00ACME"),
    ("payer", "PAYER-ACME\x00"),
    ("payer", "PAYER\tACME"),
    ("payer", "\u202ePAYER"),               # a bidi override: not printable
    ("payer", "P" * 65),
    ("payer", ""),
    ("provider", ""),
    ("dispute", "team-1"),
    ("admin", NPI),
])
def test_a_bad_party_is_refused_by_field_without_echoing_it(role: str, party_id: str):
    error = refused_field(role=role, party_id=party_id)
    assert error.fields == ["party_id"]
    if party_id.strip():
        assert party_id.strip() not in str(error)
    assert "\x00" not in str(error)


def test_an_unknown_role_is_refused():
    assert refused_field(role="root").fields == ["role"]


@pytest.mark.parametrize("label", ["a\x00b", "line\x1b[31m", "x" * 501])
def test_a_bad_label_is_refused(label: str):
    assert refused_field(label=label).fields == ["label"]


def test_a_label_is_stripped_and_may_be_empty():
    assert issue(label="  clinic billing  ").label == "clinic billing"
    assert issue(label="").label == ""


# --- expiry -------------------------------------------------------------------------------------------


def test_a_key_without_expiry_never_expires():
    key = issue()
    assert key.expires_at is None
    assert not key.expired(NOW + timedelta(days=10_000)) and key.usable(NOW + timedelta(days=10_000))


def test_a_key_expires_at_its_instant_stored_in_utc():
    at = datetime(2026, 12, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    key = issue(expires_at=at)
    assert key.expires_at == at and key.expires_at.utcoffset() == timedelta(0)
    assert key.usable(at - timedelta(microseconds=1))
    assert key.expired(at) and not key.usable(at)


@pytest.mark.parametrize("expires_at", [
    NOW - timedelta(days=1), NOW, NOW + MAX_LIFETIME + timedelta(seconds=1), datetime(2026, 12, 1, 12, 0),  # naive
    datetime(9999, 12, 31, tzinfo=UTC),
])
def test_an_expiry_must_be_in_the_future_bounded_and_an_instant(expires_at: datetime):
    assert refused_field(expires_at=expires_at).fields == ["expires_at"]


def test_the_longest_lifetime_is_allowed():
    assert issue(expires_at=NOW + MAX_LIFETIME).expires_at == NOW + MAX_LIFETIME


# --- revocation ---------------------------------------------------------------------------------------


def test_revoking_twice_records_one_revocation():
    key = issue()
    key.collect_events()
    assert key.revoke(actor=ADMIN, reason="leaked in a ticket") is True
    assert key.revoked and key.revoke_reason == "leaked in a ticket" and not key.usable(NOW)
    assert [type(e).__name__ for e in key.collect_events()] == ["Revoked"]
    assert key.revoke(actor=ADMIN, reason="again") is False
    assert key.collect_events() == [] and key.revoke_reason == "leaked in a ticket"


@pytest.mark.parametrize("reason", ["", "   ", "a\x00b", "r" * 501])
def test_a_revocation_needs_a_clean_reason(reason: str):
    key = issue()
    key.collect_events()
    with pytest.raises(ValidationError) as info:
        key.revoke(actor=ADMIN, reason=reason)
    assert info.value.fields == ["reason"]
    assert not key.revoked and key.collect_events() == []


@pytest.mark.parametrize("key_id", ["", "ABCDEF123456", "abcdef12345", "abcdef1234567", "abcdef12345\x00", "abcdef-23456"])
def test_a_key_id_is_checked_before_any_lookup(key_id: str):
    with pytest.raises(ValidationError) as info:
        check_key_id(key_id)
    assert info.value.fields == ["key_id"]


def test_new_keys_match_their_ids_and_hashes():
    key_id, secret, full = new_key()
    assert check_key_id(key_id) == key_id and full == f"ck_{key_id}_{secret}"
    assert len(secret_hash(secret)) == 64


# --- the stored events --------------------------------------------------------------------------------


class InMemoryLedger(Application):
    def register_transcodings(self, transcoder: Any) -> None:
        super().register_transcodings(transcoder)
        register_domain_transcodings(transcoder)


def test_an_issued_event_written_before_expiry_existed_still_loads_as_never_expiring():
    """Keys issued before `expires_at` was added have no such attribute in their (hashed) payload:
    they load unchanged and never expire; new events carry it, and revocation works on both."""
    mapper = InMemoryLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    key = issue(expires_at=NOW + timedelta(days=30))
    key.revoke(actor=ADMIN, reason="rotated")
    issued, revoked = (mapper.to_stored_event(e) for e in key.collect_events())
    state = json.loads(issued.state)
    assert "expires_at" in state
    del state["expires_at"]
    old_state = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()
    old = StoredEvent(issued.originator_id, issued.originator_version, issued.topic, old_state)

    loaded = mapper.to_domain_event(old).mutate(None)
    assert loaded.expires_at is None and loaded.usable(NOW + timedelta(days=3650))
    assert loaded.key_id == "abcdef123456" and loaded.party_id == "PAYER-ACME" and not loaded.revoked
    loaded = mapper.to_domain_event(revoked).mutate(loaded)
    assert loaded.revoked and loaded.revoked_at is not None and loaded.revoke_reason == "rotated"
