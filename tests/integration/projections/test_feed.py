"""The server streams (projections.streams): resumed from any position a payer's feed delivers
exactly the missing notices, in ledger order; one LISTEN per process serves every stream; many
streams of one party cost one read per advance; a consumer that stops reading holds up no one,
even once it falls behind what its channel remembers."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import psycopg
import pytest

from bench.projections import generate_history
from projections.claims import ClaimStatus, Notice
from projections.feed import LISTENER_NAME, Heartbeat, NotificationHub
from projections import streams as streams_module
from projections.streams import ADJUDICATIONS
from projections.runner import ProjectionSupervisor
from tests.integration.projections.helpers import NOTICED, BlockingStreams, drain, expected_notices, head

KINDS = {"adjudicated": "Claim.Adjudicated", "pended": "Claim.Pended", "review_resolved": "Claim.ReviewResolved",
         "dispute_resolved": "Claim.DisputeResolved", "voided": "Claim.Voided", "replaced": "Claim.Corrected",
         "payment_cancelled": "Payment.Cancelled", "payment_recouped": "Payment.Recouped", "visit": "Visit.Recorded",
         "emergency_access": "EmergencyAccess.Declared"}

PAYERS = ("PAYER-00", "PAYER-01", "PAYER-02")


def read_until(stream, position: int, timeout: float = 20.0) -> tuple[list[Notice], list[Heartbeat]]:
    """Consume a stream until a heartbeat says everything up to ``position`` was delivered."""
    notices: list[Notice] = []
    beats: list[Heartbeat] = []
    deadline = time.monotonic() + timeout
    for item in stream:
        assert time.monotonic() < deadline, "the stream never caught up"
        if isinstance(item, Heartbeat):
            beats.append(item)
            if item.position >= position:
                return notices, beats
        else:
            notices.append(item)
    raise AssertionError("the stream ended")


@pytest.fixture
def hub(database_url):
    with NotificationHub(database_url) as hub, BlockingStreams(hub) as streams:
        yield streams


def test_a_feed_resumed_from_any_position_delivers_exactly_the_missing_notices(database_url, hub):
    # 1. A history with three payers; the projection has processed all of it.
    generate_history(database_url, 2_500, seed=21, payers=3, members=45)
    drain(database_url, ("claim_status",))
    expected = expected_notices(database_url)
    end = head(database_url)
    assert {payer for _, payer, _, _ in expected} == set(PAYERS)
    kinds = {kind for *_, kind in expected}
    assert set(NOTICED) <= kinds

    # 2. From the start, from the end and from arbitrary positions (including ones that are not
    # notices, and ones that are): exactly the notices after it, in order, nothing else.
    rng = random.Random(7)
    starts = {0, end, *rng.sample(range(1, end), 6), *(p for p, *_ in rng.sample(expected, 4))}
    for payer in PAYERS:
        mine = [(p, claim, kind) for p, who, claim, kind in expected if who == payer]
        for start in sorted(starts):
            stop = threading.Event()
            notices, beats = read_until(hub.adjudications(payer, start, stop), end)
            stop.set()
            got = [(n.position, n.claim_id, KINDS[n.kind]) for n in notices]
            assert got == [m for m in mine if m[0] > start], (payer, start)
            assert all(n.payer_id == payer and (n.decision is not None) == (n.claim_id is not None) for n in notices)
            assert beats[-1].position == end


def test_one_listen_serves_all_streams_and_a_stalled_consumer_holds_up_no_one(database_url, hub, monkeypatch):
    # A channel that remembers little, so the stalled consumer falls behind it and must go back
    # to the table when it resumes.
    monkeypatch.setattr(streams_module, "LOG_LIMIT", 20)
    # 1. Live: projections running, two consumers of one payer's feed.
    generate_history(database_url, 300, seed=31, payers=1, members=10)
    payer = PAYERS[0]
    with ProjectionSupervisor(database_url, names=["claim_status"], idle_wait=5.0) as supervisor:
        assert supervisor.wait_for(head(database_url), timeout=10)
        fast_stop, slow_stop = threading.Event(), threading.Event()
        fast_seen: list[int] = []
        fast_stream = hub.adjudications(payer, 0, fast_stop)
        slow_stream = hub.adjudications(payer, 0, slow_stop)

        def consume_fast() -> None:
            for item in fast_stream:
                if isinstance(item, Notice):
                    fast_seen.append(item.position)

        # 2. The slow consumer takes one notice and then stops reading (keeps its stream open).
        first_slow = next(item for item in slow_stream if isinstance(item, Notice))
        fast = threading.Thread(target=consume_fast, daemon=True)
        fast.start()

        # 3. More claims are decided meanwhile: the fast consumer gets every one of them.
        generate_history(database_url, 1_500, seed=32, payers=1, members=10)
        end = head(database_url)
        expected = [p for p, who, *_ in expected_notices(database_url) if who == payer]
        deadline = time.monotonic() + 20
        while fast_seen[-1:] != expected[-1:]:
            assert time.monotonic() < deadline, "the fast consumer was held up"
            time.sleep(0.02)
        assert fast_seen == expected

        # 4. One LISTEN connection in this process, however many streams.
        with psycopg.connect(database_url, autocommit=True) as conn:
            listeners = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (LISTENER_NAME,)
            ).fetchone()[0]
        assert listeners == 1

        # 5. The slow consumer resumes reading: the rest, in order, no gap, no repeat.
        rest, _ = read_until(slow_stream, end)
        assert [first_slow.position, *(n.position for n in rest)] == expected
        fast_stop.set()
        slow_stop.set()
        fast.join(5)


def test_claim_updates_follow_every_change_of_a_providers_claims(database_url, hub):
    generate_history(database_url, 600, seed=41, payers=1, members=10)
    drain(database_url, ("claim_status",))
    end = head(database_url)
    with psycopg.connect(database_url) as conn:
        (npi,) = conn.execute(
            "SELECT provider_id FROM claim_status GROUP BY provider_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
        # Independently of the read model: every event of the provider's claims' streams.
        changes = [p for (p,) in conn.execute(
            "SELECT notification_id FROM ledger_events WHERE originator_id::text IN"
            " (SELECT claim_id FROM claim_status WHERE provider_id = %s) ORDER BY notification_id", (npi,))]
        latest = dict(conn.execute("SELECT claim_id, status FROM claim_status WHERE provider_id = %s", (npi,)).fetchall())
    assert len(changes) > len(latest), "the history should hold claims that changed more than once"
    middle = changes[len(changes) // 2]
    stop = threading.Event()
    updates: list[ClaimStatus] = []
    for item in hub.claim_updates(npi, middle, stop):
        if isinstance(item, Heartbeat):
            assert item.position == end
            break
        updates.append(item)
    stop.set()
    assert [u.last_position for u in updates] == [p for p in changes if p > middle]
    assert all(u.provider_id == npi for u in updates)
    # Each change carries the claim as it stood then; the last one per claim is its current state.
    last_seen = {u.claim_id: u.status for u in updates}
    assert all(latest[claim_id] == status for claim_id, status in last_seen.items())
    assert any(u.status == "submitted" for u in updates) and any(u.status != "submitted" for u in updates)


def test_many_streams_of_one_party_share_one_read_per_advance(database_url, hub):
    generate_history(database_url, 200, seed=71, payers=1, members=10)
    payer, streams = PAYERS[0], hub
    with ProjectionSupervisor(database_url, names=["claim_status"]) as supervisor:
        assert supervisor.wait_for(head(database_url), timeout=10)
        start = head(database_url)
        seen: list[list[int]] = [[] for _ in range(200)]
        caught_up: list[bool] = [False] * 200

        async def follow(index: int) -> None:
            async for item in streams.feeds.stream(ADJUDICATIONS, payer, start):
                if isinstance(item, Heartbeat):
                    caught_up[index] = True
                else:
                    seen[index].append(item.position)
                    if index % 10 == 0:
                        # A slower consumer: the reader appends and moves on while it takes its time.
                        await asyncio.sleep(0.002)

        async def open_all() -> list[asyncio.Task[None]]:
            return [asyncio.get_running_loop().create_task(follow(i)) for i in range(200)]

        tasks = asyncio.run_coroutine_threadsafe(open_all(), streams.loop).result(5)
        deadline = time.monotonic() + 20
        while not all(caught_up):
            assert time.monotonic() < deadline, "the streams never caught up"
            time.sleep(0.05)
        reads_when_live = streams.feeds.queries

        generate_history(database_url, 600, seed=72, payers=1, members=10)
        expected = [p for p, who, *_ in expected_notices(database_url) if who == payer and p > start]
        assert expected
        while not all(s[-1:] == expected[-1:] for s in seen):
            assert time.monotonic() < deadline + 20, "a stream missed notices"
            time.sleep(0.05)
        assert all(s == expected for s in seen)
        live_reads = streams.feeds.queries - reads_when_live
        # One read per advance of the projection, however many streams: far fewer than one per stream.
        assert live_reads < 100, live_reads
        for task in tasks:
            streams.loop.call_soon_threadsafe(task.cancel)
