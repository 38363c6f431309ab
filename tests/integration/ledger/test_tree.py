"""The stored Merkle tree on a real PostgreSQL: incremental builds, gaps, kills, LISTEN, guards."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from claims_service.ledger import merkle, tree
from claims_service.ledger.merkle import verify_consistency, verify_inclusion
from claims_service.ledger.tree import TreeBuilder, TreeError, TreeSizeError
from tests.integration.ledger.conftest import append_events, event_hashes, tamper


def test_a_tree_built_in_several_extends_equals_the_naive_tree(ledger, database_url):
    append_events(ledger, 30)  # 60 events
    events = event_hashes(database_url)
    with TreeBuilder(database_url) as builder:
        sizes = []
        while added := builder.extend(max_leaves=7):
            sizes.append(added)
        assert sizes == [7] * 8 + [4]
        append_events(ledger, 3)
        assert builder.extend() == 6
    events = event_hashes(database_url)
    leaves = [h for _, h in events]
    naive = merkle.MemoryTree.from_data(leaves)
    with psycopg.connect(database_url) as conn:
        assert tree.tree_size(conn) == 66
        for size in range(0, 67):
            assert tree.root_at(conn, size) == merkle.root(leaves[:size]), size
        for size in (1, 2, 7, 33, 64, 66):
            for index in range(size):
                proof = tree.inclusion_proof(conn, index, size)
                assert proof == naive.inclusion_proof(index, size)
                assert verify_inclusion(merkle.leaf_hash(leaves[index]), index, size, proof, naive.root(size))
            for old in range(0, size + 1):
                proof = tree.consistency_proof(conn, old, size)
                assert proof == naive.consistency_proof(old, size)
                assert verify_consistency(old, size, naive.root(old), naive.root(size), proof)
        for index, (position, digest) in enumerate(events):
            assert tree.leaf_index_of(conn, position) == index
            assert tree.leaf_at(conn, index) == tree.Leaf(index, position, digest)


def test_leaf_indexes_have_no_gaps_where_positions_do(ledger, database_url):
    append_events(ledger, 2, per_write=1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT nextval('ledger_events_notification_id_seq')")  # burnt, as by a rollback
    append_events(ledger, 2, per_write=1)
    with TreeBuilder(database_url) as builder:
        assert builder.catch_up() == 8
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT leaf_index, position FROM ledger_leaves ORDER BY leaf_index").fetchall()
        assert rows == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 6), (5, 7), (6, 8), (7, 9)]
        assert tree.leaf_index_of(conn, 5) is None
        assert tree.root_at(conn, 8) == merkle.root(h for _, h in event_hashes(database_url))


def test_a_kill_in_the_middle_of_extend_leaves_the_tree_as_it_was_and_the_next_run_continues(
        ledger, database_url, monkeypatch):
    append_events(ledger, 20)
    with TreeBuilder(database_url) as builder:
        assert builder.extend(max_leaves=9) == 9

        def crash(cur, rows):  # the leaves are written, the nodes are not: then the process dies
            raise KeyboardInterrupt("killed")

        monkeypatch.setattr(tree, "_write_nodes", crash)
        with pytest.raises(KeyboardInterrupt):
            builder.extend(max_leaves=9)
        monkeypatch.undo()
        with psycopg.connect(database_url) as conn:
            assert tree.tree_size(conn) == 9
            assert conn.execute("SELECT count(*) FROM merkle_nodes").fetchone()[0] == 4 + 2 + 1  # the first 9 leaves only
        assert builder.catch_up() == 31
    leaves = [h for _, h in event_hashes(database_url)]
    with psycopg.connect(database_url) as conn:
        assert tree.root_at(conn, 40) == merkle.root(leaves)
        assert tree.root_at(conn, 9) == merkle.root(leaves[:9])
        # every perfect subtree of two or more leaves is stored exactly once: 40 leaves -> 20+10+5+2+1
        assert conn.execute("SELECT count(*) FROM merkle_nodes").fetchone()[0] == 38


def test_a_builder_killed_by_the_server_restarts_cleanly(ledger, database_url):
    append_events(ledger, 10)
    builder = TreeBuilder(database_url)
    builder.extend(max_leaves=5)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(psycopg.OperationalError):
        builder.extend()
    assert builder.catch_up() == 15  # a new connection, from where the tree stands
    builder.close()


def test_sizes_beyond_the_tree_are_refused(ledger, database_url):
    append_events(ledger, 3)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    with psycopg.connect(database_url) as conn:
        for call in (lambda: tree.root_at(conn, 7), lambda: tree.inclusion_proof(conn, 5, 7),
                     lambda: tree.inclusion_proof(conn, 6, 7), lambda: tree.consistency_proof(conn, 6, 7),
                     lambda: tree.consistency_proof(conn, 7, 7), lambda: tree.consistency_proof(conn, 0, 9),
                     lambda: tree.inclusion_proof(conn, 6, 6), lambda: tree.consistency_proof(conn, 5, 4)):
            with pytest.raises(TreeSizeError):
                call()
        assert tree.consistency_proof(conn, 0, 6) == []
        assert tree.root_at(conn, 0) == merkle.EMPTY_ROOT


def test_the_tree_refuses_an_event_that_does_not_link_to_its_last_leaf(ledger, database_url):
    append_events(ledger, 2)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
        append_events(ledger, 2)
        tamper(database_url, "UPDATE ledger_events SET prev_hash = sha256('forged'::bytea)"
                             " WHERE notification_id = (SELECT min(notification_id) FROM ledger_events"
                             "  WHERE notification_id > (SELECT max(position) FROM ledger_leaves))")
        with pytest.raises(TreeError, match="does not link to the tree's last event"):
            builder.extend()
    with psycopg.connect(database_url) as conn:
        assert tree.tree_size(conn) == 4


def test_the_tree_tables_are_append_only(ledger, database_url):
    append_events(ledger, 2)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    for statement in ("UPDATE ledger_leaves SET position = 99 WHERE leaf_index = 0",
                      "DELETE FROM merkle_nodes", "TRUNCATE ledger_leaves", "TRUNCATE merkle_nodes"):
        with psycopg.connect(database_url) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)


def test_two_builders_at_once_build_one_tree(ledger, database_url):
    append_events(ledger, 100, per_write=20)
    errors = []

    def build():
        try:
            with TreeBuilder(database_url) as builder:
                while builder.extend(max_leaves=13):
                    pass
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with psycopg.connect(database_url) as conn:
        assert tree.tree_size(conn) == 200
        assert tree.root_at(conn, 200) == merkle.root(h for _, h in event_hashes(database_url))


def test_run_forever_wakes_on_the_recorders_notify(ledger, database_url):
    stop = threading.Event()
    rounds = []
    builder = TreeBuilder(database_url)
    # A long timeout: only the NOTIFY of a committed insert can wake it in time.
    thread = threading.Thread(target=builder.run_forever, args=(stop,),
                              kwargs={"timeout": 30.0, "after_extend": rounds.append})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not rounds and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        append_events(ledger, 1)
        with psycopg.connect(database_url, autocommit=True) as conn:
            while tree.tree_size(conn) < 2 and time.monotonic() - started < 10:
                time.sleep(0.01)
            assert tree.tree_size(conn) == 2
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("NOTIFY ledger_events")  # wake it to see the stop
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_extends_that_end_on_powers_of_two(ledger, database_url):
    append_events(ledger, 8)
    with TreeBuilder(database_url) as builder:
        assert [builder.extend(n) for n in (1, 1, 2, 4, 8)] == [1, 1, 2, 4, 8]
    leaves = [h for _, h in event_hashes(database_url)]
    with psycopg.connect(database_url) as conn:
        for _ in range(8):  # past psycopg's automatic prepare threshold
            assert tree.read_nodes(conn, [(1, 0)]) == {(1, 0): merkle.root(leaves[:2])}
            assert tree.read_nodes(conn, [(0, 3)]) == {(0, 3): merkle.leaf_hash(leaves[3])}
            assert [tree.root_at(conn, n) for n in (1, 2, 4, 8, 16)] == [merkle.root(leaves[:n]) for n in (1, 2, 4, 8, 16)]
