"""The ceiling of one ledger (#18, point 6): every event goes through one hash chain, whose
writers take the events table's lock in turn and hold it through their commit (the chain trigger
links each row to the one before it, so the next writer must see this one). How many events a
second go through it, from W writer processes each committing batches of B events (what a group
committer does), with nothing else running: the rate the whole service can never pass on this
machine, whatever runs around the chain.

Each writer is a process of its own with the service's own recorder (`LedgerApplication`: the lock,
binary array inserts, the chain trigger, synchronous commit), writing events of a small aggregate
of its own. Reported per (W, B): events/s and commits/s through the chain.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.domain import Aggregate

CONFIGS = [(1, 100), (2, 100), (4, 100), (8, 100), (4, 10), (4, 1), (4, 500)]


class Tick(Aggregate):
    """A benchmark's event stream: one event per tick, about the size of a claim's submission."""

    def __init__(self, payload: str) -> None:
        self.payload = payload

    class Ticked(Aggregate.Event):
        payload: str

    def tick(self, payload: str) -> None:
        self.trigger_event(self.Ticked, payload=payload)


PAYLOAD = "x" * 600  # a claim's submission is 600-1,200 bytes stored


def _writer(url: str, batch: int, seconds: float, start: Any, counts: Any, index: int) -> None:
    from claims_service.application import LedgerApplication

    ledger = LedgerApplication(url, pool_size=1, writer="bench")
    try:
        start.wait()
        deadline = time.monotonic() + seconds
        commits = 0
        while time.monotonic() < deadline:
            ticks = [Tick(payload=PAYLOAD) for _ in range(batch)]  # one new stream per event
            ledger.record_events([e for t in ticks for e in t.collect_events()])
            commits += 1
        counts[index] = commits
    finally:
        ledger.close()


def measure(url: str, writers: int, batch: int, seconds: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    counts = context.Array("l", writers)
    with psycopg.connect(url, autocommit=True) as conn:
        before = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()[0]
    processes = [context.Process(target=_writer, args=(url, batch, seconds, start, counts, i)) for i in range(writers)]
    for process in processes:
        process.start()
    time.sleep(1.0)  # every writer connected
    started = time.monotonic()
    start.set()
    for process in processes:
        process.join(seconds + 60)
    elapsed = time.monotonic() - started
    with psycopg.connect(url, autocommit=True) as conn:
        events = conn.execute("SELECT count(*) FROM ledger_events WHERE notification_id > %s", (before,)).fetchone()[0]
    return {"writers": writers, "batch": batch, "events_per_s": events / elapsed, "commits_per_s": sum(counts) / elapsed}


def run(create_database: Callable[[str], str], args: Any, progress: Any) -> dict[str, Any]:
    from claims_service.migrate import migrate

    url = create_database("bench_chain")
    migrate(url)
    seconds = 2.0 if args.quick else max(args.seconds, 4.0)
    configs = CONFIGS[:3] if args.quick else CONFIGS
    task = progress.add_task("the chain's ceiling", total=len(configs))
    found = []
    for writers, batch in configs:
        progress.update(task, description=f"the chain's ceiling: {writers} writers, {batch} events a commit")
        found.append(measure(url, writers, batch, seconds))
        progress.advance(task)
    progress.remove_task(task)
    best = max(found, key=lambda r: r["events_per_s"])
    return {
        "seconds": seconds, "runs": found, "best": best,
        "table": [
            ("chain ceiling: events/s from W writers × B events a commit (" +
             ", ".join(f"{r['writers']}×{r['batch']}" for r in found) + ")",
             " / ".join(f"{r['events_per_s']:,.0f}" for r in found), ""),
            ("  … commits/s through the chain (same order)", " / ".join(f"{r['commits_per_s']:,.0f}" for r in found), ""),
        ],
    }
