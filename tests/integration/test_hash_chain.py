"""The hash-linked events table, against a real PostgreSQL: linking, the append-only guard,
concurrency, and every kind of tampering that `claimsctl verify` must name."""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg
import pytest
from eventsourcing.domain import Aggregate, event

from claims_service.application import LedgerApplication
from claims_service.cli.main import main as claimsctl
from claims_service.errors import ConflictError
from claims_service.ledger import verify as ledger_verify
from claims_service.ledger.chain import GENESIS, WRITERS_LOCK_KEY, Fault, row_hash


class Tally(Aggregate):
    """A minimal aggregate: the chain is generic, so its tests need no domain rules."""

    @event("Started")
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Bumped")
    def bump(self, by: int) -> None:
        self.count += by


@pytest.fixture
def ledger(database_url: str):
    app = LedgerApplication(database_url)
    yield app
    app.close()


def append_tallies(ledger: LedgerApplication, count: int) -> list[uuid.UUID]:
    ids = []
    for i in range(count):
        tally = Tally(name=f"t{i}")
        tally.bump(by=i)
        ledger.record(tally)
        ids.append(tally.id)
    return ids


def rows(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state,"
            " prev_hash, stream_prev_hash, hash FROM ledger_events ORDER BY notification_id"
        ).fetchall()


