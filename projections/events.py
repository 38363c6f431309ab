"""Reading the ledger as a projection does: notifications in position order, payloads decoded.

Projections decode the stored JSON themselves rather than rebuilding domain event objects: that
is several times cheaper, and the stored format is the project's own (plain data, with the
library's ``{"_type_": ..., "_data_": ...}`` markers for dates and timestamps, which decode here to
their ISO text). The domain's classes are imported only for their topics.

Payloads are decoded by the one reader of stored payloads, ``claims_service.ledger.payloads``
(which also opens them when the ledger encrypts or compresses them). Member data is sealed under
each member's key: `read_notifications` reads the keys of a batch with the batch, in the same
snapshot, so a member erased before the batch was read reads as erased (``Notification.erased``)
in all of it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic
from psycopg import Connection, sql
from psycopg.rows import tuple_row

from claims_service.domain.access import EmergencyAccess, MemberAccess
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.consent import Consent
from claims_service.domain.erasure import MemberErasure
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment
from claims_service.domain.visit import Visit
from claims_service.keys.store import BatchKeys, fresh_keys
from claims_service.ledger.chain import EVENTS_TABLE
from claims_service.ledger.payloads import MemberKeys, decode_json, decode_state, default_member_keys, sealed_key_id



class Topics:
    """The topics (``module:Class.Event``) of the events the projections read."""

    CLAIM_SUBMITTED = get_topic(Claim.Submitted)
    CLAIM_ADJUDICATED = get_topic(Claim.Adjudicated)
    CLAIM_PENDED = get_topic(Claim.Pended)
    CLAIM_REVIEW_RESOLVED = get_topic(Claim.ReviewResolved)
    CLAIM_CORRECTED = get_topic(Claim.Corrected)
    CLAIM_VOIDED = get_topic(Claim.Voided)
    CLAIM_DISPUTE_OPENED = get_topic(Claim.DisputeOpened)
    CLAIM_DISPUTE_RESOLVED = get_topic(Claim.DisputeResolved)
    PAYMENT_SCHEDULED = get_topic(Payment.Scheduled)
    PAYMENT_ISSUED = get_topic(Payment.Issued)
    PAYMENT_CANCELLED = get_topic(Payment.Cancelled)
    PAYMENT_RECOUPED = get_topic(Payment.Recouped)
    PAYMENT_REVERSED = get_topic(Payment.Reversed)  # recoupments recorded before they were itemised
    PERIOD_OPENED = get_topic(BenefitPeriod.Opened)
    PERIOD_CLAIM_APPLIED = get_topic(BenefitPeriod.ClaimApplied)
    PERIOD_CLAIM_REVERSED = get_topic(BenefitPeriod.ClaimReversed)
    MEMBER_ENROLLED = get_topic(MemberCoverage.Enrolled)
    MEMBER_CHANGED = get_topic(MemberCoverage.Changed)
    MEMBER_TERMINATED = get_topic(MemberCoverage.Terminated)
    VISIT_RECORDED = get_topic(Visit.Recorded)
    MEMBER_ACCESS_RECORDED = get_topic(MemberAccess.Recorded)
    EMERGENCY_ACCESS_DECLARED = get_topic(EmergencyAccess.Declared)
    CONSENT_OPENED = get_topic(Consent.Opened)
    CONSENT_GRANTED = get_topic(Consent.Granted)
    CONSENT_REVOKED = get_topic(Consent.Revoked)
    MEMBER_ERASED = get_topic(MemberErasure.Recorded)  # every read model purges the streams it names
    # Every event of these aggregates, including ones added later: "<module>:<Class>." prefixes.
    CLAIM_PREFIX = get_topic(Claim) + "."
    PAYMENT_PREFIX = get_topic(Payment) + "."

    CLAIM_DECISIONS = frozenset({CLAIM_ADJUDICATED, CLAIM_PENDED, CLAIM_REVIEW_RESOLVED, CLAIM_DISPUTE_RESOLVED})
    # What a claim is and what was decided for it: every claim event but a dispute's opening.
    CLAIM_STATE_CHANGES = frozenset({CLAIM_SUBMITTED, *CLAIM_DECISIONS, CLAIM_VOIDED, CLAIM_CORRECTED})


class Notification:
    """One ledger row as a projection sees it. ``state`` is None for topics it did not ask for."""

    __slots__ = ("position", "stream_id", "version", "topic", "state", "_payload", "_bare", "keys", "traceparent")

    def __init__(
        self,
        position: int,
        stream_id: UUID,
        version: int,
        topic: str,
        state: bytes | None,
    ) -> None:
        self.position = position
        self.stream_id = stream_id
        self.version = version
        self.topic = topic
        self.state = state
        self._payload: dict[str, Any] | None = None
        self._bare: Notification | None = None
        self.keys: MemberKeys | None = None  # the member keys of its batch (read_notifications)
        self.traceparent: str | None = None  # the trace context its writer left, when read with ``traces``

    @property
    def payload(self) -> dict[str, Any]:
        """The event's attributes as plain JSON data (dates and timestamps as ISO text); an erased
        member's event as its plain fields and ``"_erased_": true``."""
        if self._payload is None:
            if self.state is None:
                raise ValueError(f"position {self.position}: payload of {self.topic} was not read")
            self._payload = decode_state(self.state, keys=self.keys)
        return self._payload

    @property
    def erased(self) -> bool:
        """An event of a member whose data was erased (their key destroyed): nothing of it is
        projected (its plain fields aside, it holds nothing any more)."""
        key_id = sealed_key_id(self.state)
        if key_id is None:
            return False
        keys = self.keys if self.keys is not None else default_member_keys()
        return keys is not None and keys.cipher(key_id) is None

    def without_payload(self) -> Notification:
        """This notification as a reader that did not ask for its topic sees it (``state`` None)."""
        if self._bare is None:
            self._bare = Notification(self.position, self.stream_id, self.version, self.topic, None)
            self._bare.keys = self.keys
        return self._bare

    def stored_json(self) -> tuple[str, dict[str, Any]] | None:
        """The payload's stored JSON text and its decoding (cached like ``payload``); None when
        the stored bytes are not JSON (encrypted or compressed)."""
        if self.state is None or self.state[:1] != b"{":
            return None
        try:
            text = self.state.decode("utf-8")
            if sealed_key_id(self.state) is not None:
                return text, self.payload  # opened: the stored JSON holds the envelope
            if self._payload is None:
                self._payload = decode_json(self.state)
        except ValueError:  # UnicodeDecodeError is a ValueError: ciphertext that began with "{"
            return None
        return text, self._payload

    def __repr__(self) -> str:
        return f"Notification({self.position}, {self.topic.rsplit(':', 1)[-1]}, {self.stream_id}@{self.version})"


