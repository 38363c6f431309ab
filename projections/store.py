"""The PostgreSQL side of every projection: a batch of row changes and its tracking position,
written in ONE transaction.

How exactly-once works here (the eventsourcing pattern, batched):

1. A transaction starts by locking the projection's own row in ``ledger_tracking``
   (``SELECT ... FOR UPDATE``) and reading its position P. Any other runner of the same
   projection — a second process, a runner the supervisor restarted while the old thread still
   lingered, the rebuild's swap — waits here, then reads the position that one committed.
2. It reads the notifications after P (up to the batch size), applies them to the rows they touch
   (loaded into memory in bulk, changed in Python, written back with one statement per table),
   and records the last position with the library's tracking insert (which refuses to go
   backwards).
3. COMMIT makes the row changes and the new position visible together. A kill at any moment
   before it leaves neither; after it, both. A restarted runner reads P again and continues: no
   event is applied twice or skipped.
4. Then, in a transaction of its own, it NOTIFYs ``projection_progress`` (`announce`).

Reading ahead: while catching up (a rebuild, a backlog), a ``BatchReader`` thread reads and
decodes the next batches while the current one is written. That is safe because events never
change and positions are in commit order: a batch read ahead is used only if it starts exactly at
the position the transaction has locked, otherwise it is read again.

Nothing is remembered between batches: every batch reads the rows it needs from the tables, so a
projection restarted, swapped to rebuilt tables, or run on another machine behaves the same.
Tables are named by the migrations; a rebuild writes the same code into ``<table>_rebuild``.

Erasure (`apply_model`, the same for every read model): an event of an erased member is never
projected, and at a member's erasure (``MemberErasure.Recorded``) every table of the read model
loses the rows of the streams it names (by ``claim_id`` and ``stream_id``), whatever the read model,
so that a live read model forgets the member and a rebuilt one never holds them.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Connection, Cursor, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg.types.json import set_json_loads

from projections.events import Notification, Topics, read_notifications

log = logging.getLogger(__name__)

TRACKING_TABLE = "ledger_tracking"
PROGRESS_CHANNEL = "projection_progress"
# While tracing is on: the trace contexts of a batch's traced events, "<position> <traceparent>" a
# line, NOTIFYed after the batch's commit before its progress (what the streams' notices continue).
TRACES_CHANNEL = "projection_traces"
TRACES_PER_NOTIFY = 100  # lines of about 70 bytes: well under NOTIFY's 8,000-byte payload
REBUILD_SUFFIX = "_rebuild"

Row = dict[str, Any]


def tracking_name(projection: str, suffix: str = "") -> str:
    """The ``ledger_tracking.application_name`` of a projection (or of its rebuild)."""
    return f"projection.{projection}" + (".rebuild" if suffix == REBUILD_SUFFIX else "")


def notice_name(tracking: str) -> str:
    """The name a projection's progress NOTIFY gives (``progress_notice``) for its tracking row's
    ``application_name``: "projection.claim_status" is "claim_status", its rebuild's
    "projection.claim_status.rebuild" is "claim_status_rebuild"."""
    name = tracking.removeprefix("projection.")
    return name.removesuffix(".rebuild") + REBUILD_SUFFIX if name.endswith(".rebuild") else name


class ReadModel(ABC):
    """What one projection does with a batch of notifications.

    ``name`` names the projection (tracking row, CLI); ``tables`` are the tables it owns (as
    registered in ``read_model_tables`` by its migration); ``topics`` / ``topic_prefixes`` select
    the events whose payloads it reads.
    """

    name: ClassVar[str]
    tables: ClassVar[tuple[str, ...]]
    topics: ClassVar[frozenset[str]] = frozenset()
    topic_prefixes: ClassVar[tuple[str, ...]] = ()
    # Tables whose rows of an erased member's streams are rewritten (``scrub``), not deleted: what
    # must outlive the member's data, reduced to what a rebuild that cannot read it writes.
    kept_on_erasure: ClassVar[tuple[str, ...]] = ()

    def scrub(self, cur: Cursor[Any], relation: str, streams: Sequence[str]) -> int:
        """Rewrite the rows of ``relation`` (one of ``kept_on_erasure``, with its suffix) that
        belong to ``streams`` as a rebuild after the erasure writes them; how many."""
        raise NotImplementedError(f"{self.name} keeps no table on erasure")

    def prepare(self, notifications: Sequence[Notification]) -> None:
        """Decode what ``apply`` will need, ahead of time (called on a reader thread while the
        previous batch is written). Must not touch the database."""
        for n in notifications:
            if n.state is not None and n.topic in self.topics:
                n.payload  # noqa: B018 - decodes and caches

    @abstractmethod
    def apply(self, batch: Batch, notifications: Sequence[Notification]) -> None:
        """Turn the notifications (every one after the tracked position, in order; payloads only
        for ``topics``) into row changes through ``batch``. Must be deterministic: the same
        events always give the same rows, whatever the batch boundaries. Payloads are shared
        with the other read models of a ``ViewGroup``: never change them in place."""


# --- batches ---------------------------------------------------------------------------------


class _Columns:
    """Column names and SQL types of a table, read from the catalog once per process."""

    cache: ClassVar[dict[str, dict[str, str]]] = {}

    @classmethod
    def of(cls, cur: Cursor[Any], relation: str) -> dict[str, str]:
        if relation not in cls.cache:
            cur.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (relation,),
            )
            cls.cache[relation] = {name: typ for name, typ in cur.fetchall()}
        return cls.cache[relation]


_STATEMENTS: dict[tuple[Any, ...], bytes] = {}


def cached_statement(name: tuple[Any, ...], compose: Callable[[], sql.Composable]) -> bytes:
    """The text of a statement composed once per process and kept under ``name`` (its relation,
    kind and columns): composing and rendering a ``sql.Composed`` cost more than a small batch's
    own rows, and every batch writes the same few statements."""
    text = _STATEMENTS.get(name)
    if text is None:
        text = _STATEMENTS[name] = compose().as_bytes()
    return text


class Table:
    """The rows of one table that a batch reads and changes, keyed by the primary key.

    Rows are plain JSON dicts, both ways: read with ``to_jsonb(row)`` and written back with
    ``jsonb_populate_recordset`` (one INSERT ... ON CONFLICT DO UPDATE for all changed rows, one
    DELETE for all removed ones). Missing keys in a written row become NULL, so new rows must
    carry every column.
    """

    def __init__(self, cur: Cursor[Any], name: str, suffix: str, key: tuple[str, ...]) -> None:
        self.cur = cur
        self.name = name
        self.relation = name + suffix
        self.key = key
        self.columns = _Columns.of(cur, self.relation)
        self.rows: dict[tuple[Any, ...], Row | None] = {}
        self.dirty: set[tuple[Any, ...]] = set()
        self.covered: dict[str, set[Any]] = {}

    def _key_of(self, row: Row) -> tuple[Any, ...]:
        return tuple(row[k] for k in self.key)

    def prefetch(self, column: str, values: Iterable[Any]) -> None:
        """Load every row whose ``column`` is one of ``values`` (one query)."""
        known = self.covered.setdefault(column, set())
        wanted = {v for v in values if v not in known}
        if not wanted:
            return
        query = cached_statement(("prefetch", self.relation, column, self.columns[column]), lambda: sql.SQL(
            "SELECT to_jsonb(t) FROM {} t WHERE {} = ANY(%b::{}[])").format(
            sql.Identifier(self.relation), sql.Identifier(column), sql.SQL(self.columns[column])
        ))
        self.cur.execute(query, (list(wanted),), prepare=True, binary=True)  # both ways without text escaping
        for (row,) in self.cur.fetchall():
            self.rows.setdefault(self._key_of(row), row)
        known.update(wanted)

    def prefetch_keys(self, keys: Iterable[tuple[Any, ...]]) -> None:
        """Load the rows with these primary keys (one query), and remember the absent ones as
        absent: where a column of the key alone would name many more rows than the batch needs
        (a benefit period's claims, where a batch changes one or two of them)."""
        wanted = {key for key in keys if key not in self.rows}
        if not wanted:
            return
        types = [self.columns[k] for k in self.key]
        query = cached_statement(("prefetch_keys", self.relation, self.key, *types), lambda: sql.SQL(
            "SELECT to_jsonb(t) FROM {} t JOIN unnest({}) AS w({}) ON {}").format(
            sql.Identifier(self.relation),
            sql.SQL(", ").join(sql.SQL("%b::{}[]").format(sql.SQL(typ)) for typ in types),
            sql.SQL(", ").join(map(sql.Identifier, self.key)),
            sql.SQL(" AND ").join(sql.SQL("t.{0} = w.{0}").format(sql.Identifier(k)) for k in self.key)))
        self.cur.execute(query, [list(column) for column in zip(*wanted, strict=True)], prepare=True, binary=True)
        for (row,) in self.cur.fetchall():
            self.rows.setdefault(self._key_of(row), row)
        for key in wanted:
            self.rows.setdefault(key, None)

    def get(self, *key: Any) -> Row | None:
        """The row with this primary key as the batch has it so far (None: absent or deleted)."""
        if key in self.rows:
            return self.rows[key]
        for column, value in zip(self.key, key, strict=True):
            if value in self.covered.get(column, ()):
                return None
        query = cached_statement(("get", self.relation, self.key, *(self.columns[k] for k in self.key)), lambda: sql.SQL(
            "SELECT to_jsonb(t) FROM {} t WHERE {}").format(sql.Identifier(self.relation), sql.SQL(" AND ").join(
                sql.SQL("{} = %s::{}").format(sql.Identifier(k), sql.SQL(self.columns[k])) for k in self.key)))
        self.cur.execute(query, key, prepare=True)
        found = self.cur.fetchone()
        row = found[0] if found else None
        self.rows[key] = row
        return row

    def put(self, row: Row) -> Row:
        key = self._key_of(row)
        self.rows[key] = row
        self.dirty.add(key)
        return row

    def delete(self, *key: Any) -> None:
        self.rows[key] = None
        self.dirty.add(key)

    def forget_where(self, column: str, values: set[str]) -> None:
        """Drop the rows (read or changed) whose ``column`` is one of ``values`` (`Batch.purge`
        deletes them from the table)."""
        for key, row in list(self.rows.items()):
            if row is not None and str(row.get(column)) in values:
                del self.rows[key]
                self.dirty.discard(key)

    def flush(self) -> None:
        upserts = [row for key in self.dirty if (row := self.rows[key]) is not None]
        deletes = [dict(zip(self.key, key, strict=True)) for key in self.dirty if self.rows[key] is None]
        relation = sql.Identifier(self.relation)
        if deletes:
            self.cur.execute(cached_statement(("delete", self.relation, self.key), lambda: sql.SQL(
                "DELETE FROM {0} t USING jsonb_populate_recordset(NULL::{0}, %s::jsonb) d WHERE {1}").format(
                relation, sql.SQL(" AND ").join(sql.SQL("t.{0} = d.{0}").format(sql.Identifier(k)) for k in self.key)
            )), (_dumps(deletes),))
        if upserts:
            others = [c for c in self.columns if c not in self.key]
            self.cur.execute(cached_statement(("upsert", self.relation, self.key, *others), lambda: sql.SQL(
                "INSERT INTO {0} SELECT * FROM jsonb_populate_recordset(NULL::{0}, %s::jsonb)"
                " ON CONFLICT ({1}) DO UPDATE SET ({2}) = ROW({3})"
            ).format(
                relation,
                sql.SQL(", ").join(map(sql.Identifier, self.key)),
                sql.SQL(", ").join(map(sql.Identifier, others)),
                sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in others),
            )), (_dumps(upserts),))
        self.dirty.clear()


