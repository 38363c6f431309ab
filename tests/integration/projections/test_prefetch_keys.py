"""A batch's rows loaded by their whole primary key: only the rows named, in one query, and the
absent ones known to be absent (no second query for them); and the benefits model loading a
claim's effect on its period that way."""

from __future__ import annotations

import uuid

import psycopg

from projections.benefits import BenefitsModel
from projections.events import Notification, Topics
from projections.store import Batch

PERIOD = str(uuid.uuid4())
OTHER_PERIOD = str(uuid.uuid4())


def effect(period: str, claim: str, deductible: int) -> tuple:
    return (period, claim, deductible, 0, "{}", False, 1)


class CountingCursor(psycopg.Cursor):
    statements = 0

    def execute(self, query, params=None, **kwargs):  # noqa: ANN001, ANN201 - psycopg's signature
        CountingCursor.statements += 1
        return super().execute(query, params, **kwargs)


def test_prefetch_keys_loads_the_named_rows_only(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO benefit_claims (stream_id, claim_id, deductible_cents, oop_cents, benefit_units,"
                            " reversed, last_position) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            [effect(PERIOD, f"claim-{i}", i) for i in range(50)] + [effect(OTHER_PERIOD, "claim-3", 999)])
    with psycopg.connect(database_url, cursor_factory=CountingCursor) as conn, conn.cursor() as cur:
        effects = Batch(cur).table("benefit_claims", ("stream_id", "claim_id"))
        CountingCursor.statements = 0
        effects.prefetch_keys({(PERIOD, "claim-3"), (PERIOD, "claim-7"), (PERIOD, "claim-404")})
        assert CountingCursor.statements == 1
        # The rows named and nothing else of the period (or of the other period with a claim-3).
        assert sorted(key for key, row in effects.rows.items() if row is not None) == [(PERIOD, "claim-3"), (PERIOD, "claim-7")]
        assert effects.get(PERIOD, "claim-7")["deductible_cents"] == 7
        assert effects.get(PERIOD, "claim-404") is None
        assert CountingCursor.statements == 1  # the absent row was known absent
        effects.prefetch_keys({(PERIOD, "claim-3")})  # loaded already: no query
        assert CountingCursor.statements == 1
        assert effects.get(OTHER_PERIOD, "claim-3")["deductible_cents"] == 999  # not prefetched: read by get
        assert CountingCursor.statements == 2


def test_a_claims_effect_on_its_period_reads_that_claims_row_only(database_url):
    """The benefits model, applying a claim to a period that holds fifty: one effect row read, not
    the period's every claim (which it read before, at every claim of the member's year)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO member_accumulators (stream_id, payer_id, member_id, plan_year, deductible_met_cents,"
                     " oop_met_cents, benefit_units, last_position) VALUES (%s, 'payer-1', 'member-1', 2026, 1225, 1225, '{}', 1)",
                     (PERIOD,))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO benefit_claims (stream_id, claim_id, deductible_cents, oop_cents, benefit_units,"
                            " reversed, last_position) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            [effect(PERIOD, f"claim-{i}", i) for i in range(50)])
    applied = Notification(2, uuid.UUID(PERIOD), 2, Topics.PERIOD_CLAIM_APPLIED, b"{}")
    applied._payload = {"claim_id": "claim-7", "deductible_cents": 100, "oop_cents": 100, "benefit_units": {}}
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        batch = Batch(cur)
        BenefitsModel().apply(batch, [applied])
        effects = batch.table("benefit_claims", ("stream_id", "claim_id"))
        assert list(effects.rows) == [(PERIOD, "claim-7")]
        period = batch.table("member_accumulators", ("stream_id",)).get(PERIOD)
        # "set", not "add": claim-7's earlier 7 cents taken off, its 100 put on.
        assert period["deductible_met_cents"] == 1225 - 7 + 100
        batch.flush()
        conn.commit()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT deductible_cents FROM benefit_claims WHERE stream_id = %s AND claim_id = 'claim-7'",
                            (PERIOD,)).fetchone()[0] == 100
