"""How the workers' liveness reaches health: the verdict "every worker runs" is told in the order
it changed, however the children's monitor threads interleave."""

from __future__ import annotations

import threading
import time

from claims_service.config import Config
from claims_service.workers import WorkerProcesses


def test_a_verdict_told_slowly_is_not_overtaken_by_a_newer_one(tmp_path):
    """A child goes down ("not all alive"); while that is being told (a listener that takes its
    time, as one relaying to another process may), it comes back. The listener must end on "all
    alive": without the lock the newer verdict was told first and the older one, told after it,
    stuck (health NOT_SERVING for "workers" with every worker running)."""
    workers = WorkerProcesses("", Config(data_dir=tmp_path, workers="adjudicator,projections"))
    heard: list[bool] = []
    first_told = threading.Event()

    def listener(kind: str, value: object) -> None:
        if kind == "alive" and value is False:
            first_told.set()
            time.sleep(0.3)
        heard.append(bool(value))

    workers.subscribe(listener)
    first, last = list(workers._children)
    workers._alive_changed(first, True)
    assert heard == []  # starting: no verdict until every child has been heard from
    workers._alive_changed(last, True)
    slow = threading.Thread(target=workers._alive_changed, args=(first, False))
    slow.start()
    assert first_told.wait(5)
    workers._alive_changed(first, True)
    slow.join()
    assert heard == [True, False, True]