class AppendTable:
    """Rows a batch only adds (notices, timeline entries): one multi-row INSERT at the end."""

    def __init__(self, cur: Cursor[Any], name: str, suffix: str) -> None:
        self.cur = cur
        self.name = name
        self.relation = name + suffix
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def forget_where(self, column: str, values: set[str]) -> None:
        self.rows = [row for row in self.rows if str(row.get(column)) not in values]

    def flush(self) -> None:
        if self.rows:
            self.cur.execute(cached_statement(("insert", self.relation), lambda: sql.SQL(
                "INSERT INTO {0} SELECT * FROM jsonb_populate_recordset(NULL::{0}, %s::jsonb)").format(
                sql.Identifier(self.relation))), (_dumps(self.rows),))
            self.rows = []


def _dumps(rows: list[Row]) -> str:
    # orjson: several times faster than json.dumps on a batch's rows, which every batch writes.
    return orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS).decode()


# Composed once (see `cached_statement`).
_LOCK_TRACKING = sql.SQL(
    "SELECT application_name, notification_id FROM {} WHERE application_name = ANY(%s)"
    " ORDER BY application_name FOR UPDATE"
).format(sql.Identifier(TRACKING_TABLE)).as_bytes()


def lock_tracking_rows(cur: Cursor[Any], application_names: Sequence[str]) -> dict[str, int]:
    """Lock these tracking rows for the transaction (in name order, so that two lockers of
    overlapping sets cannot deadlock), creating missing ones at 0; return their positions."""
    names = sorted(application_names)
    with cur.connection.cursor(row_factory=tuple_row) as c:
        rows = c.execute(_LOCK_TRACKING, (names,), prepare=True).fetchall()
        if len(rows) < len(names):
            c.execute(
                sql.SQL("INSERT INTO {} (application_name, notification_id) SELECT n, 0 FROM unnest(%s::text[]) AS n"
                        " ON CONFLICT DO NOTHING").format(sql.Identifier(TRACKING_TABLE)),
                (names,),
            )
            rows = c.execute(_LOCK_TRACKING, (names,)).fetchall()
    return {name: int(position or 0) for name, position in rows}


