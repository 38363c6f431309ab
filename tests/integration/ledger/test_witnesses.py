"""Witnesses against a real ledger, through their real HTTP endpoint (a thread, and `claimsctl
witness serve` in a process of its own): the log gets each checkpoint cosigned, keeps signing when a
witness is down and catches up later, and a witness refuses a split view and keeps the evidence."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from claims_service.ledger.checkpointer import Checkpointer, latest_checkpoint
from claims_service.ledger.cosignature import CosignerKey, verify_cosignatures
from claims_service.ledger.note import VerifierKey, parse_and_verify, split_note
from claims_service.ledger.witnessing import WitnessEndpoint
from claims_service.witness.directory import init_witness, load_witness
from claims_service.witness.server import WitnessServer
from tests.integration.ledger.conftest import append_events, tamper
from tests.integration.ledger.test_checkpoints import KEY, ORIGIN, VKEY, rewrite_history

WITNESS = "witness.test/w1"
CLAIMSCTL = str(Path(sys.executable).parent / "claimsctl")


@pytest.fixture
def witness_dir(tmp_path):
    directory = tmp_path / "witness"
    cosigner = init_witness(directory, WITNESS, {ORIGIN: [VerifierKey.parse(VKEY)]})
    return directory, cosigner


@pytest.fixture
def served(witness_dir):
    server = WitnessServer(load_witness(witness_dir[0]), "127.0.0.1:0").start()
    yield server
    server.stop()


def signer(database_url: str, url: str, cosigner: CosignerKey, **kwargs) -> Checkpointer:
    return Checkpointer(database_url, KEY, origin=ORIGIN, witnesses=[WitnessEndpoint.parse(f"{url} {cosigner}")],
                        witness_timeout=2.0, **kwargs)


def signature_names(note: str) -> list[str]:
    return [s.name for s in split_note(note)[1]]


def test_each_checkpoint_is_cosigned_stored_and_served_with_its_cosignature(ledger, database_url, witness_dir, served):
    directory, cosigner = witness_dir
    log_signer = signer(database_url, served.url, cosigner)
    append_events(ledger, 5)
    first = log_signer.checkpoint_now()
    assert signature_names(first.note) == [ORIGIN, WITNESS]  # the log's own signature first
    assert parse_and_verify(first.note, VKEY).size == first.tree_size
    [cosignature] = verify_cosignatures(first.note, [cosigner])
    assert abs(cosignature.timestamp - time.time()) < 60
    append_events(ledger, 5)
    second = log_signer.checkpoint_now()  # a consistency proof from the first size goes with it
    assert signature_names(second.note) == [ORIGIN, WITNESS] and verify_cosignatures(second.note, [cosigner])
    with psycopg.connect(database_url) as conn:
        assert latest_checkpoint(conn).note == second.note  # stored and served with the cosignature
        assert conn.execute("SELECT count(*) FROM ledger_cosignatures").fetchone()[0] == 2
    state = json.loads((directory / "state.json").read_text())
    assert state["logs"][ORIGIN].startswith(second.note.split("\n\n")[0])  # the witness remembers the second


def test_the_log_keeps_signing_with_a_witness_down_and_is_cosigned_later(ledger, database_url, witness_dir, caplog):
    directory, cosigner = witness_dir
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_signer = signer(database_url, f"http://127.0.0.1:{port}", cosigner)
    append_events(ledger, 5)
    with caplog.at_level(logging.WARNING):
        alone = log_signer.checkpoint_now()
    assert signature_names(alone.note) == [ORIGIN]  # signed and stored all the same
    assert f"witness {cosigner.label} gave no cosignature for the checkpoint of {alone.tree_size} leaves" in caplog.text
    assert "stored with 0 of 1 witness cosignatures" in caplog.text
    server = WitnessServer(load_witness(directory), f"127.0.0.1:{port}").start()
    try:
        log_signer.witnessing.retry_seconds = 0
        log_signer.tick()  # nothing new to sign: the latest checkpoint is offered again
        with psycopg.connect(database_url) as conn:
            stored = latest_checkpoint(conn)
        assert stored.tree_size == alone.tree_size and signature_names(stored.note) == [ORIGIN, WITNESS]
        assert verify_cosignatures(stored.note, [cosigner])
    finally:
        server.stop()


def test_a_witness_that_is_elsewhere_says_its_size_and_the_log_proves_from_there(ledger, database_url, witness_dir,
                                                                                  served):
    _, cosigner = witness_dir
    append_events(ledger, 4)
    signer(database_url, served.url, cosigner).checkpoint_now()
    # Another signing process that knows nothing of it asks with old size 0: 409 with the size, then
    # the same request from that size with its consistency proof.
    other = signer(database_url, served.url, cosigner)
    other.witnessing._known[cosigner.label] = 0
    append_events(ledger, 4)
    later = other.checkpoint_now()
    assert verify_cosignatures(later.note, [cosigner])


def test_a_split_view_is_refused_by_the_witness_and_proven_by_its_evidence(ledger, database_url, witness_dir, served,
                                                                          caplog, monkeypatch, capsys):
    directory, cosigner = witness_dir
    append_events(ledger, 10)
    honest = signer(database_url, served.url, cosigner).checkpoint_now()
    assert verify_cosignatures(honest.note, [cosigner])
    # The database's administrator rewrites history, rebuilds the tree, deletes the checkpoints, and
    # gets the key signed over it by a signer that does not remember (no state file).
    rewrite_history(database_url, 3, b'{"forged": true}')
    tamper(database_url, "DELETE FROM ledger_checkpoints")
    with caplog.at_level(logging.ERROR):
        forged = signer(database_url, served.url, cosigner).checkpoint_now()
    assert forged.tree_size == honest.tree_size and forged.root_hash != honest.root_hash
    assert signature_names(forged.note) == [ORIGIN]  # signed by the log's key, cosigned by nobody
    assert f"witness {cosigner.label} REFUSED to cosign the checkpoint of {forged.tree_size} leaves" in caplog.text
    assert "HTTP 422" in caplog.text and "split view" in caplog.text
    [evidence] = (directory / "evidence").iterdir()
    record = json.loads(evidence.read_text())
    assert record["cosigned_note"].startswith(honest.note.split("\n\n")[0])
    assert record["submitted_note"] == forged.note
    # Anyone with the log's public key checks it: two signed roots for one size.
    from claims_service.cli.main import main

    assert main(["witness", "check-evidence", str(evidence), "--log-key", VKEY]) == 0
    assert "split view PROVEN" in capsys.readouterr().out
    with psycopg.connect(database_url) as conn:  # the honest line is not shown on the forged checkpoint
        assert latest_checkpoint(conn).note == forged.note


def test_claimsctl_witness_runs_as_a_process_of_its_own(ledger, database_url, tmp_path):
    directory = tmp_path / "w2"
    made = subprocess.run([CLAIMSCTL, "witness", "init", "--dir", str(directory), "--name", "witness.test/w2",
                           "--log-key", VKEY], capture_output=True, text=True, check=True)
    cosigner = CosignerKey.parse(made.stdout.strip())
    assert oct((directory / "witness-key.pem").stat().st_mode & 0o777) == "0o600"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([CLAIMSCTL, "witness", "serve", "--dir", str(directory), "--addr", f"127.0.0.1:{port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "the witness did not start"
                time.sleep(0.05)
        log_signer = signer(database_url, f"http://127.0.0.1:{port}", cosigner)
        append_events(ledger, 3)
        first = log_signer.checkpoint_now()
        append_events(ledger, 3)
        second = log_signer.checkpoint_now()
        for checkpoint in (first, second):
            assert [c.witness for c in verify_cosignatures(checkpoint.note, [cosigner])] == [cosigner.label]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "witness witness.test/w2 serving on" in output
