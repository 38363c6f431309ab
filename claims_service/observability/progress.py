"""How far the service has come and how far behind it is, read from the database: the ledger's
head, every follower's position (the adjudicator, each projection, the Merkle tree), the last
signed checkpoint, the last verification, and PostgreSQL's WAL statistics.

One ``ProgressMonitor`` runs in the server's process and reads these every second (a handful of
point reads by primary key, whatever the ledger's size), so that health, the metrics endpoint and
``claimsctl status`` tell the same story:

- **lag in events**: the head's position minus the follower's;
- **lag in seconds**: how long ago the ledger first held an event the follower has not processed.
  Events carry no commit time outside their payloads (which may be encrypted), so the monitor
  remembers when it first saw each head position: the answer is good to one sampling interval, and
  counts from the monitor's start for a backlog older than that.
- **health**: while the adjudicator or a projection (not a rebuild running beside it) is further
  behind than ``max_lag_seconds`` (or ``max_lag_events``, when set), or the database cannot be read
  for that long, ``on_health(False, reason)``; ``on_health(True, "")`` once all are within again.

With ``sample_waits`` (metrics on) it also samples ``pg_stat_activity`` ten times a second for
sessions waiting on the WAL (``IO:WalSync``, ``LWLock:WALWrite``, ...; a slow disk shows there) and
adds up the time they spent so (an estimate, good to the sampling interval, summed over sessions).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

TREE_FOLLOWER = "merkle_tree"
SAMPLE_SECONDS = 1.0
WAIT_SAMPLE_SECONDS = 0.1
HISTORY_SECONDS = 3600.0  # how far back first sightings of head positions are remembered
APPLICATION_NAME = "claims-progress"


def gates_health(follower: str, expected: Iterable[str] = ()) -> bool:
    """Whether a follower's lag turns health NOT_SERVING: the adjudicator (each of its partitions:
    "adjudicator.<index>/<count>") and the projections that answer reads (a rebuild catching up
    beside its live projection does not). Given the ``expected`` followers, a partition that is not
    among them does not either: it belongs to another partition count, left behind when it changed."""
    if follower == "adjudicator" or follower.startswith("adjudicator."):
        expected = tuple(expected)
        return not expected or follower in expected
    return follower.startswith("projection.") and not follower.endswith(".rebuild")


@dataclass(frozen=True)
class Follower:
    name: str  # ledger_tracking's application_name ("adjudicator", "projection.claim_status"), or "merkle_tree"
    position: int
    lag_events: int
    lag_seconds: float | None  # None where nobody watched the head move (a one-off read)


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    signed_at: float  # Unix time
    age_seconds: float


@dataclass(frozen=True)
class Verification:
    verified_at: float  # Unix time
    age_seconds: float
    intact: bool
    events: int
    head_position: int | None
    problem: str | None
    verified_by: str


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # Unix time
    head: int
    followers: tuple[Follower, ...]
    tree_size: int
    checkpoint: Checkpoint | None
    verification: Verification | None
    wal: dict[str, float] = field(default_factory=dict)  # cumulative counters (see _WAL_QUERIES)


# PostgreSQL's WAL counters: 18 moved the write and sync counts and times to pg_stat_io; 14-17
# have them in pg_stat_wal. Times are milliseconds, and zero unless track_wal_io_timing is on.
_WAL_QUERIES = (
    ("SELECT w.wal_records, w.wal_bytes, w.wal_buffers_full, io.writes, io.write_time, io.fsyncs, io.fsync_time"
     " FROM pg_stat_wal w, (SELECT sum(writes) AS writes, sum(write_time) AS write_time, sum(fsyncs) AS fsyncs,"
     " sum(fsync_time) AS fsync_time FROM pg_stat_io WHERE object = 'wal') io"),
    "SELECT wal_records, wal_bytes, wal_buffers_full, wal_write, wal_write_time, wal_sync, wal_sync_time FROM pg_stat_wal",
)
_WAL_FIELDS = ("records", "bytes", "buffers_full", "writes", "write_ms", "syncs", "sync_ms")
# The waits on the WAL: its I/O (PostgreSQL 17 renamed WALSync to WalSync, and so on: either
# matches), its locks, and a synchronous standby's confirmation.
WAL_WAIT = "((wait_event_type IN ('IO', 'LWLock') AND wait_event ILIKE 'wal%') OR wait_event = 'SyncRep')"
_WAIT_QUERY = (
    "SELECT wait_event_type || ':' || wait_event, count(*) FROM pg_stat_activity"
    f" WHERE datname = current_database() AND {WAL_WAIT} GROUP BY 1"
)


def read_snapshot(conn: psycopg.Connection[Any], *, wal_query: int | None = 0,
                  expected: Iterable[str] = ()) -> tuple[Snapshot, int | None]:
    """One reading (lag in seconds unknown: see ProgressMonitor); and which WAL query worked
    (pass it back next time; None: WAL statistics unreadable here). A follower in ``expected``
    that has recorded no position yet is at position 0 (a follower stuck from the start lags too)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        head_row = cur.execute("SELECT notification_id FROM ledger_events ORDER BY notification_id DESC LIMIT 1").fetchone()
        head = int(head_row[0]) if head_row else 0
        tracking = cur.execute("SELECT application_name, notification_id FROM ledger_tracking"
                               " WHERE application_name <> '__migration__' ORDER BY application_name").fetchall()
        leaf = cur.execute("SELECT leaf_index, position FROM ledger_leaves ORDER BY leaf_index DESC LIMIT 1").fetchone()
        cp = cur.execute("SELECT tree_size, extract(epoch FROM signed_at)::float8,"
                         " extract(epoch FROM now() - signed_at)::float8"
                         " FROM ledger_checkpoints ORDER BY tree_size DESC LIMIT 1").fetchone()
        verification = _last_verification(cur)
        wal: dict[str, float] = {}
        while wal_query is not None and wal_query < len(_WAL_QUERIES):
            try:
                with conn.transaction():
                    row = cur.execute(_WAL_QUERIES[wal_query]).fetchone()
                wal = {name: float(value or 0) for name, value in zip(_WAL_FIELDS, row or (), strict=False)}
                break
            except psycopg.Error:
                wal_query += 1
        if wal_query is not None and wal_query >= len(_WAL_QUERIES):
            wal_query = None
    positions = {str(name): int(position or 0) for name, position in tracking}
    for name in expected:
        positions.setdefault(name, 0)
    followers = [Follower(name, position, max(0, head - position), None) for name, position in sorted(positions.items())]
    tree_position = int(leaf[1]) if leaf else 0
    followers.append(Follower(TREE_FOLLOWER, tree_position, max(0, head - tree_position), None))
    snapshot = Snapshot(
        taken_at=time.time(), head=head, followers=tuple(followers), tree_size=int(leaf[0]) + 1 if leaf else 0,
        checkpoint=Checkpoint(int(cp[0]), float(cp[1]), max(0.0, float(cp[2]))) if cp else None,
        verification=verification, wal=wal,
    )
    return snapshot, wal_query


