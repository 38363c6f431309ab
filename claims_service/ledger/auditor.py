"""The auditor: the running service checks its own ledger, as events arrive and in full on a
schedule, so that a tampered database is noticed by the service and not only by someone who kept a
checkpoint.

As events arrive (`audit_new`): the head it verified last is still there with the same hash (a
truncation, a restored backup or a rewrite below it is caught at once); each new row hashes to its
stored hash and links to the row before it and to its stream's previous event (looked up in the
database for streams that began before the batch); each leaf the tree holds for them names the
event's hash.

In full, in rounds (`start_round`, `sweep`): the whole chain again, from the genesis up to the
head audited when the round began, which the walk must arrive at with the same hash; and the tree
with it, recomputed from the leaves as the walk goes: each row's leaf names its hash, the leaves'
indexes run without a gap, and every subtree they complete is stored as recomputed. At the end,
the latest signed checkpoint (its signature) against the recomputed root, by a consistency proof
from the stored tree: O(log n) reads, so no step of a round is a pass over the whole ledger. A
round walks one batch at a time between the new events' audits, paced to
``sweep_events_per_second``, so that a round over a long history neither holds back the audit of
new events nor takes a whole core. A round begins when the auditor starts and then every
`full_every_seconds` (from one round's start to the next's). `audit_full` runs one at once, unpaced.
(The checkpoint's stream map is not recomputed here: that needs every stream's head at once, and
`claimsctl verify-checkpoint` does it.)

Restarts resume (``state_file``): the audited head (position and hash) is kept in a file outside
the database, like the signer's memory (`signer_state.py`), written at most every few seconds. A
restarted auditor checks that head first, so a ledger cut back, restored or rewritten while the
service was down is caught at once, and goes on from there: new events are audited, and
VerifyLedger answers from the audit, without walking the history first; the start-up round walks
the history behind them. A database replaced on purpose (a restore the operator chose) needs the
file moved aside: until then the service halts, as it must for the same ledger cut back.

A fault is reported once (`on_fault(reason)`: the workers pass it to the server, whose health
turns NOT_SERVING and whose signer stops) and auditing stops: the ledger is no longer what the
service vouches for, until an operator has looked. Each pass's result goes to `on_status`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from claims_service.ledger import merkle, statefile, tree
from claims_service.ledger.chain import GENESIS, ChainVerifier, Fault, LedgerRow, Problem
from claims_service.ledger.following import wait_for_notification
from claims_service.ledger.note import CheckpointError, VerifierKey, parse_and_verify
from claims_service.ledger.tree import EVENTS_CHANNEL

log = logging.getLogger(__name__)

REPORT_PAUSE = 0.1  # seconds between passes while events keep arriving
STATE_SECONDS = 5.0  # the audited head is written to the state file at most this often
DEFAULT_SWEEP_RATE = 20_000.0  # events a second a round walks: about a third of a core

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
_SELECT_ROWS_UPTO = (
    "SELECT notification_id, originator_id, originator_version, topic, state, prev_hash, stream_prev_hash, hash"
    " FROM ledger_events WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
)
_SELECT_LEAVES = (
    "SELECT l.leaf_index, l.position, l.event_hash, e.hash FROM ledger_leaves l"
    " LEFT JOIN ledger_events e ON e.notification_id = l.position"
    " WHERE l.position > %s AND l.position <= %s ORDER BY l.position"
)


@dataclass(frozen=True)
class AuditStatus:
    """One audit pass: the head verified so far, and whether everything up to it held."""

    intact: bool
    position: int  # the last position verified (0: nothing yet)
    head_hash: str  # its hash, hex ("" before the first event)
    events: int  # events verified up to the head, since the genesis (kept across restarts); a round: those it walked
    full: bool  # a full pass (the whole chain and the tree against the checkpoint)
    problem: str | None
    finished_at: str  # RFC 3339

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LedgerFaultFound(Exception):
    """Raised inside a pass to end it at the first fault."""


@dataclass
class _Round:
    """A full walk in progress: from ``position`` (its row's hash ``head_hash``) up to ``target``,
    the audited head when the round began, whose hash the walk must arrive at."""

    target: int
    target_hash: bytes
    position: int = 0
    head_hash: bytes = GENESIS
    events: int = 0
    tree: merkle.Frontier = field(default_factory=merkle.Frontier)  # the leaves walked, recomputed
    treed_position: int = 0  # the position of the last leaf walked
    untreed: list[int] = field(default_factory=list)  # rows walked whose leaves the tree had not built yet
    tree_stopped: bool = False  # the tree was too far behind: the round recomputed it as far as it had come


class AuditorState:
    """The audited head kept outside the database (``path``): ``read()`` -> (position, head hash,
    events up to it) or None before the first write, ``write(position, head_hash, events)``. A file that does not parse is
    an error, not a fresh start: the auditor's memory must not be lost silently."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def read(self) -> tuple[int, bytes, int] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            found = json.loads(text)
            return int(found["position"]), bytes.fromhex(found["head_hash"]), int(found["events"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"the auditor's state file {self.path} does not parse ({error}); move it aside"
                             " only if this ledger is known to be intact") from error

    def write(self, position: int, head_hash: bytes, events: int) -> None:
        text = json.dumps({"position": position, "head_hash": head_hash.hex(), "events": events,
                           "written_at": datetime.now(UTC).isoformat(timespec="seconds")})
        with statefile.locked(self.path):
            statefile.write_durably(self.path, text + "\n")


class Auditor:
    """``Auditor(database_url, *, verifier=None, full_every_seconds=3600, state_file=None,
    sweep_events_per_second=20000, on_fault, on_status)``: ``audit_new(conn)``, ``start_round()``,
    ``sweep(conn)``, ``audit_full()``, ``run_forever(stop_event)``; ``fault`` once found."""

    def __init__(self, database_url: str, *, verifier: VerifierKey | Sequence[VerifierKey] | None = None,
                 full_every_seconds: float = 3600.0, batch: int = 5_000, state_file: Path | str | None = None,
                 sweep_events_per_second: float = DEFAULT_SWEEP_RATE,
                 on_fault: Callable[[str], None] = lambda _reason: None,
                 on_status: Callable[[AuditStatus], None] = lambda _status: None) -> None:
        self.database_url = database_url
        self.verifier = verifier
        self.full_every_seconds = full_every_seconds
        self.batch = batch
        self.sweep_events_per_second = sweep_events_per_second
        self.on_fault = on_fault
        self.on_status = on_status
        self.state = AuditorState(state_file) if state_file is not None else None
        self.position = 0
        self.head_hash = GENESIS
        self.events = 0
        self.leaves_position = 0  # the tree's leaves are checked up to here
        self.resumed_from = 0  # the audited head the state file gave at start (0: none)
        self.fault: str | None = None
        self.round: _Round | None = None
        self._round_started = time.monotonic()
        self._state_written = 0.0
        self._state_position = -1
        if self.state is not None:
            found = self.state.read()
            if found is not None:
                # The leaves below the remembered head are the start-up round's to check, with their rows.
                self.position, self.head_hash, self.events = found
                self.leaves_position = self.resumed_from = self.position

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
                    remembered = (f" (as the auditor's state file {self.state.path} remembers it: move the file aside"
                                  " only if this database was replaced on purpose)"
                                  if self.state is not None and self.position == self.resumed_from else "")
                    raise self._found(f"the event at position {self.position}, verified earlier, {what}: the ledger"
                                      f" was cut back, restored from an older backup or rewritten{remembered}")
            rows = self._verified_rows(conn, _SELECT_ROWS, (self.position, self.batch), self.head_hash, "")
            if rows:
                self.position, self.head_hash = rows[-1].position, rows[-1].hash
                self.events += len(rows)
            self._check_leaves(conn)
        return len(rows)

    def _verified_rows(self, conn: psycopg.Connection, query: str, params: tuple[Any, ...], start_hash: bytes,
                       prefix: str) -> list[LedgerRow]:
        """The rows ``query`` reads, each hashing to its stored hash, linked to the one before
        (the first to ``start_hash``) and to its stream's previous event; a fault (``prefix`` first)
        otherwise."""
        with conn.cursor(binary=True) as cur:
            rows = [LedgerRow(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), bytes(r[6]), bytes(r[7]))
                    for r in cur.execute(query, params)]
        if rows:
            verifier = ChainVerifier(start_hash=start_hash, defer_unknown_streams=True)
            for row in rows:
                if not verifier.feed(row):
                    break
            report = verifier.finish()
            if report.problem is not None:
                raise self._found(f"{prefix}{report.problem}")
            self._check_stream_starts(conn, verifier.stream_firsts)
        return rows

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
        self.leaves_position = self._check_leaves_between(conn, self.leaves_position, self.position)

    def _check_leaves_between(self, conn: psycopg.Connection, after: int, upto: int) -> int:
        """The leaves for positions in (``after``, ``upto``] name their events' hashes; return the
        last position checked (``after`` when there is none yet)."""
        last = after
        for _index, position, event_hash, stored in conn.execute(_SELECT_LEAVES, (after, upto)):
            self._check_leaf(position, event_hash, stored)
            last = position
        return last

    def _check_leaf(self, position: int, event_hash: bytes, stored: bytes | None) -> None:
        if stored is None:
            raise self._found(str(Problem(position, Fault.ROW_MISSING, "the tree's leaf for this position names"
                                          " an event that is no longer in the ledger: the row was deleted")))
        if bytes(stored) != bytes(event_hash):
            raise self._found(f"the tree's leaf for position {position} does not name that event's hash:"
                              " the tree or the ledger was altered")

    def _walk_tree(self, conn: psycopg.Connection, walk: _Round, rows: list[LedgerRow]) -> None:
        """A round's batch of ``rows`` in the tree: the leaves after the last one walked, up to the
        batch's last row, one for each row walked in order (the tree follows the ledger, so rows
        near the head may wait for theirs: they are looked for again with the next batch), each
        naming its row's hash, their indexes without a gap. They go on the round's recomputed tree,
        and each subtree they complete must be stored with the recomputed hash."""
        if walk.tree_stopped:
            self._check_leaves_between(conn, walk.position, rows[-1].position)
            return
        expected = [*walk.untreed, *(row.position for row in rows)]
        leaves = conn.execute(_SELECT_LEAVES, (walk.treed_position, rows[-1].position)).fetchall()
        completed: list[tuple[merkle.Node, bytes]] = []
        for consumed, (index, position, event_hash, stored) in enumerate(leaves):
            self._check_leaf(position, event_hash, stored)
            wanted = expected[consumed]
            if position != wanted:
                raise self._found(f"full audit: the event at position {wanted} has no leaf in the tree,"
                                  " but later events have")
            if index != walk.tree.size:
                raise self._found(f"full audit: the tree's leaf indexes jump from {walk.tree.size - 1} to {index}"
                                  f" at position {position}: a leaf was deleted or the tree rewritten")
            completed += walk.tree.append(merkle.leaf_hash(bytes(event_hash)))[1:]
        if leaves:
            walk.treed_position = leaves[-1][1]
        walk.untreed = expected[len(leaves):]
        if len(walk.untreed) > 4 * self.batch:  # the tree's builder is down or far behind: not worth waiting for
            walk.tree_stopped, walk.untreed = True, []
        if completed:
            try:
                kept = tree.read_nodes(conn, [node for node, _ in completed])
            except tree.TreeError as error:
                raise self._found(f"full audit: the stored tree lacks a subtree of its leaves: {error}") from error
            for node, digest in completed:
                if kept[node] != digest:
                    raise self._found(f"full audit: the stored subtree {node} differs from the one recomputed from"
                                      " the leaves: the tree tables were altered")

    # --- in full, in rounds ----------------------------------------------------------------------

    def start_round(self) -> None:
        """Begin a full walk up to the head audited now."""
        self.round = _Round(target=self.position, target_hash=self.head_hash)
        self._round_started = time.monotonic()

    def sweep(self, conn: psycopg.Connection) -> int:
        """Walk the round on by one batch; return how many events. At the round's end: its head,
        then the latest checkpoint against the recomputed tree, and a full report."""
        walk = self.round
        if walk is None or self.fault is not None:
            return 0
        rows: list[LedgerRow] = []
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if walk.position < walk.target:
                rows = self._verified_rows(conn, _SELECT_ROWS_UPTO, (walk.position, walk.target, self.batch),
                                           walk.head_hash, "full audit: ")
                if rows:
                    self._walk_tree(conn, walk, rows)
                    walk.position, walk.head_hash = rows[-1].position, rows[-1].hash
                    walk.events += len(rows)
            if rows and walk.position < walk.target:
                return len(rows)
            if walk.position != walk.target or walk.head_hash != walk.target_hash:
                what = "is gone" if walk.position != walk.target else "is reached with another hash"
                raise self._found(f"full audit: the event at position {walk.target}, verified earlier, {what}:"
                                  " the ledger was altered below it")
            self._check_checkpoint(conn, walk.tree)
        self.round = None
        self._report(full=True, events=walk.events)
        return len(rows)

    def _check_checkpoint(self, conn: psycopg.Connection, walked: merkle.Frontier) -> None:
        """The latest checkpoint is signed by a trusted key, and its tree and the one the round
        recomputed are one tree, the smaller a prefix of the larger (a consistency proof read from
        the stored tree, checked against the checkpoint's root and the recomputed one)."""
        if self.verifier is None:
            return
        found = conn.execute("SELECT note FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1").fetchone()
        if found is None or walked.size == 0:
            return
        problem = "the ledger does not hold up against its latest checkpoint: "
        try:
            cp = parse_and_verify(found[0], self.verifier)
        except CheckpointError as error:
            raise self._found(f"full audit: {problem}the checkpoint is rejected: {error}") from error
        old, new = sorted([(cp.size, cp.root_hash), (walked.size, walked.root())])
        try:
            merkle.verify_consistency(old[0], new[0], old[1], new[1], tree.consistency_proof(conn, old[0], new[0]))
        except (tree.TreeError, merkle.ProofError) as error:
            raise self._found(f"full audit: {problem}its tree of {cp.size} leaves and the {walked.size} leaves"
                              f" walked are not one tree ({error})") from error

    def audit_full(self) -> AuditStatus:
        """A whole round now (unpaced): the chain up to the audited head, and the tree against the
        latest checkpoint. New events are audited first, so the round covers the ledger as it is."""
        if self.fault is not None:
            return self._report(full=True)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while self.audit_new(conn) == self.batch:
                pass
            self.start_round()
            walked = 0
            while self.round is not None:
                walked += self.sweep(conn)
        return self._report(full=True, events=walked)

    # --- the state file --------------------------------------------------------------------------

    def save_state(self, *, force: bool = False) -> None:
        """Write the audited head to the state file (at most every ``STATE_SECONDS``, unless forced)."""
        if self.state is None or self.fault is not None or self.position == self._state_position:
            return
        if not force and time.monotonic() - self._state_written < STATE_SECONDS:
            return
        self.state.write(self.position, self.head_hash, self.events)
        self._state_written, self._state_position = time.monotonic(), self.position

    # --- following the ledger --------------------------------------------------------------------

    def run_forever(self, stop_event: threading.Event, *, timeout: float = 1.0) -> None:
        """Audit new events as they arrive, and the whole ledger in paced rounds (one at start, then
        every `full_every_seconds`), until `stop_event`; after a fault, audit nothing more (but
        return only when stopped)."""
        self.start_round()
        with psycopg.connect(self.database_url, autocommit=True) as listen:
            listen.execute(f"LISTEN {EVENTS_CHANNEL}")
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                last_report, reported = 0.0, -1
                try:
                    while not stop_event.is_set() and self.fault is None:
                        pause = None
                        try:
                            while self.audit_new(conn) == self.batch and not stop_event.is_set():
                                pass
                            if self.round is None and time.monotonic() - self._round_started >= self.full_every_seconds:
                                self.start_round()
                            if self.round is not None:
                                started = time.monotonic()
                                walked = self.sweep(conn)
                                # Paced: a batch of the round, then the rest of its share of a second.
                                pause = max(0.0, walked / self.sweep_events_per_second - (time.monotonic() - started))
                            if self.position != reported or time.monotonic() - last_report >= 5.0:
                                # Each step forward is told (at most a few times a second), so that
                                # VerifyLedger's answer from the audit is never far behind the head.
                                self._report(full=False)
                                reported, last_report = self.position, time.monotonic()
                            self.save_state()
                        except LedgerFaultFound:
                            break
                        if pause is not None:
                            stop_event.wait(pause)
                        else:
                            wait_for_notification(listen, timeout, stop_event)
                            time.sleep(REPORT_PAUSE)  # a burst of inserts is one pass and one report
                finally:
                    self.save_state(force=True)
        # After a fault the auditor stays stopped (and says so) until the workers are stopped.
        stop_event.wait()
