"""A read model's progress is announced after its batch has committed, in a transaction of its
own, never by the batch's transaction: PostgreSQL serialises the commits of every transaction that
NOTIFYs, and a ledger append NOTIFYs while it holds the events table's lock, so a batch that
NOTIFYed kept every submit waiting through the batch's own commit (`projections.store.announce`).
And the hub learns an advance whose NOTIFY never came (a projection killed between the two)."""

from __future__ import annotations

import psycopg

from bench.projections import generate_history
from projections import catalog
from projections.feed import NotificationHub
from projections.group import ViewGroup
from projections.store import PROGRESS_CHANNEL, ReadModelView, datastore_for

BATCH = 50  # a batch never ends inside a commit: it may take more


def listening(database_url: str) -> psycopg.Connection:
    conn = psycopg.connect(database_url, autocommit=True)
    conn.execute(f"LISTEN {PROGRESS_CHANNEL}")
    return conn


def payloads(conn: psycopg.Connection, timeout: float = 0.5) -> list[str]:
    return [notify.payload for notify in conn.notifies(timeout=timeout)]


def tracked(database_url: str, name: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT notification_id FROM ledger_tracking WHERE application_name = %s",
                           (f"projection.{name}",)).fetchone()
    return int(row[0]) if row else 0


def test_a_views_batch_commits_without_a_notify_and_is_announced_once_committed(database_url):
    generate_history(database_url, 300, seed=3)
    view = ReadModelView.for_url(database_url, catalog.model("claim_status"))
    listener = listening(database_url)
    try:
        # The batch's own transaction (as the rebuild's swap runs it): rows and position, no NOTIFY.
        with view.datastore.transaction(commit=True) as cur:
            assert view.process_batch_in(cur, BATCH) > 0
        assert tracked(database_url, "claim_status") == view.last_position
        assert payloads(listener) == []

        # A batch on its own: the announcement follows its commit, naming the position committed.
        generate_history(database_url, 300, seed=5)
        assert view.process_batch(BATCH) > 0
        got = payloads(listener)
        assert got == [f"claim_status {view.last_position}"]
        assert tracked(database_url, "claim_status") == view.last_position
    finally:
        listener.close()
        view.close()


def test_a_groups_batch_announces_each_member_that_advanced(database_url):
    generate_history(database_url, 300, seed=4)
    datastore = datastore_for(database_url)
    names = ("claim_status", "payments")
    group = ViewGroup(datastore, [catalog.model(name) for name in names])
    listener = listening(database_url)
    try:
        assert group.process_batch(BATCH) > 0
        positions = {name: tracked(database_url, name) for name in names}
        assert len(set(positions.values())) == 1
        assert sorted(payloads(listener)) == sorted(f"{name} {position}" for name, position in positions.items())
    finally:
        listener.close()
        datastore.close()


def test_the_hub_learns_an_advance_whose_notify_never_came(database_url):
    with NotificationHub(database_url) as hub:
        hub.start()
        assert hub.listening
        # A projection that committed its batch and died before announcing it: the row alone.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO ledger_tracking (application_name, notification_id) VALUES ('projection.claim_status', 42)"
                         " ON CONFLICT (application_name) DO UPDATE SET notification_id = 42")
        assert hub.wait_for("claim_status", 42, timeout=5.0)
