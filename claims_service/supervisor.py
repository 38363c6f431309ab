"""Run background workers (the adjudicator, the tree builder, projections) and restart them.

A worker is a function `run(stop: threading.Event) -> None` that returns only when asked to stop;
if it raises (its LISTEN connection dropped, the database restarted), it is logged and run again
after a backoff that grows to `max_backoff` seconds and resets once the worker has run a while.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from claims_service.ledger.following import Backoff

log = logging.getLogger(__name__)

Worker = Callable[[threading.Event], None]


class Supervisor:
    def __init__(self, *, max_backoff: float = 10.0) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._max_backoff = max_backoff
        self.restarts: dict[str, int] = {}

    def start(self, name: str, worker: Worker) -> None:
        self.restarts[name] = 0
        thread = threading.Thread(target=self._keep_running, args=(name, worker), name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _keep_running(self, name: str, worker: Worker) -> None:
        backoff = Backoff(0.2, self._max_backoff)
        while not self._stop.is_set():
            backoff.started()
            try:
                worker(self._stop)
            except Exception:
                self.restarts[name] += 1
                wait = backoff.next_wait()
                log.exception("%s stopped with an error; restarting in %.1f s", name, wait)
            else:
                if self._stop.is_set():
                    return
                wait = backoff.next_wait()
            self._stop.wait(wait)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
