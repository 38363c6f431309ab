"""Signed checkpoints against a real PostgreSQL: the Checkpointer's rules, `claimsctl checkpoint` and
`claimsctl verify-checkpoint`, and the attacks a kept checkpoint must reveal."""

from __future__ import annotations

import argparse
import base64
import json
import threading
import time

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.config import Config
from claims_service.errors import ClaimsError
from claims_service.cli import ledger as ledger_commands
from claims_service.ledger import merkle, tree
from claims_service.ledger.chain import GENESIS, row_hash
from claims_service.ledger.checkpointer import Checkpointer, InconsistentTreeError, latest_checkpoint
from claims_service.ledger.note import parse_and_verify, sign_checkpoint, verifier_key
from claims_service.ledger.verify import verify_ledger
from claims_service.ledger.tree import TreeBuilder
from tests.integration.ledger.conftest import append_events, event_hashes, tamper

SEED = bytes(range(100, 132))
ORIGIN = "claims.test/ledger"
KEY = Ed25519PrivateKey.from_private_bytes(SEED)
VKEY = verifier_key(KEY, ORIGIN)


def claimsctl(database_url: str, monkeypatch, capsys, tmp_path, *argv: str) -> tuple[int, str]:
    """Run one of the ledger's commands the way claimsctl's main() does."""
    monkeypatch.setenv("CLAIMS_DATABASE_URL", database_url)
    monkeypatch.setenv("CLAIMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLAIMS_SIGNING_KEY", base64.b64encode(SEED).decode())
    monkeypatch.setenv("CLAIMS_CHECKPOINT_ORIGIN", ORIGIN)
    parser = argparse.ArgumentParser(prog="claimsctl")
    ledger_commands.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code = args.func(Config.from_env(), args)
    except ClaimsError as error:
        print(f"claimsctl: {error}")
        code = 2
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def kept(ledger, database_url, monkeypatch, capsys, tmp_path):
    """20 events, a checkpoint of them kept in a file by a provider, then 10 more events."""
    append_events(ledger, 10)
    path = tmp_path / "kept.checkpoint"
    code, out = claimsctl(database_url, monkeypatch, capsys, tmp_path, "checkpoint", "-o", str(path))
    assert code == 0, out
    assert path.read_text() in out and VKEY in out
    append_events(ledger, 5)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    return path


def verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, path, *extra: str) -> tuple[int, str]:
    return claimsctl(database_url, monkeypatch, capsys, tmp_path, "verify-checkpoint", str(path),
                     "--public-key", VKEY, *extra)


