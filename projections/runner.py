"""Running projections: all of them together in one thread, supervised.

A ``GroupRunner`` follows the ledger for several read models at once (``group.ViewGroup``: one
transaction, one read and one decoding of each batch for all of them): it processes batches after
the tracked positions until caught up, then sleeps on ``LISTEN ledger_events`` (the recorder
NOTIFYs on every insert) with a timeout as a safety net. A ``ProjectionRunner`` does the same for
one read model alone. Either stops with an error when its LISTEN connection or the database goes
away; the ``ProjectionSupervisor`` runs the group in a thread and restarts it with exponential
backoff, logging why. A read model whose own code fails in the group is taken out of it and run
by a ``ProjectionRunner`` of its own (with its own backoff), so that it cannot hold the others up.
Because progress lives only in the tracking rows, a restarted runner (or one in another process)
simply continues from the last committed batch.

Observed: each batch's time and notifications (metrics, follower "projections" for the group); an
event that carries a trace context gets a ``projections.apply`` span in its trace (traces).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from claims_service.ledger.following import StopEvent, wait_for_notification
from claims_service.observability import metrics, tracing
from projections import catalog
from projections.events import EVENTS_TABLE, Notification
from projections.group import GroupAfterApply, MemberFailed, ViewGroup
from projections.rebuild import status
from projections.store import (
    AfterApply,
    BatchReader,
    ReadModel,
    ReadModelView,
    datastore_for,
)

log = logging.getLogger(__name__)

# Events a live batch takes at most. Each batch is one transaction whose WAL every submit's commit
# waits behind while it is flushed: at 1,000 the paced submit p99 was 37-78 ms (median 57) in two
# `make bench ARGS="--only service --seconds 15"` runs, at 200 30-52 ms (median 42), for about 5 %
# of the saturated rate (README, "Scale"). Rebuilds take their own batch size.
DEFAULT_BATCH_SIZE = 200
LINGER_SECONDS = 0.03  # after a wake-up, before reading the batch; and from one partial batch to the next
GROUP_LISTENER_NAME = "claims-projections"


class _Follower(ABC):
    """What both runners share: working off the backlog, and the LISTEN they sleep on."""

    database_url: str

    @abstractmethod
    def process_available(self) -> int:
        """Process one batch; return how many notifications it covered."""

    def drain(self) -> int:
        """Process batches until caught up with the ledger; return how many notifications."""
        total = 0
        while n := self.process_available():
            total += n
        return total

    @contextmanager
    def _listening(self, application_name: str) -> Iterator[psycopg.Connection[Any]]:
        """A connection listening to the events table's channel (the recorder NOTIFYs on every insert)."""
        with psycopg.connect(self.database_url, autocommit=True, application_name=application_name) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(EVENTS_TABLE)))
            yield conn


class ProjectionRunner(_Follower):
    """Follows the ledger for one read model.

    ``ProjectionRunner(database_url, model, *, batch_size=200, idle_wait=1.0, after_apply=None)``
    where ``model`` is a ``ReadModel`` or a projection name.
    """

    def __init__(
        self,
        database_url: str,
        model: ReadModel | str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        idle_wait: float = 1.0,
        after_apply: AfterApply | None = None,
    ) -> None:
        self.database_url = database_url
        self.model = catalog.model(model) if isinstance(model, str) else model
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.linger = LINGER_SECONDS
        self.after_apply = after_apply
        self.view = ReadModelView.for_url(database_url, self.model)

    @property
    def name(self) -> str:
        return self.model.name

    def close(self) -> None:
        self.view.close()

    def position(self) -> int:
        return self.view.position()

    def process_available(self) -> int:
        """Process one batch after the tracked position; return how many notifications it covered."""
        return self.view.process_batch(self.batch_size, after_apply=self.after_apply)

    def run(self, stop: threading.Event) -> None:
        """Follow the ledger until ``stop`` is set; raises when the database connection fails."""
        with self._listening(f"claims-projection-{self.name}") as conn:
            while not stop.is_set():
                started = time.monotonic()
                processed = self.process_available()
                if processed == self.batch_size:
                    self._catch_up(stop)
                elif not processed:
                    _sleep(conn, stop, self.idle_wait, self.linger)
                else:
                    _space(stop, started, self.linger)

    def _catch_up(self, stop: threading.Event) -> None:
        """A backlog: read and decode batches ahead on a reader thread until it is worked off."""
        reader = BatchReader(self.view, self.database_url, self.position(), self.batch_size)
        try:
            for prefetched in reader:
                if stop.is_set():
                    return
                self.view.process_batch(self.batch_size, after_apply=self.after_apply, prefetched=prefetched)
                if self.view.last_position != prefetched.notifications[-1].position:
                    return  # another runner got there first: back to plain batches
        finally:
            reader.close()