def verify(database_url: str, monkeypatch, capsys, *args: str) -> tuple[int, dict]:
    monkeypatch.setenv("CLAIMS_DATABASE_URL", database_url)
    code = claimsctl(["verify", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def tamper(database_url: str, *statements: str) -> None:
    """Run SQL as a superuser with triggers switched off: the attacker the chain must catch."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            for statement in statements:
                conn.execute(statement)


def test_every_row_links_to_the_row_before_and_to_its_stream(ledger, database_url):
    append_tallies(ledger, 3)
    table = rows(database_url)
    assert len(table) == 6
    previous = GENESIS
    last_in_stream: dict[uuid.UUID, bytes] = {}
    for position, stream, version, topic, state, prev_hash, stream_prev, digest in table:
        assert prev_hash == previous
        assert digest == row_hash(prev_hash, position, stream, version, topic, state)
        assert stream_prev == last_in_stream.get(stream, GENESIS)
        previous = last_in_stream[stream] = digest


def test_verify_reports_an_intact_ledger_with_its_head(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 5)
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 0
    assert report["intact"] and report["events"] == 10 and report["streams"] == 5
    head = rows(database_url)[-1]
    assert report["head_position"] == head[0] and report["head_hash"] == head[7].hex()


def test_the_database_refuses_update_delete_and_truncate(ledger, database_url):
    append_tallies(ledger, 1)
    for statement in (
        "UPDATE ledger_events SET topic = 'x'",
        "DELETE FROM ledger_events",
        "TRUNCATE ledger_events",
    ):
        with psycopg.connect(database_url) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    assert len(rows(database_url)) == 2


def test_a_rolled_back_insert_leaves_a_gap_in_positions_but_not_in_the_chain(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 2)
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT nextval('ledger_events_notification_id_seq')")  # burnt, as by a rollback
    append_tallies(ledger, 2)
    positions = [r[0] for r in rows(database_url)]
    assert positions == [1, 2, 3, 4, 6, 7, 8, 9]
    assert verify(database_url, monkeypatch, capsys)[0] == 0


def test_concurrent_commands_on_one_aggregate_one_wins_the_other_conflicts(ledger, database_url):
    tally = Tally(name="shared")
    ledger.record(tally)
    first, second = ledger.repository.get(tally.id), ledger.repository.get(tally.id)
    first.bump(by=1)
    second.bump(by=2)
    ledger.record(first)
    with pytest.raises(ConflictError):
        ledger.record(second)
    assert ledger.repository.get(tally.id).count == 1


def test_many_threads_writing_different_aggregates_keep_one_linear_chain(ledger, database_url, monkeypatch, capsys):
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            append_tallies(ledger, 25)
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    table = rows(database_url)
    assert len(table) == 8 * 25 * 2
    for before, after in zip(table, table[1:]):
        assert after[5] == before[7], f"fork at position {after[0]}"
    assert verify(database_url, monkeypatch, capsys)[0] == 0


def test_a_writer_that_inserts_without_ledger_append_waits_for_the_one_in_flight_and_links_after_it(
        ledger, database_url, monkeypatch, capsys):
    """Two transactions insert directly, not through ledger_append: the link trigger takes the
    ledger's lock (migration 0025), so the second waits for the first to commit and links to its
    row; no fork, positions in commit order."""
    append_tallies(ledger, 1)
    insert = ("INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
              " VALUES (%s, 1, 'tests:Direct', '{}')")
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        first.execute(insert, (uuid.uuid4(),))  # holds the ledger's lock, uncommitted
        failed: list[BaseException] = []

        def insert_second() -> None:
            try:
                second.execute(insert, (uuid.uuid4(),))  # waits for the first to end
                second.commit()
            except psycopg.Error as error:
                failed.append(error)

        racer = threading.Thread(target=insert_second)
        racer.start()
        with psycopg.connect(database_url, autocommit=True) as watcher:  # until the second waits for the first
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and watcher.execute(
                    "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s",
                    (second.info.backend_pid,)).fetchone() != ("Lock", "advisory"):
                time.sleep(0.02)
            waited_for = watcher.execute(  # the key the migration takes is the one Python writers name
                "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
                " WHERE pid = %s AND locktype = 'advisory' AND NOT granted", (second.info.backend_pid,)).fetchone()
        assert racer.is_alive(), "the second insert did not wait for the first"
        assert waited_for == (WRITERS_LOCK_KEY,)
        first.commit()
        racer.join(timeout=10)
    assert not failed
    table = rows(database_url)
    assert len(table) == 4 and table[3][5] == table[2][7] and table[3][0] > table[2][0]
    assert verify(database_url, monkeypatch, capsys)[0] == 0


def test_appends_do_not_wait_for_a_vacuum_of_the_events_table(ledger, database_url):
    """VACUUM (autovacuum's too) holds SHARE UPDATE EXCLUSIVE on the table it works on. The
    ledger's writers must not wait for it: under LOCK TABLE ... IN EXCLUSIVE MODE they did, for
    deadlock_timeout (1 s), until the vacuum was cancelled (migration 0025)."""
    append_tallies(ledger, 1)
    with psycopg.connect(database_url) as vacuum:
        vacuum.execute("LOCK TABLE ledger_events IN SHARE UPDATE EXCLUSIVE MODE")  # VACUUM's lock, held
        appended: list[uuid.UUID] = []
        writer = threading.Thread(target=lambda: appended.extend(append_tallies(ledger, 3)), daemon=True)
        writer.start()
        writer.join(timeout=5)
        waited = writer.is_alive()
        vacuum.rollback()  # let a waiting writer go, whatever the outcome
    writer.join(timeout=30)
    assert not waited, "an append waited for the vacuum's lock"
    assert len(appended) == 3 and len(rows(database_url)) == 8


def test_verify_names_a_changed_payload_byte(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 5)
    tamper(database_url, "UPDATE ledger_events SET state = overlay(state placing '\\x58'::bytea from 3) WHERE notification_id = 7")
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert report["problem"]["position"] == 7 and report["problem"]["fault"] == "payload altered"


def test_verify_names_a_deleted_row(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 5)
    tamper(database_url, "DELETE FROM ledger_events WHERE notification_id = 4")
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert report["problem"]["position"] == 5 and report["problem"]["fault"] == "row missing"


def test_verify_names_a_forged_row_even_when_its_own_hash_is_right(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 2)
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT nextval('ledger_events_notification_id_seq')")  # position 5 stays free
    append_tallies(ledger, 2)
    fourth = rows(database_url)[3]
    forged_id, topic, state = uuid.uuid4(), fourth[3], b'{"name":"forged"}'
    digest = row_hash(fourth[7], 5, forged_id, 1, topic, state)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        # The unique index on leaf_index refuses a second row after the same predecessor;
        # a superuser drops it first.
        conn.execute("DROP INDEX ledger_events_leaf_index_idx")
        conn.execute(
            "INSERT INTO ledger_events (notification_id, originator_id, originator_version, topic, state,"
            " prev_hash, stream_prev_hash, hash, leaf_index) VALUES (5, %s, 1, %s, %s, %s, %s, %s, 4)",
            (forged_id, topic, state, fourth[7], GENESIS, digest),
        )
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert report["problem"]["position"] == 5 and report["problem"]["fault"] == "row inserted"


def _slip_in(database_url: str, position: int, prev_hash: bytes, leaf_index: int) -> None:
    """A superuser inserts a self-consistent row (its own hash right) whose link names `prev_hash`."""
    forged_id, state = uuid.uuid4(), b'{"name":"forged"}'
    topic = rows(database_url)[0][3]
    digest = row_hash(prev_hash, position, forged_id, 1, topic, state)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("DROP INDEX ledger_events_leaf_index_idx")
        conn.execute(
            "INSERT INTO ledger_events (notification_id, originator_id, originator_version, topic, state,"
            " prev_hash, stream_prev_hash, hash, leaf_index) VALUES (%s, %s, 1, %s, %s, %s, %s, %s, %s)",
            (position, forged_id, topic, state, prev_hash, GENESIS, digest, leaf_index),
        )


def test_a_forged_row_with_a_random_link_is_named_inserted_not_missing(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 2)
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT nextval('ledger_events_notification_id_seq')")  # position 5 stays free
    append_tallies(ledger, 2)
    _slip_in(database_url, 5, uuid.uuid4().bytes + uuid.uuid4().bytes, 4)
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert report["problem"]["position"] == 5 and report["problem"]["fault"] == "row inserted"
    assert "slipped in" in report["problem"]["detail"]


def test_a_last_row_with_a_random_link_is_named_with_both_readings(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 2)
    _slip_in(database_url, 100, bytes(range(32)), 4)
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert report["problem"]["position"] == 100 and report["problem"]["fault"] == "row missing"
    assert "may also have been slipped in" in report["problem"]["detail"]


def test_verify_names_two_swapped_rows(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 5)
    tamper(
        database_url,
        "UPDATE ledger_events SET notification_id = -1 WHERE notification_id = 3",
        "UPDATE ledger_events SET notification_id = 3 WHERE notification_id = 8",
        "UPDATE ledger_events SET notification_id = 8 WHERE notification_id = -1",
    )
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert report["problem"]["position"] == 3 and report["problem"]["fault"] == "rows reordered"


def test_verify_with_a_kept_head_catches_rows_cut_off_the_end(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 5)
    head = rows(database_url)[-1]
    kept = f"{head[0]}:{head[7].hex()}"
    tamper(database_url, "DELETE FROM ledger_events WHERE notification_id > 8")
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 0, "a prefix of a chain is a valid chain: only a kept head can tell"
    code, report = verify(database_url, monkeypatch, capsys, "--expect-head", kept)
    assert code == 1
    assert report["problem"]["fault"] == "head mismatch" and report["problem"]["position"] == 10


def test_verify_names_a_broken_stream_link(ledger, database_url, monkeypatch, capsys):
    append_tallies(ledger, 3)
    tamper(database_url, "UPDATE ledger_events SET stream_prev_hash = sha256(stream_prev_hash) WHERE notification_id = 4")
    code, report = verify(database_url, monkeypatch, capsys)
    assert code == 1
    assert report["problem"]["position"] == 4 and report["problem"]["fault"] == "stream link broken"


@pytest.mark.parametrize("tampering", [
    (),
    ("UPDATE ledger_events SET state = overlay(state placing '\\x58'::bytea from 3) WHERE notification_id = 31",),
    ("DELETE FROM ledger_events WHERE notification_id = 21",),
    ("DELETE FROM ledger_events WHERE notification_id = 22",),
    ("UPDATE ledger_events SET stream_prev_hash = sha256(stream_prev_hash) WHERE notification_id = 24",),
    ("UPDATE ledger_events SET notification_id = -1 WHERE notification_id = 9",
     "UPDATE ledger_events SET notification_id = 9 WHERE notification_id = 30",
     "UPDATE ledger_events SET notification_id = 30 WHERE notification_id = -1"),
])
def test_verifying_in_parallel_slices_names_the_same_first_fault(ledger, database_url, monkeypatch, tampering):
    append_tallies(ledger, 20)  # 40 rows: slices of two processes meet at position 20
    tamper(database_url, *tampering)
    single = ledger_verify.verify_ledger(database_url, processes=1)
    monkeypatch.setattr(ledger_verify, "PARALLEL_FROM_EVENTS", 0)
    parallel = ledger_verify.verify_ledger(database_url, processes=2)
    assert (parallel.intact, parallel.problem and parallel.problem.position) == (single.intact, single.problem and single.problem.position)
    if single.problem:
        assert parallel.problem.fault in (single.problem.fault, Fault.ROW_MISSING, Fault.STREAM_LINK_BROKEN)
    else:
        assert (parallel.events, parallel.streams, parallel.head_hash) == (single.events, single.streams, single.head_hash)
