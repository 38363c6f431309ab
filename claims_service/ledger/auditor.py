"""The auditor: the running service checks its own ledger, as events arrive and in full on a
schedule, so that a tampered database is noticed by the service and not only by someone who kept a
checkpoint.

As events arrive (`audit_new`): the head it verified last is still there with the same hash (a
truncation, a restored backup or a rewrite below it is caught at once); each new row hashes to its
stored hash and links to the row before it and to its stream's previous event (looked up in the
database for streams that began before the batch); each leaf the tree holds for them names the
event's hash. On a schedule (`audit_full`): the whole chain again, with the audited head required
to be in it, and the stored tree against the latest signed checkpoint (signature, leaves, root,
consistency).

A fault is reported once (`on_fault(reason)`: the workers pass it to the server, whose health
turns NOT_SERVING and whose signer stops) and auditing stops: the ledger is no longer what the
service vouches for, until an operator has looked. Each pass's result goes to `on_status`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from claims_service.ledger.audit import verify_against_checkpoint
from claims_service.ledger.chain import GENESIS, ChainVerifier, Fault, LedgerRow, Problem
from claims_service.ledger.following import wait_for_notification
from claims_service.ledger.note import VerifierKey
from claims_service.ledger.tree import EVENTS_CHANNEL
from claims_service.ledger.verify import verify_ledger

log = logging.getLogger(__name__)

REPORT_PAUSE = 0.1  # seconds between passes while events keep arriving

_SELECT_HEAD = "SELECT hash FROM ledger_events WHERE notification_id = %s"
_SELECT_STREAM_HEADS = (
    "SELECT e.originator_id, e.originator_version, e.hash"
    " FROM unnest(%s::uuid[], %s::int[]) AS q(id, version)"
    " JOIN ledger_events e ON e.originator_id = q.id AND e.originator_version = q.version"
)
_SELECT_ROWS = (
    "SELECT notification_id, originator_id, originator_version, topic, state, prev_hash, stream_prev_hash, hash"
    " FROM ledger_events WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)
_SELECT_LEAVES = (
    "SELECT l.position, l.event_hash, e.hash FROM ledger_leaves l"
    " LEFT JOIN ledger_events e ON e.notification_id = l.position"
    " WHERE l.position > %s AND l.position <= %s ORDER BY l.position"
)


@dataclass(frozen=True)
class AuditStatus:
    """One audit pass: the head verified so far, and whether everything up to it held."""

    intact: bool
    position: int  # the last position verified (0: nothing yet)
    head_hash: str  # its hash, hex ("" before the first event)
    events: int  # events verified since the auditor started (a full pass: in the ledger)
    full: bool  # a full pass (the whole chain and the tree against the checkpoint)
    problem: str | None
    finished_at: str  # RFC 3339

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LedgerFaultFound(Exception):
    """Raised inside a pass to end it at the first fault."""


class Auditor:
    """``Auditor(database_url, *, verifier=None, full_every_seconds=3600, on_fault, on_status)``:
    ``audit_new(conn)``, ``audit_full()``, ``run_forever(stop_event)``; ``fault`` once found."""

    def __init__(self, database_url: str, *, verifier: VerifierKey | Sequence[VerifierKey] | None = None,
                 full_every_seconds: float = 3600.0, batch: int = 5_000,
                 on_fault: Callable[[str], None] = lambda _reason: None,
                 on_status: Callable[[AuditStatus], None] = lambda _status: None) -> None:
        self.database_url = database_url
        self.verifier = verifier
        self.full_every_seconds = full_every_seconds
        self.batch = batch
        self.on_fault = on_fault
        self.on_status = on_status
        self.position = 0
        self.head_hash = GENESIS
        self.events = 0
        self.leaves_position = 0  # the tree's leaves are checked up to here
        self.fault: str | None = None
        # Catching up from position 0 is itself a pass over the whole chain: the first full pass
        # (which adds the tree against the checkpoint) comes one period later.
        self._last_full = time.monotonic()

    # --- a fault ---------------------------------------------------------------------------------

    def _found(self, reason: str) -> LedgerFaultFound:
        if self.fault is None:
            self.fault = reason
            log.error("ledger audit: %s", reason)
            self.on_fault(reason)
            self._report(full=False)
        return LedgerFaultFound(reason)

    def _report(self, *, full: bool, events: int | None = None) -> AuditStatus:
        status = AuditStatus(
            intact=self.fault is None, position=self.position,
            head_hash=self.head_hash.hex() if self.position else "", events=self.events if events is None else events,
            full=full, problem=self.fault, finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        self.on_status(status)
        return status

    # --- as events arrive ------------------------------------------------------------------------

    def audit_new(self, conn: psycopg.Connection) -> int:
        """Verify the rows after the audited head (at most one batch); return how many."""
        if self.fault is not None:
            return 0
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if self.position:
                found = conn.execute(_SELECT_HEAD, (self.position,)).fetchone()
                if found is None or bytes(found[0]) != self.head_hash:
                    what = "is gone" if found is None else "has another hash"
                    raise self._found(f"the event at position {self.position}, verified earlier, {what}: the ledger"
                                      " was cut back, restored from an older backup or rewritten")
            with conn.cursor(binary=True) as cur:
                rows = [LedgerRow(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), bytes(r[6]), bytes(r[7]))
                        for r in cur.execute(_SELECT_ROWS, (self.position, self.batch))]
            if rows:
                verifier = ChainVerifier(start_hash=self.head_hash, defer_unknown_streams=True)
                for row in rows:
                    if not verifier.feed(row):
                        break
                report = verifier.finish()
                if report.problem is not None:
                    raise self._found(f"{report.problem}")
                self._check_stream_starts(conn, verifier.stream_firsts)
                self.position, self.head_hash = rows[-1].position, rows[-1].hash
                self.events += len(rows)
            self._check_leaves(conn)
        return len(rows)

    def _check_stream_starts(self, conn: psycopg.Connection, firsts: dict[uuid.UUID, tuple[int, bytes, int]]) -> None:
        """Streams that began before this batch: each first row here links to its previous event."""
        if not firsts:
            return
        ids = list(firsts)
        previous = {(stream, version): bytes(digest) for stream, version, digest in conn.execute(
            _SELECT_STREAM_HEADS, (ids, [firsts[i][0] - 1 for i in ids]))}
        for stream, (version, link, position) in firsts.items():
            if previous.get((stream, version - 1)) != link:
                raise self._found(str(Problem(position, Fault.STREAM_LINK_BROKEN,
                                              f"stream {stream} version {version} does not link to version {version - 1}")))

    def _check_leaves(self, conn: psycopg.Connection) -> None:
        """The tree's leaves built since the last look, up to the audited head, name their events'
        hashes (the tree follows the ledger a little behind: its newer leaves wait for the next look)."""
        last = self.leaves_position
        for position, event_hash, stored in conn.execute(_SELECT_LEAVES, (self.leaves_position, self.position)):
            if stored is None or bytes(stored) != bytes(event_hash):
                raise self._found(f"the tree's leaf for position {position} does not name that event's hash:"
                                  " the tree or the ledger was altered")
            last = position
        self.leaves_position = last

    # --- on a schedule ---------------------------------------------------------------------------

    def audit_full(self) -> AuditStatus:
        """The whole chain (the audited head must be in it) and the tree against the latest checkpoint."""
        if self.fault is not None:
            return self._report(full=True)
        expect = (self.position, self.head_hash) if self.position else None
        report = verify_ledger(self.database_url, expect_head=expect)
        if report.problem is not None:
            raise self._found(f"full audit: {report.problem}")
        if self.verifier is not None:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                found = conn.execute("SELECT note FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1").fetchone()
            if found is not None:
                checked = verify_against_checkpoint(self.database_url, found[0], self.verifier)
                if not checked.ok:
                    raise self._found("full audit: the ledger does not hold up against its latest checkpoint: "
                                      + "; ".join(checked.problems))
        self._last_full = time.monotonic()
        return self._report(full=True, events=report.events)

    # --- following the ledger --------------------------------------------------------------------

    def run_forever(self, stop_event: threading.Event, *, timeout: float = 1.0) -> None:
        """Audit new events as they arrive, the whole ledger every `full_every_seconds`, until
        `stop_event`; after a fault, audit nothing more (but return only when stopped)."""
        with psycopg.connect(self.database_url, autocommit=True) as listen:
            listen.execute(f"LISTEN {EVENTS_CHANNEL}")
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                last_report, reported = 0.0, -1
                while not stop_event.is_set() and self.fault is None:
                    try:
                        while self.audit_new(conn) == self.batch and not stop_event.is_set():
                            pass
                        if time.monotonic() - self._last_full >= self.full_every_seconds:
                            self.audit_full()
                            last_report = time.monotonic()
                        elif self.position != reported or time.monotonic() - last_report >= 5.0:
                            # Each step forward is told (at most a few times a second), so that
                            # VerifyLedger's answer from the audit is never far behind the head.
                            self._report(full=False)
                            reported, last_report = self.position, time.monotonic()
                    except LedgerFaultFound:
                        break
                    wait_for_notification(listen, timeout)
                    time.sleep(REPORT_PAUSE)  # a burst of inserts is one pass and one report
        # After a fault the auditor stays stopped (and says so) until the workers are stopped.
        stop_event.wait()