# One statement: the setting is the transaction's own (is_local), and applies at its commit.
_ANNOUNCE = (b"SELECT set_config('synchronous_commit', 'off', true), pg_notify(n.channel, n.payload)"
             b" FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS n(channel, payload, i) ORDER BY n.i")


def progress_notice(projection: str, position: int) -> tuple[str, str]:
    """The NOTIFY that tells the hub (``projections.feed``) a projection reached ``position``."""
    return PROGRESS_CHANNEL, f"{projection} {position}"


def announce(datastore: PostgresDatastore, notices: Sequence[tuple[str, str]]) -> None:
    """NOTIFY ``(channel, payload)``s, in order, once the batch they announce has committed: in a
    transaction of their own that commits without waiting for its WAL flush.

    Why not in the batch's transaction: PostgreSQL serialises the commits of every transaction
    that NOTIFYs (a lock on the notification queue, taken before the commit and held until its WAL
    flush is done). A ledger append NOTIFYs its followers while it holds the events table's lock,
    so a batch that NOTIFYed held every submit through its own commit's flush: a large one after a
    checkpoint, say, or one that had to create a WAL segment. A transaction that only NOTIFYs
    writes no data: a crash can lose nothing of it but the wake-up, and the listeners read the
    positions every half second anyway (``projections.feed``)."""
    if not notices:
        return
    channels, payloads = zip(*notices, strict=True)
    with datastore.transaction(commit=True) as cur:
        cur.execute(_ANNOUNCE, (list(channels), list(payloads)), prepare=True)


