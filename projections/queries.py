"""Queries over the read models: what the gRPC read methods call.

Every function takes a ``source``: a ``psycopg.Connection`` or a ``psycopg_pool.ConnectionPool``
(a connection is borrowed per call), and returns frozen dataclasses of plain values (dates as
``datetime.date``, JSON columns as dicts/lists, hashes as bytes); the gRPC layer converts them.

Read your own writes: every query accepts ``min_position`` (the ledger position of a write's
receipt) and ``timeout`` (seconds, e.g. the call's remaining deadline; default 5). It first waits
until the read model it reads has processed that position — woken by the ``NotificationHub``'s
LISTEN when one is passed as ``hub``, otherwise by short, growing sleeps (2 → 50 ms) on the
projection's tracking row — and past the deadline raises ``ProjectionLagError`` (UNAVAILABLE,
retryable) rather than answer stale.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from claims_service.errors import ClaimNotFoundError, MemberNotFoundError, PaymentNotFoundError, ValidationError
from projections import catalog
from projections.benefits import segment_on
from projections.errors import ProjectionLagError
from projections.store import TRACKING_TABLE, tracking_name

if TYPE_CHECKING:  # pragma: no cover
    from projections.feed import NotificationHub

Source = Connection[Any] | ConnectionPool
DEFAULT_TIMEOUT = 5.0
MAX_PAGE_SIZE = 500
CLAIM_STATUSES = ("submitted", "adjudicated", "pended", "voided", "replaced")
PAYMENT_STATUSES = ("scheduled", "issued", "cancelled", "recouped")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


# --- results ---------------------------------------------------------------------------------


def _from_row(cls: type[T], row: dict[str, Any]) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True, slots=True)
class ClaimStatus:
    claim_id: str
    provider_id: str
    payer_id: str
    member_id: str
    visit_id: str | None
    status: str
    frequency_code: str
    replaces_claim_id: str | None
    replaced_by: str | None
    void_reason: str | None
    place_of_service: str
    received_on: date
    first_date_of_service: date
    last_date_of_service: date
    diagnosis_codes: list[str]
    lines: list[dict[str, Any]]
    outcome: str | None
    total_billed_cents: int
    total_allowed_cents: int | None
    total_paid_cents: int | None
    total_patient_responsibility_cents: int | None
    decision: dict[str, Any] | None
    ruleset_version: str | None
    ruleset_hash: str | None
    review: dict[str, Any] | None
    disputes: list[dict[str, Any]]
    open_dispute_id: str | None
    submitted_position: int
    last_position: int
    stream_version: int
    pend_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClaimPage:
    claims: list[ClaimStatus]
    next_page_token: str  # "" on the last page


@dataclass(frozen=True, slots=True)
class WorklistItem:
    claim_id: str
    payer_id: str
    provider_id: str
    member_id: str
    received_on: date
    pended_position: int
    total_billed_cents: int
    reasons: list[dict[str, Any]]
    decision: dict[str, Any]
    pend_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WorklistPage:
    items: list[WorklistItem]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class Notice:
    """An adjudication notice for a payer (see ``feed``)."""

    position: int
    payer_id: str
    claim_id: str
    member_id: str
    provider_id: str
    kind: str  # adjudicated / pended / review_resolved / dispute_resolved / voided / replaced /
    # payment_cancelled / payment_recouped
    status: str
    outcome: str | None
    decision: dict[str, Any] | None
    dispute_id: str | None
    resolution: str | None
    recorded_at: datetime | None
    pend_reasons: list[str] | None = None
    payment_id: str | None = None
    amount_cents: int | None = None
    reason: str | None = None
    replaced_by: str | None = None


@dataclass(frozen=True, slots=True)
class Accumulators:
    payer_id: str
    member_id: str
    plan_year: int
    plan_id: str
    deductible_cents: int | None  # the plan's
    oop_max_cents: int | None
    deductible_met_cents: int
    oop_met_cents: int
    deductible_remaining_cents: int | None
    oop_remaining_cents: int | None
    benefit_units: dict[str, int]
    last_position: int


@dataclass(frozen=True, slots=True)
class Eob:
    """Explanation of benefits of one claim; ``lines`` carry billed, allowed, paid, you_owe cents."""

    claim_id: str
    payer_id: str
    member_id: str
    provider_id: str
    claim_status: str
    outcome: str | None
    received_on: date
    first_date_of_service: date
    lines: list[dict[str, Any]]
    total_billed_cents: int
    total_allowed_cents: int | None
    total_paid_cents: int | None
    total_you_owe_cents: int | None
    submitted_position: int
    last_position: int


@dataclass(frozen=True, slots=True)
class EobPage:
    eobs: list[Eob]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class PaidClaim:
    """One claim of a payment, as an 835 CLP loop needs it (lines with CAS adjustments)."""

    claim_id: str
    member_id: str
    frequency_code: str
    outcome: str | None
    billed_cents: int
    paid_cents: int
    patient_responsibility_cents: int | None
    lines: list[dict[str, Any]]
    entry: int = 0
    """0: what the payment pays on the claim; n: its n-th recoupment (negative amounts)."""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: str
    payer_id: str
    provider_id: str
    status: str
    amount_cents: int
    reversed_cents: int
    claim_ids: list[str]
    trace_number: str | None
    issued_on: date | None
    reversals: list[dict[str, Any]]
    scheduled_position: int
    issued_position: int | None
    last_position: int
    claims: list[PaidClaim]
    cancel_reason: str | None = None
    cancelled_position: int | None = None


@dataclass(frozen=True, slots=True)
class PaymentPage:
    payments: list[Payment]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    claim_id: str
    position: int
    stream_id: UUID
    stream_version: int
    event_type: str
    topic: str
    payload: str  # the stored JSON text, or base64 of the stored bytes
    payload_encoding: str  # "json" | "base64"
    hash: bytes
    prev_hash: bytes
    stream_prev_hash: bytes
    recorded_at: datetime | None


# --- plumbing ----------------------------------------------------------------------------------


@contextmanager
def connection(source: Source) -> Iterator[Connection[Any]]:
    """The connection itself, or one borrowed from the pool for the block."""
    if isinstance(source, ConnectionPool):
        with source.connection() as conn:
            yield conn
    else:
        yield source


def _fetch(source: Source, query: str, params: Sequence[Any] | dict[str, Any]) -> list[dict[str, Any]]:
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


def projection_position(source: Source, projection: str) -> int:
    """The ledger position the projection has processed (0 when none)."""
    rows = _fetch(
        source, f"SELECT notification_id FROM {TRACKING_TABLE} WHERE application_name = %s", (tracking_name(projection),)
    )
    return int(rows[0]["notification_id"]) if rows and rows[0]["notification_id"] is not None else 0


def wait_for_position(
    source: Source,
    projection: str,
    min_position: int | None,
    *,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> int:
    """Block until ``projection`` has processed ``min_position``; return the position reached.

    ``wait_for_position(source, projection, min_position, *, timeout=None, hub=None) -> int``;
    raises ``ProjectionLagError`` after ``timeout`` seconds (default 5).
    """
    catalog.model(projection)
    reached = projection_position(source, projection)
    if not min_position or reached >= min_position:
        return reached
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
            return reached


def _page_token(query: str, filters: dict[str, Any], key: Sequence[Any]) -> str:
    data = json.dumps({"q": query, "f": _fingerprint(filters), "k": list(key)}, separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def _fingerprint(filters: dict[str, Any]) -> str:
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _page_key(query: str, filters: dict[str, Any], token: str | None) -> list[Any] | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if data["q"] != query or not isinstance(data["k"], list):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ValidationError.single("page_token", "is not a page token of this query") from None
    if data["f"] != _fingerprint(filters):
        raise ValidationError.single("page_token", "belongs to the same query with other filters")
    return data["k"]


def _checked(function: F) -> F:
    """Refuse text arguments PostgreSQL cannot hold (NUL) as INVALID_ARGUMENT on that field,
    rather than letting the driver fail with an internal error."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for name, value in signature.bind_partial(*args, **kwargs).arguments.items():
            if isinstance(value, str) and "\x00" in value:
                raise ValidationError.single(name, "must not contain NUL characters")
        return function(*args, **kwargs)

    return checked  # type: ignore[return-value]


