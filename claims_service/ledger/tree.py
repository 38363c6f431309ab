"""The ledger's Merkle tree, stored in PostgreSQL and extended incrementally (migration 0010).

`TreeBuilder.extend` appends the events after the last leaf, leaves and completed subtrees, and
(every `map_every` leaves) brings the stream map up to the new size (`streammap.py`: each stream's
head), in one transaction:
a kill at any moment leaves a complete tree of some size, and the next run continues from it. It
refuses an event that does not link (`prev_hash`) to the last leaf's event: the tree only grows
over an unbroken chain. Roots and proofs for any size read O(log n) rows by primary key in one
statement (see `merkle.py` for the subtree naming).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import psycopg

from claims_service.errors import ClaimsError, DeadlineExceededError
from claims_service.ledger import merkle, streammap
from claims_service.ledger.chain import GENESIS
from claims_service.ledger.merkle import Node, Plan
from claims_service.ledger.following import wait_for_notification

log = logging.getLogger(__name__)

LIVE_MAP_WRITE_PAUSE = 1.0
"""Live, the stream map's writes pause as long as each chunk took (at most half a core): the service's
submissions share the cores with them (`streammap.StreamMap.write_pause`)."""
EVENTS_CHANNEL = "ledger_events"  # the eventsourcing recorder NOTIFYs this on every insert
TREE_LOCK_KEY = 0x4D65726B6C65  # "Merkle": serialises tree builders (transaction advisory lock)

_SELECT_EVENTS = (
    "SELECT notification_id, prev_hash, hash FROM ledger_events"
    " WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)
_SELECT_LAST_LEAF = "SELECT leaf_index, position, event_hash FROM ledger_leaves ORDER BY leaf_index DESC LIMIT 1"
_SELECT_NODES = (
    "SELECT 0::smallint, leaf_index, event_hash FROM ledger_leaves WHERE leaf_index = ANY(%(leaves)s)"
    " UNION ALL"
    " SELECT n.level, n.idx, n.hash FROM unnest(%(levels)s::smallint[], %(idxs)s::bigint[]) AS q(level, idx)"
    " JOIN merkle_nodes n ON n.level = q.level AND n.idx = q.idx"
)


class TreeError(ClaimsError):
    """The tree cannot be extended or read as asked."""

    status: ClassVar[str] = "FAILED_PRECONDITION"


class TreeSizeError(TreeError):
    """A size or leaf index beyond the tree built so far (or beyond the events the ledger holds)."""

    status: ClassVar[str] = "OUT_OF_RANGE"


class TreeLagError(DeadlineExceededError):
    """The tree did not reach the size asked for within the caller's deadline, though the ledger
    holds enough events: another builder held the tree, or the backlog was too long to build."""

    def __init__(self, wanted: int, reached: int) -> None:
        self.wanted = wanted
        self.reached = reached
        super().__init__(f"the tree has reached {reached} leaves, not yet {wanted}, within the deadline;"
                         " ask again after a pause or with a longer deadline")


@dataclass(frozen=True, slots=True)
class Leaf:
    index: int
    position: int
    event_hash: bytes


# --- reads: O(log n) point reads, one statement each ---------------------------------------------


def read_nodes(conn: psycopg.Connection, nodes: Sequence[Node]) -> dict[Node, bytes]:
    """The hashes of these perfect subtrees; level 0 is computed from the leaf's event hash."""
    leaves = [idx for level, idx in nodes if level == 0]
    inner = [(level, idx) for level, idx in nodes if level > 0]
    rows = conn.execute(
        _SELECT_NODES,
        {"leaves": leaves, "levels": [n[0] for n in inner], "idxs": [n[1] for n in inner]},
    ).fetchall()
    found = {
        (level, idx): merkle.leaf_hash(h) if level == 0 else bytes(h)
        for level, idx, h in rows
    }
    if len(found) != len(set(nodes)):
        missing = min(set(nodes) - found.keys())
        raise TreeSizeError(f"the tree has no subtree {missing} yet: the size asked for is beyond the tree built so far")
    return found


def _resolve(conn: psycopg.Connection, plan: Plan, size: int) -> list[bytes]:
    # The last leaf of `size` joins the read (one more key in the same statement), so a size
    # beyond the tree fails even when the plan itself is empty.
    guard: list[Node] = [(0, size - 1)] if size else []

    def read(nodes: Sequence[Node]) -> dict[Node, bytes]:
        return read_nodes(conn, list(dict.fromkeys([*nodes, *guard])))

    if not plan and guard:
        read([])
    return merkle.resolve(plan, read)


def tree_size(conn: psycopg.Connection) -> int:
    row = conn.execute(_SELECT_LAST_LEAF).fetchone()
    return row[0] + 1 if row else 0


def last_leaf(conn: psycopg.Connection) -> Leaf | None:
    row = conn.execute(_SELECT_LAST_LEAF).fetchone()
    return Leaf(row[0], row[1], bytes(row[2])) if row else None


