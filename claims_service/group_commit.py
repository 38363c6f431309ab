"""Group commit: many concurrent writes, one transaction.

Every insert holds the events table's lock through its commit, so one commit per request caps the
whole service at the disk's commit rate. Writes queue; one thread at a time commits everything
queued since the last commit in a single transaction, then wakes each request. A request is
acknowledged only after the commit that holds its events.

Which thread commits (leader and followers): a request that finds no commit in flight commits its
own write itself, with whatever queued meanwhile, in its own thread. Requests that arrive during a
commit queue behind it; when that commit ends, the request that made it returns and hands the
queue to the writer thread, which commits batch after batch until the queue is empty. So a lone
request is never passed to another thread and back (each hand-off is a thread switch, and at 180
submits/s each waited 4-9 ms at the 99th percentile for a core or the interpreter lock: README
"Scale"), while under load batches still grow with the queue, and no request waits while its own
thread commits other requests' later writes.

Every write waits for the committing thread's turn, so that thread does nothing a request thread
can do: a request maps its own events (encodes them, seals them under their members' keys, reading
a key the first time) before it queues them. (Mapped by the writer, a batch's mapping took up to
29 ms at the 99th percentile at 180 submits/s, while every write of the batch and those queued
behind it waited: README "Scale".) A write queued from an event loop (`submit`), which must not
block on a key read or a commit, is handed to the writer thread and mapped there, one write at a
time, so that one that cannot be mapped (its member was erased meanwhile) fails alone.

A batch that fails as a whole (one request conflicting with an existing record) is retried one
request at a time, so a single conflict fails only the request that caused it.

Observed (claims_service.observability): each batch's requests and events and each write's wait in
the queue (metrics); a traced request's events carry its trace context into the ledger's metadata
column, and its ``ledger.group_commit`` span covers its wait and commit (traces).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from claims_service.application import LedgerApplication, Receipt
from claims_service.errors import ConflictError
from claims_service.observability import metrics, tracing

log = logging.getLogger(__name__)


@dataclass
class _Write:
    # Events, not aggregates: collected once, so a failed batch can be retried request by request.
    events: list[Any]
    aggregates: dict[Any, Any] = field(default_factory=dict)  # by id, for metrics (an issued amount)
    traceparent: str | None = None  # the request's trace context, when it is traced
    stored: list[Any] | None = None  # the events as stored (`LedgerApplication.map_events`), once mapped
    queued: float = field(default_factory=time.perf_counter)
    batch_requests: int = 0
    future: Future[list[Receipt]] = field(default_factory=Future)


class GroupCommitter:
    def __init__(self, ledger: LedgerApplication, *, max_batch: int = 256) -> None:
        self._ledger = ledger
        self._max_batch = max_batch
        self._metrics = metrics.get()
        self._lock = threading.Lock()
        self._pending: deque[_Write] = deque()
        # A thread is committing: a request (the leader) or the writer thread. Queued writes imply
        # a committing thread, which commits them before it lets go.
        self._committing = False
        self._closed = False
        self._handed: queue.SimpleQueue[bool] = queue.SimpleQueue()  # True: the queue is the writer's; False: stop
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def record(self, *aggregates: Any, timeout: float | None = None) -> list[Receipt]:
        """Save the aggregates' pending events; once committed, return a receipt per event."""
        write = _Write([e for a in aggregates for e in a.collect_events()], {a.id: a for a in aggregates},
                       tracing.current_traceparent())
        write.stored = self._ledger.map_events(write.events)  # in the request's thread: see the module
        with tracing.span("ledger.group_commit") as span:
            if self._queue(write, leader=True):
                self._drain(leader=True)
            receipts = write.future.result(timeout=timeout)
            if span is not None:
                span.set_attributes({"claims.batch.requests": write.batch_requests, "claims.events": len(write.events)})
        return receipts

    def submit(self, *aggregates: Any) -> Future[list[Receipt]]:
        """Queue the aggregates' pending events for the next commit without waiting: the future
        gives a receipt per event once they are committed (or the commit's error). For writes whose
        caller does other work meanwhile, or waits on an event loop (the access log)."""
        write = _Write([e for a in aggregates for e in a.collect_events()], {a.id: a for a in aggregates},
                       tracing.current_traceparent())
        self._queue(write, leader=False)
        return write.future

    def close(self) -> None:
        """Stop the writer thread once it has committed what it was handed; write nothing more."""
        with self._lock:  # in the lock, so that no hand-off can follow the stop in the writer's queue
            self._closed = True
            self._handed.put(False)
        self._thread.join()

    def _queue(self, write: _Write, *, leader: bool) -> bool:
        """Queue the write. When no commit is in flight, one starts: True, the caller commits as the
        leader (`leader`), else the queue is handed to the writer thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the group committer is closed")
            self._pending.append(write)
            if self._committing:
                return False
            self._committing = True
            if leader:
                return True
            self._handed.put(True)
            return False

    def _take(self) -> list[_Write]:
        with self._lock:
            return [self._pending.popleft() for _ in range(min(len(self._pending), self._max_batch))]

    def _drain(self, *, leader: bool) -> None:
        """Commit what is queued, batch after batch, until the queue is empty. A leader (a request
        whose own write went first) commits once, then hands what queued meanwhile to the writer
        thread and returns to its request (after `close`, it goes on itself: no writer is left)."""
        while True:
            self._commit(self._take())
            with self._lock:
                if not self._pending:
                    self._committing = False
                    return
                if leader and not self._closed:
                    self._handed.put(True)
                    return

    def _run(self) -> None:
        while self._handed.get():
            self._drain(leader=False)

    def _commit(self, batch: list[_Write]) -> None:
        """Commit the batch; every write's future gets its receipts or an error, whatever fails."""
        try:
            self._commit_batch(batch)
        except BaseException as error:  # not the commit's own errors (handled below): never leave a waiter
            log.exception("group commit failed outside its commit")
            for write in batch:
                if not write.future.done():
                    write.future.set_exception(error)

    def _commit_batch(self, batch: list[_Write]) -> None:
        started = time.perf_counter()
        batch = [write for write in batch if self._mapped(write)]
        if not batch:
            return
        for write in batch:
            write.batch_requests = len(batch)
            self._metrics.group_commit_queue.observe(started - write.queued)
        self._metrics.group_commit_requests.observe(len(batch))
        self._metrics.group_commit_events.observe(sum(len(w.events) for w in batch))
        if len(batch) == 1:
            self._commit_one(batch[0])
            return
        try:
            recordings = self._ledger.record_events([e for w in batch for e in w.events], metadata=_metadata(batch),
                                                    aggregates={k: a for w in batch for k, a in w.aggregates.items()},
                                                    stored=[s for w in batch for s in w.stored or ()])
            receipts = self._ledger.receipts(recordings)
        except ConflictError:
            for write in batch:
                self._commit_one(write)
            return
        except BaseException as error:  # the database is down, say: every waiter hears it
            for write in batch:
                write.future.set_exception(error)
            return
        # Recordings come back in the order the events went in.
        start = 0
        for write in batch:
            mine = recordings[start : start + len(write.events)]
            write.future.set_result([receipts[r.notification.id] for r in mine])
            start += len(write.events)

    def _mapped(self, write: _Write) -> bool:
        """Map a write queued unmapped (`submit`); False, its future failed, when it cannot be."""
        if write.stored is None:
            try:
                write.stored = self._ledger.map_events(write.events)
            except BaseException as error:
                write.future.set_exception(error)
                return False
        return True

    def _commit_one(self, write: _Write) -> None:
        try:
            recordings = self._ledger.record_events(write.events, metadata=_metadata([write]), aggregates=write.aggregates,
                                                    stored=write.stored)
            receipts = self._ledger.receipts(recordings)
            write.future.set_result([receipts[r.notification.id] for r in recordings])
        except BaseException as error:
            write.future.set_exception(error)


def _metadata(batch: list[_Write]) -> dict[Any, str] | None:
    """Each traced write's trace context, for its events' metadata (None: no write is traced)."""
    found = {}
    for write in batch:
        if write.traceparent is not None:
            context = tracing.metadata_json(write.traceparent)
            for event in write.events:
                found[event.originator_id] = context
    return found or None
