"""Exactly once under a real process kill: a runner SIGKILLed in the middle of a batch, and again
at a random moment, resumes where it stopped; the tables then equal a from-scratch rebuild."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import psycopg

from bench.projections import generate_history
from projections import catalog
from projections.events import read_notifications
from tests.integration.projections import _child
from tests.integration.projections.helpers import (
    assert_equals_from_scratch,
    drain,
    head,
    tracked,
)

BATCH = 100
PAUSE_IN_BATCH = 4


def spawn(database_url: str, marker_dir: Path | None) -> multiprocessing.Process:
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=_child.run_projections,
        args=(database_url, str(marker_dir) if marker_dir else None, BATCH, PAUSE_IN_BATCH),
        daemon=True,
    )
    process.start()
    return process


def kill(process: multiprocessing.Process) -> None:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    assert process.exitcode == -signal.SIGKILL


def batch_ends(database_url: str, batch: int, count: int = 10) -> list[int]:
    """Where the first `count` batches read from position 0 end (a batch never ends inside a commit)."""
    ends, position = [], 0
    with psycopg.connect(database_url) as conn:
        for _ in range(count):
            position = read_notifications(conn, position, batch)[-1].position
            ends.append(position)
    return ends


def test_a_runner_killed_mid_batch_continues_where_it_stopped_and_counts_nothing_twice(database_url, tmp_path):
    # 1. A backlog of ~4,000 events of every kind (claims, decisions, accumulators, payments ...),
    # committed a few dozen at a time as the service commits them (a batch ends with a commit).
    generate_history(database_url, 4_000, seed=11, members=60, batch_events=40)
    total = head(database_url)

    # 2. Every projection stops inside its 4th batch (rows written, not committed): SIGKILL.
    child = spawn(database_url, tmp_path)
    deadline = time.monotonic() + 30
    while not all((tmp_path / name).exists() for name in catalog.NAMES):
        assert time.monotonic() < deadline, "the projections never reached their 4th batch"
        assert child.is_alive()
        time.sleep(0.02)
    kill(child)

    # 3. Nothing of the killed batches is visible: each position is exactly three full batches.
    three_batches = batch_ends(database_url, BATCH)[PAUSE_IN_BATCH - 2]
    for name in catalog.NAMES:
        assert tracked(database_url, name) == three_batches, name

    # 4. Restart, and kill again at an arbitrary moment while it works through the backlog.
    child = spawn(database_url, None)
    deadline = time.monotonic() + 30
    while min(tracked(database_url, name) for name in catalog.NAMES) < 10 * BATCH:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    kill(child)

    # 5. Restart once more and let it finish: the tables equal a from-scratch rebuild.
    drain(database_url, batch_size=BATCH)
    for name in catalog.NAMES:
        assert tracked(database_url, name) == total
    assert_equals_from_scratch(database_url, require_rows=True)