def leaf_at(conn: psycopg.Connection, leaf_index: int) -> Leaf | None:
    row = conn.execute(
        "SELECT leaf_index, position, event_hash FROM ledger_leaves WHERE leaf_index = %s", (leaf_index,)
    ).fetchone()
    return Leaf(row[0], row[1], bytes(row[2])) if row else None


def events_for(conn: psycopg.Connection, size: int) -> int:
    """How many of the first `size` leaves the ledger holds events for: `size` when the tree can
    grow to it, fewer when the ledger has not that many events (counted after the tree's last leaf,
    never more than are missing)."""
    last = last_leaf(conn)
    built = last.index + 1 if last else 0
    if size <= built:
        return size
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM ledger_events WHERE notification_id > %s LIMIT %s) AS ahead",
        (last.position if last else 0, size - built),
    ).fetchone()
    return built + int(row[0])


def leaf_index_of(conn: psycopg.Connection, position: int) -> int | None:
    """The leaf index of the event at `position`, or None while the tree has not reached it."""
    row = conn.execute("SELECT leaf_index FROM ledger_leaves WHERE position = %s", (position,)).fetchone()
    return row[0] if row else None


def root_at(conn: psycopg.Connection, size: int) -> bytes:
    """The root of the tree of the first `size` leaves (SHA-256("") for 0)."""
    if size < 0:
        raise TreeSizeError(f"tree size {size} is negative")
    if size == 0:
        return merkle.EMPTY_ROOT
    return _resolve(conn, [merkle.root_plan(size)], size)[0]


