"""The growth benchmark's relation counters on a real server: the blocks a table's heap and each of
its indexes read and found, and its updates (HOT among them), as differences since a baseline."""

from __future__ import annotations

import time

import psycopg

from bench.disk import wal_by_record, wal_position
from bench.statements import _since, relation_counters


def moved_since(url: str, baseline: dict) -> dict:
    # A backend reports its counters when its transaction ends, at most once a second.
    deadline = time.monotonic() + 10
    while True:
        moved = _since(relation_counters(url), baseline)
        if moved.get("bench_probe", {}).get("updates") or time.monotonic() > deadline:
            return moved
        time.sleep(0.2)


def test_counters_name_each_relation_and_count_hot_updates(blank_database_url):
    url = blank_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_probe (id int PRIMARY KEY, indexed int, free text) WITH (fillfactor = 50)")
        conn.execute("CREATE INDEX bench_probe_indexed_idx ON bench_probe (indexed)")
        conn.execute("INSERT INTO bench_probe SELECT i, i, 'x' FROM generate_series(1, 100) i")
    baseline = relation_counters(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE bench_probe SET free = 'y' WHERE id <= 10")  # no indexed column: HOT
        conn.execute("UPDATE bench_probe SET indexed = -id WHERE id > 90")  # an indexed column: not HOT
        conn.execute("SELECT count(*) FROM bench_probe WHERE indexed = 5").fetchone()
    moved = moved_since(url, baseline)
    assert moved["bench_probe"]["updates"] == 20
    assert moved["bench_probe"]["hot_updates"] == 10
    assert moved["bench_probe"]["blocks_hit"] > 0
    assert moved["bench_probe_indexed_idx"]["blocks_hit"] > 0
    assert "bench_probe (toast)" not in moved  # nothing long enough to be stored out of line


def test_the_wal_is_told_by_record_type(blank_database_url):
    """What a paced run wrote to the WAL, by record type (bench.disk.wal_by_record): HOT updates,
    plain ones and their index entries each under their own name, with their bytes."""
    url = blank_database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_probe (id int PRIMARY KEY, indexed int, free text) WITH (fillfactor = 50)")
        conn.execute("CREATE INDEX bench_probe_indexed_idx ON bench_probe (indexed)")
        conn.execute("INSERT INTO bench_probe SELECT i, i, 'x' FROM generate_series(1, 100) i")
        conn.execute("CHECKPOINT")  # the updates' first changes to each page then log it whole
    start = wal_position(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE bench_probe SET free = 'y' WHERE id <= 10")
        conn.execute("UPDATE bench_probe SET indexed = -id WHERE id > 90")
    by_record = wal_by_record(url, start, wal_position(url), top=20)
    assert {"Heap/HOT_UPDATE", "Heap/UPDATE", "Btree/INSERT_LEAF"} <= by_record.keys()
    assert all(size > 0 for size in by_record.values())
    assert list(by_record.values()) == sorted(by_record.values(), reverse=True)
    # Full-page images count with their records: the first update after the checkpoint carries one.
    assert max(by_record.values()) > 8192 // 2
