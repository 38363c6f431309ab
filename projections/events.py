"""Reading the ledger as a projection does: notifications in position order, payloads decoded.

Projections decode the stored JSON themselves rather than rebuilding domain event objects: that
is several times cheaper, and the stored format is the project's own (plain data, with the
library's ``{"_type_": ..., "_data_": ...}`` markers for dates and timestamps, which decode here to
their ISO text). The domain's classes are imported only for their topics.

A payload that is not JSON (the ledger's cipher or compressor is on) is opened with the cipher
and compressor the environment configures for the ledger application (``LEDGER_CIPHER_TOPIC`` /
``CIPHER_TOPIC``, ``CIPHER_KEY``, ``COMPRESSOR_TOPIC``), exactly as the application would.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.utils import get_topic
from psycopg import Connection, sql
from psycopg.rows import tuple_row

from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment
from projections.errors import UndecodablePayloadError

EVENTS_TABLE = "ledger_events"
LEDGER_APPLICATION = "Ledger"


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
    # Every event of these aggregates, including ones added later: "<module>:<Class>." prefixes.
    CLAIM_PREFIX = get_topic(Claim) + "."
    PAYMENT_PREFIX = get_topic(Payment) + "."

    CLAIM_DECISIONS = frozenset({CLAIM_ADJUDICATED, CLAIM_PENDED, CLAIM_REVIEW_RESOLVED, CLAIM_DISPUTE_RESOLVED})


class Notification:
    """One ledger row as a projection sees it. ``state`` is None for topics it did not ask for."""

    __slots__ = ("position", "stream_id", "version", "topic", "state", "hash", "prev_hash", "stream_prev_hash", "_payload", "_bare")

    def __init__(
        self,
        position: int,
        stream_id: UUID,
        version: int,
        topic: str,
        state: bytes | None,
        hash: bytes | None = None,  # noqa: A002 - the column's name
        prev_hash: bytes | None = None,
        stream_prev_hash: bytes | None = None,
    ) -> None:
        self.position = position
        self.stream_id = stream_id
        self.version = version
        self.topic = topic
        self.state = state
        self.hash = hash
        self.prev_hash = prev_hash
        self.stream_prev_hash = stream_prev_hash
        self._payload: dict[str, Any] | None = None
        self._bare: Notification | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The event's attributes as plain JSON data (dates and timestamps as ISO text)."""
        if self._payload is None:
            if self.state is None:
                raise ValueError(f"position {self.position}: payload of {self.topic} was not read")
            self._payload = decode_state(self.state)
        return self._payload

    def without_payload(self) -> Notification:
        """This notification as a reader that did not ask for its topic sees it (``state`` None)."""
        if self._bare is None:
            self._bare = Notification(self.position, self.stream_id, self.version, self.topic, None,
                                      self.hash, self.prev_hash, self.stream_prev_hash)
        return self._bare

    def stored_json(self) -> tuple[str, dict[str, Any]] | None:
        """The payload's stored JSON text and its decoding (cached like ``payload``); None when
        the stored bytes are not JSON (encrypted or compressed)."""
        if self.state is None or self.state[:1] != b"{":
            return None
        try:
            text = self.state.decode("utf-8")
            if self._payload is None:
                self._payload = decode_json(self.state)
        except ValueError:  # UnicodeDecodeError is a ValueError: ciphertext that began with "{"
            return None
        return text, self._payload

    def __repr__(self) -> str:
        return f"Notification({self.position}, {self.topic.rsplit(':', 1)[-1]}, {self.stream_id}@{self.version})"


def _plain_markers(obj: dict[str, Any]) -> Any:
    # The JSONTranscoder writes non-JSON values as {"_type_": name, "_data_": encoded}; the
    # transcodings the ledger uses (date_iso, datetime_iso, uuid_hex, ...) encode to plain text,
    # which is what a SQL row or a JSON column wants anyway.
    if len(obj) == 2 and "_type_" in obj and "_data_" in obj:
        return obj["_data_"]
    return obj


_DECODER = json.JSONDecoder(object_hook=_plain_markers)  # one instance: json.loads builds one per call

# A marker as the ledger's transcoder writes it (compact, "_type_" first) with a text "_data_".
# The pattern cannot match inside a JSON string, where every quote is escaped.
_MARKER = re.compile(rb'\{"_type_":"[A-Za-z0-9_]+","_data_":("(?:[^"\\]|\\.)*")\}')
_TYPE_KEY = b'"_type_"'


