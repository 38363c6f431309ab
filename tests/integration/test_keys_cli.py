"""`claimsctl keys create|list|revoke` against a real PostgreSQL, through claimsctl's own main():
the key printed once, its state listed without secrets, revocation idempotent, bad input a clear
message and a non-zero exit with nothing written."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from claims_service.application import LedgerApplication
from claims_service.cli.main import main as claimsctl
from claims_service.commands import Commands
from claims_service.domain.apikey import secret_hash
from tests import world


@pytest.fixture
def ledger_url(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ledger with one provider registered and one member enrolled with one payer."""
    monkeypatch.setenv("CLAIMS_DATABASE_URL", database_url)
    ledger = LedgerApplication(database_url, pool_size=2)
    commands = Commands(ledger)
    try:
        commands.register_provider(actor=world.ADMIN, npi=world.NPI, name="Riverside", taxonomy="207Q00000X")
        commands.enroll_member(actor=world.ADMIN, member_id=world.MEMBER, payer_id=world.PAYER, plan_id=world.PLAN,
                               effective_date=date(2026, 1, 1), terms=world.TERMS)
    finally:
        commands.close()
        ledger.close()
    return database_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = claimsctl(["keys", *argv])
    except SystemExit as exit_:  # argparse's refusals
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def events(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]


def test_create_prints_the_key_once_and_list_shows_it_without_secrets(ledger_url, capsys):
    code, out, err = run(capsys, "create", "--role", "payer", "--party-id", world.PAYER, "--label", "billing",
                         "--ttl", "90d")
    assert code == 0, err
    api_key = out.strip()
    assert api_key.startswith("ck_") and len(out.splitlines()) == 1  # stdout: the key alone
    key_id = api_key.split("_")[1]
    assert f"issued payer key {key_id} for {world.PAYER}, expires " in err and "shown only this once" in err

    code, out, err = run(capsys, "create", "--role", "provider", "--party", world.NPI, "--json")
    assert code == 0, err
    created = json.loads(out)
    assert created["api_key"].startswith(f"ck_{created['key_id']}_") and created["expires_at"] == ""

    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    listed = {row["key_id"]: row for row in json.loads(out)}
    assert set(listed) == {key_id, created["key_id"]}
    payer = listed[key_id]
    assert (payer["role"], payer["party_id"], payer["label"], payer["state"]) == ("payer", world.PAYER, "billing", "active")
    expires = datetime.fromisoformat(payer["expires_at"])
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)
    assert payer["created_by"] == "admin:claimsctl"

    code, table, _ = run(capsys, "list")
    assert code == 0 and key_id in table and created["key_id"] in table and "active" in table
    for text in (out, table):
        for key in (api_key, created["api_key"]):
            secret = key.split("_")[2]
            assert secret not in text and secret_hash(secret) not in text


def test_revoke_then_revoke_again_writes_once(ledger_url, capsys):
    _, out, _ = run(capsys, "create", "--role", "admin")
    key_id = out.strip().split("_")[1]
    code, out, _ = run(capsys, "revoke", key_id, "--reason", "leaked")
    assert code == 0 and f"revoked key {key_id}" in out
    written = events(ledger_url)
    code, out, _ = run(capsys, "revoke", key_id, "--reason", "again", "--json")
    assert code == 0 and json.loads(out)["already_revoked"] is True
    assert events(ledger_url) == written
    _, out, _ = run(capsys, "list", "--json")
    (row,) = json.loads(out)
    assert row["state"] == "revoked" and row["revoke_reason"] == "leaked" and row["revoked_at"]


@pytest.mark.parametrize(("argv", "message"), [
    (("create", "--role", "payer", "--party-id", "PAYER-NOBODY"), "party_id: the ledger knows no payer"),
    (("create", "--role", "payer", "--party-id", f"{world.PAYER} "), "party_id: must not begin or end with whitespace"),
    (("create", "--role", "payer", "--party-id", "PAYER\x01ACME"), "party_id: must contain printable characters only"),
    (("create", "--role", "provider", "--party-id", "not-an-npi"), "party_id: must be the provider's NPI"),
    (("create", "--role", "provider", "--party-id", "1245319599"), "party_id: no provider with this NPI is registered"),
    (("create", "--role", "provider"), "party_id: is required for a provider key"),
    (("create", "--role", "admin", "--party-id", world.NPI), "party_id: must be empty for a admin key"),
    (("create", "--role", "admin", "--expires-at", "2020-01-01T00:00:00Z"), "expires_at: must be in the future"),
    (("create", "--role", "admin", "--expires-at", "next week"), "expires_at: must be an RFC 3339 instant"),
    (("create", "--role", "admin", "--ttl", "500d"), "ttl_seconds: must be between 1 and"),
    (("create", "--role", "admin", "--ttl", "soon"), "--ttl: expected a positive number of seconds"),
    (("create", "--role", "admin", "--ttl", "0"), "--ttl: expected a positive number of seconds"),
    (("create", "--role", "admin", "--ttl", "1d", "--expires-at", "2027-01-01T00:00:00Z"), "not allowed with"),
    (("create", "--role", "root"), "invalid choice: 'root'"),
    (("revoke", "0123456789ab", "--reason", "leaked"), "key_id: no such API key"),
    (("revoke", "not-a-key", "--reason", "leaked"), "key_id: must be a key id as issued"),
    (("revoke", "0123456789ab", "--reason", " "), "reason: is required"),
    (("revoke", "0123456789ab"), "the following arguments are required: --reason"),
])
def test_bad_input_is_a_clear_message_a_non_zero_exit_and_nothing_written(ledger_url, capsys, argv, message):
    before = events(ledger_url)
    code, out, err = run(capsys, *argv)
    assert code != 0 and out == ""
    assert message in err, err
    assert "\x00" not in err and "\x01" not in err
    assert events(ledger_url) == before
