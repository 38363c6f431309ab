"""The progress monitor's WAL waits (claims_db_wal_wait_seconds) select the names this PostgreSQL
gives them: the metric once matched only the names before PostgreSQL 17 (WALSync) and missed the
WAL's flushes (WalSync) and a new segment's creation (WalInitWrite) altogether."""

from __future__ import annotations

import psycopg
import pytest

from claims_service.observability.progress import WAL_WAIT


def test_the_wal_waits_are_the_servers_own_wal_waits_and_no_others(database_url):
    with psycopg.connect(database_url) as conn:
        if conn.info.server_version < 170000:
            pytest.skip("pg_wait_events lists the wait events from PostgreSQL 17 on")
        chosen = {name for (name,) in conn.execute(
            "SELECT wait_event_type || ':' || wait_event FROM"
            " (SELECT type AS wait_event_type, name AS wait_event FROM pg_wait_events) w"
            f" WHERE {WAL_WAIT}").fetchall()}
    assert {"IO:WalSync", "IO:WalWrite", "IO:WalInitWrite", "IO:WalInitSync", "LWLock:WALWrite", "IPC:SyncRep"} <= chosen
    # Not the background processes' idle waits, nor a replica's.
    assert not {n for n in chosen if n.startswith(("Activity:", "Client:", "Timeout:"))}
