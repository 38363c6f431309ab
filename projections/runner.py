"""Running projections: one runner per projection, supervised.

A ``ProjectionRunner`` follows the ledger for one read model: it processes batches after its
tracked position (each batch one transaction with its tracking row, see ``store``) until it is
caught up, then sleeps on ``LISTEN ledger_events`` (the recorder NOTIFYs on every insert) with a
timeout as a safety net. It stops with an error when its LISTEN connection or the database goes
away; the ``ProjectionSupervisor`` runs every runner in its own thread and restarts a dead one with
exponential backoff, logging why. Because progress lives only in the tracking row, a restarted
runner (or one in another process) simply continues from the last committed batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import psycopg
from psycopg import sql

from claims_service.notifications import wait_for_notification
from projections import catalog
from projections.events import EVENTS_TABLE, Notification
from projections.store import AfterApply, BatchReader, ReadModel, ReadModelView

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
LINGER_SECONDS = 0.03  # after a wake-up, before reading the batch


class ProjectionRunner:
    """Follows the ledger for one read model.

    ``ProjectionRunner(database_url, model, *, batch_size=1000, idle_wait=1.0, after_apply=None)``
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

    def drain(self) -> int:
        """Process batches until caught up with the ledger; return how many notifications."""
        total = 0
        while n := self.process_available():
            total += n
        return total

    def run(self, stop: threading.Event) -> None:
        """Follow the ledger until ``stop`` is set; raises when the database connection fails."""
        with psycopg.connect(self.database_url, autocommit=True, application_name=f"claims-projection-{self.name}") as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(EVENTS_TABLE)))
            while not stop.is_set():
                processed = self.process_available()
                if processed == self.batch_size:
                    self._catch_up(stop)
                elif not processed:
                    self._sleep(conn, stop)

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

    def _sleep(self, conn: psycopg.Connection[object], stop: threading.Event) -> None:
        """Until a NOTIFY, ``idle_wait`` (a safety net) or ``stop``; in short slices so that stop
        is seen promptly. Raises if the LISTEN connection is gone."""
        deadline = time.monotonic() + self.idle_wait
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if wait_for_notification(conn, min(remaining, 0.25)):
                # Let the events of concurrent writers gather for a moment: one batch of many
                # costs far less than many batches of one, for a few milliseconds of lag.
                stop.wait(self.linger)
                return


class ProjectionSupervisor:
    """Runs one ``ProjectionRunner`` per projection, each in its own thread, restarting any that dies.

    ``ProjectionSupervisor(database_url, names=None, *, batch_size=1000, idle_wait=1.0,
    initial_backoff=0.2, max_backoff=30.0, after_apply=None)``; ``start()``, ``stop(timeout)``,
    ``restarts`` (name -> how many times its runner was restarted), ``wait_for(position, timeout)``.
    ``after_apply(name, notifications)`` is called inside each batch's transaction, after its rows
    are written and before its commit (instrumentation, tests).
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
        self.linger = LINGER_SECONDS
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.after_apply = after_apply
        self.restarts: dict[str, int] = dict.fromkeys(self.names, 0)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._runners: dict[str, ProjectionRunner] = {}

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the supervisor is already running")
        self._stop.clear()
        for name in self.names:
            thread = threading.Thread(target=self._supervise, args=(name,), name=f"projection-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        log.info("projections running: %s", ", ".join(self.names))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def __enter__(self) -> ProjectionSupervisor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def positions(self) -> dict[str, int]:
        """Each projection's tracked position, read from the database."""
        from projections.rebuild import status

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

    def _supervise(self, name: str) -> None:
        backoff = self.initial_backoff
        while not self._stop.is_set():
            started = time.monotonic()
            runner: ProjectionRunner | None = None
            try:
                hook = self.after_apply
                runner = ProjectionRunner(
                    self.database_url,
                    name,
                    batch_size=self.batch_size,
                    idle_wait=self.idle_wait,
                    after_apply=(lambda ns, _name=name: hook(_name, ns)) if hook else None,
                )
                self._runners[name] = runner
                runner.run(self._stop)
            except Exception:
                if self._stop.is_set():
                    break
                self.restarts[name] += 1
                log.exception("projection %s: runner died; restarting in %.1f s", name, backoff)
            finally:
                if runner is not None:
                    try:
                        runner.close()
                    except Exception:  # noqa: BLE001 - closing a broken pool must not kill the supervisor
                        log.debug("projection %s: closing the runner failed", name, exc_info=True)
            if self._stop.is_set():
                break
            if time.monotonic() - started > 60:
                backoff = self.initial_backoff  # it ran well for a while: start the backoff again
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)
