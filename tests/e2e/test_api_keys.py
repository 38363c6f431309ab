"""API keys' lifecycle over a real channel: revoked and expired keys are refused within seconds,
keys are issued only for parties the ledger knows, ListApiKeys shows no secret, and a key issued
before expiry existed still works."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest

from claims.v1 import admin_pb2, common_pb2, payer_pb2
from claims_service.api import auth
from claims_service.cli.main import main as claimsctl
from claims_service.domain.apikey import ApiKey, new_key, secret_hash
from claims_service.ledger.verify import verify_ledger
from tests import world
from tests.e2e.conftest import OTHER_PAYER, Client
from tests.e2e.test_errors import field_violations, ledger_size

UNREGISTERED_NPI = "1245319607"  # a valid NPI no provider of this ledger has


def create(parties, role: int = common_pb2.ROLE_PAYER, party_id: str = world.PAYER, **fields) -> admin_pb2.CreateApiKeyResponse:
    return parties.admin.admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(role=role, party_id=party_id, **fields))


def works(parties, api_key: str) -> bool:
    """One payer call with the key: True if it is let in, False if UNAUTHENTICATED."""
    try:
        Client(parties.channel, api_key).payer.ListPendedClaims(payer_pb2.ListPendedClaimsRequest(), timeout=10)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
        assert "expired or revoked" in error.details()
        return False
    return True


def refused_within(parties, api_key: str, seconds: float) -> float:
    """How long the key kept working, polling; fails the test if it still works after `seconds`."""
    started = time.monotonic()
    while works(parties, api_key):
        if time.monotonic() - started > seconds:
            pytest.fail(f"the key still works {seconds} s later")
        time.sleep(0.1)
    return time.monotonic() - started


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value


# --- revocation ------------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_at_once_by_the_server_that_revoked_it(parties):
    created = create(parties, label="to revoke")
    for _ in range(3):
        assert works(parties, created.api_key)  # looked up and cached
    revoked = parties.admin.admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(key_id=created.key_id, reason="leaked"))
    assert not revoked.already_revoked and revoked.receipt.position > created.receipt.position
    assert not works(parties, created.api_key)
    assert works(parties, parties.payer.key)  # the payer's other key is untouched


def test_a_key_revoked_by_another_process_is_refused_within_seconds(parties, monkeypatch, capsys):
    """`claimsctl keys revoke` writes to the ledger beside the running service, whose cache it
    cannot reach: the service must notice within its cache time."""
    created = create(parties, label="revoked from the command line")
    assert works(parties, created.api_key)
    monkeypatch.setenv("CLAIMS_DATABASE_URL", parties.service.ledger.database_url)
    assert claimsctl(["keys", "revoke", created.key_id, "--reason", "leaked"]) == 0
    assert f"revoked key {created.key_id}" in capsys.readouterr().out
    kept_working = refused_within(parties, created.api_key, auth.CACHE_SECONDS + 3)
    assert kept_working <= auth.CACHE_SECONDS + 1


def test_revoking_twice_returns_the_first_revocation_and_writes_nothing(parties):
    created = create(parties)
    first = parties.admin.admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(key_id=created.key_id, reason="leaked"))
    before = ledger_size(parties)
    again = parties.admin.admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(key_id=created.key_id, reason="again"))
    assert again.already_revoked and again.receipt == first.receipt
    assert ledger_size(parties) == before


@pytest.mark.parametrize(("key_id", "reason", "code", "field"), [
    ("0123456789ab", "leaked", grpc.StatusCode.NOT_FOUND, None),
    ("", "leaked", grpc.StatusCode.INVALID_ARGUMENT, "key_id"),
    ("ck_0123456789ab", "leaked", grpc.StatusCode.INVALID_ARGUMENT, "key_id"),
    ("0123456789a\x00", "leaked", grpc.StatusCode.INVALID_ARGUMENT, "key_id"),
    ("KNOWN", "", grpc.StatusCode.INVALID_ARGUMENT, "reason"),
    ("KNOWN", "a\x00b", grpc.StatusCode.INVALID_ARGUMENT, "reason"),
])
def test_revoking_an_unknown_or_malformed_key_is_refused_and_writes_nothing(parties, key_id, reason, code, field):
    if key_id == "KNOWN":
        key_id = parties.payer.key.split("_")[1]
    before = ledger_size(parties)
    error = refusal(lambda: parties.admin.admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(key_id=key_id, reason=reason)))
    assert error.code() == code, error.details()
    if field:
        assert field_violations(error) == [field]
    assert "\x00" not in error.details()
    assert ledger_size(parties) == before
    assert works(parties, parties.payer.key)


def test_only_an_admin_revokes_or_lists_keys(parties):
    for client in (parties.payer, parties.provider, parties.dispute):
        error = refusal(lambda c=client: c.admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(
            key_id=c.key.split("_")[1], reason="mine")))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        error = refusal(lambda c=client: c.admin.ListApiKeys(admin_pb2.ListApiKeysRequest()))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert works(parties, parties.payer.key)


# --- expiry ----------------------------------------------------------------------------------------


def test_an_expired_key_is_refused(parties):
    created = create(parties, ttl_seconds=2, label="short-lived")
    expires_at = datetime.fromisoformat(created.expires_at)
    assert timedelta(seconds=1) < expires_at - datetime.now(UTC) <= timedelta(seconds=2)
    assert works(parties, created.api_key)
    while datetime.now(UTC) < expires_at:
        time.sleep(0.1)
    assert not works(parties, created.api_key)


def test_a_key_with_an_expiry_instant_works_until_then(parties):
    at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    created = create(parties, expires_at=at.isoformat().replace("+00:00", "Z"))
    assert datetime.fromisoformat(created.expires_at) == at
    assert works(parties, created.api_key)


@pytest.mark.parametrize(("fields", "field"), [
    ({"ttl_seconds": -1}, "ttl_seconds"),
    ({"ttl_seconds": 2**63 - 1}, "ttl_seconds"),
    ({"ttl_seconds": 400 * 86400 + 1}, "ttl_seconds"),
    ({"ttl_seconds": 60, "expires_at": "2027-01-31T00:00:00Z"}, "ttl_seconds"),
    ({"expires_at": "2020-01-31T00:00:00Z"}, "expires_at"),
    ({"expires_at": "2199-01-31T00:00:00Z"}, "expires_at"),
    ({"expires_at": "2027-01-31"}, "expires_at"),
    ({"expires_at": "2027-01-31T00:00:00"}, "expires_at"),
    ({"expires_at": "tomorrow"}, "expires_at"),
    ({"expires_at": "2027-01-31T00:00:00Z\n"}, "expires_at"),
    ({"expires_at": "0001-01-01T00:00:00+14:00"}, "expires_at"),
])
def test_an_expiry_in_the_past_too_far_or_malformed_is_refused(parties, fields, field):
    before = ledger_size(parties)
    error = refusal(lambda: create(parties, **fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert field_violations(error) == [field]
    assert ledger_size(parties) == before


# --- parties ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "party_id", "code"), [
    (common_pb2.ROLE_PROVIDER, "not-an-npi", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PROVIDER, "1234567890", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PROVIDER, f"{world.NPI} ", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PROVIDER, UNREGISTERED_NPI, grpc.StatusCode.NOT_FOUND),
    (common_pb2.ROLE_PAYER, f"{world.PAYER} ", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PAYER, f" {world.PAYER}", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PAYER, f"{world.PAYER}\x00", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PAYER, "PAYER\x00ACME", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PAYER, "PAYER\u202eACME", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PAYER, "", grpc.StatusCode.INVALID_ARGUMENT),
    (common_pb2.ROLE_PAYER, "PAYER-NOBODY", grpc.StatusCode.NOT_FOUND),
    (common_pb2.ROLE_DISPUTE, world.NPI, grpc.StatusCode.INVALID_ARGUMENT),
])
def test_a_key_for_a_party_that_does_not_exist_is_refused_naming_the_field(parties, role, party_id, code):
    before = ledger_size(parties)
    error = refusal(lambda: create(parties, role=role, party_id=party_id))
    assert error.code() == code, error.details()
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert field_violations(error) == ["party_id"]
    else:
        assert error.details().startswith("party_id: ")
    trailers = "".join(f"{k}={v!r}" for k, v in error.trailing_metadata() or ())
    for where in (error.details(), trailers):
        assert "\x00" not in where and "\u202e" not in where
        if party_id.strip():
            assert party_id.strip() not in where
    assert ledger_size(parties) == before


def test_a_payer_is_known_by_its_members_or_its_contracts_as_soon_as_they_are_recorded(parties):
    admin = parties.admin.admin
    assert refusal(lambda: create(parties, party_id="PAYER-LATE")).code() == grpc.StatusCode.NOT_FOUND
    admin.PublishFeeSchedule(admin_pb2.PublishFeeScheduleRequest(
        contract_id="LATE-2026", payer_id="PAYER-LATE", version=1, effective_date="2026-01-01",
        entries=[admin_pb2.FeeScheduleEntry(procedure_code="99213", allowed_cents=9_000)]))
    assert works(parties, create(parties, party_id="PAYER-LATE").api_key)

    assert refusal(lambda: create(parties, party_id="PAYER-NEW")).code() == grpc.StatusCode.NOT_FOUND
    terms = admin_pb2.PlanTerms(deductible_cents=0, oop_max_cents=0, timely_filing_days=365,
                                cost_share={"default": admin_pb2.CostShare(coinsurance_bp=2000)})
    admin.EnrollMember(admin_pb2.EnrollMemberRequest(member_id="M-1", payer_id="PAYER-NEW", plan_id="P",
                                                     effective_date="2026-01-01", terms=terms))
    assert works(parties, create(parties, party_id="PAYER-NEW").api_key)


def test_a_provider_key_needs_the_provider_registered(parties):
    admin = parties.admin.admin
    assert refusal(lambda: create(parties, role=common_pb2.ROLE_PROVIDER, party_id=UNREGISTERED_NPI)).code() \
        == grpc.StatusCode.NOT_FOUND
    admin.RegisterProvider(admin_pb2.RegisterProviderRequest(npi=UNREGISTERED_NPI, name="Hillside", taxonomy="207Q00000X"))
    assert create(parties, role=common_pb2.ROLE_PROVIDER, party_id=UNREGISTERED_NPI).key_id


# --- listing ---------------------------------------------------------------------------------------


def test_list_api_keys_shows_every_key_and_its_state_but_no_secret(parties):
    expiring = create(parties, ttl_seconds=3600, label="expiring")
    revoked = create(parties, role=common_pb2.ROLE_PAYER, party_id=OTHER_PAYER, label="revoked")
    parties.admin.admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(key_id=revoked.key_id, reason="rotated"))

    pages, token = [], ""
    while True:
        page = parties.admin.admin.ListApiKeys(admin_pb2.ListApiKeysRequest(page_size=2, page_token=token))
        pages.append(page)
        assert len(page.keys) <= 2
        token = page.next_page_token
        if not token:
            break
    listed = {k.key_id: k for page in pages for k in page.keys}
    secrets = [key.split("_")[2] for key in (expiring.api_key, revoked.api_key)] + \
              [getattr(parties, p).key.split("_")[2] for p in ("admin", "provider", "other_provider", "payer", "other_payer", "dispute",
                                                                  "member")]
    assert len(listed) == len(secrets) == sum(len(p.keys) for p in pages)  # each key once
    assert [k.key_id for page in pages for k in page.keys][-2:] == [expiring.key_id, revoked.key_id]  # issue order

    provider = listed[parties.provider.key.split("_")[1]]
    assert (provider.role, provider.party_id, provider.label) == (common_pb2.ROLE_PROVIDER, world.NPI, "provider")
    assert provider.created_at.endswith("Z") and not provider.expires_at and not provider.revoked
    assert listed[expiring.key_id].expires_at == expiring.expires_at and not listed[expiring.key_id].expired
    assert listed[expiring.key_id].created_by == "admin:team"
    gone = listed[revoked.key_id]
    assert gone.revoked and gone.revoke_reason == "rotated" and gone.revoked_at.endswith("Z")
    assert listed[parties.admin.key.split("_")[1]].role == common_pb2.ROLE_ADMIN

    wire = b"".join(page.SerializeToString() for page in pages)
    for secret in secrets:
        for needle in (secret, secret_hash(secret)):
            assert needle.encode() not in wire
            assert bytes.fromhex(secret_hash(secret)) not in wire

    error = refusal(lambda: parties.admin.admin.ListApiKeys(admin_pb2.ListApiKeysRequest(page_token="forged")))
    assert field_violations(error) == ["page_token"]


# --- keys issued before expiry existed --------------------------------------------------------------


def test_a_key_issued_before_expiry_existed_still_works_lists_revokes_and_verifies(parties):
    """An Issued event without `expires_at` (as every key before this attribute was written) in the
    real ledger: it authenticates, lists as never expiring, can be revoked; the chain verifies."""
    key_id, secret, full = new_key()
    key = ApiKey.issue(actor="admin:bootstrap", key_id=key_id, role="payer", party_id=world.PAYER, label="old",
                       secret_sha256=secret_hash(secret), now=datetime.now(UTC))
    del key.pending_events[0].__dict__["expires_at"]  # the payload as it was written before
    parties.service.ledger.record(key)
    with psycopg.connect(parties.service.ledger.database_url) as conn:
        state = bytes(conn.execute("SELECT state FROM ledger_events WHERE originator_id = %s", (key.id,)).fetchone()[0])
    assert b'"key_id"' in state and b"expires_at" not in state

    assert works(parties, full)
    listed = [k for k in parties.admin.admin.ListApiKeys(admin_pb2.ListApiKeysRequest(page_size=100)).keys
              if k.key_id == key_id]
    assert len(listed) == 1 and listed[0].expires_at == "" and not listed[0].expired
    parties.admin.admin.RevokeApiKey(admin_pb2.RevokeApiKeyRequest(key_id=key_id, reason="rotated"))
    assert not works(parties, full)
    assert verify_ledger(parties.service.ledger.database_url).intact
