"""A wake-up answers every NOTIFY that piled up while a follower was busy."""

from __future__ import annotations

import time

import psycopg

from claims_service.ledger.following import wait_for_notification


def test_a_wake_up_takes_every_notification_already_received(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener, psycopg.connect(database_url, autocommit=True) as writer:
        listener.execute("LISTEN piled_up")
        for i in range(300):  # what a busy follower's idle LISTEN connection collects
            writer.execute("SELECT pg_notify('piled_up', %s)", (str(i),))
        time.sleep(0.5)  # let them all reach the listener's socket, as they do while it is busy
        wake_ups = 0
        while wait_for_notification(listener, 0.5):
            wake_ups += 1
        # A socket read may split the pile, so a second wake-up can happen; never one per NOTIFY.
        assert 1 <= wake_ups <= 3
        writer.execute("SELECT pg_notify('piled_up', 'new')")
        assert wait_for_notification(listener, 5.0)
