"""Migration 0031: a provider's claims by status, moved out of claim_status's indexes, are there for
every claim written before it (in a rebuild under way too), and the projection keeps them as each
claim's status changes."""

from __future__ import annotations

from pathlib import Path

import psycopg

from claims_service.migrate import migrate
from projections.claims import list_claims
from tests.migrations import migrate_before

ROW = """
INSERT INTO {table} (claim_id, provider_id, payer_id, member_id, status, frequency_code, place_of_service,
    received_on, first_date_of_service, last_date_of_service, diagnosis_codes, lines, total_billed_cents,
    disputes, submitted_position, last_position, stream_version)
VALUES (%s, %s, 'payer-1', 'member-1', %s, '1', '11', DATE '2026-11-02', DATE '2026-11-01', DATE '2026-11-01',
    '{{Z00.00}}', '[]'::jsonb, 10000, '[]'::jsonb, %s, %s, 2)
"""
CLAIMS = [("claim-1", "provider-1", "adjudicated", 1), ("claim-2", "provider-1", "voided", 2),
          ("claim-3", "provider-2", "adjudicated", 3), ("claim-4", "provider-1", "adjudicated", 4)]


def test_claims_written_before_the_migration_are_listed_by_status_after_it(blank_database_url, tmp_path: Path):
    migrate_before(blank_database_url, "0031", tmp_path / "migrations")
    with psycopg.connect(blank_database_url, autocommit=True) as conn:
        conn.execute("SELECT read_model_prepare_rebuild('claim_status')")  # a rebuild under way keeps going
        for table in ("claim_status", "claim_status_rebuild"):
            for claim_id, provider_id, status, position in CLAIMS:
                conn.execute(ROW.format(table=table), (claim_id, provider_id, status, position, position + 1))

    assert migrate(blank_database_url)[0] == "0031_claim_status_hot_updates.sql"

    with psycopg.connect(blank_database_url, autocommit=True) as conn:
        for table in ("claim_status_by_status", "claim_status_by_status_rebuild"):
            assert conn.execute(f"SELECT provider_id, status, submitted_position, claim_id FROM {table}"
                                " ORDER BY submitted_position").fetchall() == [
                (provider_id, status, position, claim_id) for claim_id, provider_id, status, position in CLAIMS]
        for table in ("claim_status", "claim_status_rebuild"):  # no index on the status is left
            definitions = [row[0] for row in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", (table,))]
            assert definitions and not [d for d in definitions if "status," in d], definitions
        assert "claim_status_by_status" in {row[0] for row in conn.execute(
            "SELECT table_name FROM read_model_tables WHERE projection = 'claim_status'")}
        assert [c.claim_id for c in list_claims(conn, "provider-1", status="adjudicated").claims] == ["claim-4", "claim-1"]
        assert [c.claim_id for c in list_claims(conn, "provider-1", status="voided").claims] == ["claim-2"]
        # The rebuild ends by swapping its copies in, this table's with the others.
        conn.execute("SELECT read_model_swap_rebuild('claim_status')")
        assert conn.execute("SELECT count(*) FROM claim_status_by_status").fetchone()[0] == len(CLAIMS)
