"""The notification hub: how a process learns that a projection moved on.

``NotificationHub(database_url)`` holds ONE ``LISTEN projection_progress`` connection per process
(a projection NOTIFYs ``"<name> <position>"`` once each batch has committed, so the rows are
visible when the NOTIFY arrives: ``projections.store.announce``). It only remembers each
projection's latest position and wakes whoever waits: reads waiting for a caller's
``min_position`` (``wait_for``), and the server streams (``streams.FeedStreams``, through
``add_listener``), which read their rows through the hub's small connection pool. It reads every
projection's position every half second as well, and once LISTEN is active again after a lost
connection, so no advance goes unnoticed for long (a projection killed between its batch's commit
and its NOTIFY, or a hub that was not listening).

Reading from a streaming replica (``NotificationHub(replica_url, primary_url=...)``): NOTIFY is
not replicated and a standby cannot LISTEN, so the hub LISTENs on the primary and believes the
replica only: a projection's advance is told to waiters once the replica's own tracking row shows
it (its tracking rows replicate with its tables, in its transactions, so the rows are there when
the position is). After each NOTIFY it reads the replica's positions at once and then every 1,
2, 4 ... 20 ms until the replica has replayed what the primary announced, and every half second
in any case (a LISTEN that is down, a NOTIFY lost). ``primary_head()`` is the ledger's head on the
primary: a receipt's position beyond the replica's head may be one it has not replayed yet.

The hub sits on top of the read side: only the API's read side (``claims_service.api.reads``) and
``streams`` import it; no projection module does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from claims_service.ledger.following import StopEvent, notifications
from projections.store import PROGRESS_CHANNEL, TRACES_CHANNEL, TRACKING_TABLE, fast_json, notice_name

log = logging.getLogger(__name__)

LISTENER_NAME = "claims-notification-hub"  # pg_stat_activity.application_name of the one LISTEN
TRACED_LIMIT = 10_000  # trace contexts heard lately, kept for the streams that send their notices


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Everything for this stream up to ``position`` has been delivered (a server stream's)."""

    position: int


