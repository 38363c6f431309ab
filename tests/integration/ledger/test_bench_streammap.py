"""The stream map benchmark runs (at small sizes), and the map it timed is the map of its ledger."""

from __future__ import annotations

import psycopg

from bench.streammap import measure
from claims_service.ledger import streammap


def test_measure_small_and_the_timed_updates_build_the_right_map(database_url):
    found = measure(database_url, (1_000, 3_000), updates=3, batch=100)
    assert [r["streams"] for r in found] == [1_000, 3_000]
    assert all(r["events"] == 300 and r["us_per_event"] > 0 and r["python_cpu_us_per_event"] > 0 for r in found)
    with psycopg.connect(database_url) as conn:
        size = streammap.mapped_size(conn)
        assert size == 3_000 + 300
        heads = streammap.heads_of(conn.execute(
            "SELECT e.originator_id, e.originator_version, l.event_hash FROM ledger_leaves l"
            " JOIN ledger_events e ON e.notification_id = l.position WHERE l.leaf_index < %s ORDER BY l.leaf_index",
            (size,)).fetchall())
        assert streammap.root_at(conn, size) == streammap.build_root(heads)
