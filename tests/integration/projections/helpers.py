"""Shared helpers for the projection tests: draining, table comparison, expected notices."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

from projections import catalog
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner

# The events a payer is told of: decisions, voids and replacements, and money taken back.
NOTICED = ("Claim.Adjudicated", "Claim.Pended", "Claim.ReviewResolved", "Claim.DisputeResolved", "Claim.Voided",
           "Claim.Corrected", "Payment.Cancelled", "Payment.Recouped")


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


def expected_notices(database_url: str) -> list[tuple[int, str, str, str]]:
    """(position, payer_id, claim_id, event type) of every event a payer is told of, read straight
    from the events table (independently of the projection)."""
    payers: dict[str, str] = {}
    notices = []
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id::text, topic, convert_from(state, 'UTF8') FROM ledger_events"
            " WHERE topic LIKE 'claims_service.domain.claim:Claim.%%' OR topic LIKE 'claims_service.domain.payment:Payment.%%'"
            " ORDER BY notification_id"
        ).fetchall()
    for position, stream, topic, state in rows:
        kind = topic.rsplit(":", 1)[-1]
        if kind == "Claim.Submitted":
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
