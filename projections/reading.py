"""What every read-model query shares: reading rows, waiting for the caller's position, checking
arguments, keyset pages. The queries themselves live beside their writers (``claims``,
``benefits``, ``payments``, ``timeline``).

Every query takes a ``source``: a ``psycopg.Connection`` or a ``psycopg_pool.ConnectionPool``
(a connection is borrowed per call), and returns frozen dataclasses of plain values (dates as
``datetime.date``, JSON columns as dicts/lists, hashes as bytes); the gRPC layer converts them.

Read your own writes: every query that serves a request accepts ``min_position`` (the ledger
position of a write's receipt) and ``timeout`` (seconds, e.g. the call's remaining deadline;
default 5). It first waits until the read model it reads has processed that position — woken by
the ``NotificationHub``'s LISTEN when one is passed as ``hub``, otherwise by short, growing sleeps
(2 → 50 ms) on the projection's tracking row — and past the deadline raises ``ProjectionLagError``
(DEADLINE_EXCEEDED: ask again later) rather than answer stale. A position beyond the ledger's head,
which no receipt can carry, is ``PositionBeyondHeadError`` (OUT_OF_RANGE) at once. From a streaming
replica (``CLAIMS_READ_DATABASE_URL``) the same holds: the replica's tracking rows are the judge
(they replicate with the rows they cover), and the primary's head the limit.

Visibility: a claim, payment or EOB of another party is "not found", never "forbidden", so
existence does not leak (pass ``provider_id`` or ``payer_id`` of the caller).

Pagination is keyset-based; page tokens are opaque, tied to the query's filters (reusing one with
other filters is INVALID_ARGUMENT), and stable while rows are added.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import json
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import date
from contextlib import contextmanager
from dataclasses import fields
from typing import Any, Protocol, TypeVar
from uuid import UUID

import psycopg
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from claims_service.errors import ValidationError
from projections.errors import PositionBeyondHeadError, ProjectionLagError, UnknownProjectionError
from projections.store import TRACKING_TABLE, tracking_name

Source = Connection[Any] | ConnectionPool
DEFAULT_TIMEOUT = 5.0
MAX_PAGE_SIZE = 500

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Hub(Protocol):
    """What waiting needs of a ``feed.NotificationHub``: to be woken when a projection advances;
    and, reading from a streaming replica (``replica``), the ledger's head on the primary."""

    replica: bool

    def wait_for(self, projection: str, position: int, timeout: float) -> bool: ...

    def primary_head(self) -> int: ...


# --- rows --------------------------------------------------------------------------------------


@contextmanager
def connection(source: Source) -> Iterator[Connection[Any]]:
    """The connection itself, or one borrowed from the pool for the block."""
    if isinstance(source, ConnectionPool):
        with source.connection() as conn:
            yield conn
    else:
        yield source


def fetch(source: Source, query: str, params: Sequence[Any] | dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one query, as dicts."""
    for attempt in (1, 2):
        try:
            with connection(source) as conn, conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg.OperationalError:
            # Pooled connections the server dropped (a restart, a failover) fail on first use:
            # have the pool test its idle connections and drop the dead ones, then read again
            # (reads are safe to repeat).
            if attempt == 2 or not isinstance(source, ConnectionPool):
                raise
            source.check()
    raise AssertionError("unreachable")


def from_row(cls: type[T], row: dict[str, Any]) -> T:
    """A result dataclass from a row (columns it has no field for are left out)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row.items() if k in names})


class Where:
    """A WHERE clause built up condition by condition, with its parameters in order."""

    def __init__(self, condition: str, *params: Any) -> None:
        self.conditions = [condition]
        self.params = list(params)

    def add(self, condition: str, *params: Any) -> Where:
        self.conditions.append(condition)
        self.params.extend(params)
        return self

    def given(self, condition: str, value: Any) -> Where:
        """``condition`` on ``value``, unless the caller left it out (None)."""
        return self if value is None else self.add(condition, value)

    def party(self, provider_id: str | None, payer_id: str | None) -> Where:
        """Only the rows of this provider and / or payer (another party's rows: not found)."""
        return self.given("provider_id = %s", provider_id).given("payer_id = %s", payer_id)

    def __str__(self) -> str:
        return " AND ".join(self.conditions)


