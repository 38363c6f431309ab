"""Read model "dispute_timeline": for each claim, every event of its own stream and of its
payments' streams, in ledger order, with position, stream version, hashes and the payload as
stored — what a dispute team reads next to the inclusion proofs.

Tables (migrations/0008_dispute_timeline.sql): ``dispute_timeline`` (append-only) and
``timeline_streams`` (which claims a payment stream belongs to, from ``Payment.Scheduled``).
The payload is kept as the stored JSON text, untouched, so it can be hashed again; an encrypted
or compressed payload is kept as base64 of the stored bytes (its timestamp then unknown).

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

from projections.events import Notification, Topics
from projections.reading import Hub, Source, Where, checked, non_negative, select, valid_claim_id, wait_for_position
from projections.store import Batch, ReadModel, cached_statement


def event_type(topic: str) -> str:
    """``module:Claim.Submitted`` -> ``Claim.Submitted``."""
    return topic.rsplit(":", 1)[-1]


class DisputeTimelineModel(ReadModel):
    name = "dispute_timeline"
    tables = ("dispute_timeline", "timeline_streams")
    topic_prefixes = (Topics.CLAIM_PREFIX, Topics.PAYMENT_PREFIX)
    hashes = True

    def prepare(self, notifications: Sequence[Notification]) -> None:
        for n in notifications:
            if n.state is not None:
                _stored_json(n)

    def apply(self, batch: Batch, notifications: Sequence[Notification]) -> None:
        mine = [n for n in notifications if n.state is not None]
        if not mine:
            return
        timeline = batch.append_table("dispute_timeline")
        streams = batch.append_table("timeline_streams")
        owners = self._payment_owners(batch, {n.stream_id for n in mine if n.topic.startswith(Topics.PAYMENT_PREFIX) and n.topic != Topics.PAYMENT_SCHEDULED})
        for n in mine:
            assert n.state is not None
            text, recorded_at = _stored_json(n)
            if n.topic.startswith(Topics.CLAIM_PREFIX):
                claim_ids = [str(n.stream_id)]
            elif n.topic == Topics.PAYMENT_SCHEDULED:
                claim_ids = list(n.payload["claim_ids"])
                owners[str(n.stream_id)] = claim_ids
                for claim_id in claim_ids:
                    streams.add({"stream_id": str(n.stream_id), "claim_id": claim_id})
            else:
                claim_ids = owners.get(str(n.stream_id), [])
            if text is not None:
                payload, encoding = text, "json"
            else:
                payload, encoding = base64.b64encode(n.state).decode("ascii"), "base64"
            for claim_id in claim_ids:
                timeline.add(
                    {
                        "claim_id": claim_id,
                        "position": n.position,
                        "stream_id": str(n.stream_id),
                        "stream_version": n.version,
                        "event_type": event_type(n.topic),
                        "topic": n.topic,
                        "payload": payload,
                        "payload_encoding": encoding,
                        "hash": _bytea(n.hash),
                        "prev_hash": _bytea(n.prev_hash),
                        "stream_prev_hash": _bytea(n.stream_prev_hash),
                        "recorded_at": recorded_at,
                    }
                )

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


def _bytea(value: bytes | None) -> str | None:
    # jsonb_populate_recordset reads bytea from its text form.
    return None if value is None else "\\x" + value.hex()


def _stored_json(n: Notification) -> tuple[str | None, str | None]:
    """The stored payload as JSON text and the event's timestamp; (None, None) when the bytes are
    not JSON (encrypted or compressed)."""
    stored = n.stored_json()
    if stored is None:
        return None, None
    text, payload = stored
    stamp = payload.get("timestamp")
    return text, stamp if isinstance(stamp, str) else None


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
    where = Where("claim_id = %s AND position > %s", claim_id, after_position)
    return select(source, TimelineEntry, "dispute_timeline", where, order="position", limit=limit)
