"""The disk's own flush latency, measured beside the service (#18, point 2), so that a submit's tail
can be told apart from the disk's: a write + fdatasync loop of 8 kB, every 10 ms, in a file next
to the database's data directory (the file system PostgreSQL flushes its WAL to), in a process of
its own (the load client's interpreter lock must not delay it), for as long as a measured phase
runs. Each flush is kept with the moment it began, so a slow submit can be matched with a slow
flush of the disk at the same time (`explain`).

And the WAL's segment files. A new cluster creates each 16 MB segment as its WAL reaches it:
zero-filled and flushed by the committing backend while it holds the WAL's write lock, so every
commit meanwhile waits (40-60 ms on this machine's disk, one every two or three seconds under the
service's load). A server that has run through checkpoints renames old segments for reuse instead
and creates none. `preallocate_wal` gives the bench's new cluster that state before it measures,
and `wal_counters` count what a measured phase still created (and its full-page images).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

PROBE = r"""
import os, signal, sys, time
path, out, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
running = [True]
signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
block = os.urandom(8192)
samples = []
while running[0]:
    started = time.monotonic()
    os.pwrite(fd, block, 0)
    os.fdatasync(fd)
    samples.append((started, time.monotonic() - started))
    time.sleep(interval)
os.close(fd)
os.unlink(path)
with open(out, "w") as handle:
    handle.writelines(f"{t} {d}\n" for t, d in samples)
"""

STALL_SECONDS = 0.020  # a submit slower than this needs explaining


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def data_directory(database_url: str) -> Path:
    """Where PostgreSQL keeps its data (superuser or pg_read_all_settings), else a temporary
    directory: a server elsewhere has a disk this machine cannot probe."""
    try:
        with psycopg.connect(database_url) as conn:
            return Path(conn.execute("SHOW data_directory").fetchone()[0])
    except psycopg.Error:
        return Path(tempfile.gettempdir())


class DiskProbe:
    """``DiskProbe(directory)``: ``start()``, then ``stop() -> Flushes``."""

    def __init__(self, directory: Path, interval: float = 0.01) -> None:
        # Beside the data directory, not in it (it is the database's, and may not be ours to write).
        self.directory = directory.parent if directory.name else directory
        if not os.access(self.directory, os.W_OK):
            self.directory = Path(tempfile.gettempdir())
        self.interval = interval
        self._process: subprocess.Popen[bytes] | None = None
        self._out = ""

    def start(self) -> None:
        fd, self._out = tempfile.mkstemp(prefix="claims-disk-probe-", suffix=".txt")
        os.close(fd)
        target = self.directory / f".claims-disk-probe-{os.getpid()}"
        self._process = subprocess.Popen([sys.executable, "-c", PROBE, str(target), self._out, str(self.interval)])

    def stop(self) -> Flushes:
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        self._process.wait(30)
        text = Path(self._out).read_text()
        os.unlink(self._out)
        return Flushes([(float(t), float(d)) for t, d in (line.split() for line in text.splitlines() if line)])


@dataclass
class Flushes:
    """The probe's flushes: (monotonic start, seconds) each."""

    samples: list[tuple[float, float]]

    def summary(self) -> dict[str, Any]:
        durations = [d for _, d in self.samples]
        return {"flushes": len(durations), "p50_ms": percentile(durations, 0.5) * 1000,
                "p99_ms": percentile(durations, 0.99) * 1000, "max_ms": max(durations, default=float("nan")) * 1000,
                "stalls_over_20ms": sum(d > STALL_SECONDS for d in durations)}

    def explain(self, calls: list[tuple[float, float]], threshold: float = STALL_SECONDS) -> dict[str, Any]:
        """Of the calls ((sent, seconds) each) slower than ``threshold``: how many overlap a flush of
        the disk slower than ``threshold`` (the disk's), and the slowest of the others (ours)."""
        slow_flushes = sorted((t, t + d) for t, d in self.samples if d > threshold)
        explained, unexplained = 0, []
        for sent, took in calls:
            if took <= threshold:
                continue
            end = sent + took
            if any(start < end and stop > sent for start, stop in slow_flushes):
                explained += 1
            else:
                unexplained.append(took)
        return {"slow_calls": explained + len(unexplained), "explained_by_the_disk": explained,
                "unexplained": len(unexplained), "unexplained_max_ms": max(unexplained, default=0.0) * 1000}


