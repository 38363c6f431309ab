"""Read the events table for verification: every row, in position order, streamed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg

from claims_service.ledger.chain import LedgerRow, VerifyReport, verify_rows

_SELECT_ROWS = (
    "SELECT notification_id, originator_id, originator_version, topic, state,"
    " prev_hash, stream_prev_hash, hash"
    " FROM ledger_events WHERE notification_id > %s ORDER BY notification_id"
)


def iter_rows(conn: psycopg.Connection, after: int = 0, batch: int = 20_000) -> Iterator[LedgerRow]:
    # A named (server-side) cursor streams the table in batches instead of loading it whole;
    # binary results skip text decoding of the bytea columns.
    with conn.transaction(), conn.cursor(name="ledger_verify", binary=True) as cur:
        cur.itersize = batch
        cur.execute(_SELECT_ROWS, (after,))
        for rec in cur:
            yield LedgerRow(rec[0], rec[1], rec[2], rec[3], bytes(rec[4]), bytes(rec[5]), bytes(rec[6]), bytes(rec[7]))


def verify_ledger(database_url: str, expect_head: tuple[int, bytes] | None = None) -> VerifyReport:
    started = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        # Repeatable read: the walk sees one consistent snapshot while writers go on appending.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        report = verify_rows(iter_rows(conn), expect_head=expect_head)
    report.seconds = time.perf_counter() - started
    return report