_FAST_JSON: weakref.WeakSet[Connection[Any]] = weakref.WeakSet()


def fast_json(conn: Connection[Any]) -> Connection[Any]:
    """``conn``, reading JSON with orjson from now on: the rows are our own plain JSON (no
    number beyond 64 bits), and the projections read many. Set once per connection (each call
    of ``set_json_loads`` makes new loader classes)."""
    if conn not in _FAST_JSON:
        set_json_loads(orjson.loads, conn)
        _FAST_JSON.add(conn)
    return conn


class Batch:
    """The unit of work of one batch: the tables it touches, written together by ``flush``."""

    def __init__(self, cur: Cursor[Any], suffix: str = "") -> None:
        self.cur = cur
        self.suffix = suffix
        self._tables: dict[str, Table | AppendTable] = {}

    def table(self, name: str, key: tuple[str, ...]) -> Table:
        if name not in self._tables:
            self._tables[name] = Table(self.cur, name, self.suffix, key)
        table = self._tables[name]
        assert isinstance(table, Table)
        return table

    def append_table(self, name: str) -> AppendTable:
        if name not in self._tables:
            self._tables[name] = AppendTable(self.cur, name, self.suffix)
        table = self._tables[name]
        assert isinstance(table, AppendTable)
        return table

    def flush(self) -> None:
        for table in self._tables.values():
            table.flush()

    def purge(self, model: ReadModel, streams: Sequence[str]) -> None:
        """Delete every row of the model's tables that belongs to one of ``streams`` (an erased
        member's): by ``claim_id`` and by ``stream_id``, in the table and in this batch; the rows
        of a table it keeps on erasure are scrubbed instead (this batch's written first)."""
        values = {str(s) for s in streams}
        if not values:
            return
        for name in model.tables:
            relation = name + self.suffix
            if name in model.kept_on_erasure:
                pending = self._tables.get(name)
                if pending is not None:
                    pending.flush()
                model.scrub(self.cur, relation, sorted(values))
                continue
            columns = _Columns.of(self.cur, relation)
            for column in ERASED_BY:
                if column not in columns:
                    continue
                self.cur.execute(sql.SQL("DELETE FROM {} WHERE {}::text = ANY(%s::text[])").format(
                    sql.Identifier(relation), sql.Identifier(column)), (sorted(values),))
                found = self._tables.get(name)
                if found is not None:
                    found.forget_where(column, values)