def read_notifications(
    conn: Connection[Any],
    after: int,
    limit: int,
    *,
    topics: Iterable[str] = (),
    prefixes: Iterable[str] = (),
    traces: bool = False,
) -> list[Notification]:
    """Up to ``limit`` notifications after position ``after``, in position order, never ending in
    the middle of a commit: when the limit falls inside one transaction's events, the rest of that
    transaction comes too. So a read model's position is always the end of a commit, and a reader
    that waits for a decision's position also sees the payment written in the same commit.

    Every notification comes back (so the caller can track the last position it saw), but the
    payload (``state``) only for the given topics or topic prefixes (and
    for every erasure, which each read model acts on). The member keys the payloads are sealed
    under are read with them (one more query), in ``conn``'s snapshot. With ``traces`` (tracing
    on), each notification's ``traceparent`` comes from the event's metadata column too.
    Positions are in commit order (the recorder locks the events table for every insert, so one
    transaction's events are contiguous), so reading after a position never skips a row that
    commits later.
    """
    query, probe, rest_of_commit = _notification_queries(traces)
    params = {
        "after": after,
        "limit": limit,
        "topics": [*topics, Topics.MEMBER_ERASED],
        "patterns": [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for p in prefixes],
    }
    with conn.cursor(binary=True, row_factory=tuple_row) as cur:
        cur.execute(query, params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        if limit and len(rows) == limit:
            last = end = rows[-1][0]
            step = 16
            while True:
                cur.execute(probe, {"last": last, "after": end, "step": step})
                found = cur.fetchall()
                same = [position for position, in_commit in found if in_commit]
                if same:
                    end = same[-1]
                if len(same) < step:
                    break
                step *= 4
            if end > last:
                cur.execute(rest_of_commit, {**params, "after": last, "end": end})
                rows += cur.fetchall()
    if traces:
        notifications = []
        for *fields, traceparent in rows:
            notification = Notification(*fields)
            notification.traceparent = traceparent
            notifications.append(notification)
    else:
        notifications = [Notification(*row) for row in rows]
    sealed = {key for n in notifications if (key := sealed_key_id(n.state)) is not None}
    if sealed:
        keys: BatchKeys = fresh_keys(conn, sealed)
        for n in notifications:
            n.keys = keys
    return notifications


@functools.lru_cache(maxsize=None)
def _notification_queries(traces: bool) -> tuple[bytes, bytes, bytes]:
    """``read_notifications``' three statements, composed once per process for each kind."""
    wanted = sql.SQL("(topic = ANY(%(topics)s) OR topic LIKE ANY(%(patterns)s))")
    columns = [sql.SQL("notification_id, originator_id, originator_version, topic")]
    columns.append(sql.SQL("CASE WHEN {} THEN state END").format(wanted))
    if traces:
        columns.append(sql.SQL("metadata->>'traceparent'"))
    query = sql.SQL(
        "SELECT {columns} FROM {table} WHERE notification_id > %(after)s ORDER BY notification_id LIMIT %(limit)s"
    ).format(columns=sql.SQL(", ").join(columns), table=sql.Identifier(EVENTS_TABLE))
    # Where the last row's transaction ends (xmin: the inserting transaction's id). One
    # transaction's rows are contiguous, so the probe reads ids only, a few at a time, and stops at
    # the first row of another transaction: the cost does not grow with what follows.
    probe = sql.SQL(
        "SELECT notification_id, xmin = (SELECT xmin FROM {table} WHERE notification_id = %(last)s)"
        " FROM {table} WHERE notification_id > %(after)s ORDER BY notification_id LIMIT %(step)s"
    ).format(table=sql.Identifier(EVENTS_TABLE))
    rest_of_commit = sql.SQL(
        "SELECT {columns} FROM {table} WHERE notification_id > %(after)s AND notification_id <= %(end)s"
        " ORDER BY notification_id"
    ).format(columns=sql.SQL(", ").join(columns), table=sql.Identifier(EVENTS_TABLE))
    return query.as_bytes(), probe.as_bytes(), rest_of_commit.as_bytes()


def ledger_head(conn: Connection[Any]) -> int:
    """The position of the ledger's last event (0 when empty)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            sql.SQL("SELECT notification_id FROM {} ORDER BY notification_id DESC LIMIT 1").format(
                sql.Identifier(EVENTS_TABLE)
            )
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0