def rewrite_history(database_url: str, position: int, new_state: bytes) -> None:
    """The superuser attacker: change one event's payload, recompute every hash after it (both
    chains), and rebuild the tree (and its stream map) from scratch. `claimsctl verify` finds
    nothing wrong afterwards."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT notification_id, originator_id, originator_version, topic, state"
                            " FROM ledger_events ORDER BY notification_id").fetchall()
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            prev, streams = GENESIS, {}
            for pos, stream, version, topic, state in rows:
                state = new_state if pos == position else bytes(state)
                digest = row_hash(prev, pos, stream, version, topic, state)
                conn.execute("UPDATE ledger_events SET state = %s, prev_hash = %s, stream_prev_hash = %s, hash = %s"
                             " WHERE notification_id = %s", (state, prev, streams.get(stream, GENESIS), digest, pos))
                prev = streams[stream] = digest
            conn.execute("DELETE FROM ledger_leaves")
            conn.execute("DELETE FROM merkle_nodes")
            conn.execute("DELETE FROM stream_map_roots")
            conn.execute("DELETE FROM stream_map_nodes")
    with TreeBuilder(database_url) as builder:
        builder.catch_up()


def test_checkpointer_signs_every_n_leaves_and_on_demand(ledger, database_url):
    signer = Checkpointer(database_url, KEY, origin=ORIGIN, every_leaves=10, every_seconds=3600)
    with TreeBuilder(database_url) as builder, psycopg.connect(database_url, autocommit=True) as conn:
        append_events(ledger, 2)
        builder.catch_up()
        assert signer.tick() is None and latest_checkpoint(conn) is None
        append_events(ledger, 3)
        builder.catch_up()
        first = signer.tick()
        assert first is not None and first.tree_size == 10
        assert first.root_hash == merkle.root(h for _, h in event_hashes(database_url))
        cp = parse_and_verify(first.note, VKEY)
        assert (cp.origin, cp.size, cp.root_hash) == (ORIGIN, 10, first.root_hash)
        append_events(ledger, 1)
        assert signer.tick() is None  # the tree has not been extended: still 10 leaves
        now = signer.checkpoint_now()  # on demand: extends the tree, then signs
        assert now.tree_size == 12 and signer.checkpoint_now() == now  # one checkpoint per size
        assert latest_checkpoint(conn) == now
        timed = Checkpointer(database_url, KEY, origin=ORIGIN, every_leaves=1000, every_seconds=0)
        append_events(ledger, 1)
        builder.catch_up()
        assert timed.tick().tree_size == 14  # type: ignore[union-attr]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM ledger_checkpoints")


def test_run_forever_extends_the_tree_and_signs_as_events_arrive(ledger, database_url):
    signer = Checkpointer(database_url, KEY, origin=ORIGIN, every_leaves=4, every_seconds=3600)
    stop = threading.Event()
    thread = threading.Thread(target=signer.run_forever, args=(stop,), kwargs={"timeout": 0.2})
    thread.start()
    try:
        append_events(ledger, 3)
        deadline = time.monotonic() + 10
        with psycopg.connect(database_url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                latest = latest_checkpoint(conn)
                if latest and latest.tree_size == 6:
                    break
                time.sleep(0.02)
            assert latest is not None and latest.tree_size == 6
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_an_honest_ledger_passes_against_an_earlier_checkpoint(kept, database_url, monkeypatch, capsys, tmp_path):
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, kept)
    assert code == 0, out
    assert "ledger consistent with checkpoint claims.test/ledger at 20 leaves" in out
    assert "30 leaves over 30 events" in out
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, kept, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["ledger"]["leaves"] == 30 and report["checkpoint"]["tree_size"] == 20


def test_a_rewrite_that_recomputed_every_hash_and_the_tree_is_caught_by_the_kept_checkpoint(
        kept, database_url, monkeypatch, capsys, tmp_path):
    rewrite_history(database_url, 5, b'{"name":"c2","count":0,"forged":true}')
    assert verify_ledger(database_url).intact  # the chain alone is fooled
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, kept)
    assert code == 1
    assert "ledger FAILS checkpoint claims.test/ledger at 20 leaves" in out
    assert "the first 20 events no longer hash to the checkpoint's root: the ledger was rewritten" in out
    # The service itself refuses to sign a head inconsistent with its last checkpoint.
    with pytest.raises(InconsistentTreeError, match="does not extend the checkpoint of 20 leaves"):
        Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()


def test_a_rewrite_after_the_checkpoint_is_not_blamed_on_it(kept, database_url, monkeypatch, capsys, tmp_path):
    # Rewriting an event the checkpoint does not cover breaks no promise that checkpoint made.
    position = event_hashes(database_url)[25][0]
    rewrite_history(database_url, position, b'{"late":true}')
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, kept)
    assert code == 0, out


def test_a_truncated_ledger_is_caught(kept, database_url, monkeypatch, capsys, tmp_path):
    cut = event_hashes(database_url)[14][0]
    # The attacker removes the newest events and the tree's leaves for them, and rebuilds the nodes.
    tamper(database_url, f"DELETE FROM ledger_events WHERE notification_id >= {cut}",
           "DELETE FROM ledger_leaves", "DELETE FROM merkle_nodes")
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    assert verify_ledger(database_url).intact  # a cut-off prefix is still a valid chain
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, kept)
    assert code == 1
    assert "the ledger's tree has 14 leaves but the checkpoint covers 20: events were cut off the end" in out


def test_events_deleted_under_the_tree_are_caught(kept, database_url, monkeypatch, capsys, tmp_path):
    cut = event_hashes(database_url)[27][0]
    tamper(database_url, f"DELETE FROM ledger_events WHERE notification_id >= {cut}")
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, kept)
    assert code == 1 and "which is not in the ledger: events were cut off the end" in out


def test_a_payload_changed_without_recomputing_hashes_is_named(kept, database_url, monkeypatch, capsys, tmp_path):
    position = event_hashes(database_url)[3][0]
    tamper(database_url, f"UPDATE ledger_events SET state = '\\x7b7d' WHERE notification_id = {position}")
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, kept)
    assert code == 1 and f"chain: position {position}: payload altered" in out


def test_a_tampered_tree_table_is_caught(kept, database_url, monkeypatch, capsys, tmp_path):
    tamper(database_url, "UPDATE merkle_nodes SET hash = sha256(hash) WHERE level = 2 AND idx = 1")
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, kept)
    assert code == 1 and "the tree tables were altered" in out


def test_a_forged_or_re_signed_checkpoint_is_rejected(kept, database_url, monkeypatch, capsys, tmp_path):
    note = kept.read_text()
    forged = tmp_path / "forged.checkpoint"
    forged.write_text(note.replace("\n20\n", "\n25\n"))
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, forged)
    assert code == 1 and "checkpoint REJECTED" in out and "does not verify" in out

    # The attacker rewrites history and signs a fresh checkpoint of it with a key of its own.
    rewrite_history(database_url, 5, b'{"forged":true}')
    attacker = Ed25519PrivateKey.generate()
    with psycopg.connect(database_url) as conn:
        root = tree.root_at(conn, 20)
    resigned = tmp_path / "resigned.checkpoint"
    resigned.write_text(sign_checkpoint(attacker, ORIGIN, ORIGIN, 20, root))
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, resigned)
    assert code == 1 and "no signature by a trusted key" in out
    # ...which passes only for someone who trusts the attacker's key.
    code, out = claimsctl(database_url, monkeypatch, capsys, tmp_path, "verify-checkpoint", str(resigned),
                          "--public-key", verifier_key(attacker, ORIGIN))
    assert code == 0, out


def test_bad_arguments_exit_2(kept, database_url, monkeypatch, capsys, tmp_path):
    code, out = claimsctl(database_url, monkeypatch, capsys, tmp_path, "verify-checkpoint", str(kept),
                          "--public-key", "not-a-key")
    assert code == 2 and "verifier key" in out
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, tmp_path / "missing")
    assert code == 2 and "cannot read" in out


def test_a_kept_checkpoint_and_a_kept_head_are_both_checked(kept, database_url, monkeypatch, capsys, tmp_path):
    """`verify --checkpoint FILE --expect-head POSITION:HASH` honours both: a head that is not in the
    chain fails even when the ledger still extends the checkpoint."""
    position, digest = event_hashes(database_url)[-1]
    code, out = claimsctl(database_url, monkeypatch, capsys, tmp_path, "verify", "--checkpoint", str(kept),
                          "--public-key", VKEY, "--expect-head", f"{position}:{digest.hex()}")
    assert code == 0, out
    wrong = bytes(32).hex()
    code, out = claimsctl(database_url, monkeypatch, capsys, tmp_path, "verify", "--checkpoint", str(kept),
                          "--public-key", VKEY, "--expect-head", f"{position}:{wrong}")
    assert code == 1 and "head mismatch" in out, out
