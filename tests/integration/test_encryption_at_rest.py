"""Payloads encrypted at rest with one key (AES-GCM, the library's cipher configured by CIPHER_TOPIC
and CIPHER_KEY), the mode before member data keys (CLAIMS_MEMBER_ENCRYPTION=off): no patient
identifier in the stored bytes, yet the chain verifies, claims are adjudicated, the read models
fill, decisions replay, and a claim bundle verifies offline, with the key or, short of the replay,
without it. And such a ledger read on once member keys are turned on: old events as they were,
new ones sealed per member, the same member's old records changed under their key, an erasure
counting what it could not erase."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import orjson
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.cryptography import AESCipher

from claims_service.adjudication import AdjudicationFollower
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.ledger import payloads
from claims_service.adjudication.bundles import export_claim_bundle as export_bundle
from claims_service.adjudication.bundles import verify_claim_bundle as verify_bundle
from claims_service.ledger.checkpointer import Checkpointer
from claims_service.erasure import Eraser
from claims_service.errors import ClaimNotFoundError
from claims_service.ledger.verify import verify_ledger
from claims_service.reconcile import reconcile
from projections import catalog
from projections.claims import get_claim
from projections.runner import GroupRunner
from projections.timeline import claim_timeline
from tests import world

PROVIDER = "provider:" + world.NPI


@pytest.fixture
def encrypted(monkeypatch):
    monkeypatch.setenv("CIPHER_TOPIC", "eventsourcing.cryptography:AESCipher")
    monkeypatch.setenv("CIPHER_KEY", AESCipher.create_key(32))
    monkeypatch.setenv("CLAIMS_MEMBER_ENCRYPTION", "off")  # the one-key mode, as ledgers were written before
    monkeypatch.setattr(payloads, "_default", None)  # built from the environment on first need
    return monkeypatch


def is_json(state: bytes) -> bool:
    """Whether a stored payload is plain JSON. Not whether it begins with "{": a sealed payload
    begins with its random nonce, which does so once in 256 (this test flaked on it)."""
    try:
        orjson.loads(state)
    except orjson.JSONDecodeError:
        return False
    return True


def test_an_encrypted_ledger_keeps_every_guarantee(database_url, encrypted):
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    try:
        world.set_up(service)
        submitted = service.submit_claim(actor=PROVIDER, **world.claim_body("k1"))
        follower = AdjudicationFollower(ledger)
        while follower.process_available():
            pass
        group = GroupRunner(database_url, catalog.NAMES)
        group.drain()
        group.close()

        with psycopg.connect(database_url) as conn:
            states = [bytes(s) for (s,) in conn.execute("SELECT state FROM ledger_events")]
        assert states and not any(world.MEMBER.encode() in s or is_json(s) for s in states)
        assert verify_ledger(database_url).intact

        with psycopg.connect(database_url, autocommit=True) as conn:
            claim = get_claim(conn, submitted.claim_id)
            timeline = claim_timeline(conn, submitted.claim_id)
        assert (claim.status, claim.member_id, claim.total_paid_cents) == ("adjudicated", world.MEMBER, 1_500)
        assert {entry.payload_encoding for entry in timeline} == {"base64"}  # kept as stored
        assert service.replay(submitted.claim_id).identical

        signer = Checkpointer(database_url, Ed25519PrivateKey.generate(), origin="claims.test/log")
        signer.checkpoint_now()
        bundle = export_bundle(database_url, UUID(submitted.claim_id), signer)
        with_key = verify_bundle(bundle, signer.verifier_key)
        assert with_key.ok and with_key.replay.startswith("identical")
        # Without the key: the bytes are still proven to be the ledger's; only the replay waits.
        encrypted.delenv("CIPHER_TOPIC")
        encrypted.delenv("CIPHER_KEY")
        encrypted.setattr(payloads, "_default", None)
        without_key = verify_bundle(bundle, signer.verifier_key)
        assert without_key.ok and without_key.replay.startswith("not checked: the payloads are encrypted")
    finally:
        service.close()
        ledger.close()


def test_a_one_key_ledger_reads_on_under_member_keys(database_url, encrypted):
    def drain(ledger: LedgerApplication) -> None:
        follower = AdjudicationFollower(ledger)
        while follower.process_available():
            pass
        group = GroupRunner(database_url, catalog.NAMES)
        group.drain()
        group.close()

    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    try:
        world.set_up(service)
        old = service.submit_claim(actor=PROVIDER, **world.claim_body("k1"))
        drain(ledger)
    finally:
        service.close()
        ledger.close()
    with psycopg.connect(database_url) as conn:
        written = conn.execute("SELECT notification_id, state FROM ledger_events ORDER BY notification_id").fetchall()

    encrypted.setenv("CLAIMS_MEMBER_ENCRYPTION", "on")  # CIPHER_KEY stays, to read what it sealed
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    try:
        new = service.submit_claim(actor=PROVIDER, **world.claim_body("k2", lines=[world.line(1, "99214", 20_000)]))
        drain(ledger)
        service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=old.claim_id, reason="billed in error")
        drain(ledger)

        with psycopg.connect(database_url) as conn:
            rows = conn.execute("SELECT notification_id, originator_id, state FROM ledger_events"
                                " ORDER BY notification_id").fetchall()
        assert [(p, bytes(s)) for p, _, s in rows[:len(written)]] == [(p, bytes(s)) for p, s in written]
        later = [(stream, bytes(state)) for _, stream, state in rows[len(written):]]
        key = {payloads.sealed_key_id(state) for stream, state in later if stream in (UUID(old.claim_id), UUID(new.claim_id))}
        assert len(key) == 1 and None not in key  # the old claim's void and the new claim: one member, one key
        assert not any(world.MEMBER.encode() in state for _, state in later)
        assert verify_ledger(database_url).intact
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert get_claim(conn, old.claim_id).status == "voided"
            assert get_claim(conn, new.claim_id).member_id == world.MEMBER
        assert service.replay(old.claim_id).identical and service.replay(new.claim_id).identical
        assert reconcile(database_url, wait_seconds=5).clean

        report = Eraser(ledger, service._save).erase(world.MEMBER, actor="admin:test")
        assert report.sealed_events > 0 and report.legacy_events > 0  # the one-key events stay as written
        drain(ledger)
        with psycopg.connect(database_url, autocommit=True) as conn:
            for claim in (old, new):
                with pytest.raises(ClaimNotFoundError):
                    get_claim(conn, claim.claim_id)
        assert verify_ledger(database_url).intact
        money = reconcile(database_url, wait_seconds=5)
        assert money.clean, money.differences
    finally:
        service.close()
        ledger.close()