def rows(source: Source, table: str, where: Where, *, order: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """``SELECT * FROM table WHERE ... [ORDER BY order] [LIMIT limit]`` (no limit when None or 0)."""
    query, params = f"SELECT * FROM {table} WHERE {where}", list(where.params)
    if order:
        query += f" ORDER BY {order}"
    if limit:
        query += " LIMIT %s"
        params.append(limit)
    return fetch(source, query, params)


def select(source: Source, cls: type[T], table: str, where: Where, *, order: str = "", limit: int | None = None) -> list[T]:
    """``rows`` as result dataclasses."""
    return [from_row(cls, row) for row in rows(source, table, where, order=order, limit=limit)]


def select_one(source: Source, cls: type[T], table: str, where: Where, missing: Exception) -> T:
    """The one row the condition names, or ``missing`` raised (also for another party's row)."""
    found = rows(source, table, where)
    if not found:
        raise missing
    return from_row(cls, found[0])


# --- read your writes --------------------------------------------------------------------------


def _tracked(source: Source, projection: str) -> int | None:
    """The projection's tracked position; None when it has no tracking row yet."""
    found = fetch(
        source, f"SELECT notification_id FROM {TRACKING_TABLE} WHERE application_name = %s", (tracking_name(projection),)
    )
    return (int(found[0]["notification_id"] or 0)) if found else None


def ledger_head_position(source: Source) -> int:
    """The position of the ledger's last event (0 when empty)."""
    found = fetch(source, "SELECT coalesce(max(notification_id), 0) AS head FROM ledger_events", ())
    return int(found[0]["head"])


def projection_position(source: Source, projection: str) -> int:
    """The ledger position the projection has processed (0 when none)."""
    return _tracked(source, projection) or 0


def _known(source: Source, projection: str) -> None:
    """``UnknownProjectionError`` unless a migration registered tables for ``projection`` (the
    catalog of read models sits above the queries, so the database's list is the one here)."""
    names = [row["projection"] for row in fetch(source, "SELECT DISTINCT projection FROM read_model_tables ORDER BY 1", ())]
    if projection not in names:
        raise UnknownProjectionError(f"no projection named {projection!r} (known: {', '.join(names)})")


def wait_for_position(
    source: Source,
    projection: str,
    min_position: int | None,
    *,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> None:
    """Block until ``projection`` has processed ``min_position`` (no wait, and no query, without one).

    ``wait_for_position(source, projection, min_position, *, timeout=None, hub=None)``;
    raises ``ProjectionLagError`` after ``timeout`` seconds (default 5), ``PositionBeyondHeadError``
    at once for a position beyond the ledger's head, ``UnknownProjectionError`` for a name that is
    no projection.
    """
    if not min_position:
        return  # most reads: the tracking row's query would cost as much as the read itself
    tracked = _tracked(source, projection)
    if tracked is None:
        _known(source, projection)
    reached = tracked or 0
    if reached >= min_position:
        return
    head = ledger_head_position(source)
    if min_position > head:
        # On a replica, a receipt's position may be one it has not replayed yet: the primary judges.
        if hub is not None and hub.replica:
            head = max(head, hub.primary_head())
        if min_position > head:
            raise PositionBeyondHeadError(min_position, head)
    deadline = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else timeout)
    pause = 0.002
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProjectionLagError(projection, min_position, reached)
        if hub is not None:
            # Short slices: the database stays the judge, even if the hub's LISTEN is down.
            hub.wait_for(projection, min_position, min(remaining, 0.5))
        else:
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)
        reached = projection_position(source, projection)
        if reached >= min_position:
            return


# --- arguments ---------------------------------------------------------------------------------


