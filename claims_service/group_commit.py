"""Group commit: many concurrent writes, one transaction.

Every insert holds the events table's lock through its commit, so one commit per request caps the
whole service at the disk's commit rate. Request threads hand their aggregates to one writer
thread, which saves everything queued since its last commit in a single transaction, then wakes
each request. A request is acknowledged only after the commit that holds its events.

Every write waits for the writer's turn, so the writer does nothing a request thread can do: a
request maps its own events (encodes them, seals them under their members' keys, reading a key the
first time) before it queues them. (Mapped by the writer, a batch's mapping took up to 29 ms at the
99th percentile at 180 submits/s, while every write of the batch and those queued behind it
waited: README "Scale".) A write queued from an event loop (`submit`), which must not block on a
key read, is mapped by the writer, one write at a time, so that one that cannot be mapped (its
member was erased meanwhile) fails alone.

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
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._metrics = metrics.get()
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def record(self, *aggregates: Any, timeout: float | None = None) -> list[Receipt]:
        """Save the aggregates' pending events; once committed, return a receipt per event."""
        write = _Write([e for a in aggregates for e in a.collect_events()], {a.id: a for a in aggregates},
                       tracing.current_traceparent())
        write.stored = self._ledger.map_events(write.events)  # in the request's thread: see the module
        with tracing.span("ledger.group_commit") as span:
            self._queue.put(write)
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
        self._queue.put(write)
        return write.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            # Take whatever arrived while the previous commit was in flight: batches grow with load.
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._commit(batch)
                    return
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Write]) -> None:
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
