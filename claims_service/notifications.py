"""Waiting for PostgreSQL NOTIFY on a LISTEN connection, as every follower of the ledger does.

psycopg's ``Connection.notifies(stop_after=1)`` still yields every notification of the packet it
read, and while a follower works, one NOTIFY per insert piles up on its idle LISTEN connection. A
loop that lingers once per yielded notification (to let a batch gather) then lingers once per
insert made meanwhile: seconds, during which nothing is followed. ``wait_for_notification`` wakes
on the first one and takes all the others already received, so one wake-up answers them all.
"""

from __future__ import annotations

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