def checked(function: F) -> F:
    """Refuse text arguments PostgreSQL cannot hold (NUL) as INVALID_ARGUMENT on that field,
    rather than letting the driver fail with an internal error."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        # The arguments are named (binding them to the signature) only when one holds a NUL:
        # binding costs more than most reads' own work.
        if any(isinstance(value, str) and "\x00" in value for value in (*args, *kwargs.values())):
            for name, value in signature.bind_partial(*args, **kwargs).arguments.items():
                if isinstance(value, str) and "\x00" in value:
                    raise ValidationError.single(name, "must not contain NUL characters")
        return function(*args, **kwargs)

    return checked  # type: ignore[return-value]


def non_negative(value: int, field: str) -> int:
    """``value`` if it is a non-negative integer; INVALID_ARGUMENT on ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError.single(field, "must be a non-negative integer")
    return value


def row_limit(value: int | None, field: str = "limit", *, default: int = 100, most: int = MAX_PAGE_SIZE) -> int:
    """A caller's row limit: 0 or None means the default; negative is INVALID_ARGUMENT; capped."""
    if value is None:
        return default
    return min(non_negative(value, field) or default, most)


def one_of(value: str | None, allowed: Collection[str], field: str) -> None:
    """INVALID_ARGUMENT on ``field`` unless ``value`` is None or one of ``allowed``."""
    if value is not None and value not in allowed:
        raise ValidationError.single(field, f"must be one of {', '.join(allowed)}")


def valid_claim_id(value: str) -> str:
    """A claim id in canonical form; INVALID_ARGUMENT when it is no UUID."""
    try:
        return str(UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ValidationError.single("claim_id", "must be a claim id (UUID)") from None


# --- pages -------------------------------------------------------------------------------------


def position_part(value: Any) -> int:
    """A ledger position in a page token: a non-negative integer, nothing else."""
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValueError("not a position")
    return value


def date_part(value: Any) -> str:
    """A date in a page token: ISO text."""
    if type(value) is not str:
        raise ValueError("not a date")
    return date.fromisoformat(value).isoformat()


class Pager:
    """Keyset pagination of one query with its filters: ``key`` is where the caller's page token
    says the page starts (None: the first page), ``limit`` the rows to read (one more than a page,
    to know whether another follows), ``page`` cuts the rows read and makes the next token."""

    def __init__(self, query: str, filters: dict[str, Any], page_size: int, token: str | None,
                 shape: Sequence[Callable[[Any], Any]] = (position_part,)) -> None:
        """``shape`` parses each part of the key a token carries (by default one ledger position); a token
        whose key does not parse is INVALID_ARGUMENT, however it was forged."""
        self.size = row_limit(page_size, "page_size", default=50)
        self.query = query
        self.fingerprint = _fingerprint(filters)
        self.shape = tuple(shape)
        self.key = self._key(token)

    @property
    def limit(self) -> int:
        return self.size + 1

    def page(self, found: list[T], key: Callable[[T], Sequence[Any]]) -> tuple[list[T], str]:
        """The page's items and the token of the next page ("" on the last page)."""
        items = found[: self.size]
        if len(found) <= self.size:
            return items, ""
        data = json.dumps({"q": self.query, "f": self.fingerprint, "k": list(key(items[-1]))}, separators=(",", ":"), default=str)
        return items, base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")

    def _key(self, token: str | None) -> list[Any] | None:
        if not token:
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if not isinstance(data, dict) or data["q"] != self.query or not isinstance(data["k"], list) \
                    or len(data["k"]) != len(self.shape):
                raise ValueError
            key = [parse(part) for parse, part in zip(self.shape, data["k"], strict=True)]
        except (ValueError, KeyError, TypeError, OverflowError):
            raise ValidationError.single("page_token", "is not a page token of this query") from None
        if data.get("f") != self.fingerprint:
            raise ValidationError.single("page_token", "belongs to the same query with other filters")
        return key


def _fingerprint(filters: dict[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