class GroupRunner(_Follower):
    """Follows the ledger for several read models in one thread (see ``group.ViewGroup``).

    ``on_member_failed(name)`` is called (before the batch is retried without it) when a member's
    own code failed; the member is no longer in the group.
    """

    def __init__(
        self,
        database_url: str,
        names: Iterable[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        idle_wait: float = 1.0,
        after_apply: GroupAfterApply | None = None,
        on_member_failed: Callable[[str], None] = lambda name: None,
    ) -> None:
        self.database_url = database_url
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.linger = LINGER_SECONDS
        self.on_member_failed = on_member_failed
        self.datastore = datastore_for(database_url, pre_ping=False)
        self.group = ViewGroup(self.datastore, [catalog.model(name) for name in names], after_apply=after_apply)
        recorded = metrics.get()
        self._batch_seconds = recorded.follower_batch.labels("projections")
        self._events = recorded.follower_events.labels("projections")

    @property
    def names(self) -> tuple[str, ...]:
        return self.group.names

    def close(self) -> None:
        self.datastore.pool.close()

    def process_available(self) -> int:
        """Process one batch for every member; return how many notifications it covered."""
        while True:
            try:
                started, started_ns = time.perf_counter(), time.time_ns()
                processed = self.group.process_batch(self.batch_size)
                if processed:
                    self._batch_seconds.observe(time.perf_counter() - started)
                    self._events.inc(processed)
                    if self.group.last_traced:
                        self._trace(started_ns, self.group.last_traced)
                return processed
            except MemberFailed as failed:
                log.error("projection %s failed in the group; it goes on alone", failed.name, exc_info=failed.__cause__)
                self.group.remove(failed.name)
                self.on_member_failed(failed.name)

    def _trace(self, started_ns: int, traced: dict[int, str]) -> None:
        """A ``projections.apply`` span for each traced event of the committed batch."""
        names = ",".join(self.group.names)
        for position, traceparent in traced.items():
            tracing.start_span("projections.apply", traceparent, start_time=started_ns, attributes={
                "claims.position": position, "claims.read_models": names}).end()

    def run(self, stop: threading.Event) -> None:
        """Follow the ledger until ``stop`` is set; raises when the database connection fails."""
        with self._listening(GROUP_LISTENER_NAME) as conn:
            while not stop.is_set() and self.group.names:
                started = time.monotonic()
                processed = self.process_available()
                if not processed:
                    _sleep(conn, stop, self.idle_wait, self.linger)
                elif processed < self.batch_size:
                    _space(stop, started, self.linger)


def _space(stop: threading.Event, started: float, linger: float) -> None:
    """After a partial batch that began at ``started``: the next begins ``linger`` after it did.
    Back to back, at 200 submits/s the group made 80 batches a second of two or three claims, each
    costing its transaction, reads and commit whatever its size; spaced, 33, and the projections'
    CPU fell by a quarter (README, "Scale")."""
    if (remaining := linger - (time.monotonic() - started)) > 0:
        stop.wait(remaining)


def _sleep(conn: psycopg.Connection[object], stop: threading.Event, idle_wait: float, linger: float) -> None:
    """Until a NOTIFY (then ``linger``), ``idle_wait`` (a safety net) or ``stop`` (at once if it is
    a ``StopEvent``, else within a short slice). Raises if the LISTEN connection is gone."""
    deadline = time.monotonic() + idle_wait
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if wait_for_notification(conn, min(remaining, 0.25), stop):
            # Let the events of concurrent writers gather for a moment: one batch of many costs
            # far less than many batches of one, for a few milliseconds of lag.
            stop.wait(linger)
            return


class ProjectionSupervisor:
    """Runs the projections as one ``GroupRunner`` in a thread, restarting it whenever it dies; a
    projection whose own code fails in the group goes on in a ``ProjectionRunner`` and thread of
    its own, restarted the same way.

    ``ProjectionSupervisor(database_url, names=None, *, batch_size=200, idle_wait=1.0,
    initial_backoff=0.2, max_backoff=30.0, after_apply=None)``; ``start()``, ``stop(timeout)``,
    ``restarts`` (name -> how many times the runner that ran it was restarted),
    ``wait_for(position, timeout)``. ``after_apply(name, notifications)`` is called inside each
    batch's transaction, after the projection's rows are written and before the commit
    (instrumentation, tests).
    """

    def __init__(
        self,
        database_url: str,
        names: Iterable[str] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        idle_wait: float = 1.0,
        initial_backoff: float = 0.2,
        max_backoff: float = 30.0,
        after_apply: Callable[[str, Sequence[Notification]], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.names = tuple(names) if names is not None else catalog.NAMES
        for name in self.names:
            catalog.model(name)  # fail fast on a typo
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.after_apply = after_apply
        self.restarts: dict[str, int] = dict.fromkeys(self.names, 0)
        self.alone: set[str] = set()  # projections taken out of the group after a failure
        self._stop = StopEvent()  # the runners' waits for a NOTIFY end when it is set
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the supervisor is already running")
        self._stop.clear()
        self.alone.clear()
        self._start_thread("projections", self._supervise_group)
        log.info("projections running: %s", ", ".join(self.names))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        joined: set[threading.Thread] = set()
        while True:  # a thread may start another one (a failed projection) until it sees stop
            with self._threads_lock:
                pending = [t for t in self._threads if t not in joined]
            if not pending:
                break
            for thread in pending:
                thread.join(max(0.0, deadline - time.monotonic()))
                joined.add(thread)
        self._threads = []

    def __enter__(self) -> ProjectionSupervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def positions(self) -> dict[str, int]:
        """Each projection's tracked position, read from the database."""
        return {s.name: s.position for s in status(self.database_url) if s.name in self.names}

    def wait_for(self, position: int, timeout: float = 10.0) -> bool:
        """Block until every supervised projection has reached ``position`` (True), or time out."""
        deadline = time.monotonic() + timeout
        while True:
            if all(p >= position for p in self.positions().values()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _start_thread(self, name: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._threads_lock:
            self._threads.append(thread)
        thread.start()

    def _member_failed(self, name: str) -> None:
        self.alone.add(name)
        self.restarts[name] += 1
        self._start_thread(f"projection-{name}", self._supervise, name)

    def _supervise_group(self) -> None:
        self._keep_running("the projection group", lambda: [n for n in self.names if n not in self.alone],
                           lambda members: GroupRunner(self.database_url, members, batch_size=self.batch_size,
                                                       idle_wait=self.idle_wait, after_apply=self.after_apply,
                                                       on_member_failed=self._member_failed))

    def _supervise(self, name: str) -> None:
        hook = self.after_apply
        self._keep_running(f"projection {name}", lambda: [name],
                           lambda members: ProjectionRunner(self.database_url, name, batch_size=self.batch_size,
                                                            idle_wait=self.idle_wait,
                                                            after_apply=(lambda ns: hook(name, ns)) if hook else None))

    def _keep_running(self, what: str, members: Callable[[], list[str]],
                      make: Callable[[list[str]], GroupRunner | ProjectionRunner]) -> None:
        backoff = self.initial_backoff
        while not self._stop.is_set() and (names := members()):
            started = time.monotonic()
            runner: GroupRunner | ProjectionRunner | None = None
            try:
                runner = make(names)
                runner.run(self._stop)
            except Exception:
                if self._stop.is_set():
                    break
                for name in members():
                    self.restarts[name] += 1
                log.exception("%s: runner died; restarting in %.1f s", what, backoff)
            finally:
                if runner is not None:
                    try:
                        runner.close()
                    except Exception:  # noqa: BLE001 - closing a broken pool must not kill the supervisor
                        log.debug("%s: closing the runner failed", what, exc_info=True)
            if self._stop.is_set():
                break
            if time.monotonic() - started > 60:
                backoff = self.initial_backoff  # it ran well for a while: start the backoff again
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)
