"""Read your own writes: a query given a receipt's position waits for the projection, and fails at
its deadline with DEADLINE_EXCEEDED while the projection stays behind; one given a position beyond the
ledger head (which no receipt carries) fails at once with OUT_OF_RANGE."""

from __future__ import annotations

import time

import pytest
from psycopg_pool import ConnectionPool

from claims_service.adjudication import AdjudicationFollower
from projections.benefits import explanation_of_benefits
from projections.claims import get_claim, list_claims
from projections.payments import payments_for_claim
from projections.timeline import claim_timeline
from projections.errors import PositionBeyondHeadError, ProjectionLagError
from projections.feed import NotificationHub
from projections.runner import ProjectionSupervisor
from tests import world
from tests.integration.projections.helpers import head

PROVIDER = "provider:" + world.NPI


@pytest.fixture
def supervisor(database_url):
    with ProjectionSupervisor(database_url, idle_wait=5.0) as running:  # woken by NOTIFY, not by the timeout
        yield running


@pytest.fixture
def pool(database_url):
    with ConnectionPool(database_url, min_size=1, max_size=4, kwargs={"autocommit": True}) as pool:
        yield pool


@pytest.mark.parametrize("with_hub", [False, True], ids=["tracking-row", "hub"])
def test_a_query_with_the_receipts_position_sees_the_write(service, database_url, supervisor, pool, with_hub):
    hub = NotificationHub(database_url) if with_hub else None
    try:
        # 1. The provider submits; the receipt carries the ledger position of the write.
        submitted = service.submit_claim(actor=PROVIDER, **world.claim_body("ryw"))
        claim = get_claim(pool, submitted.claim_id, provider_id=world.NPI,
                                  min_position=submitted.receipt.position, timeout=5, hub=hub)
        assert claim.status == "submitted" and claim.last_position >= submitted.receipt.position
        page = list_claims(pool, world.NPI, min_position=submitted.receipt.position, timeout=5, hub=hub)
        assert [c.claim_id for c in page.claims] == [submitted.claim_id]

        # 2. The adjudicator decides it; a read at the new head sees the decision everywhere.
        while AdjudicationFollower(service.ledger).process_available():
            pass
        decided_at = head(database_url)
        started = time.monotonic()
        claim = get_claim(pool, submitted.claim_id, min_position=decided_at, timeout=5, hub=hub)
        assert claim.status == "adjudicated" and claim.outcome == "PAID"
        eob = explanation_of_benefits(pool, submitted.claim_id, min_position=decided_at, hub=hub)
        assert eob.total_you_owe_cents == 7_500
        [payment] = payments_for_claim(pool, submitted.claim_id, min_position=decided_at, hub=hub)
        assert payment.amount_cents == 1_500
        timeline = claim_timeline(pool, submitted.claim_id, min_position=decided_at, hub=hub)
        assert [e.event_type for e in timeline] == ["Claim.Submitted", "Claim.Adjudicated", "Payment.Scheduled"]
        assert time.monotonic() - started < 2.0  # woken promptly, not by a 5 s idle wait
    finally:
        if hub is not None:
            hub.close()


@pytest.mark.parametrize("with_hub", [False, True], ids=["tracking-row", "hub"])
def test_a_position_beyond_the_head_is_out_of_range_at_once(service, database_url, supervisor, pool, with_hub):
    hub = NotificationHub(database_url) if with_hub else None
    try:
        submitted = service.submit_claim(actor=PROVIDER, **world.claim_body("far"))
        beyond = head(database_url) + 1_000
        started = time.monotonic()
        with pytest.raises(PositionBeyondHeadError) as raised:
            get_claim(pool, submitted.claim_id, min_position=beyond, timeout=5, hub=hub)
        assert time.monotonic() - started < 1.0  # no waiting for what no write has reached
        error = raised.value
        assert error.status == "OUT_OF_RANGE" and error.wanted == beyond and error.head == head(database_url)
    finally:
        if hub is not None:
            hub.close()


@pytest.mark.parametrize("with_hub", [False, True], ids=["tracking-row", "hub"])
def test_a_projection_behind_at_the_deadline_is_deadline_exceeded(service, database_url, pool, with_hub):
    hub = NotificationHub(database_url) if with_hub else None
    try:
        # No projection runs here: the receipt's position is in the ledger but never read.
        submitted = service.submit_claim(actor=PROVIDER, **world.claim_body("behind"))
        started = time.monotonic()
        with pytest.raises(ProjectionLagError) as raised:
            get_claim(pool, submitted.claim_id, min_position=submitted.receipt.position, timeout=0.3, hub=hub)
        assert 0.3 <= time.monotonic() - started < 1.5
        error = raised.value
        assert error.status == "DEADLINE_EXCEEDED" and error.wanted == submitted.receipt.position
        assert error.reached < error.wanted and "min_position" in str(error)
    finally:
        if hub is not None:
            hub.close()


def test_without_a_position_a_query_answers_at_once(service, database_url, pool):
    # No projection runs here: nothing to wait for, the read model answers as it stands.
    submitted = service.submit_claim(actor=PROVIDER, **world.claim_body("now"))
    with pytest.raises(Exception, match="not found"):
        get_claim(pool, submitted.claim_id)
    with pytest.raises(ProjectionLagError):
        get_claim(pool, submitted.claim_id, min_position=submitted.receipt.position, timeout=0.05)