def _last_verification(cur: psycopg.Cursor[Any]) -> Verification | None:
    try:
        with cur.connection.transaction():
            row = cur.execute(
                "SELECT extract(epoch FROM verified_at)::float8, extract(epoch FROM now() - verified_at)::float8,"
                " intact, events, head_position, problem, verified_by FROM ledger_verifications ORDER BY id DESC LIMIT 1"
            ).fetchone()
    except psycopg.errors.UndefinedTable:  # a database not yet migrated to 0016
        return None
    if row is None:
        return None
    return Verification(float(row[0]), max(0.0, float(row[1])), bool(row[2]), int(row[3]),
                        None if row[4] is None else int(row[4]), row[5], str(row[6]))


def record_verification(conn: psycopg.Connection[Any], report: Any, *, verified_by: str) -> None:
    """Keep the outcome of a full verification (a ``chain.VerifyReport``) for metrics and
    ``claimsctl status``. Never fails the verification: a read-only role, a database not yet
    migrated, are logged and passed over."""
    problem = report.problem
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO ledger_verifications (intact, events, head_position, problem_position, problem, seconds,"
                " verified_by) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (report.intact, report.events, report.head_position, None if problem is None else problem.position,
                 None if problem is None else str(problem), float(report.seconds or 0.0), verified_by),
            )
    except psycopg.Error as error:
        log.warning("the verification's outcome was not kept (%s)", type(error).__name__)


