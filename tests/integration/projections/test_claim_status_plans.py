"""claim_status's lists use an index each on a table large enough for the planner to care, with the
indexes migration 0029 left: a provider's claims (by status too) in the index's order, and one
member's claims (at a provider too) through the member index, where sorting a member's few claims is
cheaper than walking a provider's claims for them."""

from __future__ import annotations

import json

import psycopg
import pytest

from projections.claims import list_claims, member_claims

PROVIDERS = 3
MEMBERS = 4_000
CLAIMS = 30_000

# Every NOT NULL column, a claim i for member i % MEMBERS at provider i % PROVIDERS.
FILL = """
INSERT INTO claim_status (claim_id, provider_id, payer_id, member_id, status, frequency_code, place_of_service,
    received_on, first_date_of_service, last_date_of_service, diagnosis_codes, lines, total_billed_cents,
    disputes, submitted_position, last_position, stream_version)
SELECT 'claim-' || i, 'provider-' || (i %% %(providers)s), 'payer-1', 'member-' || (i %% %(members)s),
    CASE WHEN i %% 10 = 0 THEN 'pended' ELSE 'adjudicated' END, '1', '11',
    DATE '2026-01-01' + i %% 300, DATE '2026-01-01' + i %% 300, DATE '2026-01-01' + i %% 300, '{Z00.00}', '[]'::jsonb,
    10000, '[]'::jsonb, i, i + 1, 2
FROM generate_series(1, %(claims)s) i
"""


class RecordingCursor(psycopg.Cursor):
    """Keeps each statement it runs, with its parameters, for EXPLAIN."""

    ran: list[tuple[str, object]] = []

    def execute(self, query, params=None, **kwargs):  # noqa: ANN001, ANN201 - psycopg's signature
        RecordingCursor.ran.append((query, params))
        return super().execute(query, params, **kwargs)


def plan_of_read(database_url: str, read) -> dict:  # noqa: ANN001 - a read model query
    RecordingCursor.ran = []
    with psycopg.connect(database_url, cursor_factory=RecordingCursor) as conn:
        read(conn)
        (query, params), = RecordingCursor.ran
        RecordingCursor.ran = []
        return conn.execute(f"EXPLAIN (FORMAT JSON) {query}", params).fetchone()[0][0]["Plan"]


def index_names(plan: dict) -> set[str]:
    found = {plan["Index Name"]} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= index_names(child)
    return found


@pytest.fixture
def filled(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(FILL, {"providers": PROVIDERS, "members": MEMBERS, "claims": CLAIMS})
        conn.execute("ANALYZE claim_status")
    return database_url


def test_claim_status_keeps_the_indexes_its_lists_use(database_url):
    with psycopg.connect(database_url) as conn:
        names = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'claim_status'")}
    assert names == {"claim_status_pkey", "claim_status_provider_idx", "claim_status_provider_status_idx",
                     "claim_status_member_idx"}


@pytest.mark.parametrize(("read", "index", "sorted_by_index"), [
    (lambda c: list_claims(c, "provider-1"), "claim_status_provider_idx", True),
    (lambda c: list_claims(c, "provider-1", status="pended"), "claim_status_provider_status_idx", True),
    (lambda c: list_claims(c, "provider-1", member_id="member-7"), "claim_status_member_idx", False),
    (lambda c: member_claims(c, "member-7"), "claim_status_member_idx", False),
], ids=["provider", "provider-status", "provider-member", "member"])
def test_each_list_reads_through_an_index(filled, read, index, sorted_by_index):
    plan = plan_of_read(filled, read)
    assert index_names(plan) == {index}, json.dumps(plan)
    if sorted_by_index:  # a provider's thousands of claims are not sorted for a page of them
        assert "Sort" not in json.dumps(plan), json.dumps(plan)
    else:  # a member's few are
        assert plan["Plan Rows"] < 50, json.dumps(plan)
