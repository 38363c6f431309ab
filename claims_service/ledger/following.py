"""What every follower of the ledger needs (the adjudicator, the projections, the Merkle tree, the
notification hub): waiting for PostgreSQL NOTIFY on a LISTEN connection, and backing off between
restarts when its connection or its code fails.

psycopg's ``Connection.notifies(stop_after=1)`` still yields every notification of the packet it
read, and while a follower works, one NOTIFY per insert piles up on its idle LISTEN connection. A
loop that lingers once per yielded notification (to let a batch gather) then lingers once per
insert made meanwhile: seconds, during which nothing is followed. ``wait_for_notification`` wakes
on the first one and takes all the others already received, so one wake-up answers them all.

A follower asked to stop should not sit out its wait's timeout first: waiting on a ``StopEvent``
too, it wakes at once (a service's stop took about a second of such timeouts, in every e2e test).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import psycopg


class StopEvent(threading.Event):
    """A ``threading.Event`` that ``poll`` can wait on as well: its ``fileno`` is readable while
    it is set."""

    def __init__(self) -> None:
        super().__init__()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        weakref.finalize(self, _close_all, self._read, self._write)

    def set(self) -> None:
        super().set()
        with contextlib.suppress(BlockingIOError):  # full: readable already
            os.write(self._write, b"\0")

    def clear(self) -> None:
        super().clear()
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 512):
                pass

    def fileno(self) -> int:
        return self._read


def _close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def notifications(conn: psycopg.Connection[Any], timeout: float,
                  stop: threading.Event | None = None) -> Iterator[psycopg.Notify]:
    """``conn.notifies(timeout=timeout)``, ended at once when ``stop`` (a ``StopEvent``) is set."""
    if not isinstance(stop, StopEvent):
        yield from conn.notifies(timeout=timeout)
        return
    deadline = time.monotonic() + timeout
    readable = select.poll()  # not select(): a busy server's descriptors pass 1,024
    readable.register(conn.fileno(), select.POLLIN)
    readable.register(stop.fileno(), select.POLLIN)
    while not stop.is_set():
        yield from conn.notifies(timeout=0)  # what has arrived (a non-blocking read)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        readable.poll(remaining * 1000)


def wait_for_notification(conn: psycopg.Connection[Any], timeout: float,
                          stop: threading.Event | None = None) -> bool:
    """Block until a notification arrives on ``conn`` (True), ``timeout`` seconds pass or ``stop``
    is set (False); then discard every notification already received (they ask for the same
    thing: read on)."""
    woke = False
    for _ in notifications(conn, timeout, stop):
        woke = True
        break
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
