"""A wake-up answers every NOTIFY that piled up while a follower was busy; a follower asked to
stop stops waiting at once."""

from __future__ import annotations

import threading
import time

import psycopg

from claims_service.ledger.following import StopEvent, notifications, wait_for_notification


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


def test_a_wait_for_a_notification_ends_when_its_stop_event_is_set(database_url: str) -> None:
    stop = StopEvent()
    with psycopg.connect(database_url, autocommit=True) as listener, psycopg.connect(database_url, autocommit=True) as writer:
        listener.execute("LISTEN stopping")
        writer.execute("SELECT pg_notify('stopping', 'before')")
        assert wait_for_notification(listener, 60.0, stop)  # a notification still wakes it

        woke: list[bool] = []
        waiting = threading.Thread(target=lambda: woke.append(wait_for_notification(listener, 600.0, stop)))
        waiting.start()
        time.sleep(0.2)
        stop.set()
        waiting.join(30.0)  # far below the wait's 600 s: only the stop can have ended it
        assert not waiting.is_alive() and woke == [False]

        # Cleared, it waits again; the hub's form yields each notification until the timeout.
        stop.clear()
        assert not wait_for_notification(listener, 0.1, stop)
        for payload in ("a", "b"):
            writer.execute("SELECT pg_notify('stopping', %s)", (payload,))
        assert [n.payload for n in notifications(listener, 1.0, stop)] == ["a", "b"]
        stop.set()
        assert list(notifications(listener, 600.0, stop)) == []
