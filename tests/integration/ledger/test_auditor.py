"""The auditor notices a tampered ledger by itself: as events arrive (the audited head gone or
changed, a row altered, a stream link broken across batches, a tree leaf altered) and in its full
pass (the tree against the latest checkpoint). Each fault is reported once and auditing stops."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.ledger.auditor import Auditor, LedgerFaultFound
from claims_service.ledger.checkpointer import Checkpointer
from claims_service.ledger.note import VerifierKey, sign_checkpoint, verifier_key
from claims_service.ledger.tree import TreeBuilder
from tests.integration.ledger.conftest import append_events, tamper
from tests.integration.ledger.test_checkpoints import KEY, ORIGIN, VKEY, rewrite_history


@pytest.fixture
def auditor(database_url):
    faults: list[str] = []
    statuses: list = []
    audit = Auditor(database_url, verifier=VerifierKey.parse(VKEY), batch=7, on_fault=faults.append,
                    on_status=statuses.append)
    audit.faults, audit.statuses = faults, statuses  # type: ignore[attr-defined]
    return audit


def audit_all(auditor: Auditor, database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        total = 0
        while (n := auditor.audit_new(conn)):
            total += n
        return total


def test_an_honest_ledger_is_audited_as_it_grows_and_in_full(ledger, database_url, auditor):
    append_events(ledger, 10)
    assert audit_all(auditor, database_url) == 20
    append_events(ledger, 4)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()
    assert audit_all(auditor, database_url) == 8
    status = auditor.audit_full()
    assert status.intact and status.full and status.events == 28 and auditor.faults == []
    assert auditor.leaves_position == auditor.position


def test_a_truncation_below_the_audited_head_is_caught_at_once(ledger, database_url, auditor):
    append_events(ledger, 10)
    audit_all(auditor, database_url)
    tamper(database_url, f"DELETE FROM ledger_events WHERE notification_id >= {auditor.position - 2}")
    with pytest.raises(LedgerFaultFound, match="is gone"):
        audit_all(auditor, database_url)
    assert len(auditor.faults) == 1 and "cut back" in auditor.faults[0]
    assert auditor.statuses[-1].intact is False


def test_a_rewrite_with_recomputed_hashes_below_the_head_is_caught(ledger, database_url, auditor):
    append_events(ledger, 10)
    audit_all(auditor, database_url)
    rewrite_history(database_url, 5, b'{"forged": true}')
    with pytest.raises(LedgerFaultFound, match="has another hash"):
        audit_all(auditor, database_url)


def test_a_new_row_altered_in_place_is_caught(ledger, database_url, auditor):
    append_events(ledger, 5)
    audit_all(auditor, database_url)
    append_events(ledger, 5)
    tamper(database_url, "UPDATE ledger_events SET state = overlay(state placing '\\x58'::bytea from 3)"
                         " WHERE notification_id = (SELECT max(notification_id) - 1 FROM ledger_events)")
    with pytest.raises(LedgerFaultFound, match="payload altered"):
        audit_all(auditor, database_url)


def test_a_stream_link_broken_across_batches_is_caught(ledger, database_url, auditor):
    append_events(ledger, 10)  # 20 rows: the auditor's batches of 7 split streams across batches
    tamper(database_url, "UPDATE ledger_events SET stream_prev_hash = sha256(stream_prev_hash)"
                         " WHERE notification_id = (SELECT notification_id FROM ledger_events"
                         " WHERE originator_version = 2 ORDER BY notification_id OFFSET 4 LIMIT 1)")
    with pytest.raises(LedgerFaultFound, match="stream link broken"):
        audit_all(auditor, database_url)


def test_an_altered_tree_leaf_is_caught(ledger, database_url, auditor):
    append_events(ledger, 5)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    tamper(database_url, "UPDATE ledger_leaves SET event_hash = sha256(event_hash) WHERE leaf_index = 3")
    with pytest.raises(LedgerFaultFound, match="leaf for position"):
        audit_all(auditor, database_url)


def test_the_full_pass_recomputes_the_tree_and_finds_an_altered_subtree(ledger, database_url, auditor):
    append_events(ledger, 6)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()
    audit_all(auditor, database_url)
    # One interior node rewritten: the leaves still match their events, the stored tree does not.
    tamper(database_url, "UPDATE merkle_nodes SET hash = sha256(hash) WHERE level = 2 AND idx = 1")
    with pytest.raises(LedgerFaultFound, match=r"stored subtree \(2, 1\) differs"):
        auditor.audit_full()


def test_the_full_pass_holds_the_recomputed_tree_to_the_latest_checkpoint(ledger, database_url, auditor):
    """A checkpoint signed by the log's key over a root that is not the tree's (a signer misled, or
    its key misused): the recomputed tree and the checkpoint are not one tree."""
    append_events(ledger, 6)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    audit_all(auditor, database_url)
    assert auditor.audit_full().intact  # the tree of 12 leaves, no checkpoint yet
    note, zero = sign_checkpoint(KEY, ORIGIN, ORIGIN, 12, bytes(32)), "00" * 32
    tamper(database_url, f"INSERT INTO ledger_checkpoints (tree_size, root_hash, note) VALUES (12, '\\x{zero}', '{note}')")
    with pytest.raises(LedgerFaultFound, match="latest checkpoint: its tree of 12 leaves and the 12 leaves walked"):
        auditor.audit_full()


def test_the_full_pass_holds_a_later_checkpoint_to_the_tree_it_walked(ledger, database_url, auditor):
    """The checkpoint is over more leaves than the round walked (signed after the round began):
    it must extend the walked tree, by a consistency proof from the stored one."""
    append_events(ledger, 6)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    audit_all(auditor, database_url)
    auditor.start_round()
    append_events(ledger, 3)
    Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()  # 18 leaves; the round walks 12
    with psycopg.connect(database_url, autocommit=True) as conn:
        while auditor.round is not None:
            auditor.sweep(conn)
    assert auditor.statuses[-1].full and auditor.statuses[-1].intact and auditor.faults == []
    # The same, with a stored node on the proof's path altered after the round recomputed past it.
    auditor.start_round()
    tamper(database_url, "UPDATE merkle_nodes SET hash = sha256(hash) WHERE level = 2 AND idx = 3")  # leaves 12-15
    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(LedgerFaultFound, match="not one tree"):
        while auditor.round is not None:
            auditor.sweep(conn)


def test_a_checkpoint_signed_before_a_key_rotation_holds_with_the_retired_key_trusted(ledger, database_url):
    """After a rotation the latest checkpoint is the retired key's until the new key signs one: the
    workers give the auditor the retired keys too (CLAIMS_PREVIOUS_VERIFIER_KEYS); one it does not
    trust is a fault, as a forged signature would be."""
    append_events(ledger, 4)
    Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()  # by the key now retired
    new_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    for trusted, intact in (([verifier_key(new_key, ORIGIN), VKEY], True), ([verifier_key(new_key, ORIGIN)], False)):
        faults: list[str] = []
        audit = Auditor(database_url, verifier=[VerifierKey.parse(k) for k in trusted], on_fault=faults.append)
        if intact:
            assert audit.audit_full().intact and faults == []
        else:
            with pytest.raises(LedgerFaultFound, match="the checkpoint is rejected"):
                audit.audit_full()


def test_a_leaf_deleted_below_the_head_is_found_by_the_round(ledger, database_url, auditor):
    append_events(ledger, 5)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    audit_all(auditor, database_url)
    tamper(database_url, "DELETE FROM ledger_leaves WHERE leaf_index = 3")
    with pytest.raises(LedgerFaultFound, match="has no leaf in the tree, but later events have"):
        auditor.audit_full()


def test_a_round_waits_for_leaves_the_tree_had_not_built_yet(ledger, database_url, auditor):
    """The tree follows the ledger: a round that walks rows before their leaves exist looks for
    them again with its next batches, and recomputes the whole tree once they are there."""
    append_events(ledger, 10)
    audit_all(auditor, database_url)
    auditor.start_round()
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert auditor.sweep(conn) == 7  # no leaf yet
        with TreeBuilder(database_url) as builder:
            builder.catch_up()
        Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()
        while auditor.round is not None:
            walked = auditor.round
            auditor.sweep(conn)
    assert walked.tree.size == 20 and walked.untreed == []
    assert auditor.statuses[-1].full and auditor.statuses[-1].intact and auditor.faults == []


def test_run_forever_follows_new_events_and_stops_at_the_first_fault(ledger, database_url, auditor):
    stop = threading.Event()
    thread = threading.Thread(target=auditor.run_forever, args=(stop,), kwargs={"timeout": 0.1}, daemon=True)
    thread.start()
    append_events(ledger, 5)
    deadline = time.monotonic() + 10
    while auditor.events < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert auditor.events == 10 and auditor.faults == []
    tamper(database_url, f"DELETE FROM ledger_events WHERE notification_id = {auditor.position}")
    append_events(ledger, 1)
    deadline = time.monotonic() + 10
    while not auditor.faults and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(auditor.faults) == 1
    events = auditor.events
    append_events(ledger, 2)
    time.sleep(0.5)
    assert auditor.events == events, "after a fault the auditor audits nothing more"
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_evidence_reads_check_their_streams_hashes(ledger, database_url):
    """A replay or a bundle reads a claim's streams only if every event of them still hashes and
    links (verify_streams): DATA_LOSS naming the position otherwise."""
    from claims_service.errors import DataLossError
    from claims_service.ledger.verify import verify_streams

    append_events(ledger, 3)
    with psycopg.connect(database_url) as conn:
        streams = [row[0] for row in conn.execute("SELECT DISTINCT originator_id FROM ledger_events")]
        (position,) = conn.execute("SELECT notification_id FROM ledger_events WHERE originator_id = %s"
                                   " AND originator_version = 2", (streams[0],)).fetchone()
    assert verify_streams(database_url, streams) == 6
    tamper(database_url, "UPDATE ledger_events SET state = overlay(state placing '\\x58'::bytea from 3)"
                         f" WHERE notification_id = {position}")
    with pytest.raises(DataLossError, match=f"position {position}"):
        verify_streams(database_url, streams)
    assert verify_streams(database_url, streams[1:]) == 4  # the other streams are whole


# --- rounds over the whole ledger, and restarts from the state file -----------------------------


def test_a_round_walks_the_history_in_batches_and_catches_a_row_altered_below_the_head(ledger, database_url, auditor):
    append_events(ledger, 10)
    audit_all(auditor, database_url)
    tamper(database_url, "UPDATE ledger_events SET state = overlay(state placing '\\x58'::bytea from 3)"
                         " WHERE notification_id = (SELECT min(notification_id) + 2 FROM ledger_events)")
    assert audit_all(auditor, database_url) == 0  # below the audited head: new-event audits do not look
    auditor.start_round()
    with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(LedgerFaultFound, match="payload altered"):
        while auditor.round is not None:
            auditor.sweep(conn)
    assert auditor.faults and auditor.faults[0].startswith("full audit:")


def test_an_honest_round_ends_at_the_audited_head_and_reports_in_full(ledger, database_url, auditor):
    append_events(ledger, 10)
    audit_all(auditor, database_url)
    auditor.start_round()
    append_events(ledger, 3)  # after the round began: audited as new events, not by the round
    audit_all(auditor, database_url)
    walked = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        while auditor.round is not None:
            walked.append(auditor.sweep(conn))
    assert walked == [7, 7, 6]  # batches of 7, up to the head of 20 when the round began
    assert auditor.statuses[-1].full and auditor.statuses[-1].intact and auditor.statuses[-1].events == 20


def restarted(database_url: str, state_file) -> Auditor:
    faults: list[str] = []
    audit = Auditor(database_url, verifier=VerifierKey.parse(VKEY), batch=7, state_file=state_file,
                    on_fault=faults.append)
    audit.faults = faults  # type: ignore[attr-defined]
    return audit


@pytest.fixture
def saved(ledger, database_url, tmp_path) -> tuple:
    """An auditor that audited 20 events and wrote its state file, as one stopped after them: (state file, auditor)."""
    state = tmp_path / "auditor.audited-head"
    first = restarted(database_url, state)
    append_events(ledger, 10)
    audit_all(first, database_url)
    first.save_state(force=True)
    return state, first


def test_a_restarted_auditor_goes_on_from_the_head_its_state_file_remembers(ledger, database_url, saved):
    state, first = saved
    assert state.stat().st_mode & 0o777 == 0o600
    append_events(ledger, 2)
    second = restarted(database_url, state)
    assert (second.position, second.head_hash) == (first.position, first.head_hash)
    assert audit_all(second, database_url) == 4  # only what came after: no walk from the genesis first
    assert second.faults == [] and second.events == first.events + 4 == 24


def test_a_ledger_cut_back_while_the_service_was_down_is_caught_at_start(ledger, database_url, saved):
    state, first = saved
    tamper(database_url, f"DELETE FROM ledger_events WHERE notification_id >= {first.position - 3}")
    append_events(ledger, 1)  # the ledger grows again past the cut
    second = restarted(database_url, state)
    with pytest.raises(LedgerFaultFound, match="state file"):
        audit_all(second, database_url)


def test_a_restarted_auditors_first_round_catches_a_row_altered_while_it_was_down(ledger, database_url, saved):
    state, _first = saved
    tamper(database_url, "UPDATE ledger_events SET state = overlay(state placing '\\x58'::bytea from 3)"
                         " WHERE notification_id = (SELECT min(notification_id) + 1 FROM ledger_events)")
    second = restarted(database_url, state)
    stop = threading.Event()
    thread = threading.Thread(target=second.run_forever, args=(stop,), kwargs={"timeout": 0.1}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not second.faults and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    assert len(second.faults) == 1 and "payload altered" in second.faults[0]


def test_a_state_file_that_does_not_parse_is_an_error_not_a_fresh_start(database_url, tmp_path):
    state = tmp_path / "auditor.audited-head"
    state.write_text("{not json")
    with pytest.raises(ValueError, match="does not parse"):
        restarted(database_url, state)


def test_a_round_stops_recomputing_a_tree_that_is_far_behind_and_still_checks_the_leaves(ledger, database_url, auditor):
    """The tree's builder down while a round walks: the rows waiting for leaves are not kept without
    bound (past four batches the round stops recomputing the tree); the leaves that come later are
    still held to their rows' hashes."""
    append_events(ledger, 20)
    audit_all(auditor, database_url)
    auditor.start_round()
    walk = auditor.round
    with psycopg.connect(database_url, autocommit=True) as conn:
        for _ in range(5):
            auditor.sweep(conn)
        assert walk.tree_stopped and walk.untreed == [] and walk.tree.size == 0
        with TreeBuilder(database_url) as builder:
            builder.catch_up()
        tamper(database_url, "UPDATE ledger_leaves SET event_hash = sha256(event_hash) WHERE leaf_index = 38")
        with pytest.raises(LedgerFaultFound, match="does not name that event's hash"):
            while auditor.round is not None:
                auditor.sweep(conn)