ERASED_BY = ("claim_id", "stream_id")
"""The columns by which a read model's rows belong to a member's stream (a claim, a coverage, a
benefit period, a visit)."""


def apply_model(model: ReadModel, batch: Batch, notifications: Sequence[Notification]) -> None:
    """``model.apply`` over the notifications, without an erased member's events, and with each
    erasure's streams purged from the model's tables at its place in the ledger."""
    start = 0
    for i, n in enumerate(notifications):
        if n.topic == Topics.MEMBER_ERASED and n.state is not None:
            _apply_kept(model, batch, notifications[start:i])
            batch.purge(model, n.payload["streams"])
            start = i + 1
    _apply_kept(model, batch, notifications[start:] if start else notifications)


def _apply_kept(model: ReadModel, batch: Batch, notifications: Sequence[Notification]) -> None:
    kept = [n for n in notifications if not n.erased] if any(n.keys is not None for n in notifications) else notifications
    if kept:
        model.apply(batch, kept)


# --- the view --------------------------------------------------------------------------------


def datastore_for(database_url: str, *, pool_size: int = 1, max_overflow: int = 1, pre_ping: bool = True) -> PostgresDatastore:
    """A library datastore (connection pool) for a libpq URL (the host may be a socket directory).
    ``pre_ping`` checks each connection when it is taken (a round trip)."""
    params = conninfo_to_dict(database_url)
    return PostgresDatastore(
        dbname=str(params.get("dbname", "postgres")),
        host=str(params.get("host", "localhost")),
        port=str(params.get("port", "5432")),
        user=str(params.get("user", "postgres")),
        password=str(params.get("password", "")),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pre_ping=pre_ping,
        connect_timeout=5,
        single_row_tracking=True,
    )


AfterApply = Callable[[Sequence[Notification]], None]


@dataclass(frozen=True)
class Prefetched:
    """A batch read ahead: the notifications after position ``after``."""

    after: int
    notifications: list[Notification]


