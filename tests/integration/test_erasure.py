"""Erasure without breaking the proofs (#16, point 5): a member's data sealed under their own key,
the key destroyed by `claimsctl erase-member`, and afterwards every proof still holds, the money
still reconciles, their events read as erased and no read model, live or rebuilt, holds anything of
theirs, while every other member's data reads as before."""

from __future__ import annotations

import argparse
import time
import json
from datetime import date
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from psycopg import sql

from claims_service.adjudication import AdjudicationFollower
from claims_service.adjudication.effects import payment_id_for
from claims_service.application import LedgerApplication
from claims_service.attachments import Attachments
from claims_service.cli import erasure as erasure_commands
from claims_service.cli import ledger as ledger_commands
from claims_service.commands import Commands, claim_stream
from claims_service.config import Config
from claims_service.erasure import Eraser
from claims_service.errors import MemberNotFoundError, ValidationError
from claims_service.keys.store import KEY_ROWS_BY_ID, MemberDataErasedError
from claims_service.ledger.payloads import decode_state, is_erased, sealed_key_id
from projections import catalog
from projections.claims import get_claim
from projections.rebuild import rebuild
from projections.runner import GroupRunner
from tests import world

PROVIDER = "provider:" + world.NPI
ERASED = world.MEMBER  # M-1001
OTHERS = ("M-2002", "M-3003")
TODAY = date(2026, 11, 2)


def claimsctl(database_url: str, tmp_path: Path, *argv: str) -> int:
    """A claimsctl command, through its own parser and function, on this database and data dir."""
    parser = argparse.ArgumentParser(prog="claimsctl")
    commands = parser.add_subparsers(dest="command", required=True)
    ledger_commands.register(commands)
    erasure_commands.register(commands)
    args = parser.parse_args(list(argv))
    return args.func(Config(database_url=database_url, data_dir=tmp_path, grpc_addr="127.0.0.1:0"), args)


def settle(ledger: LedgerApplication, database_url: str) -> None:
    follower = AdjudicationFollower(ledger)
    while follower.process_available():
        pass
    group = GroupRunner(database_url, catalog.NAMES)
    group.drain()
    group.close()