class NotificationHub:
    """``NotificationHub(database_url, *, pool_size=4, primary_url=None)``: ``wait_for(projection,
    position, timeout) -> bool``, ``position(projection)``, ``add_listener(callback)``, ``pool``
    (for the streams' reads); ``start()`` (also done on first use), ``close()``; a context manager.
    With ``primary_url`` (another server), ``database_url`` is a streaming replica of it.
    """

    def __init__(self, database_url: str, *, pool_size: int = 4, primary_url: str | None = None) -> None:
        self.database_url = database_url
        self.primary_url = primary_url or database_url
        self.replica = self.primary_url != database_url
        self._announced: dict[str, int] = {}  # replica: what the primary's NOTIFYs told
        self._announcement = threading.Event()
        self._primary: psycopg.Connection[Any] | None = None
        self._primary_lock = threading.Lock()
        self.pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=False,
                                   kwargs={"autocommit": True, "application_name": "claims-feed"}, configure=fast_json,
                                   check=ConnectionPool.check_connection)
        self._positions: dict[str, int] = {}
        self._traces: dict[int, str] = {}  # position -> traceparent, from TRACES_CHANNEL
        self._listeners: list[Callable[[str], None]] = []
        self._changed = threading.Condition()
        self._closed = StopEvent()  # ends the listener's wait for a NOTIFY at once
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._confirming: threading.Thread | None = None
        self.reconnects = 0

    # --- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self.pool.open(wait=True, timeout=timeout)
            self._thread = threading.Thread(target=self._listen, name="notification-hub", daemon=True)
            self._thread.start()
            if self.replica:
                self._confirming = threading.Thread(target=self._confirm, name="notification-hub-replica", daemon=True)
                self._confirming.start()
        self._listening.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        self._announcement.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._confirming is not None:
            self._confirming.join(5.0)
        with self._primary_lock:
            if self._primary is not None:
                self._primary.close()
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
                with psycopg.connect(self.primary_url, autocommit=True, application_name=LISTENER_NAME) as conn:
                    conn.execute(f"LISTEN {PROGRESS_CHANNEL}")
                    conn.execute(f"LISTEN {TRACES_CHANNEL}")
                    # Positions reached while nobody listened: read them once LISTEN is active.
                    if self.replica:
                        self._read_replica()
                    else:
                        self._read_positions(conn)
                    self._listening.set()
                    backoff = 0.2
                    while not self._closed.is_set():
                        for notify in notifications(conn, 0.5, self._closed):
                            if notify.channel == TRACES_CHANNEL:
                                self._remember_traces(notify.payload)
                                continue
                            name, _, position = notify.payload.rpartition(" ")
                            if self.replica:
                                self._announce(name, int(position))
                            else:
                                self._advance(name, int(position))
                        if not self.replica:  # the replica's are read by `_confirm`
                            self._read_positions(conn)
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

    def _read_positions(self, conn: psycopg.Connection[Any]) -> None:
        for name, position in conn.execute(
            f"SELECT application_name, notification_id FROM {TRACKING_TABLE} WHERE application_name LIKE 'projection.%%'"
        ):
            self._advance(notice_name(name), int(position or 0))

    # --- a replica ----------------------------------------------------------------------------

    def _announce(self, projection: str, position: int) -> None:
        with self._changed:
            if position > self._announced.get(projection, -1):
                self._announced[projection] = position
        self._announcement.set()

    def _read_replica(self) -> None:
        with self.pool.connection() as conn:
            self._read_positions(conn)

    def _behind(self) -> bool:
        with self._changed:
            return any(self._positions.get(name, 0) < position for name, position in self._announced.items())

    def _confirm(self) -> None:
        """The replica's positions, read after each announcement until it has caught up with it."""
        while not self._closed.is_set():
            self._announcement.wait(0.5)
            self._announcement.clear()
            pause = 0.001
            while not self._closed.is_set():
                try:
                    self._read_replica()
                except Exception:  # noqa: BLE001 - the replica restarting: read again after the pause
                    log.warning("notification hub: the replica cannot be read", exc_info=True)
                    self._closed.wait(1.0)
                    break
                if not self._behind():
                    break
                self._closed.wait(pause)
                pause = min(pause * 2, 0.02)

    def primary_head(self) -> int:
        """The ledger's head on the primary (what a receipt's position may be up to)."""
        with self._primary_lock:
            for attempt in (1, 2):
                try:
                    if self._primary is None or self._primary.closed:
                        self._primary = psycopg.connect(self.primary_url, autocommit=True, application_name=LISTENER_NAME,
                                                        connect_timeout=5)
                    row = self._primary.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()
                    return int(row[0]) if row else 0
                except psycopg.OperationalError:
                    if self._primary is not None:
                        self._primary.close()
                    self._primary = None
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _remember_traces(self, payload: str) -> None:
        if len(self._traces) > TRACED_LIMIT:
            self._traces = {}  # the streams that were to send them have had their chance
        for line in payload.splitlines():
            position, _, traceparent = line.partition(" ")
            if position.isdigit() and traceparent:
                self._traces[int(position)] = traceparent

    def traceparent(self, position: int) -> str | None:
        """The trace context of the event at ``position``, when a projection told of one lately
        (traced events only, while tracing is on; a hub started after the projection's batch, or
        one that lost its LISTEN meanwhile, does not know it: that notice goes untraced)."""
        return self._traces.get(position)

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(projection)`` (on the hub's thread) each time a projection advances."""
        self._listeners.append(callback)

    def _advance(self, projection: str, position: int) -> None:
        with self._changed:
            if position <= self._positions.get(projection, -1):
                return
            self._positions[projection] = position
            self._changed.notify_all()
        for callback in self._listeners:
            callback(projection)

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
