"""Read the events table for verification: every row, in position order, streamed.

A large ledger is verified in slices by several processes (one per core): each slice is checked on
its own, and the slices are then joined — each slice's first row must link to the previous slice's
last, and each stream that continues across a slice boundary must link to its last event in the
earlier slices. The result is the same first fault a single walk would name.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import psycopg

from claims_service.errors import DataLossError
from claims_service.ledger.chain import (
    GENESIS,
    ChainVerifier,
    Fault,
    LedgerRow,
    Problem,
    VerifyReport,
    row_hash,
    verify_rows,
    walk,
)

_SELECT_ROWS = (
    "SELECT notification_id, originator_id, originator_version, topic, state,"
    " prev_hash, stream_prev_hash, hash"
    " FROM ledger_events WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id"
)
PARALLEL_FROM_EVENTS = 200_000  # below this, one process is as fast as starting several


def iter_rows(conn: psycopg.Connection, after: int = 0, upto: int = 2**62, batch: int = 20_000) -> Iterator[LedgerRow]:
    # A named (server-side) cursor streams the table in batches instead of loading it whole;
    # binary results skip text decoding of the bytea columns.
    with conn.transaction(), conn.cursor(name="ledger_verify", binary=True) as cur:
        cur.itersize = batch
        cur.execute(_SELECT_ROWS, (after, upto))
        for rec in cur:
            yield LedgerRow(rec[0], rec[1], rec[2], rec[3], bytes(rec[4]), bytes(rec[5]), bytes(rec[6]), bytes(rec[7]))


def _connect(database_url: str) -> psycopg.Connection:
    conn = psycopg.connect(database_url)
    # Repeatable read: the walk sees one consistent snapshot while writers go on appending.
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    return conn


def verify_ledger(database_url: str, expect_head: tuple[int, bytes] | None = None, *,
                  processes: int | None = None) -> VerifyReport:
    started = time.perf_counter()
    with _connect(database_url) as conn:
        low, high = conn.execute("SELECT coalesce(min(notification_id), 0), coalesce(max(notification_id), 0)"
                                 " FROM ledger_events").fetchone()
        processes = processes or os.cpu_count() or 1
        if processes < 2 or high - low < PARALLEL_FROM_EVENTS:
            report = verify_rows(iter_rows(conn, 0, high), expect_head=expect_head)
            report.seconds = time.perf_counter() - started
            return report
    bounds = [low - 1 + (high - low + 1) * k // processes for k in range(processes)] + [high]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        slices = list(pool.map(verify_slice, [database_url] * processes, bounds[:-1], bounds[1:],
                               [k == 0 for k in range(processes)], [expect_head] * processes))
    report = join_slices(slices, expect_head)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class Slice:
    events: int
    problem: Problem | None
    first_position: int | None
    first_prev_hash: bytes | None
    last_position: int | None
    last_hash: bytes | None
    stream_firsts: dict[uuid.UUID, tuple[int, bytes, int]] = field(default_factory=dict)
    stream_lasts: dict[uuid.UUID, tuple[int, bytes]] = field(default_factory=dict)
    found_head: bool = False


def verify_slice(database_url: str, after: int, upto: int, is_first: bool,
                 expect_head: tuple[int, bytes] | None) -> Slice:
    """One process's share: the rows in (after, upto], checked as far as they can be alone."""
    verifier = ChainVerifier(start_hash=GENESIS if is_first else None, defer_unknown_streams=not is_first)
    with _connect(database_url) as conn:
        found = walk(verifier, iter_rows(conn, after, upto), expect_head)
    report = verifier.finish()
    first = verifier.first_row
    return Slice(report.events, report.problem, first.position if first else None, first.prev_hash if first else None,
                 report.head_position, report.head_hash, verifier.stream_firsts, dict(verifier.stream_lasts), found)


def join_slices(slices: list[Slice], expect_head: tuple[int, bytes] | None) -> VerifyReport:
    report = VerifyReport()
    lasts: dict[uuid.UUID, tuple[int, bytes]] = {}
    previous_hash: bytes | None = None
    previous_position: int | None = None
    for piece in slices:
        if piece.first_position is None:
            continue
        found: list[Problem] = [piece.problem] if piece.problem else []
        if previous_hash is not None and piece.first_prev_hash != previous_hash:
            found.append(Problem(piece.first_position, Fault.ROW_MISSING,
                                 f"links to {piece.first_prev_hash.hex()[:16]}…, not to position {previous_position}"))
        for stream, (version, link, position) in piece.stream_firsts.items():
            last = lasts.get(stream)
            if last is None or last[0] + 1 != version or last[1] != link:
                found.append(Problem(position, Fault.STREAM_LINK_BROKEN,
                                     f"stream {stream} version {version} does not link to its previous version"))
        if found:
            report.problem = min(found, key=lambda p: p.position)
            report.events += piece.events
            break
        lasts.update(piece.stream_lasts)
        report.events += piece.events
        report.head_position, report.head_hash = piece.last_position, piece.last_hash
        previous_hash, previous_position = piece.last_hash, piece.last_position
    report.streams = len(lasts)
    if report.problem is None and expect_head and not any(piece.found_head for piece in slices):
        report.problem = Problem(expect_head[0], Fault.HEAD_MISMATCH,
                                 f"the kept head is no longer in the ledger (its head is now position {report.head_position}): "
                                 "rows were cut off the end")
    return report


def event_hash_at(database_url: str, position: int) -> bytes | None:
    """The stored hash of the event at `position` (None: no such event)."""
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT hash FROM ledger_events WHERE notification_id = %s", (position,)).fetchone()
    return bytes(found[0]) if found else None


def verify_streams(database_url: str, stream_ids: list[uuid.UUID]) -> int:
    """Before a stream's events are used as evidence (a replay, a bundle): each row of these streams
    still hashes to its stored hash and links to its stream's previous event. DataLossError naming
    the position otherwise; returns the number of events checked. (The global chain around them is
    the auditor's and `claimsctl verify`'s to check.)"""
    with psycopg.connect(database_url) as conn, conn.cursor(binary=True) as cur:
        cur.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state, prev_hash, stream_prev_hash, hash"
            " FROM ledger_events WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version",
            (stream_ids,))
        last: dict[uuid.UUID, tuple[int, bytes]] = {}
        count = 0
        for position, stream, version, topic, state, prev_hash, stream_prev_hash, digest in cur:
            if row_hash(bytes(prev_hash), position, stream, version, topic, bytes(state)) != bytes(digest):
                raise DataLossError(position, "its bytes no longer hash to the hash the ledger recorded for it")
            before = last.get(stream, (0, GENESIS))
            if version != before[0] + 1 or bytes(stream_prev_hash) != before[1]:
                raise DataLossError(position, f"it does not link to version {version - 1} of its stream")
            last[stream] = (version, bytes(digest))
            count += 1
    return count
