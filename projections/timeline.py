"""Read model "dispute_timeline": for each claim, every event of its own stream and of its
payments' streams, in ledger order, with position, stream version, hashes and the payload as
stored — what a dispute team reads next to the inclusion proofs.

Tables (migrations/0008_dispute_timeline.sql, 0030): ``dispute_timeline`` (append-only: which
claim each event belongs to, by position, and the event's timestamp) and ``timeline_streams``
(which claims a payment stream belongs to, from ``Payment.Scheduled``). The events themselves are
read from the ledger by position when the timeline is asked for, so the payload and the hashes
are the ledger's own bytes: the JSON text as stored, untouched, so it can be hashed again, or an
encrypted or compressed payload as base64 of the stored bytes (its timestamp then unknown).

Here: its writer (``DisputeTimelineModel``), its rows (``TimelineEntry``) and its query
(``claim_timeline``; waiting and checks as ``reading`` describes).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql

from claims_service.ledger.chain import EVENTS_TABLE
from claims_service.ledger.payloads import decode_json, sealed_key_id
from projections.events import Notification, Topics
from projections.reading import Hub, Source, checked, fetch, non_negative, valid_claim_id, wait_for_position
from projections.store import Batch, ReadModel, cached_statement


def event_type(topic: str) -> str:
    """``module:Claim.Submitted`` -> ``Claim.Submitted``."""
    return topic.rsplit(":", 1)[-1]


class DisputeTimelineModel(ReadModel):
    name = "dispute_timeline"
    tables = ("dispute_timeline", "timeline_streams")
    topic_prefixes = (Topics.CLAIM_PREFIX, Topics.PAYMENT_PREFIX)

    def prepare(self, notifications: Sequence[Notification]) -> None:
        for n in notifications:
            if n.state is not None:
                _recorded_at(n)  # decoded here, ahead of the batch's transaction

    def apply(self, batch: Batch, notifications: Sequence[Notification]) -> None:
        mine = [n for n in notifications if n.state is not None]
        if not mine:
            return
        timeline = batch.append_table("dispute_timeline")
        streams = batch.append_table("timeline_streams")
        owners = self._payment_owners(batch, {n.stream_id for n in mine if n.topic.startswith(Topics.PAYMENT_PREFIX) and n.topic != Topics.PAYMENT_SCHEDULED})
        for n in mine:
            assert n.state is not None
            recorded_at = _recorded_at(n)
            if n.topic.startswith(Topics.CLAIM_PREFIX):
                claim_ids = [str(n.stream_id)]
            elif n.topic == Topics.PAYMENT_SCHEDULED:
                claim_ids = list(n.payload["claim_ids"])
                owners[str(n.stream_id)] = claim_ids
                for claim_id in claim_ids:
                    streams.add({"stream_id": str(n.stream_id), "claim_id": claim_id})
            else:
                claim_ids = owners.get(str(n.stream_id), [])
            for claim_id in claim_ids:
                timeline.add({"claim_id": claim_id, "position": n.position, "stream_id": str(n.stream_id),
                              "recorded_at": recorded_at})

    @staticmethod
    def _payment_owners(batch: Batch, stream_ids: set[Any]) -> dict[str, list[str]]:
        owners: dict[str, list[str]] = {}
        if not stream_ids:
            return owners
        relation = "timeline_streams" + batch.suffix
        batch.cur.execute(cached_statement(("payment owners", relation), lambda: sql.SQL(
            "SELECT stream_id::text, claim_id FROM {} WHERE stream_id = ANY(%s) ORDER BY claim_id").format(
            sql.Identifier(relation))), (list(stream_ids),))
        for stream_id, claim_id in batch.cur.fetchall():
            owners.setdefault(stream_id, []).append(claim_id)
        return owners


def _recorded_at(n: Notification) -> str | None:
    """The event's own timestamp, from its payload; None when the stored bytes are not JSON
    (encrypted or compressed as a whole)."""
    stored = n.stored_json()
    if stored is None:
        return None
    stamp = stored[1].get("timestamp")
    return stamp if isinstance(stamp, str) else None


# --- rows --------------------------------------------------------------------------------------


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


# --- queries -----------------------------------------------------------------------------------


@checked
def claim_timeline(
    source: Source,
    claim_id: str,
    *,
    after_position: int = 0,
    limit: int | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> list[TimelineEntry]:
    """``claim_timeline(source, claim_id, *, after_position=0, limit=None, min_position=None,
    timeout=None, hub=None) -> list[TimelineEntry]``: every event of the claim's stream and its
    payments' streams, in ledger order (empty for an unknown claim; authorise before calling);
    ``limit`` None or 0: all."""
    claim_id = valid_claim_id(claim_id)
    if limit is not None:
        non_negative(limit, "limit")
    wait_for_position(source, DisputeTimelineModel.name, min_position, timeout=timeout, hub=hub)
    query = _TIMELINE + (" LIMIT %s" if limit else "")
    found = fetch(source, query, (claim_id, after_position, limit) if limit else (claim_id, after_position))
    return [_entry(row) for row in found]


# The events by position, from the ledger (its unique index on notification_id).
_TIMELINE = (
    "SELECT t.claim_id, t.position, e.originator_id, e.originator_version, e.topic, e.state, e.hash, e.prev_hash,"
    " e.stream_prev_hash, t.recorded_at"
    f" FROM dispute_timeline t JOIN {EVENTS_TABLE} e ON e.notification_id = t.position"
    " WHERE t.claim_id = %s AND t.position > %s ORDER BY t.position"
)


def _entry(row: dict[str, Any]) -> TimelineEntry:
    state = bytes(row["state"])
    payload, encoding = _stored_form(state)
    return TimelineEntry(claim_id=row["claim_id"], position=row["position"], stream_id=row["originator_id"],
                         stream_version=row["originator_version"], event_type=event_type(row["topic"]),
                         topic=row["topic"], payload=payload, payload_encoding=encoding, hash=bytes(row["hash"]),
                         prev_hash=bytes(row["prev_hash"]), stream_prev_hash=bytes(row["stream_prev_hash"]),
                         recorded_at=row["recorded_at"])


def _stored_form(state: bytes) -> tuple[str, str]:
    """The stored bytes as the timeline gives them: ``(text, "json")`` when they are JSON (a plain
    payload, or a member's sealed envelope), else ``(base64, "base64")``; the projections'
    ``Notification.stored_json`` tells them apart the same way."""
    if state[:1] == b"{":
        try:
            text = state.decode("utf-8")
            if sealed_key_id(state) is None:
                decode_json(state)
            return text, "json"
        except ValueError:  # UnicodeDecodeError is a ValueError: ciphertext that began with "{"
            pass
    return base64.b64encode(state).decode("ascii"), "base64"
