"""What every follower of the ledger needs (the adjudicator, the projections, the Merkle tree, the
notification hub): waiting for PostgreSQL NOTIFY on a LISTEN connection, and backing off between
restarts when its connection or its code fails.

psycopg's ``Connection.notifies(stop_after=1)`` still yields every notification of the packet it
read, and while a follower works, one NOTIFY per insert piles up on its idle LISTEN connection. A
loop that lingers once per yielded notification (to let a batch gather) then lingers once per
insert made meanwhile: seconds, during which nothing is followed. ``wait_for_notification`` wakes
on the first one and takes all the others already received, so one wake-up answers them all.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg


def wait_for_notification(conn: psycopg.Connection[Any], timeout: float) -> bool:
    """Block until a notification arrives on ``conn`` (True) or ``timeout`` seconds pass (False);
    then discard every notification already received (they ask for the same thing: read on)."""
    woke = False
    for _ in conn.notifies(timeout=timeout, stop_after=1):
        woke = True
    # Each non-blocking call reads what one socket read brings: repeat until one brings nothing.
    while woke and any(True for _ in conn.notifies(timeout=0)):
        pass
    return woke


class Backoff:
    """Waits between restarts: `initial` seconds, doubling up to `maximum`; back to `initial` once
    the follower has run for `healthy_after` seconds since its last start (a rare failure should
    not wait as long as a crash loop does)."""

    def __init__(self, initial: float = 0.2, maximum: float = 10.0, *, healthy_after: float = 30.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.healthy_after = healthy_after
        self._next = initial
        self._started = time.monotonic()

    def started(self) -> None:
        self._started = time.monotonic()

    def next_wait(self) -> float:
        """How long to wait before the next start (and double the one after)."""
        if time.monotonic() - self._started > self.healthy_after:
            self._next = self.initial
        wait, self._next = self._next, min(self._next * 2, self.maximum)
        return wait

    def reset(self) -> None:
        self._next = self.initial
