"""Feeds: a payer's adjudication notices and a provider's claim changes, as resumable streams.

``NotificationHub(database_url)`` holds ONE ``LISTEN projection_progress`` connection per process
(a projection NOTIFYs ``"<name> <position>"`` in the transaction of each batch, so the notice is
visible when the NOTIFY arrives). The hub only remembers each projection's latest position and
wakes waiting streams; every stream reads its own rows from the table, at its own pace, through a
small connection pool, borrowing a connection only for each read. A consumer that stops reading
holds nothing: not a connection, not a buffer, not the others.

No gaps, in order, resumable: notices live in ``adjudication_notices`` (append-only, written in
position order together with the projection's tracking row), so the notices visible at any
moment are exactly those up to some position; a stream reads ``position > after`` in position
order and resumes from the last position its consumer saw. A ``Heartbeat(position)`` says that
everything for this stream up to ``position`` has been delivered (the projection's position when
the stream caught up), so a client can persist it and resume from there; one is sent when the
stream first catches up and then at most every ``heartbeat_interval`` seconds while idle.
Delivery is at-least-once from the client's point of view: it resumes after the last position it
stored.

The feeds sit on top of the read side: they read through ``claims``' queries and ``reading``, and
only the API's read side (``claims_service.api.reads``) imports them; no projection module does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool

from projections.claims import ClaimStatus, ClaimStatusModel, Notice, adjudication_notices, claim_changes
from projections.reading import MAX_PAGE_SIZE, projection_position
from projections.store import PROGRESS_CHANNEL, TRACKING_TABLE

log = logging.getLogger(__name__)

T = TypeVar("T")
LISTENER_NAME = "claims-notification-hub"  # pg_stat_activity.application_name of the one LISTEN


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Everything for this stream up to ``position`` has been delivered."""

    position: int


class NotificationHub:
    """``NotificationHub(database_url, *, heartbeat_interval=5.0, pool_size=4)``.

    ``adjudications(payer_id, after_position, stop_event) -> Iterator[Notice | Heartbeat]``,
    ``claim_updates(provider_id, after_position, stop_event) -> Iterator[ClaimStatus | Heartbeat]``,
    ``wait_for(projection, position, timeout) -> bool``; ``start()`` (also done on first use),
    ``close()``; usable as a context manager.
    """

    def __init__(self, database_url: str, *, heartbeat_interval: float = 5.0, pool_size: int = 4) -> None:
        self.database_url = database_url
        self.heartbeat_interval = heartbeat_interval
        self.pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=False,
                                   kwargs={"autocommit": True, "application_name": "claims-feed"},
                                   check=ConnectionPool.check_connection)
        self._positions: dict[str, int] = {}
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.reconnects = 0

    # --- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self.pool.open(wait=True, timeout=timeout)
            self._thread = threading.Thread(target=self._listen, name="notification-hub", daemon=True)
            self._thread.start()
        self._listening.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
        self.pool.close()

    def __enter__(self) -> NotificationHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def _listen(self) -> None:
        backoff = 0.2
        while not self._closed.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True, application_name=LISTENER_NAME) as conn:
                    conn.execute(f"LISTEN {PROGRESS_CHANNEL}")
                    # Positions reached while nobody listened: read them once LISTEN is active.
                    for name, position in conn.execute(
                        f"SELECT application_name, notification_id FROM {TRACKING_TABLE} WHERE application_name LIKE 'projection.%%'"
                    ):
                        self._advance(name.removeprefix("projection."), int(position or 0))
                    self._listening.set()
                    backoff = 0.2
                    while not self._closed.is_set():
                        for notify in conn.notifies(timeout=0.5):
                            name, _, position = notify.payload.rpartition(" ")
                            self._advance(name, int(position))
            except Exception:  # noqa: BLE001 - the hub must outlive a dropped connection
                if self._closed.is_set():
                    break
                self._listening.clear()
                self.reconnects += 1
                log.warning("notification hub: LISTEN connection lost; reconnecting in %.1f s", backoff, exc_info=True)
                with self._changed:
                    self._changed.notify_all()  # streams re-read the tables meanwhile
                self._closed.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self._listening.clear()

    def _advance(self, projection: str, position: int) -> None:
        with self._changed:
            if position > self._positions.get(projection, -1):
                self._positions[projection] = position
                self._changed.notify_all()

    # --- waiting -----------------------------------------------------------------------------

    def position(self, projection: str) -> int:
        """The latest position the hub has heard of for the projection (not authoritative)."""
        return self._positions.get(projection, 0)

    def wait_for(self, projection: str, position: int, timeout: float) -> bool:
        """Block until the hub hears the projection reached ``position`` (True) or ``timeout``."""
        self.start()
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._positions.get(projection, 0) < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed.is_set():
                    return False
                self._changed.wait(remaining)
        return True

    def _wait_beyond(self, projection: str, position: int, timeout: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._positions.get(projection, 0) <= position:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stop.is_set() or self._closed.is_set():
                    return
                # Slices, so that a stop_event set by the consumer is seen promptly.
                self._changed.wait(min(remaining, 0.25))

    # --- streams -----------------------------------------------------------------------------

    def adjudications(
        self, payer_id: str, after_position: int = 0, stop_event: threading.Event | None = None, *, page_size: int = 100
    ) -> Iterator[Notice | Heartbeat]:
        """The payer's adjudication notices after ``after_position``, in ledger order, forever
        (until ``stop_event`` is set or the hub closes), with heartbeats."""
        return self._stream(
            ClaimStatusModel.name,
            lambda conn, after: adjudication_notices(conn, payer_id, after, limit=page_size),
            lambda notice: notice.position,
            after_position,
            stop_event,
            page_size,
        )

    def claim_updates(
        self, provider_id: str, after_position: int = 0, stop_event: threading.Event | None = None, *, page_size: int = 100
    ) -> Iterator[ClaimStatus | Heartbeat]:
        """The provider's claims changed after ``after_position``, each in its current state, in
        the order of their latest change (WatchClaims), with heartbeats."""
        return self._stream(
            ClaimStatusModel.name,
            lambda conn, after: claim_changes(conn, provider_id, after, limit=page_size),
            lambda claim: claim.last_position,
            after_position,
            stop_event,
            page_size,
        )

    def _stream(
        self,
        projection: str,
        fetch: Callable[[Connection[Any], int], Sequence[T]],
        position_of: Callable[[T], int],
        after: int,
        stop: threading.Event | None,
        page_size: int,
    ) -> Iterator[T | Heartbeat]:
        self.start()
        # The same page size as the query uses: a short page must mean "caught up", or a stream
        # would skip ahead to the projection's position past rows it has not read.
        page_size = min(max(1, page_size), MAX_PAGE_SIZE)
        stop = stop or threading.Event()
        next_beat = time.monotonic()  # the first time it catches up
        while not stop.is_set() and not self._closed.is_set():
            with self.pool.connection() as conn:
                # The position first: every row at or below it is committed, hence in the read below.
                tracked = projection_position(conn, projection)
                items = fetch(conn, after)
            for item in items:  # no connection is held while the consumer takes its time
                yield item
                after = position_of(item)
                if stop.is_set():
                    return
            if len(items) >= page_size:
                continue
            after = max(after, tracked)
            now = time.monotonic()
            if now >= next_beat:
                yield Heartbeat(after)
                next_beat = now + self.heartbeat_interval
            self._wait_beyond(projection, tracked, max(0.0, next_beat - time.monotonic()), stop)