def wal_counters(database_url: str) -> dict[str, int] | None:
    """The server's WAL so far: bytes written, full-page images (the first change to a page after
    each checkpoint writes the whole page) and segment files created (zero-filled and flushed;
    PostgreSQL 18 counts them, else None); None where the server will not say. Subtract two."""
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            wal_bytes, fpi = conn.execute("SELECT wal_bytes, wal_fpi FROM pg_stat_wal").fetchone()
            created = conn.execute("SELECT sum(writes) FROM pg_stat_io WHERE object = 'wal' AND context = 'init'").fetchone()
    except psycopg.Error:
        return None
    return {"bytes": int(wal_bytes), "full_page_images": int(fpi),
            "segments_created": None if created is None or created[0] is None else int(created[0])}


def wal_position(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]


def _walinspect(database_url: str, query: str, start: str, end: str, top: int) -> dict[str, int]:
    """``query``'s (name, number) rows over the WAL from ``start`` to ``end``, the ``top`` first.
    Reads the WAL with pg_walinspect (contrib, PostgreSQL 16+; superuser). Empty where unavailable."""
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
            rows = conn.execute(query, (start, end, top)).fetchall()
    except psycopg.Error:
        return {}
    return {name: int(number) for name, number in rows}


def full_page_images_by_relation(database_url: str, start: str, end: str, top: int = 6) -> dict[str, int]:
    """Of the full-page images in the WAL from ``start`` to ``end``: how many were of each of this
    database's relations (tables and indexes), the ``top`` most; what a checkpoint costs each."""
    return _walinspect(
        database_url,
        "SELECT coalesce(c.relname, b.relfilenode::text), b.n FROM ("
        "  SELECT relfilenode, count(*) AS n FROM pg_get_wal_block_info(%s::pg_lsn, %s::pg_lsn, false)"
        "   WHERE block_fpi_length > 0"
        "     AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())"
        "   GROUP BY 1) b"
        "  LEFT JOIN pg_class c ON pg_relation_filenode(c.oid) = b.relfilenode"
        " ORDER BY 2 DESC LIMIT %s", start, end, top)


def wal_by_record(database_url: str, start: str, end: str, top: int = 6) -> dict[str, int]:
    """The WAL from ``start`` to ``end`` by record type ("Heap/HOT_UPDATE", "Btree/INSERT_LEAF",
    "XLOG/FPI_FOR_HINT" ...): bytes of each of the ``top`` largest, full-page images included. What
    a run wrote that another did not, when their full-page images do not explain it."""
    return _walinspect(
        database_url,
        "SELECT \"resource_manager/record_type\", combined_size FROM pg_get_wal_stats(%s::pg_lsn, %s::pg_lsn, true)"
        " WHERE count > 0 ORDER BY combined_size DESC LIMIT %s", start, end, top)


def wal_written(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int | None] | None:
    """What the server's WAL grew by between two `wal_counters`."""
    if before is None or after is None:
        return None
    return {key: None if before[key] is None or after[key] is None else after[key] - before[key] for key in before}


# WAL written per event of a growth run's prefilled history: the events, the read models caught up
# over them and the Merkle tree (1,452 + 3,655 + 1,031 bytes, measured over 50,000 events).
WAL_PER_PREFILLED_EVENT = 6_200


def preallocate_wal(admin_url: str, megabytes: int = 1024) -> bool:
    """Switch through `megabytes` of new WAL segments, then checkpoint: the checkpoint keeps them
    for reuse (as many as the WAL written between checkpoints, its estimate of what comes next), as
    a server that has run for long has them. Needs a superuser (or the switch and checkpoint
    privileges); returns whether it was done."""
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            for _ in range(max(1, megabytes // 16)):
                # A switch needs WAL written since the last: one record that touches no table.
                conn.execute("SELECT pg_logical_emit_message(false, 'claims-bench', '')")
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
    except psycopg.Error:
        return False
    return True


def measure_alone(directory: Path, seconds: float = 5.0) -> dict[str, Any]:
    """The probe on its own (nothing else of ours running): the disk as it is today."""
    probe = DiskProbe(directory)
    probe.start()
    time.sleep(seconds)
    return probe.stop().summary()
