"""Shared helpers for the projection tests: draining, table comparison, expected notices."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql

from projections import catalog
from projections.feed import NotificationHub
from projections.streams import ADJUDICATIONS, CLAIM_CHANGES, Feed, FeedStreams
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner

# The events a payer is told of: decisions, voids and replacements, money taken back, its
# members' visits and emergency accesses to their histories.
NOTICED = ("Claim.Adjudicated", "Claim.Pended", "Claim.ReviewResolved", "Claim.DisputeResolved", "Claim.Voided",
           "Claim.Corrected", "Payment.Cancelled", "Payment.Recouped", "Visit.Recorded", "EmergencyAccess.Declared")


class BlockingStreams:
    """The server's streams (``FeedStreams``) on an event loop of their own thread, consumed as
    blocking iterators, as the tests' consumers are threads. ``adjudications(payer, after, stop)``,
    ``claim_updates(provider, after, stop)``; a context manager."""

    def __init__(self, hub: NotificationHub, *, heartbeat_interval: float = 0.2) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._executor = ThreadPoolExecutor(max_workers=4)
        self.feeds = FeedStreams(hub, self._executor, heartbeat_interval=heartbeat_interval)

    def adjudications(self, payer_id: str, after: int, stop: threading.Event) -> Iterator[Any]:
        return self._iterate(ADJUDICATIONS, payer_id, after, stop)

    def claim_updates(self, provider_id: str, after: int, stop: threading.Event) -> Iterator[Any]:
        return self._iterate(CLAIM_CHANGES, provider_id, after, stop)

    def _iterate(self, feed: Feed[Any], party: str, after: int, stop: threading.Event) -> Iterator[Any]:
        stream = self.feeds.stream(feed, party, after)
        try:
            while not stop.is_set():
                yield asyncio.run_coroutine_threadsafe(stream.__anext__(), self.loop).result(30)
        finally:
            asyncio.run_coroutine_threadsafe(stream.aclose(), self.loop).result(10)

    def __enter__(self) -> BlockingStreams:
        return self

    def __exit__(self, *exc: object) -> None:
        async def shut_down() -> None:
            self.feeds.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut_down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def drain(database_url: str, names: tuple[str, ...] = catalog.NAMES, batch_size: int = 500) -> None:
    for name in names:
        runner = ProjectionRunner(database_url, name, batch_size=batch_size)
        try:
            runner.drain()
        finally:
            runner.close()


def head(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()
    return int(row[0] or 0)


def row_count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def differences(database_url: str, left: str, right: str) -> int:
    """How many rows differ between two tables of the same shape (multiset difference, both ways)."""
    query = sql.SQL("SELECT count(*) FROM ((TABLE {0} EXCEPT ALL TABLE {1}) UNION ALL (TABLE {1} EXCEPT ALL TABLE {0})) d")
    with psycopg.connect(database_url) as conn:
        return conn.execute(query.format(sql.Identifier(left), sql.Identifier(right))).fetchone()[0]


def assert_equals_from_scratch(database_url: str, names: tuple[str, ...] = catalog.NAMES, *, require_rows: bool = False) -> None:
    """Build every projection from position 0 into <table>_rebuild (no swap) and compare."""
    for name in names:
        rebuild(database_url, name, swap=False)
        for table in catalog.MODELS[name].tables:
            assert row_count(database_url, table) > 0 or not require_rows, table
            assert differences(database_url, table, table + "_rebuild") == 0, table


def expected_notices(database_url: str) -> list[tuple[int, str, str | None, str]]:
    """(position, payer_id, claim_id, event type) of every event a payer is told of, read straight
    from the events table (independently of the projection); a visit or an emergency access has no
    claim id, and an emergency access is told to each payer it names."""
    payers: dict[str, str] = {}
    notices = []
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id::text, topic, convert_from(state, 'UTF8') FROM ledger_events"
            " WHERE topic LIKE 'claims_service.domain.claim:Claim.%%' OR topic LIKE 'claims_service.domain.payment:Payment.%%'"
            " OR topic IN ('claims_service.domain.visit:Visit.Recorded',"
            " 'claims_service.domain.access:EmergencyAccess.Declared')"
            " ORDER BY notification_id"
        ).fetchall()
    for position, stream, topic, state in rows:
        kind = topic.rsplit(":", 1)[-1]
        if kind == "Visit.Recorded":
            notices.append((position, json.loads(state)["payer_id"], None, kind))
        elif kind == "EmergencyAccess.Declared":
            notices += [(position, payer, None, kind) for payer in json.loads(state)["payer_ids"]]
        elif kind == "Claim.Submitted":
            payers[stream] = json.loads(state)["payer_id"]
        elif kind in ("Payment.Cancelled", "Payment.Recouped"):
            payload = json.loads(state)
            claim = (payload["claim_ids"] if kind == "Payment.Cancelled" else list(payload["lines"]))[0]
            notices.append((position, payers[claim], claim, kind))
        elif kind in NOTICED:
            notices.append((position, payers[stream], stream, kind))
    return notices


def tracked(database_url: str, name: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT notification_id FROM ledger_tracking WHERE application_name = %s", (f"projection.{name}",)
        ).fetchone()
    return int(row[0]) if row else 0


def json_rows(database_url: str, table: str, order: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute(sql.SQL("SELECT to_jsonb(t) FROM {} t ORDER BY {}").format(
            sql.Identifier(table), sql.SQL(order))).fetchall()]
