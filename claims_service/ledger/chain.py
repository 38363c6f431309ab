"""The hash chain: canonical row bytes, and the walk that checks both chains.

Specified in docs/LEDGER.md. The database computes the hashes on insert (migration 0002);
this module recomputes them independently, so a verifier trusts neither the rows nor the trigger.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

# The eventsourcing recorder's events table, whose rows the chain links (migrations 0001-0002).
EVENTS_TABLE = "ledger_events"
# Serialises the ledger's writers (a transaction advisory lock, "Ledger"): ledger_append and the
# link trigger take it (migration 0025), and so must anything else that inserts events.
WRITERS_LOCK_KEY = 0x4C6564676572
GENESIS = bytes(32)
_I8 = struct.Struct(">q")
_I4 = struct.Struct(">i")


def canonical_row(position: int, stream_id: uuid.UUID, version: int, topic: str, state: bytes) -> bytes:
    """The bytes hashed for one row; matches ledger_link_event() in migration 0002 exactly."""
    topic_bytes = topic.encode("utf-8")
    return b"".join(
        (
            _I8.pack(position),
            stream_id.bytes,
            _I8.pack(version),
            _I4.pack(len(topic_bytes)),
            topic_bytes,
            _I4.pack(len(state)),
            state,
        )
    )


def row_hash(prev_hash: bytes, position: int, stream_id: uuid.UUID, version: int, topic: str, state: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical_row(position, stream_id, version, topic, state)).digest()


@dataclass(frozen=True, slots=True)
class LedgerRow:
    position: int
    stream_id: uuid.UUID
    version: int
    topic: str
    state: bytes
    prev_hash: bytes
    stream_prev_hash: bytes
    hash: bytes


class Fault(str, Enum):
    PAYLOAD_ALTERED = "payload altered"  # the row's bytes no longer hash to its stored hash
    ROW_MISSING = "row missing"  # the row before this one in the chain is gone
    ROW_INSERTED = "row inserted"  # a row that the chain never linked sits here
    ROWS_REORDERED = "rows reordered"  # the row belongs at another position
    STREAM_LINK_BROKEN = "stream link broken"  # the aggregate's own chain does not hold
    HEAD_MISMATCH = "head mismatch"  # an expected head (position, hash) is not in the chain


@dataclass(frozen=True)
class Problem:
    position: int
    fault: Fault
    detail: str

    def __str__(self) -> str:
        return f"position {self.position}: {self.fault.value}: {self.detail}"


@dataclass
class VerifyReport:
    events: int = 0
    head_position: int | None = None
    head_hash: bytes | None = None
    problem: Problem | None = None
    streams: int = 0
    seconds: float = 0.0

    @property
    def intact(self) -> bool:
        return self.problem is None


class ChainVerifier:
    """Feeds rows in position order; stops at the first problem.

    Keeps O(number of streams) state: each stream's last version and hash, for the stream links.
    """

    def __init__(self, *, start_hash: bytes | None = GENESIS, defer_unknown_streams: bool = False) -> None:
        """`start_hash`: what the first row must link to (None: a slice of the ledger whose start
        is checked by whoever joins the slices). `defer_unknown_streams`: a stream first seen at a
        version above 1 is noted in `stream_firsts` instead of failing (its start is in an earlier slice)."""
        self.report = VerifyReport()
        self._start_hash = start_hash
        self._prev: LedgerRow | None = None
        self._prev_prev_hash: bytes = GENESIS  # the hash before _prev, to tell "inserted" from "missing"
        self._streams: dict[uuid.UUID, tuple[int, bytes]] = {}
        self._defer = defer_unknown_streams
        self.first_row: LedgerRow | None = None
        # A row whose link names no row of the chain: either the row before it was deleted, or it
        # was slipped in itself. The next row tells which (it links past a slipped-in row).
        self._suspect: LedgerRow | None = None
        self.stream_firsts: dict[uuid.UUID, tuple[int, bytes, int]] = {}  # version, stream_prev_hash, position

    @property
    def stream_lasts(self) -> dict[uuid.UUID, tuple[int, bytes]]:
        return self._streams

    def feed(self, row: LedgerRow) -> bool:
        """Check one row; return False (and set report.problem) at the first fault."""
        expected_prev = self._prev.hash if self._prev else self._start_hash
        if self._suspect is not None:
            suspect, self._suspect = self._suspect, None
            if row.prev_hash == expected_prev:
                return self._fail(suspect.position, Fault.ROW_INSERTED,
                                  f"the row links to {suspect.prev_hash.hex()[:16]}…, which is in no chain, and the"
                                  " next row links past it: it was slipped in")
            return self._fail(suspect.position, Fault.ROW_MISSING, self._missing(suspect))
        if self._prev is None:
            self.first_row = row
        recomputed = row_hash(row.prev_hash, row.position, row.stream_id, row.version, row.topic, row.state)
        link_ok = expected_prev is None or row.prev_hash == expected_prev
        if recomputed != row.hash:
            if not link_ok:
                # Neither its bytes at this position nor its link fit: the row was moved here.
                return self._fail(row.position, Fault.ROWS_REORDERED,
                                  "the row's hash and its link both belong to another position")
            return self._fail(row.position, Fault.PAYLOAD_ALTERED,
                              f"stored hash {row.hash.hex()[:16]}… but the row hashes to {recomputed.hex()[:16]}…")
        if not link_ok:
            if self._prev is not None and row.prev_hash == self._prev_prev_hash:
                # This row links past its predecessor: the predecessor was never in the chain.
                return self._fail(self._prev.position, Fault.ROW_INSERTED,
                                  f"row at position {self._prev.position} is not linked by the next row")
            self._suspect = row  # missing predecessor or forged row: the next row decides
            return True
        if not self._check_stream(row):
            return False
        self._prev_prev_hash = row.prev_hash
        self._prev = row
        self.report.events += 1
        self.report.head_position = row.position
        self.report.head_hash = row.hash
        return True

    def _check_stream(self, row: LedgerRow) -> bool:
        last = self._streams.get(row.stream_id)
        if last is None and self._defer and row.version > 1:
            self.stream_firsts[row.stream_id] = (row.version, row.stream_prev_hash, row.position)
        elif last is None:
            if row.version != 1 or row.stream_prev_hash != GENESIS:
                return self._fail(row.position, Fault.STREAM_LINK_BROKEN,
                                  f"stream {row.stream_id} starts at version {row.version}, not 1")
        else:
            last_version, last_hash = last
            if row.version != last_version + 1:
                return self._fail(row.position, Fault.STREAM_LINK_BROKEN,
                                  f"stream {row.stream_id} goes from version {last_version} to {row.version}")
            if row.stream_prev_hash != last_hash:
                return self._fail(row.position, Fault.STREAM_LINK_BROKEN,
                                  f"stream {row.stream_id} version {row.version} does not link to version {last_version}")
        self._streams[row.stream_id] = (row.version, row.hash)
        return True

    def _fail(self, position: int, fault: Fault, detail: str) -> bool:
        self.report.problem = Problem(position, fault, detail)
        return False

    def _missing(self, row: LedgerRow) -> str:
        before = f"after position {self._prev.position}" if self._prev else "at the start of the ledger"
        return f"links to {row.prev_hash.hex()[:16]}…, which is no longer in the chain ({before})"

    def finish(self) -> VerifyReport:
        if self._suspect is not None and self.report.problem is None:
            suspect, self._suspect = self._suspect, None
            self._fail(suspect.position, Fault.ROW_MISSING,
                       self._missing(suspect) + "; it is the last row, so it may also have been slipped in")
        self.report.streams = len(self._streams)
        return self.report


def walk(verifier: ChainVerifier, rows: Iterable[LedgerRow], expect_head: tuple[int, bytes] | None) -> bool:
    """Feed every row until the first fault; return whether `expect_head`'s position was seen."""
    found_head = False
    for row in rows:
        if not verifier.feed(row):
            return found_head
        if expect_head and row.position == expect_head[0]:
            found_head = True
            if row.hash != expect_head[1]:
                verifier._fail(row.position, Fault.HEAD_MISMATCH,
                               f"expected hash {expect_head[1].hex()[:16]}…, the ledger has {row.hash.hex()[:16]}…")
                return found_head
    return found_head


def verify_rows(rows: Iterable[LedgerRow], expect_head: tuple[int, bytes] | None = None) -> VerifyReport:
    """Walk the rows; with `expect_head`, also require that (position, hash) is still in the chain.

    The chain alone cannot see rows cut off its end: the remaining prefix is a valid chain. A head
    someone kept earlier (from a receipt or a previous verify) can.
    """
    verifier = ChainVerifier()
    found_head = walk(verifier, rows, expect_head)
    report = verifier.finish()
    if report.problem is not None:
        return report
    if expect_head and not found_head:
        head = report.head_position
        report.problem = Problem(expect_head[0], Fault.HEAD_MISMATCH,
                                 f"the kept head is no longer in the ledger (its head is now position {head}): "
                                 "rows were cut off the end")
    return report