def decode_json(data: bytes | str) -> dict[str, Any]:
    """The payload as plain data, markers replaced by their text.

    Every payload is decoded by the projections, so this is their hottest path: orjson parses,
    and the markers are found in the bytes rather than by a walk over every object. Most events
    carry one marker, their timestamp. Anything unusual (a marker with non-text data, a key named
    "_type_" in the data, bytes orjson refuses) takes the plain ``json`` route, which gives the
    same result. (orjson would read an integer beyond 64 bits as a float; the ledger holds none,
    because its transcoder, orjson too, refuses to write one.)
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        markers = raw.count(_TYPE_KEY)
        if markers == 0:
            result = orjson.loads(raw)
        elif markers == 1 and type(result := orjson.loads(raw)) is dict and _is_marker(result.get("timestamp")):
            result["timestamp"] = result["timestamp"]["_data_"]
        else:
            plain = _MARKER.sub(rb"\1", raw)
            result = orjson.loads(plain) if _TYPE_KEY not in plain else _DECODER.decode(raw.decode("utf-8"))
    except orjson.JSONDecodeError:
        result = _DECODER.decode(raw.decode("utf-8"))
    if not isinstance(result, dict):
        raise ValueError("an event payload is a JSON object")
    return result


def _is_marker(value: Any) -> bool:
    return type(value) is dict and len(value) == 2 and "_type_" in value and type(value.get("_data_")) is str


def decode_state(state: bytes) -> dict[str, Any]:
    if state[:1] == b"{":
        try:
            return decode_json(state)
        except ValueError:
            pass
    return decode_json(_opener().open(state))


def open_payload(state: bytes) -> bytes:
    """A stored payload as JSON bytes: as it is when it is JSON, otherwise decrypted and
    decompressed with the cipher and compressor the environment configures for the ledger
    (``UndecodablePayloadError`` when none is)."""
    if state[:1] == b"{":
        try:
            orjson.loads(state)
            return state
        except orjson.JSONDecodeError:
            pass
    return _opener().open(state)


class _Opener:
    """Decrypts and decompresses payloads with the ledger application's configured cipher."""

    def __init__(self) -> None:
        from eventsourcing.persistence import InfrastructureFactory
        from eventsourcing.utils import Environment

        env = Environment(LEDGER_APPLICATION, {**os.environ, "PERSISTENCE_MODULE": "eventsourcing.popo"})
        factory = InfrastructureFactory.construct(env)
        self.cipher = factory.cipher()
        self.compressor = factory.compressor()

    def open(self, state: bytes) -> bytes:
        if self.cipher is None and self.compressor is None:
            raise UndecodablePayloadError(
                "a ledger payload is encrypted or compressed, and no cipher or compressor is configured "
                "(LEDGER_CIPHER_TOPIC / CIPHER_TOPIC, CIPHER_KEY, COMPRESSOR_TOPIC)"
            )
        if self.cipher is not None:
            state = self.cipher.decrypt(state)
        if self.compressor is not None:
            state = self.compressor.decompress(state)
        return state


_opener_instance: _Opener | None = None
_opener_lock = threading.Lock()


def _opener() -> _Opener:
    global _opener_instance  # noqa: PLW0603 - one per process, built on first need
    with _opener_lock:
        if _opener_instance is None:
            _opener_instance = _Opener()
        return _opener_instance


def read_notifications(
    conn: Connection[Any],
    after: int,
    limit: int,
    *,
    topics: Iterable[str] = (),
    prefixes: Iterable[str] = (),
    hashes: bool = False,
) -> list[Notification]:
    """Up to ``limit`` notifications after position ``after``, in position order.

    Every notification comes back (so the caller can track the last position it saw), but the
    payload (``state``) and the chain fields only for the given topics or topic prefixes.
    Positions are in commit order (the recorder locks the events table for every insert), so
    reading after a position never skips a row that commits later.
    """
    wanted = sql.SQL("(topic = ANY(%(topics)s) OR topic LIKE ANY(%(patterns)s))")
    columns = [sql.SQL("notification_id, originator_id, originator_version, topic")]
    columns.append(sql.SQL("CASE WHEN {} THEN state END").format(wanted))
    if hashes:
        columns.append(sql.SQL("hash, prev_hash, stream_prev_hash"))
    query = sql.SQL(
        "SELECT {columns} FROM {table} WHERE notification_id > %(after)s ORDER BY notification_id LIMIT %(limit)s"
    ).format(columns=sql.SQL(", ").join(columns), table=sql.Identifier(EVENTS_TABLE))
    params = {
        "after": after,
        "limit": limit,
        "topics": list(topics),
        "patterns": [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for p in prefixes],
    }
    with conn.cursor(binary=True, row_factory=tuple_row) as cur:
        cur.execute(query, params)
        rows: Sequence[tuple[Any, ...]] = cur.fetchall()
    return [Notification(*row) for row in rows]


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
