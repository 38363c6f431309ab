"""Supervision: a runner whose LISTEN connection drops dies and is restarted, and carries on; the
notification hub reconnects on its own."""

from __future__ import annotations

import threading
import time

import psycopg

from bench.projections import generate_history
from projections.events import read_notifications
from projections.feed import LISTENER_NAME, Heartbeat, NotificationHub
from projections.runner import GROUP_LISTENER_NAME, GroupRunner, ProjectionRunner, ProjectionSupervisor
from tests.integration.projections.helpers import BlockingStreams, assert_equals_from_scratch, head


def terminate(database_url: str, application_name: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()[0]


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_runner_whose_listen_connection_drops_is_restarted_and_carries_on(database_url):
    generate_history(database_url, 200, seed=51, members=5)
    with ProjectionSupervisor(database_url, names=["claim_status", "payments"], initial_backoff=0.05) as supervisor:
        assert supervisor.wait_for(head(database_url), timeout=10)
        # 1. The database drops the projections' LISTEN connection.
        wait_until(lambda: terminate(database_url, GROUP_LISTENER_NAME) == 1)
        wait_until(lambda: supervisor.restarts["claim_status"] >= 1)
        # 2. They are restarted and follow new events, like runners that never died.
        generate_history(database_url, 200, seed=52, members=5)
        assert supervisor.wait_for(head(database_url), timeout=10)
        assert supervisor.restarts == {"claim_status": 1, "payments": 1}


def test_a_projection_that_fails_goes_on_alone_and_holds_up_no_other(database_url):
    generate_history(database_url, 300, seed=53, members=5)
    failures: list[int] = []

    def payments_fail_three_times(name: str, notifications: object) -> None:
        if name == "payments" and len(failures) < 3:
            failures.append(1)
            raise RuntimeError("a defect in the payments projection")

    with ProjectionSupervisor(database_url, names=["claim_status", "payments", "benefits"], initial_backoff=0.05,
                              after_apply=payments_fail_three_times) as supervisor:
        # The others are not held up, and payments catches up on its own once its defect stops.
        assert supervisor.wait_for(head(database_url), timeout=20)
        assert supervisor.alone == {"payments"}
        assert supervisor.restarts["claim_status"] == supervisor.restarts["benefits"] == 0
        assert supervisor.restarts["payments"] == 3  # taken out of the group, then two restarts alone
        generate_history(database_url, 100, seed=54, members=5)
        assert supervisor.wait_for(head(database_url), timeout=20)
    assert_equals_from_scratch(database_url, names=("claim_status", "payments", "benefits"))


def test_the_hub_reconnects_and_the_feed_goes_on(database_url):
    generate_history(database_url, 200, seed=61, payers=1, members=5)
    with ProjectionSupervisor(database_url, names=["claim_status"]) as supervisor, \
            NotificationHub(database_url) as hub, BlockingStreams(hub, heartbeat_interval=0.1) as streams:
        assert supervisor.wait_for(head(database_url), timeout=10)
        stop = threading.Event()
        beats: list[int] = []

        def follow() -> None:
            for item in streams.adjudications("PAYER-00", 0, stop):
                if isinstance(item, Heartbeat):
                    beats.append(item.position)

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        wait_until(lambda: beats and beats[-1] == head(database_url))
        assert terminate(database_url, LISTENER_NAME) == 1
        wait_until(lambda: hub.reconnects == 1 and hub.listening)
        generate_history(database_url, 200, seed=62, payers=1, members=5)
        wait_until(lambda: beats[-1] == head(database_url))
        stop.set()
        thread.join(5)


def test_reads_through_a_pool_survive_the_server_dropping_its_connections(database_url):
    from psycopg_pool import ConnectionPool

    from projections.claims import payer_worklist

    with ConnectionPool(database_url, min_size=3, max_size=3, kwargs={"autocommit": True, "application_name": "claims-test-reads"}) as pool:
        pool.wait()
        assert terminate(database_url, "claims-test-reads") == 3  # every idle connection is now dead
        assert payer_worklist(pool, "PAYER-00").items == []


def test_a_projection_far_behind_catches_up_without_holding_the_others_back(database_url):
    from projections.runner import GroupRunner, ProjectionRunner

    generate_history(database_url, 600, seed=55, members=5, batch_events=20)  # commits of about 20 events
    ahead = ProjectionRunner(database_url, "claim_status")
    ahead.drain()  # claim_status at the head; payments (a projection new to this service) at 0
    ahead.close()
    caught_up = head(database_url)
    group = GroupRunner(database_url, ["claim_status", "payments"], batch_size=100)
    try:
        generate_history(database_url, 300, seed=56, members=5, batch_events=20)
        group.process_available()
        group.process_available()
        positions = ProjectionSupervisor(database_url, names=["claim_status", "payments"]).positions()
        # claim_status follows the new events batch by batch, not waiting for payments to catch up ...
        assert positions["claim_status"] >= caught_up + 200
        # ... which it does meanwhile, batch by batch on its own (a batch ends where a commit does).
        with psycopg.connect(database_url) as conn:
            first = read_notifications(conn, 0, 100)[-1].position
            second = read_notifications(conn, first, 100)[-1].position
        assert positions["payments"] == second
        group.drain()
    finally:
        group.close()
    assert_equals_from_scratch(database_url, names=("claim_status", "payments"))


class RecordedStop(threading.Event):
    """A stop event that notes each wait a runner makes on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(timeout)


def test_both_runners_space_their_partial_batches_by_the_linger(database_url):
    """A partial batch is followed by a wait until `linger` after it began, in the group and in a
    runner following one read model alone; a full batch is not (a backlog is worked off at once)."""
    for runner in (ProjectionRunner(database_url, "claim_status"), GroupRunner(database_url, ["claim_status"])):
        stop = RecordedStop()
        sizes = iter([3, runner.batch_size, 2])

        def batch(sizes=sizes, stop=stop) -> int:
            size = next(sizes, None)
            if size is None:
                stop.set()
                return 0
            time.sleep(0.005)
            return size

        runner.process_available = batch
        runner._catch_up = lambda stop: None  # a full batch's backlog: nothing to work off here
        try:
            runner.run(stop)
        finally:
            runner.close()
        assert len(stop.waits) == 2, (type(runner).__name__, stop.waits)  # after the 3 and the 2, not the full one
        assert all(0 < w < runner.linger - 0.004 for w in stop.waits), stop.waits