class BatchReader:
    """Reads and decodes the next batches on a thread of its own while the current one is being
    written (the database wait and the JSON decoding overlap). Iterating yields ``Prefetched``
    batches in order until one comes back empty (caught up) or ``close()``.
    """

    def __init__(self, view: ReadModelView, database_url: str, after: int, limit: int, *, depth: int = 2) -> None:
        self.view = view
        self.database_url = database_url
        self.after = after
        self.limit = limit
        self.batches: queue.Queue[Prefetched | BaseException | None] = queue.Queue(maxsize=depth)
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"reader-{view.model.name}", daemon=True)
        self.thread.start()

    def _put(self, item: Prefetched | BaseException | None) -> bool:
        while not self.closed.is_set():
            try:
                self.batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                after = self.after
                while not self.closed.is_set():
                    notifications = self.view.read(conn, after, self.limit)
                    if not notifications:
                        break
                    self.view.model.prepare(notifications)
                    if not self._put(Prefetched(after, notifications)):
                        return
                    after = notifications[-1].position
            self._put(None)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            self._put(error)

    def __iter__(self) -> Iterator[Prefetched]:
        while True:
            item = self.batches.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.closed.set()
        self.thread.join(5)


class ReadModelView(PostgresTrackingRecorder):
    """A projection's tables plus its tracking row, in the tracking table the ledger already has.

    ``suffix`` "" is the live read model; ``"_rebuild"`` the copy a rebuild fills.
    """

    def __init__(self, datastore: PostgresDatastore, model: ReadModel, *, suffix: str = "") -> None:
        super().__init__(datastore, tracking_table_name=TRACKING_TABLE)
        self.model = model
        self.suffix = suffix
        self.application_name = tracking_name(model.name, suffix)
        self.last_position: int | None = None  # of the last batch this object processed

    @classmethod
    def for_url(cls, database_url: str, model: ReadModel, *, suffix: str = "", pool_size: int = 1) -> ReadModelView:
        return cls(datastore_for(database_url, pool_size=pool_size), model, suffix=suffix)

    def close(self) -> None:
        self.datastore.pool.close()

    def position(self) -> int:
        """The last position this view has processed (0 when none)."""
        return self.max_tracking_id(self.application_name) or 0

    def process_batch(
        self, limit: int, *, after_apply: AfterApply | None = None, prefetched: Prefetched | None = None
    ) -> int:
        """Process up to ``limit`` notifications after the tracked position, in one transaction;
        return how many (0 when caught up). ``prefetched`` is a batch a ``BatchReader`` read
        ahead: used only if it starts exactly at the tracked position."""
        with self.datastore.transaction(commit=True) as cur:
            processed = self.process_batch_in(cur, limit, after_apply=after_apply, prefetched=prefetched)
        if processed:
            announce(self.datastore, [progress_notice(f"{self.model.name}{self.suffix}", self.last_position)])
        return processed

    def process_batch_in(
        self,
        cur: Cursor[Any],
        limit: int,
        *,
        after_apply: AfterApply | None = None,
        prefetched: Prefetched | None = None,
    ) -> int:
        """The same, inside the caller's transaction (the rebuild's final catch-up and swap), and
        unannounced: the hub reads the position that transaction commits within half a second."""
        start = self.lock_position(cur)
        if prefetched is not None and prefetched.after == start:
            # Events never change once committed, and positions are in commit order: the rows
            # after `start` that were read ahead are exactly the rows this batch would read.
            notifications = prefetched.notifications
        else:
            notifications = self.read(cur.connection, start, limit)
        if not notifications:
            return 0
        with fast_json(cur.connection).cursor(row_factory=tuple_row) as rows_cur:
            batch = Batch(rows_cur, self.suffix)
            apply_model(self.model, batch, notifications)
            batch.flush()
        if after_apply is not None:
            after_apply(notifications)  # instrumentation and tests: the rows are written, not committed
        last = notifications[-1].position
        self._insert_tracking(cur, Tracking(self.application_name, last))
        self.last_position = last
        return len(notifications)

    def read(self, conn: Any, after: int, limit: int) -> list[Notification]:
        return read_notifications(conn, after, limit, topics=self.model.topics, prefixes=self.model.topic_prefixes)

    def lock_position(self, cur: Cursor[Any]) -> int:
        """Lock this view's tracking row for the transaction and return its position."""
        return lock_tracking_rows(cur, [self.application_name])[self.application_name]
