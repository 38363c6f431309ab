"""Ledger append rates: the hash-linked events table against the same table without the chain.

Both run in the same process on the same server, interleaved in rounds so that a burst of load
from elsewhere on the machine hits both alike; the ratio is what the issue's target is about.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from eventsourcing.domain import Aggregate, event

from claims_service.application import LedgerApplication
from claims_service.ledger.chain import WRITERS_LOCK_KEY
from claims_service.migrate import MIGRATIONS_DIR, migrate


class BenchEntry(Aggregate):
    """A stand-in aggregate with a realistic payload size (a claim line is ~200 bytes of JSON)."""

    @event("Opened")
    def __init__(self, note: str) -> None:
        self.note = note

    @event("Noted")
    def add(self, note: str) -> None:
        self.note = note


# The ledger's write statement (migrations 0024, 0027) on the library's plain table: the same
# signature, lock, NOTIFY, insert and commit in one statement, without the chain's columns to fill
# or return, nor claim requests to record (the bench's saves carry none).
PLAIN_APPEND = """
CREATE FUNCTION ledger_append(p_tracking_name text, p_tracking_position bigint, p_lock_timeout text,
    p_originator_ids uuid[], p_originator_versions bigint[], p_topics text[], p_states bytea[], p_metadata text[],
    p_request_ids uuid[])
RETURNS TABLE (notification_id bigint, hash bytea, leaf_index bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    PERFORM pg_advisory_xact_lock(x'4C6564676572'::bigint);
    PERFORM pg_notify('ledger_events', '');
    RETURN QUERY
        INSERT INTO ledger_events AS t (originator_id, originator_version, topic, state)
        SELECT e.originator_id, e.originator_version, e.topic, e.state
          FROM unnest(p_originator_ids, p_originator_versions, p_topics, p_states) WITH ORDINALITY
               AS e (originator_id, originator_version, topic, state, n)
         ORDER BY e.n
        RETURNING t.notification_id, ''::bytea, 0::bigint;
END;
$$;
"""


def plain_schema_url(create_database, name: str) -> str:
    """A database with the library's tables only (migration 0001: no hash chain, no guard) and the
    ledger's write statement on them."""
    url = create_database(name)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(MIGRATIONS_DIR / "0001_event_store.sql", Path(tmp))
        (Path(tmp) / "0002_plain_append.sql").write_text(PLAIN_APPEND)
        migrate(url, Path(tmp))
    return url


def append_rate(url: str, seconds: float, threads: int = 4, events_per_save: int = 1) -> float:
    """Events appended per second by `threads` writers, each save holding `events_per_save` events."""
    ledger = LedgerApplication(url, pool_size=threads)
    note = "x" * 200
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def writer(slot: int) -> None:
        while time.perf_counter() < stop:
            entries = [BenchEntry(note=note) for _ in range(events_per_save)]
            ledger.record(*entries)
            counts[slot] += events_per_save

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    ledger.close()
    return sum(counts) / elapsed


def raw_commit_rate(url: str, seconds: float) -> float:
    """Single-row INSERT + COMMIT with psycopg: the machine's commit rate, our floor and ceiling."""
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, note text)")
        conn.commit()
        count = 0
        stop = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < stop:
            conn.execute("INSERT INTO bench_commits (note) VALUES ('x')")
            conn.commit()
            count += 1
        return count / (time.perf_counter() - started)


def run(create_database, seconds: float, progress) -> dict[str, float]:
    chained_url = create_database("bench_chained")
    migrate(chained_url)
    plain_url = plain_schema_url(create_database, "bench_plain")
    rounds = 3
    task = progress.add_task("ledger appends (chained vs plain)", total=rounds * 2 + 1)
    results = {"raw_commits_per_s": raw_commit_rate(plain_url, seconds / 2)}
    progress.advance(task)
    chained, plain = [], []
    for _ in range(rounds):
        plain.append(append_rate(plain_url, seconds / rounds, events_per_save=5))
        progress.advance(task)
        chained.append(append_rate(chained_url, seconds / rounds, events_per_save=5))
        progress.advance(task)
    results["plain_events_per_s"] = sum(plain) / rounds
    results["chained_events_per_s"] = sum(chained) / rounds
    results["chain_ratio"] = results["chained_events_per_s"] / results["plain_events_per_s"]
    results["single_event_saves_per_s"] = append_rate(chained_url, seconds / rounds, events_per_save=1)
    return results


def fill(url: str, events: int, batch: int = 50_000) -> None:
    """Append `events` hash-linked events with plain SQL (the trigger links them as usual): a big
    ledger for the verification rate, faster than going through the application."""
    with psycopg.connect(url) as conn:
        done = 0
        while done < events:
            size = min(batch, events - done)
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITERS_LOCK_KEY,))
                conn.execute(
                    "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
                    " SELECT gen_random_uuid(), 1, 'bench:Entry.Opened', convert_to(repeat('x', 200), 'UTF8')"
                    " FROM generate_series(1, %s)", (size,))
            done += size


def verify_rates(create_database, events: int, progress) -> dict[str, float]:
    """Full-chain verification, one process and one per core, over a ledger of `events` events."""
    from claims_service.ledger.verify import verify_ledger

    url = create_database("bench_verify")
    migrate(url)
    task = progress.add_task(f"verification over {events:,} events", total=3)
    fill(url, events)
    progress.advance(task)
    single = verify_ledger(url, processes=1)
    progress.advance(task)
    parallel = verify_ledger(url)
    progress.advance(task)
    assert single.intact and parallel.intact and single.head_hash == parallel.head_hash
    return {"events": events, "single_process_per_s": single.events / single.seconds,
            "all_cores_per_s": parallel.events / parallel.seconds}
