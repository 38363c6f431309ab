"""The dispute timeline keeps which claim each event belongs to, by position, and reads the events
themselves from the ledger (migration 0030): no copy of a payload or a hash in the read model, and
rows written before the migration read as they did."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg

from claims_service.migrate import migrate
from projections.timeline import claim_timeline
from tests.migrations import migrate_before

SUBMITTED = "claims_service.domain.claim:Claim.Submitted"


def test_the_read_model_holds_positions_not_copies(database_url):
    with psycopg.connect(database_url) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'dispute_timeline'::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum").fetchall()]
    assert columns == ["claim_id", "position", "stream_id", "recorded_at"]


def test_rows_written_before_the_migration_read_from_the_ledger_after_it(blank_database_url, tmp_path: Path):
    migrate_before(blank_database_url, "0030", tmp_path / "migrations")
    claim = uuid.uuid4()
    states = [b'{"timestamp": "2026-12-01T10:00:00+00:00", "lines": []}', b"\x00compressed or sealed bytes"]
    with psycopg.connect(blank_database_url, autocommit=True) as conn:
        written = conn.execute(
            "SELECT notification_id, hash, leaf_index FROM ledger_append(NULL, NULL, '5s', %s, %s, %s, %s, NULL, NULL)",
            ([claim, claim], [1, 2], [SUBMITTED, "claims_service.domain.claim:Claim.Adjudicated"], states)).fetchall()
        conn.execute("SELECT read_model_prepare_rebuild('dispute_timeline')")  # a rebuild under way keeps going
        for table in ("dispute_timeline", "dispute_timeline_rebuild"):
            for (position, digest, _), state, version in zip(written, states, (1, 2), strict=True):
                conn.execute(
                    f"INSERT INTO {table} VALUES (%s, %s, %s, %s, 'Claim.X', 'x:Claim.X', 'the old copy', 'json',"
                    " %s, %s, %s, %s)",
                    (str(claim), position, claim, version, digest, b"old", b"old",
                     "2026-12-01T10:00:00+00:00" if version == 1 else None))

    assert migrate(blank_database_url) == ["0030_dispute_timeline_by_position.sql"]

    with psycopg.connect(blank_database_url, autocommit=True) as conn:
        ledger = conn.execute("SELECT notification_id, originator_version, topic, state, hash, prev_hash, stream_prev_hash"
                              " FROM ledger_events ORDER BY notification_id").fetchall()
        timeline = claim_timeline(conn, str(claim))
        rebuilt_columns = conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'dispute_timeline_rebuild'::regclass"
                                       " AND attnum > 0 AND NOT attisdropped").fetchone()[0]
    assert rebuilt_columns == 4
    assert [(e.position, e.stream_version, e.topic, e.hash, e.prev_hash, e.stream_prev_hash) for e in timeline] == [
        (position, version, topic, bytes(digest), bytes(prev), bytes(stream_prev))
        for position, version, topic, _, digest, prev, stream_prev in ledger]
    first, second = timeline
    assert (first.event_type, first.payload_encoding, first.payload.encode()) == ("Claim.Submitted", "json", states[0])
    assert first.recorded_at is not None and second.recorded_at is None
    # Bytes that are not JSON come as base64 of themselves, as the timeline always gave them.
    assert (second.payload_encoding, second.payload) == ("base64", "AGNvbXByZXNzZWQgb3Igc2VhbGVkIGJ5dGVz")
