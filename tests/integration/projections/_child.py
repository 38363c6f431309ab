"""Code run in a child process by the kill tests (imported by multiprocessing's spawn)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from projections import catalog
from projections.runner import ProjectionSupervisor


def run_projections(database_url: str, marker_dir: str | None, batch_size: int, pause_in_batch: int) -> None:
    """Run every projection; with ``marker_dir``, each projection writes a marker file inside its
    ``pause_in_batch``-th batch — rows written, transaction not committed — and once all have, the
    process stops dead, so that the parent can SIGKILL it in the middle of every projection's batch
    (the projections share their batches' transactions: the last one to get there stops them all)."""
    counts: dict[str, int] = {}

    def pause(name: str, notifications: Sequence[object]) -> None:
        counts[name] = counts.get(name, 0) + 1
        if marker_dir is not None and counts[name] == pause_in_batch:
            (Path(marker_dir) / name).write_text(str(len(notifications)))
            if all((Path(marker_dir) / other).exists() for other in catalog.NAMES):
                time.sleep(600)

    supervisor = ProjectionSupervisor(database_url, batch_size=batch_size, after_apply=pause)
    supervisor.start()
    threading.Event().wait()
