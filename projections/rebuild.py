"""Rebuilding a projection from position 0 while the service keeps reading the live tables, and
the status of every projection.

``rebuild(database_url, name)``:

1. takes a session advisory lock for the projection (one rebuild at a time; others fail fast);
2. ``read_model_prepare_rebuild(name)`` (SQL, migrations/0004): empty ``<table>_rebuild`` copies
   of the projection's tables (``LIKE ... INCLUDING ALL``) and a tracking row
   ``projection.<name>.rebuild`` at 0;
3. runs the projection's own code over the whole ledger into those tables, in large batches,
   each batch exactly once with the rebuild's tracking row (a crash loses at most the batch in
   flight; running rebuild again starts over);
4. when it is within a batch of the head, ONE transaction: lock the live tracking row (the live
   runner now waits), catch the rebuild up to the live position and the head, then
   ``read_model_swap_rebuild(name)``: drop the live tables (or keep them as ``<table>_previous``),
   rename the rebuilt ones in, move the rebuild's position to the live tracking row. Readers
   answer from the old tables until the commit and from the new ones after; the live runner
   continues from the moved position on the new tables.

``drop_previous(database_url, name)`` drops the ``<table>_previous`` copies that a rebuild with
``keep_previous`` left for comparison.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql

from projections import catalog
from projections.errors import RebuildInProgressError
from projections.events import ledger_head
from projections.store import REBUILD_SUFFIX, TRACKING_TABLE, BatchReader, ReadModelView, tracking_name

log = logging.getLogger(__name__)

# pg_advisory_lock(int, int) key space: this constant, then hashtext(projection name).
REBUILD_LOCK_CLASS = 0x50524A  # "PRJ"
REBUILD_BATCH_SIZE = 2000


@dataclass(frozen=True)
class RebuildReport:
    name: str
    position: int  # the position the rebuilt tables are at
    events: int  # notifications processed
    seconds: float
    swapped: bool

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    position: int
    head: int
    lag: int  # head - position, in ledger positions
    rebuild_position: int | None  # set while a rebuild is in progress


def rebuild(
    database_url: str,
    name: str,
    *,
    batch_size: int = REBUILD_BATCH_SIZE,
    swap: bool = True,
    keep_previous: bool = False,
    before_swap: Callable[[], None] | None = None,
    lock_timeout: float = 5.0,
    attempts: int = 5,
) -> RebuildReport:
    """Rebuild projection ``name`` from position 0 and swap it in (see the module docstring).

    ``swap=False`` builds and catches up ``<table>_rebuild`` and leaves it there (for comparison);
    ``keep_previous`` keeps the replaced tables as ``<table>_previous``; ``before_swap`` is called
    once the bulk of the work is done, just before the swap (tests, operators' hooks);
    ``lock_timeout`` bounds each wait for the live tables' locks, retried ``attempts`` times.
    """
    model = catalog.model(name)
    with psycopg.connect(database_url, autocommit=True) as lock_conn:
        locked = lock_conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (REBUILD_LOCK_CLASS, name)).fetchone()
        if not locked or not locked[0]:
            raise RebuildInProgressError(f"a rebuild of {name} is already running")
        try:
            lock_conn.execute("SELECT read_model_prepare_rebuild(%s)", (name,))
            view = ReadModelView.for_url(database_url, model, suffix=REBUILD_SUFFIX)
            started = time.monotonic()
            events = 0
            try:
                # The bulk: batches read and decoded ahead on a reader thread.
                reader = BatchReader(view, database_url, view.position(), batch_size)
                try:
                    for prefetched in reader:
                        events += view.process_batch(batch_size, prefetched=prefetched)
                        if view.last_position != prefetched.notifications[-1].position:
                            break  # not ours to take (cannot happen under the rebuild lock)
                finally:
                    reader.close()
                while (n := view.process_batch(batch_size)) == batch_size:
                    events += n
                events += n
                log.info("rebuild %s: %d events in %.1f s", name, events, time.monotonic() - started)
                if before_swap is not None:
                    before_swap()
                if not swap:
                    while n := view.process_batch(batch_size):
                        events += n
                    return RebuildReport(name, view.position(), events, time.monotonic() - started, swapped=False)
                position, more = _swap(database_url, view, name, batch_size, keep_previous, lock_timeout, attempts)
                events += more
                seconds = time.monotonic() - started
                log.info("rebuild %s: swapped in at position %d (%d events, %.0f/s)", name, position, events, events / max(seconds, 1e-9))
                return RebuildReport(name, position, events, seconds, swapped=True)
            finally:
                view.close()
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (REBUILD_LOCK_CLASS, name))


def _swap(
    database_url: str,
    view: ReadModelView,
    name: str,
    batch_size: int,
    keep_previous: bool,
    lock_timeout: float,
    attempts: int,
) -> tuple[int, int]:
    live = tracking_name(name)
    for attempt in range(1, attempts + 1):
        events = 0
        try:
            with psycopg.connect(database_url) as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
                row = cur.execute(
                    f"SELECT notification_id FROM {TRACKING_TABLE} WHERE application_name = %s FOR UPDATE", (live,)
                ).fetchone()
                target = max(int(row[0]) if row and row[0] else 0, ledger_head(conn))
                while view.lock_position(cur) < target:
                    n = view.process_batch_in(cur, batch_size)
                    if n == 0:
                        break
                    events += n
                position = cur.execute("SELECT read_model_swap_rebuild(%s, %s)", (name, keep_previous)).fetchone()
                assert position is not None
                return int(position[0]), events
        except errors.LockNotAvailable:
            log.warning("rebuild %s: the live tables stayed locked for %.1f s (attempt %d of %d)", name, lock_timeout, attempt, attempts)
            # Whatever the rebuild processed inside the failed swap was rolled back with it;
            # catch up outside the lock before trying again.
            while view.process_batch(batch_size):
                pass
    raise RebuildInProgressError(f"could not swap the rebuilt {name} tables in: their locks stayed busy")


def discard_rebuild(database_url: str, name: str) -> None:
    """Drop an unfinished rebuild's tables and tracking row (the live read model is untouched)."""
    catalog.model(name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT read_model_discard_rebuild(%s)", (name,))


def drop_previous(database_url: str, name: str) -> list[str]:
    """Drop the ``<table>_previous`` copies a ``keep_previous`` rebuild of projection ``name`` left
    (once nobody needs to compare against them); return the tables dropped."""
    model = catalog.model(name)
    dropped = []
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        for table in model.tables:
            previous = table + "_previous"
            found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (previous,)).fetchone()
            if found and found[0]:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(previous)))
                dropped.append(previous)
    return dropped


def status(database_url: str) -> list[ProjectionStatus]:
    """Each projection's position, the ledger head and the lag (``claimsctl projections status``)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        head = ledger_head(conn)
        rows = dict(
            conn.execute(
                f"SELECT application_name, notification_id FROM {TRACKING_TABLE} WHERE application_name LIKE 'projection.%%'"
            ).fetchall()
        )
    result = []
    for name in catalog.NAMES:
        position = int(rows.get(tracking_name(name)) or 0)
        rebuilding = rows.get(tracking_name(name, REBUILD_SUFFIX))
        result.append(ProjectionStatus(name, position, head, max(0, head - position), None if rebuilding is None else int(rebuilding)))
    return result
