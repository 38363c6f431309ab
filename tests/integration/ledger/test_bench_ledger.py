"""The ledger benchmark's baseline runs: its plain table takes the service's own append statement
(the part failed once a migration changed that statement's signature and the baseline's did not)."""

from __future__ import annotations

import uuid

import psycopg

from bench.ledger import append_rate, plain_schema_url
from tests.conftest import _create_database, _drop_database


def test_the_plain_baseline_appends_with_the_services_statement(pg_admin_url):
    name = f"bench_plain_{uuid.uuid4().hex[:8]}"
    try:
        url = plain_schema_url(lambda _name: _create_database(pg_admin_url, name), "bench_plain")
        assert append_rate(url, 0.3, threads=2, events_per_save=3) > 0
        with psycopg.connect(url) as conn:
            count = conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]
            chained = conn.execute("SELECT count(*) FROM information_schema.columns"
                                   " WHERE table_name = 'ledger_events' AND column_name = 'hash'").fetchone()[0]
        assert count > 0 and count % 3 == 0
        assert chained == 0  # the library's table, without the hash chain
    finally:
        _drop_database(pg_admin_url, name)