class ProgressMonitor:
    """``ProgressMonitor(database_url, *, max_lag_seconds, max_lag_events=0, expected=(),
    on_health=..., sample_waits=False)``: ``start()``, ``stop()``, ``snapshot`` (the latest, lag in
    seconds filled in), ``wal_wait_seconds`` (wait event -> seconds, cumulative). ``expected``: the
    followers the service runs (see ``read_snapshot``)."""

    def __init__(self, database_url: str, *, max_lag_seconds: float, max_lag_events: int = 0,
                 expected: Iterable[str] = (), on_health: Callable[[bool, str], None] = lambda ok, reason: None,
                 sample_waits: bool = False, interval: float = SAMPLE_SECONDS) -> None:
        self.database_url = database_url
        self.expected = tuple(expected)
        self.max_lag_seconds = max_lag_seconds
        self.max_lag_events = max_lag_events
        self.on_health = on_health
        self.sample_waits = sample_waits
        self.interval = interval
        self.snapshot: Snapshot | None = None
        self.wal_wait_seconds: dict[str, float] = {}
        self.sample_errors = 0
        self._times: list[float] = []  # monotonic time each head position was first seen ...
        self._heads: list[int] = []  # ... and the position (both ascending)
        self._healthy: bool | None = None
        self._unreadable_since: float | None = None
        self._wal_query: int | None = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    # --- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        next_sample = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.database_url, autocommit=True, application_name=APPLICATION_NAME,
                                           connect_timeout=5)
                if now >= next_sample:
                    next_sample = now + self.interval
                    self.sample(conn)
                if self.sample_waits:
                    self._sample_waits(conn, WAIT_SAMPLE_SECONDS)
            except Exception as error:  # noqa: BLE001 - the monitor must outlive the database's outages
                self.sample_errors += 1
                if conn is not None:
                    conn.close()
                    conn = None
                self._unreadable(now, error)
            wait = WAIT_SAMPLE_SECONDS if self.sample_waits else max(0.0, next_sample - time.monotonic())
            self._stop.wait(wait)
        if conn is not None:
            conn.close()

    def sample(self, conn: psycopg.Connection[Any]) -> Snapshot:
        """Read once, fill in the lag in seconds, judge health."""
        raw, self._wal_query = read_snapshot(conn, wal_query=self._wal_query, expected=self.expected)
        now = time.monotonic()
        if not self._heads or raw.head > self._heads[-1]:
            self._times.append(now)
            self._heads.append(raw.head)
        while self._times and now - self._times[0] > HISTORY_SECONDS and len(self._times) > 1:
            del self._times[0], self._heads[0]
        followers = tuple(Follower(f.name, f.position, f.lag_events, self._lag_seconds(f.position, now))
                          for f in raw.followers)
        snapshot = Snapshot(raw.taken_at, raw.head, followers, raw.tree_size, raw.checkpoint, raw.verification, raw.wal)
        self.snapshot = snapshot
        self._unreadable_since = None
        self._judge(snapshot)
        return snapshot

    def _lag_seconds(self, position: int, now: float) -> float:
        """Since when the ledger has held an event after ``position``, as far as this monitor saw."""
        first_beyond = bisect.bisect_right(self._heads, position)
        if first_beyond == len(self._heads):
            return 0.0
        return now - self._times[first_beyond]

    def _judge(self, snapshot: Snapshot) -> None:
        behind = []
        for follower in snapshot.followers:
            if not gates_health(follower.name, self.expected):
                continue
            if follower.lag_seconds is not None and follower.lag_seconds > self.max_lag_seconds:
                behind.append(f"{follower.name} is {follower.lag_seconds:.0f} s behind the ledger")
            elif self.max_lag_events and follower.lag_events > self.max_lag_events:
                behind.append(f"{follower.name} is {follower.lag_events} events behind the ledger")
        self._set_health(not behind, "; ".join(behind))

    def _unreadable(self, now: float, error: Exception) -> None:
        if self._unreadable_since is None:
            self._unreadable_since = now
            log.warning("progress: the database cannot be read (%s)", type(error).__name__)
        elif now - self._unreadable_since > self.max_lag_seconds:
            self._set_health(False, f"the database could not be read for {now - self._unreadable_since:.0f} s")

    def _set_health(self, ok: bool, reason: str) -> None:
        if ok == self._healthy:
            return
        first, self._healthy = self._healthy is None, ok
        if ok and first:
            pass  # nothing to say: every follower is within its lag from the start
        elif ok:
            log.info("progress: every follower is within %.0f s of the ledger again", self.max_lag_seconds)
        else:
            log.warning("progress: %s; health NOT_SERVING", reason)
        self.on_health(ok, reason)

    def _sample_waits(self, conn: psycopg.Connection[Any], interval: float) -> None:
        with conn.cursor(row_factory=tuple_row) as cur:
            for event, sessions in cur.execute(_WAIT_QUERY).fetchall():
                self.wal_wait_seconds[event] = self.wal_wait_seconds.get(event, 0.0) + sessions * interval