def _page_size(page_size: int) -> int:
    return _limit(page_size, "page_size", default=50)


def _limit(value: int | None, field: str = "limit", *, default: int = 100, most: int = MAX_PAGE_SIZE) -> int:
    """A caller's row limit: 0 or None means the default; negative is INVALID_ARGUMENT; capped."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError.single(field, "must be a non-negative integer")
    return min(value or default, most)


def _claim_id(claim_id: str) -> str:
    try:
        return str(UUID(claim_id))
    except (ValueError, TypeError, AttributeError):
        raise ValidationError.single("claim_id", "must be a claim id (UUID)") from None


def _party_filter(provider_id: str | None, payer_id: str | None, alias: str = "") -> tuple[str, list[Any]]:
    clauses, params = [], []
    if provider_id is not None:
        clauses.append(f"{alias}provider_id = %s")
        params.append(provider_id)
    if payer_id is not None:
        clauses.append(f"{alias}payer_id = %s")
        params.append(payer_id)
    return "".join(f" AND {c}" for c in clauses), params


# --- claim status ------------------------------------------------------------------------------


@_checked
def get_claim(
    source: Source,
    claim_id: str,
    *,
    provider_id: str | None = None,
    payer_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> ClaimStatus:
    """``get_claim(source, claim_id, *, provider_id=None, payer_id=None, min_position=None,
    timeout=None, hub=None) -> ClaimStatus``; ``ClaimNotFoundError`` when it does not exist or
    belongs to another provider / payer than the one given."""
    claim_id = _claim_id(claim_id)
    wait_for_position(source, catalog.CLAIM_STATUS, min_position, timeout=timeout, hub=hub)
    where, params = _party_filter(provider_id, payer_id)
    rows = _fetch(source, f"SELECT * FROM claim_status WHERE claim_id = %s{where}", [claim_id, *params])
    if not rows:
        raise ClaimNotFoundError(f"claim {claim_id} not found")
    return _from_row(ClaimStatus, rows[0])


@_checked
def list_claims(
    source: Source,
    provider_id: str,
    *,
    status: str | None = None,
    received_from: date | None = None,
    received_to: date | None = None,
    member_id: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> ClaimPage:
    """``list_claims(source, provider_id, *, status=None, received_from=None, received_to=None,
    member_id=None, page_size=50, page_token=None, min_position=None, timeout=None, hub=None)
    -> ClaimPage``: the provider's claims, newest submission first; dates inclusive."""
    if status is not None and status not in CLAIM_STATUSES:
        raise ValidationError.single("status", f"must be one of {', '.join(CLAIM_STATUSES)}")
    if received_from and received_to and received_from > received_to:
        raise ValidationError.single("received_to", "must not be before received_from")
    size = _page_size(page_size)
    filters = {"provider_id": provider_id, "status": status, "from": received_from, "to": received_to, "member_id": member_id}
    key = _page_key("claims", filters, page_token)
    wait_for_position(source, catalog.CLAIM_STATUS, min_position, timeout=timeout, hub=hub)
    clauses, params = ["provider_id = %s"], [provider_id]
    for column, op, value in (
        ("status", "=", status),
        ("member_id", "=", member_id),
        ("received_on", ">=", received_from),
        ("received_on", "<=", received_to),
    ):
        if value is not None:
            clauses.append(f"{column} {op} %s")
            params.append(value)
    if key is not None:
        clauses.append("submitted_position < %s")
        params.append(int(key[0]))
    rows = _fetch(
        source,
        f"SELECT * FROM claim_status WHERE {' AND '.join(clauses)} ORDER BY submitted_position DESC LIMIT %s",
        [*params, size + 1],
    )
    claims = [_from_row(ClaimStatus, row) for row in rows[:size]]
    more = len(rows) > size
    return ClaimPage(claims, _page_token("claims", filters, [claims[-1].submitted_position]) if more else "")