def read_model_text(database_url: str) -> str:
    """Every row of every read-model table, as text."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        tables = [row[0] for row in conn.execute("SELECT table_name FROM read_model_tables")]
        return "\n".join(f"{table}: {row[0]}" for table in tables
                          for row in conn.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))))


@pytest.fixture
def story(database_url, tmp_path):
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: TODAY)
    attachments = Attachments(service, Config(database_url=database_url, data_dir=tmp_path).open_blob_store())
    try:
        world.set_up(service)
        for member in OTHERS:
            service.enroll_member(actor=world.ADMIN, member_id=member, payer_id=world.PAYER, plan_id=world.PLAN,
                                  effective_date=date(2026, 1, 1), terms=world.TERMS)
        service.record_visit(actor=PROVIDER, visit_id="V-9", provider_id=world.NPI, member_id=ERASED,
                             payer_id=world.PAYER, date_of_service=date(2026, 10, 15), place_of_service="11",
                             diagnosis_codes=["E119"])
        claims = {
            "erased-1": service.submit_claim(actor=PROVIDER, **world.claim_body("e1", visit_id="V-9")).claim_id,
            "erased-2": service.submit_claim(actor=PROVIDER, **world.claim_body(
                "e2", lines=[world.line(1, "99214", 20_000), world.line(2, "97110", 6_000, units=2)])).claim_id,
        }
        for n, member in enumerate(OTHERS):
            claims[member] = service.submit_claim(actor=PROVIDER, **world.claim_body(f"o{n}", member_id=member)).claim_id
        settle(ledger, database_url)
        # Money in every state: the erased member's first claim paid, their second voided after.
        service.issue_payments(actor="payer:" + world.PAYER, payer_id=world.PAYER,
                               payment_ids=[payment_id_for(claims["erased-1"], 0), payment_id_for(claims[OTHERS[0]], 0)])
        service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=claims["erased-2"], reason="billed in error")
        upload = attachments.begin(provider_id=world.NPI, claim_id=claims["erased-1"], media_type="application/pdf")
        upload.write(b"%PDF-1.7 the member's records " * 1000)
        attachments.finish(upload, actor=PROVIDER)
        settle(ledger, database_url)
        yield ledger, service, attachments, claims
    finally:
        service.close()
        ledger.close()


def test_erasing_a_member_keeps_every_proof_and_every_cent(story, database_url, tmp_path, capsys):
    ledger, service, attachments, claims = story
    erased_streams = [claim_stream(claims["erased-1"]), claim_stream(claims["erased-2"])]
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT notification_id, hash, state FROM ledger_events ORDER BY notification_id").fetchall()
    # Sealed at rest: no member id in any stored payload, no diagnosis or procedure in a member's.
    for _, _, state in before:
        assert not any(member.encode() in bytes(state) for member in (ERASED, *OTHERS))
        if sealed_key_id(bytes(state)):
            assert b"E119" not in bytes(state) and b"99214" not in bytes(state) and b"2026-10-15" not in bytes(state)
    assert ERASED in read_model_text(database_url)

    # A checkpoint and two bundles kept before the erasure (one of the erased member's claim).
    assert claimsctl(database_url, tmp_path, "checkpoint", "-o", str(tmp_path / "cp.txt")) == 0
    verifier_key = capsys.readouterr().err.rsplit("--public-key", 1)[-1].strip()
    assert claimsctl(database_url, tmp_path, "export-bundle", claims["erased-1"], "-o", str(tmp_path / "erased.json")) == 0
    capsys.readouterr()

    assert claimsctl(database_url, tmp_path, "erase-member", ERASED, "--json", "--wait", "0") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["streams"] >= 4  # two claims, coverage, the visit, the benefit period
    assert report["sealed_events"] > 6 and report["legacy_events"] == 0 and report["attachments"] == 1
    assert not (tmp_path / "blobs" / report["key_id"]).exists()
    settle(ledger, database_url)

    # Not a stored byte changed but the erasure's own event at the end.
    with psycopg.connect(database_url) as conn:
        after = conn.execute("SELECT notification_id, hash, state FROM ledger_events ORDER BY notification_id").fetchall()
    assert after[:len(before)] == before and len(after) == len(before) + 1
    erasure_state = bytes(after[-1][2])
    assert ERASED.encode() not in erasure_state and b'"key_id"' in erasure_state

    # Every proof holds.
    assert claimsctl(database_url, tmp_path, "verify") == 0
    assert claimsctl(database_url, tmp_path, "verify", "--checkpoint", str(tmp_path / "cp.txt"),
                     "--public-key", verifier_key) == 0
    assert claimsctl(database_url, tmp_path, "export-bundle", claims[OTHERS[0]], "-o", str(tmp_path / "other.json")) == 0
    capsys.readouterr()
    assert claimsctl(database_url, tmp_path, "verify-bundle", str(tmp_path / "other.json"), "--public-key", verifier_key,
                     "--json") == 0
    other = json.loads(capsys.readouterr().out)
    assert other["ok"] and other["replay"].startswith("identical")
    # The erased member's bundle, kept from before: its proofs hold; what it held of them is gone.
    assert claimsctl(database_url, tmp_path, "verify-bundle", str(tmp_path / "erased.json"), "--public-key", verifier_key,
                     "--json") == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["ok"] and "erased" in kept["replay"]

    # Every cent still explained, the erased member's too.
    assert claimsctl(database_url, tmp_path, "reconcile", "--json", "--wait", "5") == 0
    money = json.loads(capsys.readouterr().out)
    assert money["clean"] and money["erased_members"] == 1 and money["issued_cents"] > 0, money["differences"]

    # The erased member's events read as erased, never as an error; nothing more is recorded for them.
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT originator_id, originator_version, state FROM ledger_events"
                            " WHERE originator_id = ANY(%s) ORDER BY notification_id", (erased_streams,)).fetchall()
    states = [bytes(s) for _, _, s in rows]
    assert states and all(sealed_key_id(s) == report["key_id"] for s in states)
    decoded = [decode_state(s) for s in states]
    assert all(is_erased(p) for p in decoded)
    assert all("member_id" not in p and "lines" not in p and "facts" not in p for p in decoded)
    # What was never member data reads on: the erased claim's submission still names its provider.
    # (Found by stream and version: the rows of several streams come back in no set order.)
    submitted = next(p for (stream, version, _), p in zip(rows, decoded, strict=True)
                     if stream == claim_stream(claims["erased-1"]) and version == 1)
    assert submitted["provider_id"] == world.NPI
    assert ledger.load_many([claim_stream(claims["erased-1"])]) == {}  # left out, like an absent record
    for read in (lambda: service.own_claim(claims["erased-1"]), lambda: service.replay(claims["erased-1"]),
                 lambda: attachments.list(claims["erased-1"]),
                 lambda: ledger.load_many([claim_stream(claims["erased-1"])], refuse_erased=True)):
        with pytest.raises(MemberDataErasedError, match="erased"):
            read()
    with pytest.raises(MemberDataErasedError, match="erased"):
        service.submit_claim(actor=PROVIDER, **world.claim_body("e3"))

    # No read model holds anything of theirs, live or rebuilt (their claims' payments stay, with
    # each claim's entry in them reduced to its money: by claim id, no member data, no procedure);
    # the others' data is as it was, and the live read models are what a rebuild writes.
    erased_ids = [claims["erased-1"], claims["erased-2"], report["key_id"]]
    live = read_model_text(database_url)
    for text in (live, *_rebuilt(database_url)):
        assert not [line for line in text.splitlines() if ERASED in line or report["key_id"] in line]
        assert not [line for line in text.splitlines() if any(claim in line for claim in erased_ids)
                    and not line.startswith(("payments: ", "payment_claims: "))]
        assert not [line for line in text.splitlines() if line.startswith("payment_claims: ")
                    and claims["erased-1"] in line and ("99213" in line or "2026-10" in line)]
        assert OTHERS[0] in text and claims[OTHERS[0]] in text
    assert sorted(line for line in read_model_text(database_url).splitlines() if line.startswith("payment_claims: ")) == \
        sorted(line for line in live.splitlines() if line.startswith("payment_claims: "))
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert get_claim(conn, claims[OTHERS[0]]).member_id == OTHERS[0]

    # Erasing again does nothing more.
    assert claimsctl(database_url, tmp_path, "erase-member", ERASED, "--json", "--wait", "0") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["already_erased"] and again["position"] == report["position"]
    assert claimsctl(database_url, tmp_path, "reconcile", "--wait", "5") == 0


def _rebuilt(database_url: str) -> list[str]:
    for name in catalog.NAMES:
        assert rebuild(database_url, name).swapped
    return [read_model_text(database_url)]


def test_an_unknown_member_is_not_found_and_a_bad_id_is_refused(database_url):
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: TODAY)
    try:
        eraser = Eraser(ledger, service._save)
        with pytest.raises(MemberNotFoundError):
            eraser.erase("M-NOBODY", actor="admin:test")
        with pytest.raises(ValidationError):
            eraser.erase(" M-1 ", actor="admin:test")
    finally:
        service.close()
        ledger.close()


def test_a_key_is_made_once_per_member_and_streams_follow_their_first_event(story, database_url):
    ledger, service, _attachments, claims = story
    with psycopg.connect(database_url) as conn:
        keys = conn.execute("SELECT count(*) FROM member_keys").fetchone()[0]
        first = {str(UUID(str(s))): bytes(st) for s, st in conn.execute(
            "SELECT originator_id, state FROM ledger_events WHERE originator_version = 1")}
        later = conn.execute("SELECT originator_id, state FROM ledger_events WHERE originator_version > 1").fetchall()
    assert keys == 3
    for stream, state in later:
        key = sealed_key_id(first[str(stream)])
        assert sealed_key_id(bytes(state)) == key  # every event of a member's stream under its first event's key


def test_the_adjudicator_passes_over_an_erased_members_undecided_claim(database_url):
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: TODAY)
    try:
        world.set_up(service)
        service.enroll_member(actor=world.ADMIN, member_id=OTHERS[0], payer_id=world.PAYER, plan_id=world.PLAN,
                              effective_date=date(2026, 1, 1), terms=world.TERMS)
        undecided = service.submit_claim(actor=PROVIDER, **world.claim_body("u1")).claim_id
        Eraser(ledger, service._save).erase(ERASED, actor="admin:test")
        other = service.submit_claim(actor=PROVIDER, **world.claim_body("u2", member_id=OTHERS[0])).claim_id
        settle(ledger, database_url)
        assert service.own_claim(other).status == "adjudicated"
        with psycopg.connect(database_url) as conn:
            versions = conn.execute("SELECT count(*) FROM ledger_events WHERE originator_id = %s",
                                    (claim_stream(undecided),)).fetchone()[0]
        assert versions == 1  # nothing decided, nothing recorded for them
        assert claimsctl_reconcile_clean(database_url)
    finally:
        service.close()
        ledger.close()


def claimsctl_reconcile_clean(database_url: str) -> bool:
    from claims_service.reconcile import reconcile

    report = reconcile(database_url, wait_seconds=5)
    assert report.clean, report.differences
    return True


def test_a_runs_835_after_an_erasure_still_balances_and_names_no_erased_member(story, database_url, tmp_path):
    """The payer's run paid the erased member's claim: its 835 must still say what was paid (a
    remittance file is the provider's record of the money), balanced and valid, without the
    member's data."""
    from datetime import UTC, datetime

    from claims_service.x12.remittance import RemittancePayer, remittance_835
    from claims_service.x12.validation import validate
    from tests.unit.x12.test_remittance import check_balances

    ledger, _service, _attachments, claims = story
    payer = RemittancePayer(payer_id=world.PAYER, name="ACME HEALTH PLAN", tax_id="131234567",
                            address_line="1 PLAN PLAZA", city="ALBANY", state="NY", postal_code="12207",
                            contact="edi-support@acme.example")
    at = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        before, run, _ = remittance_835(conn, payer, now=lambda: at)
    assert claims["erased-1"] in before and ERASED in before
    assert claimsctl(database_url, tmp_path, "erase-member", ERASED, "--wait", "0") == 0
    settle(ledger, database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        after, again, _ = remittance_835(conn, payer, run_id=run, now=lambda: at)
    assert again == run
    reports = validate(after)
    assert reports and all(r.clean for r in reports), [p for r in reports for p in r.problems()]
    assert check_balances(after) == check_balances(before)  # the same money, to the cent
    assert claims["erased-1"] in after and ERASED not in after


def test_key_creation_finds_parties_chunk_by_chunk_with_each_chunks_keys_read_at_once(story, database_url, monkeypatch):
    """`claimsctl keys create` for a payer or member passes over the enrolments in chunks, each a
    statement of its own with its members' keys read in one query, and still finds a payer whose
    member was erased (the payer was never member data)."""
    import claims_service.commands as commands_module

    ledger, service, _attachments, _claims = story
    Eraser(ledger, service._save).erase(ERASED, actor="admin:test")
    monkeypatch.setattr(commands_module, "PAYER_SCAN_CHUNK", 2)
    fresh_ledger = LedgerApplication(database_url)  # a process that has read no key yet
    try:
        fresh = Commands(fresh_ledger, today=lambda: TODAY)
        keys = fresh_ledger.mapper.sealer.keys
        assert fresh._member_known(OTHERS[1])  # the last of three enrolments: two chunks
        assert keys.reads == 1 + 2  # the erasure count, then one key query a chunk, not one an event
        assert not fresh._member_known("M-NOBODY")
        assert fresh._payer_known(world.PAYER)
        assert not fresh._payer_known("PAYER-NOBODY")
        fresh.close()
    finally:
        fresh_ledger.close()


def destroy_elsewhere(database_url: str, key_id: str) -> None:
    """Destroy a member's key as `claimsctl erase-member` in another process does."""
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM member_data_keys WHERE key_id = %s", (key_id,))
        conn.execute("UPDATE member_keys SET erased_at = now() WHERE key_id = %s", (key_id,))


@pytest.fixture
def other_keys(story, database_url, monkeypatch):
    """The key store of another process, which checks for erasures 0.2 s after it last did: (the
    store, the erased member's key id, the key id of `OTHERS[0]`, the key ids of each read of keys),
    both keys read into its cache."""
    other = LedgerApplication(database_url)
    try:
        keys = other.mapper.sealer.keys
        keys.cache_seconds = 0.2
        asked: list[set[str]] = []
        read = keys._read

        def recorded(query, params):
            if query == KEY_ROWS_BY_ID:
                asked.append(set(params[0]))
            return read(query, params)

        monkeypatch.setattr(keys, "_read", recorded)
        erased_key, _ = keys.key_of_member(ERASED, create=False)
        other_key, _ = keys.key_of_member(OTHERS[0], create=False)
        yield keys, erased_key, other_key, asked
    finally:
        other.close()


def test_a_cached_key_is_read_once_while_no_erasure_happens(other_keys):
    """With no erasure anywhere, a cached key is used on without reading it again, however long
    since: one query of the erasure count every `cache_seconds`, and none of keys."""
    keys, erased_key, other_key, asked = other_keys
    reads, key_reads = keys.reads, len(asked)
    for _ in range(3):
        time.sleep(0.25)
        assert keys.cipher(other_key) is not None
        assert keys.cipher(erased_key) is not None
    assert len(asked) == key_reads  # no key read again
    assert keys.reads == reads + 3  # the erasure count, once each time it was due


def test_a_key_destroyed_by_another_process_stops_being_used_within_cache_seconds(other_keys, database_url):
    """An erasure elsewhere moves the erasure count: the next use after `cache_seconds` reads the
    count, and every cached key is read again with it, in one query; the destroyed one is then
    refused and the others serve on."""
    keys, erased_key, other_key, asked = other_keys
    assert keys.cipher(erased_key) is not None
    destroy_elsewhere(database_url, erased_key)
    assert keys.cipher(erased_key) is not None  # the count is not due yet
    time.sleep(0.3)
    with pytest.raises(MemberDataErasedError):
        keys.key_of_member(ERASED, create=False)
    assert asked[-1] == {erased_key, other_key}  # the whole cache, in one query
    assert keys.cipher(other_key) is not None
    assert asked[-1] == {erased_key, other_key}  # and not again


def test_every_statement_that_destroys_a_key_moves_the_erasure_count(story, database_url):
    """The count moves with the erasing transaction, however the key was destroyed: the erasure's
    own code, a bare DELETE of the key, or a member marked erased."""
    ledger, service, _attachments, _claims = story

    def count() -> int:
        with psycopg.connect(database_url) as conn:
            return conn.execute("SELECT erasures FROM member_key_erasures").fetchone()[0]

    before = count()
    Eraser(ledger, service._save).erase(ERASED, actor="admin:test")
    after_erasure = count()
    assert after_erasure > before
    key_id, _ = ledger.mapper.sealer.keys.key_of_member(OTHERS[0], create=False)
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM member_data_keys WHERE key_id = %s", (key_id,))
    assert count() == after_erasure + 1
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE member_keys SET erased_at = now() WHERE key_id = %s", (key_id,))
    assert count() == after_erasure + 2


def test_the_erasures_search_keeps_a_one_key_payload_whose_nonce_begins_like_json(database_url):
    """The library's one-key cipher lays a payload out as nonce, tag, ciphertext: one in 256 begins
    with "{". The erasure's search for a member's first events must still open it, not drop it as
    JSON that does not name the member (test_encryption_at_rest flaked on it)."""
    import os
    import uuid

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from claims_service.erasure import first_events_query
    from claims_service.ledger.payloads import SEALED_PREFIX

    key_id = str(uuid.uuid4())
    nonce = b"{" + os.urandom(11)
    sealed = AESGCM(os.urandom(32)).encrypt(nonce, b'{"member_id":"M-1"}', None)
    rows = {
        "one-key, nonce like JSON": nonce + sealed[-16:] + sealed[:-16],
        "one-key": b"\x01" + os.urandom(40),
        "plain, this member": b'{"member_id":"M-1","x":1}',
        "plain, no member": b'{"provider_id":"P"}',
        "plain, another member": b'{"member_id":"M-2"}',
        "sealed, this member": SEALED_PREFIX + key_id.encode() + b'"rest',
        "sealed, another member": SEALED_PREFIX + str(uuid.uuid4()).encode() + b'"rest',
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE first_events (originator_id uuid, originator_version int, state bytea)")
        ids = {}
        for name, state in rows.items():
            ids[str(conn.execute("INSERT INTO first_events VALUES (gen_random_uuid(), 1, %s) RETURNING originator_id",
                                 (state,)).fetchone()[0])] = name
        found = {ids[stream] for stream, _ in conn.execute(*first_events_query("first_events", "M-1", key_id)).fetchall()}
    assert found == {"one-key, nonce like JSON", "one-key", "plain, this member", "plain, no member", "sealed, this member"}