class ProgressCollector:
    """The monitor's readings as Prometheus families, collected at scrape time in the server's
    process; with the health conditions (``failing``) and the workers' process (``workers``:
    (alive, restarts))."""

    def __init__(self, monitor: ProgressMonitor, *, failing: Callable[[], Iterable[str]] = lambda: (),
                 workers: Callable[[], tuple[bool, int]] | None = None) -> None:
        self.monitor = monitor
        self.failing = failing
        self.workers = workers

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        failing = list(self.failing())
        yield GaugeMetricFamily("claims_health_serving", "1 while health answers SERVING, 0 while NOT_SERVING",
                                value=0 if failing else 1)
        health = GaugeMetricFamily("claims_health_condition_failing", "1 for each health condition that fails now",
                                   labels=["condition"])
        for condition in failing:
            health.add_metric([condition], 1)
        yield health
        if self.workers is not None:
            alive, restarts = self.workers()
            yield GaugeMetricFamily("claims_workers_up", "1 while the workers' process runs", value=1 if alive else 0)
            yield CounterMetricFamily("claims_workers_restarts", "Times the workers' process was started again",
                                      value=restarts)
        yield CounterMetricFamily("claims_progress_sample_errors", "Failed readings of the followers' progress",
                                  value=self.monitor.sample_errors)
        waits = CounterMetricFamily("claims_db_wal_wait_seconds",
                                    "Time database sessions spent waiting on the WAL, sampled from pg_stat_activity"
                                    " (summed over sessions)", labels=["wait_event"])
        for event, seconds in sorted(self.monitor.wal_wait_seconds.items()):
            waits.add_metric([event], seconds)
        yield waits
        snapshot = self.monitor.snapshot
        if snapshot is None:
            return
        yield GaugeMetricFamily("claims_progress_sample_timestamp_seconds", "When the progress was last read (Unix time)",
                                value=snapshot.taken_at)
        yield GaugeMetricFamily("claims_ledger_head_position", "The position of the ledger's last event",
                                value=snapshot.head)
        position = GaugeMetricFamily("claims_follower_position", "The last ledger position a follower processed",
                                     labels=["follower"])
        lag_events = GaugeMetricFamily("claims_follower_lag_events", "Events in the ledger a follower has not processed",
                                       labels=["follower"])
        lag_seconds = GaugeMetricFamily("claims_follower_lag_seconds",
                                        "Since when the ledger has held an event a follower has not processed",
                                        labels=["follower"])
        for follower in snapshot.followers:
            position.add_metric([follower.name], follower.position)
            lag_events.add_metric([follower.name], follower.lag_events)
            lag_seconds.add_metric([follower.name], follower.lag_seconds or 0.0)
        yield position
        yield lag_events
        yield lag_seconds
        yield GaugeMetricFamily("claims_merkle_tree_leaves", "Leaves in the Merkle tree", value=snapshot.tree_size)
        if snapshot.checkpoint is not None:
            cp = snapshot.checkpoint
            yield GaugeMetricFamily("claims_checkpoint_tree_size", "Leaves covered by the last signed checkpoint",
                                    value=cp.tree_size)
            yield GaugeMetricFamily("claims_checkpoint_timestamp_seconds", "When the last checkpoint was signed (Unix time)",
                                    value=cp.signed_at)
            yield GaugeMetricFamily("claims_checkpoint_age_seconds", "Age of the last signed checkpoint",
                                    value=cp.age_seconds)
        if snapshot.verification is not None:
            v = snapshot.verification
            yield GaugeMetricFamily("claims_verification_intact",
                                    "1 if the last full verification of the chain found it intact, 0 if it found a fault",
                                    value=1 if v.intact else 0)
            yield GaugeMetricFamily("claims_verification_timestamp_seconds",
                                    "When the chain was last fully verified (Unix time)", value=v.verified_at)
            yield GaugeMetricFamily("claims_verification_events", "Events the last full verification checked",
                                    value=v.events)
        if snapshot.wal:
            wal = snapshot.wal
            for name, key, scale, documentation in (
                ("claims_db_wal_records", "records", 1.0, "WAL records PostgreSQL generated (pg_stat_wal)"),
                ("claims_db_wal_bytes", "bytes", 1.0, "WAL bytes PostgreSQL generated (pg_stat_wal)"),
                ("claims_db_wal_buffers_full", "buffers_full", 1.0, "Times WAL was written because its buffers were full"),
                ("claims_db_wal_writes", "writes", 1.0, "WAL writes to disk"),
                ("claims_db_wal_syncs", "syncs", 1.0, "WAL flushes to disk (fsync and the like)"),
                ("claims_db_wal_write_seconds", "write_ms", 0.001, "Time writing WAL (0 unless track_wal_io_timing is on)"),
                ("claims_db_wal_sync_seconds", "sync_ms", 0.001, "Time flushing WAL to disk (0 unless track_wal_io_timing is on)"),
            ):
                if key in wal:
                    yield CounterMetricFamily(name, documentation, value=wal[key] * scale)
