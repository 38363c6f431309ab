"""Read model "dispute_timeline": for each claim, every event of its own stream and of its
payments' streams, in ledger order, with position, stream version, hashes and the payload as
stored — what a dispute team reads next to the inclusion proofs.

Tables (migrations/0008_dispute_timeline.sql): ``dispute_timeline`` (append-only) and
``timeline_streams`` (which claims a payment stream belongs to, from ``Payment.Scheduled``).
The payload is kept as the stored JSON text, untouched, so it can be hashed again; an encrypted
or compressed payload is kept as base64 of the stored bytes (its timestamp then unknown).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from psycopg import sql

from projections.events import Notification, Topics
from projections.store import Batch, ReadModel


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
        batch.cur.execute(
            sql.SQL("SELECT stream_id::text, claim_id FROM {} WHERE stream_id = ANY(%s) ORDER BY claim_id").format(
                sql.Identifier("timeline_streams" + batch.suffix)
            ),
            (list(stream_ids),),
        )
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