def inclusion_proof(conn: psycopg.Connection, leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 PATH(leaf_index, D[0:tree_size]): the leaf's sibling first."""
    if not 0 <= leaf_index < tree_size:
        raise TreeSizeError(f"leaf index {leaf_index} is not in a tree of size {tree_size}")
    return _resolve(conn, merkle.inclusion_plan(leaf_index, tree_size), tree_size)


def consistency_proof(conn: psycopg.Connection, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[0:new_size]); empty when old_size is 0 or equals new_size."""
    if not 0 <= old_size <= new_size:
        raise TreeSizeError(f"no consistency proof from size {old_size} to size {new_size}")
    return _resolve(conn, merkle.consistency_plan(old_size, new_size), new_size)


# --- writes ----------------------------------------------------------------------------------------


def load_frontier(conn: psycopg.Connection, size: int) -> merkle.Frontier:
    nodes = merkle.range_nodes(0, size)
    hashes = read_nodes(conn, nodes) if nodes else {}
    return merkle.Frontier(size, [hashes[n] for n in nodes])


def append_leaves(conn: psycopg.Connection, start: int, leaves: Sequence[tuple[int, bytes]],
                  frontier: merkle.Frontier | None = None) -> merkle.Frontier:
    """Write leaves `start`, `start + 1`, … (each a (position, event hash)) and every subtree they complete.

    Runs inside the caller's transaction and trusts it to hold the tree lock. Two COPYs: one for
    the leaves, one for the nodes (level >= 1).
    """
    if frontier is None:
        frontier = load_frontier(conn, start)
    if frontier.size != start:
        raise TreeError(f"frontier is at size {frontier.size}, not {start}")
    leaf_rows = []
    node_rows = []
    for offset, (position, event_hash) in enumerate(leaves):
        leaf_rows.append((start + offset, position, event_hash))
        for (level, idx), digest in frontier.append(merkle.leaf_hash(event_hash)):
            if level:
                node_rows.append((level, idx, digest))
    with conn.cursor() as cur:
        with cur.copy("COPY ledger_leaves (leaf_index, position, event_hash) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "int8", "bytea"])
            for row in leaf_rows:
                copy.write_row(row)
        _write_nodes(cur, node_rows)
    return frontier


def _write_nodes(cur: psycopg.Cursor, rows: Sequence[tuple[int, int, bytes]]) -> None:
    if not rows:
        return
    with cur.copy("COPY merkle_nodes (level, idx, hash) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int2", "int8", "bytea"])
        for row in rows:
            copy.write_row(row)


MAP_EVERY = 5000
"""Leaves between two updates of the stream map, as many as between two checkpoints (the signer
maps each size it signs). An update rewrites the path of each stream that moved, and the more
streams it changes at once, the more of the paths' upper nodes they share: at 1,000 leaves an
update wrote 4.4-4.6 node rows an event, at 5,000 2.9-3.1, and the tree process's CPU a claim was
a fifth lower (README, "Scale", thirteenth pass)."""


class TreeBuilder:
    """Follows the events table and appends its events to the tree. One per service is enough;
    more are harmless (an advisory lock serialises them)."""

    def __init__(self, database_url: str, *, coalesce_seconds: float = 0.2, map_every: int = MAP_EVERY) -> None:
        self.database_url = database_url
        self.coalesce_seconds = coalesce_seconds
        self.map_every = map_every  # bring the stream map up to the tree once this many leaves are unmapped
        self._conn: psycopg.Connection | None = None
        self._map = streammap.StreamMap()  # the streams' heads, updated with each batch

    @property
    def stream_map(self) -> streammap.StreamMap:
        """The builder's stream map and its cache of nodes, for a signer in the same thread."""
        return self._map

    def __enter__(self) -> TreeBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        return self._conn

    def extend(self, max_leaves: int = 10_000, *, wait: bool = True) -> int:
        """Append up to `max_leaves` events after the last leaf, in one transaction; return how many.
        With `wait` False, return 0 at once while another builder holds the tree."""
        try:
            return self._extend(max_leaves, wait=wait)
        except BaseException:
            # The map's cache may hold nodes of the update that did not commit: never build on them.
            self._map.forget()
            raise

    def _extend(self, max_leaves: int, *, wait: bool) -> int:
        conn = self._connection()
        with conn.transaction():
            if wait:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (TREE_LOCK_KEY,))
            elif not conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (TREE_LOCK_KEY,)).fetchone()[0]:
                return 0
            last = last_leaf(conn)
            size = last.index + 1 if last else 0
            after = last.position if last else 0
            rows = conn.execute(_SELECT_EVENTS, (after, max_leaves)).fetchall()
            if not rows:
                return 0
            expected = last.event_hash if last else GENESIS
            leaves = []
            for position, prev_hash, event_hash in rows:
                if bytes(prev_hash) != expected:
                    # Append the linked part only; the unlinked event is refused loudly.
                    if leaves:
                        break
                    raise TreeError(
                        f"event at position {position} does not link to the tree's last event"
                        f" ({'position ' + str(after) if last else 'the start of the ledger'}): the chain is"
                        " broken or was rewritten; run `claimsctl verify`. The tree stops growing until it is resolved."
                    )
                expected = bytes(event_hash)
                leaves.append((position, expected))
            append_leaves(conn, size, leaves)
            try:
                if self.map_every and size + len(leaves) - streammap.mapped_size(conn) >= self.map_every:
                    self._map.catch_up(conn, size + len(leaves))
            except LookupError as error:
                raise TreeError(f"the stream map cannot be updated: {error}; run `claimsctl verify-checkpoint`."
                                " The tree stops growing until it is resolved.") from None
        return len(leaves)

    def catch_up(self, batch: int = 10_000) -> int:
        """Extend until the tree holds every committed event; return how many leaves were added."""
        total = 0
        while True:
            added = self.extend(batch)
            total += added
            if added < batch:
                return total

    def grow_to(self, size: int, *, timeout: float, batch: int = 10_000) -> int:
        """Extend the tree until it holds `size` leaves, within `timeout` seconds; the size reached.

        A size beyond the events the ledger holds is `TreeSizeError` (OUT_OF_RANGE) at once: no
        waiting makes it. Otherwise this builds what is missing itself, batch by batch, or, while
        another builder (the workers') holds the tree, waits for it; past the deadline,
        `TreeLagError` (DEADLINE_EXCEEDED). A chain that does not link stops it with `TreeError`.
        """
        conn = self._connection()
        built = tree_size(conn)
        if built >= size:
            return built
        held = events_for(conn, size)
        if held < size:
            raise TreeSizeError(f"the ledger holds {held} events: no tree of {size} leaves exists")
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            added = self.extend(batch, wait=False)
            built = tree_size(conn)
            if built >= size:
                return built
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TreeLagError(size, built)
            if not added:  # another builder has the tree: let it work
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.1)

    def run_forever(self, stop_event: threading.Event, *, timeout: float = 1.0, batch: int = 10_000,
                    after_extend: Callable[[int], object] | None = None) -> None:
        """Extend whenever the events table NOTIFYs (LISTEN), and at least every `timeout` seconds.

        `after_extend(added)` runs after each round, also when nothing was added (a checkpointer's
        time-based rule needs the tick). Database errors are logged and retried; a broken chain
        is logged as an error on every round until it is resolved.
        """
        listener: psycopg.Connection | None = None
        warm = True
        self._map.write_pause = LIVE_MAP_WRITE_PAUSE
        while not stop_event.is_set():
            try:
                if listener is None or listener.closed or listener.broken:
                    listener = psycopg.connect(self.database_url, autocommit=True)
                    listener.execute(f"LISTEN {EVENTS_CHANNEL}")
                if warm:  # once, before the first update: the map's upper levels in one pass
                    read = self._map.warm(self._connection())
                    warm = False
                    log.debug("stream map: %d nodes read into the cache", read)
                added = self.catch_up(batch)
                if added:
                    log.debug("tree extended by %d leaves", added)
                if after_extend is not None:
                    after_extend(added)
                # Sleep until an insert is committed or the timeout passes; then let more inserts
                # gather, since nobody waits on the tree (receipts carry positions).
                if wait_for_notification(listener, timeout, stop_event):
                    stop_event.wait(self.coalesce_seconds)
            except TreeError as error:
                log.error("%s", error)
                stop_event.wait(timeout)
            except psycopg.Error as error:
                log.warning("tree builder: %s; retrying", error)
                self.close()
                if listener is not None:
                    listener.close()
                    listener = None
                stop_event.wait(min(timeout, 1.0))
        if listener is not None:
            listener.close()
        self.close()