@_checked
def claim_changes(source: Source, provider_id: str, after_position: int, *, limit: int = 100) -> list[ClaimStatus]:
    """``claim_changes(source, provider_id, after_position, *, limit=100) -> list[ClaimStatus]``:
    the provider's claims whose latest change is after ``after_position``, in the order of that
    change (each claim in its current state; WatchClaims)."""
    rows = _fetch(
        source,
        "SELECT * FROM claim_status WHERE provider_id = %s AND last_position > %s ORDER BY last_position LIMIT %s",
        [provider_id, after_position, _limit(limit)],
    )
    return [_from_row(ClaimStatus, row) for row in rows]


@_checked
def payer_worklist(
    source: Source,
    payer_id: str,
    *,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> WorklistPage:
    """``payer_worklist(source, payer_id, *, page_size=50, page_token=None, min_position=None,
    timeout=None, hub=None) -> WorklistPage``: the payer's pended claims, oldest first."""
    size = _page_size(page_size)
    filters = {"payer_id": payer_id}
    key = _page_key("worklist", filters, page_token)
    wait_for_position(source, catalog.CLAIM_STATUS, min_position, timeout=timeout, hub=hub)
    rows = _fetch(
        source,
        "SELECT * FROM payer_worklist WHERE payer_id = %s AND pended_position > %s ORDER BY pended_position LIMIT %s",
        [payer_id, int(key[0]) if key else 0, size + 1],
    )
    items = [_from_row(WorklistItem, row) for row in rows[:size]]
    more = len(rows) > size
    return WorklistPage(items, _page_token("worklist", filters, [items[-1].pended_position]) if more else "")


@_checked
def adjudication_notices(source: Source, payer_id: str, after_position: int, *, limit: int = 100) -> list[Notice]:
    """``adjudication_notices(source, payer_id, after_position, *, limit=100) -> list[Notice]``:
    the payer's notices after the position, in ledger order."""
    rows = _fetch(
        source,
        "SELECT * FROM adjudication_notices WHERE payer_id = %s AND position > %s ORDER BY position LIMIT %s",
        [payer_id, after_position, _limit(limit)],
    )
    return [_from_row(Notice, row) for row in rows]


# --- benefits ----------------------------------------------------------------------------------


@_checked
def member_accumulators(
    source: Source,
    payer_id: str,
    member_id: str,
    plan_year: int,
    *,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> Accumulators:
    """``member_accumulators(source, payer_id, member_id, plan_year, *, min_position=None,
    timeout=None, hub=None) -> Accumulators``: deductible and out-of-pocket met in the plan year,
    with the limits of the plan in force at the end of that year (or of the latest plan segment
    starting before then). ``MemberNotFoundError`` when the member is not enrolled with the payer."""
    wait_for_position(source, catalog.BENEFITS, min_position, timeout=timeout, hub=hub)
    members = _fetch(source, "SELECT * FROM member_coverage WHERE payer_id = %s AND member_id = %s", [payer_id, member_id])
    if not members:
        raise MemberNotFoundError(f"member {member_id} is not enrolled with payer {payer_id}")
    member = members[0]
    periods = _fetch(
        source,
        "SELECT * FROM member_accumulators WHERE payer_id = %s AND member_id = %s AND plan_year = %s",
        [payer_id, member_id, plan_year],
    )
    period = periods[0] if periods else {"deductible_met_cents": 0, "oop_met_cents": 0, "benefit_units": {}, "last_position": member["last_position"]}
    segment = segment_on(member["segments"], f"{plan_year:04d}-12-31")
    deductible, oop_max = segment.get("deductible_cents"), segment.get("oop_max_cents")
    met_deductible, met_oop = period["deductible_met_cents"], period["oop_met_cents"]
    return Accumulators(
        payer_id=payer_id,
        member_id=member_id,
        plan_year=plan_year,
        plan_id=segment["plan_id"],
        deductible_cents=deductible,
        oop_max_cents=oop_max,
        deductible_met_cents=met_deductible,
        oop_met_cents=met_oop,
        deductible_remaining_cents=None if deductible is None else max(0, deductible - met_deductible),
        oop_remaining_cents=None if oop_max is None else max(0, oop_max - met_oop),
        benefit_units={k: v for k, v in period["benefit_units"].items() if v},
        last_position=max(period["last_position"], member["last_position"]),
    )


@_checked
def explanation_of_benefits(
    source: Source,
    claim_id: str,
    *,
    payer_id: str | None = None,
    member_id: str | None = None,
    provider_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> Eob:
    """``explanation_of_benefits(source, claim_id, *, payer_id=None, member_id=None,
    provider_id=None, min_position=None, timeout=None, hub=None) -> Eob``."""
    claim_id = _claim_id(claim_id)
    wait_for_position(source, catalog.BENEFITS, min_position, timeout=timeout, hub=hub)
    where, params = _party_filter(provider_id, payer_id)
    if member_id is not None:
        where += " AND member_id = %s"
        params.append(member_id)
    rows = _fetch(source, f"SELECT * FROM explanation_of_benefits WHERE claim_id = %s{where}", [claim_id, *params])
    if not rows:
        raise ClaimNotFoundError(f"claim {claim_id} not found")
    return _from_row(Eob, rows[0])


@_checked
def member_eobs(
    source: Source,
    payer_id: str,
    member_id: str,
    *,
    plan_year: int | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> EobPage:
    """``member_eobs(source, payer_id, member_id, *, plan_year=None, page_size=50,
    page_token=None, min_position=None, timeout=None, hub=None) -> EobPage``: the member's
    explanations of benefits by first date of service (then submission), oldest first."""
    size = _page_size(page_size)
    filters = {"payer_id": payer_id, "member_id": member_id, "plan_year": plan_year}
    key = _page_key("eobs", filters, page_token)
    wait_for_position(source, catalog.BENEFITS, min_position, timeout=timeout, hub=hub)
    clauses, params = ["payer_id = %s", "member_id = %s"], [payer_id, member_id]
    if plan_year is not None:
        clauses.append("first_date_of_service BETWEEN %s AND %s")
        params += [date(plan_year, 1, 1), date(plan_year, 12, 31)]
    if key is not None:
        clauses.append("(first_date_of_service, submitted_position) > (%s::date, %s)")
        params += [key[0], int(key[1])]
    rows = _fetch(
        source,
        f"SELECT * FROM explanation_of_benefits WHERE {' AND '.join(clauses)}"
        " ORDER BY first_date_of_service, submitted_position LIMIT %s",
        [*params, size + 1],
    )
    eobs = [_from_row(Eob, row) for row in rows[:size]]
    more = len(rows) > size
    token = _page_token("eobs", filters, [eobs[-1].first_date_of_service.isoformat(), eobs[-1].submitted_position]) if more else ""
    return EobPage(eobs, token)


# --- payments ----------------------------------------------------------------------------------


def _payments(source: Source, where: str, params: Sequence[Any], tail: str = "") -> list[Payment]:
    rows = _fetch(source, f"SELECT * FROM payments WHERE {where}{tail}", params)
    if not rows:
        return []
    ids = [row["payment_id"] for row in rows]
    claims: dict[str, list[PaidClaim]] = {}
    for row in _fetch(source, "SELECT * FROM payment_claims WHERE payment_id = ANY(%s) ORDER BY payment_id, entry, claim_id", [ids]):
        claims.setdefault(row["payment_id"], []).append(_from_row(PaidClaim, row))
    return [_from_row(Payment, {**row, "claims": claims.get(row["payment_id"], [])}) for row in rows]


@_checked
def get_payment(
    source: Source,
    payment_id: str,
    *,
    provider_id: str | None = None,
    payer_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> Payment:
    """``get_payment(source, payment_id, *, provider_id=None, payer_id=None, min_position=None,
    timeout=None, hub=None) -> Payment``; ``PaymentNotFoundError`` (also for another party's)."""
    wait_for_position(source, catalog.PAYMENTS, min_position, timeout=timeout, hub=hub)
    where, params = _party_filter(provider_id, payer_id)
    found = _payments(source, f"payment_id = %s{where}", [payment_id, *params])
    if not found:
        raise PaymentNotFoundError(f"payment {payment_id} not found")
    return found[0]


@_checked
def payment_by_trace(
    source: Source,
    trace_number: str,
    *,
    provider_id: str | None = None,
    payer_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> list[Payment]:
    """``payment_by_trace(source, trace_number, *, provider_id=None, payer_id=None,
    min_position=None, timeout=None, hub=None) -> list[Payment]``: the payments issued under an
    EFT / check trace number (usually one)."""
    wait_for_position(source, catalog.PAYMENTS, min_position, timeout=timeout, hub=hub)
    where, params = _party_filter(provider_id, payer_id)
    return _payments(source, f"trace_number = %s{where}", [trace_number, *params], " ORDER BY scheduled_position")


@_checked
def payments_for_claim(
    source: Source,
    claim_id: str,
    *,
    provider_id: str | None = None,
    payer_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> list[Payment]:
    """``payments_for_claim(source, claim_id, *, provider_id=None, payer_id=None,
    min_position=None, timeout=None, hub=None) -> list[Payment]``, oldest first."""
    claim_id = _claim_id(claim_id)
    wait_for_position(source, catalog.PAYMENTS, min_position, timeout=timeout, hub=hub)
    where, params = _party_filter(provider_id, payer_id)
    return _payments(
        source,
        f"payment_id IN (SELECT payment_id FROM payment_claims WHERE claim_id = %s){where}",
        [claim_id, *params],
        " ORDER BY scheduled_position",
    )


@_checked
def list_payments(
    source: Source,
    provider_id: str,
    *,
    status: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> PaymentPage:
    """``list_payments(source, provider_id, *, status=None, page_size=50, page_token=None,
    min_position=None, timeout=None, hub=None) -> PaymentPage``: the provider's payments
    (remittances), newest first."""
    if status is not None and status not in PAYMENT_STATUSES:
        raise ValidationError.single("status", f"must be one of {', '.join(PAYMENT_STATUSES)}")
    size = _page_size(page_size)
    filters = {"provider_id": provider_id, "status": status}
    key = _page_key("payments", filters, page_token)
    wait_for_position(source, catalog.PAYMENTS, min_position, timeout=timeout, hub=hub)
    where, params = "provider_id = %s", [provider_id]
    if status is not None:
        where += " AND status = %s"
        params.append(status)
    if key is not None:
        where += " AND scheduled_position < %s"
        params.append(int(key[0]))
    found = _payments(source, where, [*params, size + 1], " ORDER BY scheduled_position DESC LIMIT %s")
    page = found[:size]
    more = len(found) > size
    return PaymentPage(page, _page_token("payments", filters, [page[-1].scheduled_position]) if more else "")


@_checked
def scheduled_payments_due(
    source: Source,
    payer_id: str,
    *,
    provider_id: str | None = None,
    limit: int = 500,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> list[Payment]:
    """``scheduled_payments_due(source, payer_id, *, provider_id=None, limit=500,
    min_position=None, timeout=None, hub=None) -> list[Payment]``: the payer's scheduled, not yet
    issued payments (optionally for one provider), oldest first — what IssuePayments issues."""
    wait_for_position(source, catalog.PAYMENTS, min_position, timeout=timeout, hub=hub)
    where, params = "payer_id = %s AND status = 'scheduled'", [payer_id]
    if provider_id is not None:
        where += " AND provider_id = %s"
        params.append(provider_id)
    return _payments(source, where, [*params, _limit(limit, default=500, most=5_000)], " ORDER BY scheduled_position LIMIT %s")


# --- dispute timeline --------------------------------------------------------------------------


@_checked
def claim_timeline(
    source: Source,
    claim_id: str,
    *,
    after_position: int = 0,
    limit: int | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: NotificationHub | None = None,
) -> list[TimelineEntry]:
    """``claim_timeline(source, claim_id, *, after_position=0, limit=None, min_position=None,
    timeout=None, hub=None) -> list[TimelineEntry]``: every event of the claim's stream and its
    payments' streams, in ledger order (empty for an unknown claim; authorise before calling);
    ``limit`` None or 0: all."""
    claim_id = _claim_id(claim_id)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValidationError.single("limit", "must be a non-negative integer")
    wait_for_position(source, catalog.DISPUTE_TIMELINE, min_position, timeout=timeout, hub=hub)
    rows = _fetch(
        source,
        "SELECT * FROM dispute_timeline WHERE claim_id = %s AND position > %s ORDER BY position"
        + (" LIMIT %s" if limit else ""),
        [claim_id, after_position] + ([limit] if limit else []),
    )
    return [_from_row(TimelineEntry, row) for row in rows]
