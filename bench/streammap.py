"""The stream map's update cost as the map grows, for `make bench` (part `streammap`).

The service's cost per claim grows with the history, and on a 500,000-event ledger the tree
process's CPU per claim doubled (README, "Scale"). The tree process brings the stream map up to
the tree every 1,000 leaves; each update reads, level by level, the nodes below the cached upper
levels along the path to every stream whose head moved, so the larger the map, the more levels it
reads and hashes. This measures one update's cost per event at several map sizes, every event a new
stream (the map's worst case; under the service's load about half the events are), with the
tree builder itself not updating the map (`map_every=0`), so that only the map's work is timed:
wall time, and this process's CPU (the rest of the wall time is PostgreSQL and the round trips).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.tree import insert_events
from claims_service.ledger import streammap, tree
from claims_service.ledger.tree import TreeBuilder

SIZES = (20_000, 100_000, 300_000)
QUICK_SIZES = (5_000, 20_000)


def measure(database_url: str, sizes: tuple[int, ...] = SIZES, *, updates: int = 10, batch: int = 1_000,
            progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """For each size: fill the ledger and the map up to it (untimed), then time `updates` updates
    of `batch` new streams each, as the tree process makes them."""
    from claims_service.migrate import migrate

    say = progress or (lambda _msg: None)
    migrate(database_url)
    stream_map = streammap.StreamMap()  # one, as the tree process keeps one: its cache carries over
    found = []
    with psycopg.connect(database_url, autocommit=True) as conn, TreeBuilder(database_url, map_every=0) as builder:
        for size in sizes:
            say(f"stream map: filling the ledger and the map to {size:,} streams")
            insert_events(conn, size - tree.tree_size(conn))
            builder.catch_up()
            with conn.transaction():
                stream_map.catch_up(conn, tree.tree_size(conn))
            say(f"stream map: {updates} updates of {batch:,} new streams at {size:,}")
            insert_events(conn, updates * batch)
            builder.catch_up()
            mapped = streammap.mapped_size(conn)
            wall = cpu = 0.0
            for end in range(mapped + batch, mapped + updates * batch + 1, batch):
                started, started_cpu = time.perf_counter(), time.process_time()
                with conn.transaction():
                    stream_map.catch_up(conn, end)
                wall += time.perf_counter() - started
                cpu += time.process_time() - started_cpu
            events = updates * batch
            found.append({"streams": size, "events": events, "us_per_event": round(wall / events * 1e6, 1),
                          "python_cpu_us_per_event": round(cpu / events * 1e6, 1)})
    return found


def run(create_database: Callable[[str], str], args: Any, progress: Any) -> dict[str, Any]:
    task = progress.add_task("stream map", total=None)
    found = measure(create_database("bench_streammap"), QUICK_SIZES if args.quick else SIZES,
                    progress=lambda msg: progress.update(task, description=msg))
    progress.remove_task(task)
    first, last = found[0], found[-1]
    return {
        "runs": found,
        "table": [
            ("stream map update µs per event, every event a new stream, at " +
             " / ".join(f"{r['streams']:,}" for r in found) + " streams (wall; this process's CPU)",
             " / ".join(f"{r['us_per_event']:.0f}" for r in found) + "; "
             + " / ".join(f"{r['python_cpu_us_per_event']:.0f}" for r in found), ""),
            ("  … growth, largest ÷ smallest map (wall)", f"{last['us_per_event'] / first['us_per_event']:.2f}", ""),
        ],
    }
