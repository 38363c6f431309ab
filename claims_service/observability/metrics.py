"""Prometheus metrics of every process of the service, on one endpoint (``CLAIMS_METRICS_ADDR``).

The service is two processes (the gRPC server, the workers' child), and both count things: the
server its RPCs and group commits, the workers their decisions and batches, both their ledger
commits and the money they move. They are served together through prometheus-client's
*multiprocess mode*: each process writes its values to memory-mapped files in one private directory
(``<data dir>/metrics``, emptied when the server starts), and the server's endpoint sums them at
scrape time. Chosen over one endpoint per process because the workers' process is restarted with a
new pid whenever it dies: one scrape target keeps its counters (the files of a dead process are
still read, so totals never go backwards) and needs no second port; the price is a memory-mapped
write per update instead of an in-memory one (about a microsecond, see "Performance").

What only the server knows at scrape time (the followers' positions and lag read from the database
every second, the processes' CPU, open streams) comes from collectors registered on the endpoint
itself (``progress.ProgressCollector``), not from these files.

Off (``CLAIMS_METRICS_ADDR`` empty, and in tests that do not ask for them) every family is a no-op:
nothing is counted and nothing costs. ``configure`` turns them on before anything records; code that
records takes ``get()`` when it is built. Names follow Prometheus conventions: ``claims_`` prefix,
base units (seconds, bytes; money in cents, named so), ``_total`` on counters. docs/OPERATIONS.md
lists every family.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from claims_service.domain.claim import Claim
from claims_service.domain.payment import Payment

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUESTS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EVENTS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class _Off:
    """A family that records nothing (metrics are off)."""

    def labels(self, *_: Any, **__: Any) -> _Off:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


class Metrics:
    """The families every process records into. ``Metrics(enabled, registry)``: with ``enabled``
    False, every family is a no-op; ``registry`` (in-memory mode) collects them for an endpoint."""

    def __init__(self, enabled: bool = False, registry: Any = None) -> None:
        self.enabled = enabled
        self.registry = registry

        def family(kind: str, name: str, documentation: str, labels: Sequence[str] = (), **kwargs: Any) -> Any:
            if not enabled:
                return _Off()
            import prometheus_client

            cls = getattr(prometheus_client, kind)
            return cls(name, documentation, list(labels), registry=registry, **kwargs)

        # --- the server: calls ------------------------------------------------------------------
        self.rpc_calls = family("Counter", "claims_rpc_calls", "RPCs answered (streams: when they end), by status code",
                                ("service", "method", "code"))
        self.rpc_duration = family("Histogram", "claims_rpc_duration_seconds",
                                   "Time to answer a unary RPC, from its arrival to its status", ("service", "method"),
                                   buckets=LATENCY_BUCKETS)
        self.open_streams = family("Gauge", "claims_rpc_open_streams", "Server streams open now",
                                   ("service", "method"), multiprocess_mode="livesum")
        # --- writes -----------------------------------------------------------------------------
        self.group_commit_requests = family("Histogram", "claims_group_commit_batch_requests",
                                            "Requests saved by one group commit", buckets=REQUESTS_BUCKETS)
        self.group_commit_events = family("Histogram", "claims_group_commit_batch_events",
                                          "Events saved by one group commit", buckets=EVENTS_BUCKETS)
        self.group_commit_queue = family("Histogram", "claims_group_commit_queue_seconds",
                                         "Time a write waited in the queue until its batch's commit began",
                                         buckets=LATENCY_BUCKETS)
        # One statement, committed by PostgreSQL before it answers (application.LedgerRecorder): the
        # WAL flush is inside it, and the database's own WAL waits are claims_db_wal_wait_seconds.
        self.commit_seconds = family("Histogram", "claims_ledger_commit_seconds",
                                     "One write on the ledger (table lock, insert, commit with its WAL flush), by writer",
                                     ("writer",), buckets=LATENCY_BUCKETS)
        # --- what was decided and paid ------------------------------------------------------------
        self.decisions = family("Counter", "claims_decisions", "Claim decisions committed, by outcome and by who decided",
                                ("outcome", "source"))
        self.payment_cents = family("Counter", "claims_payment_cents",
                                    "Money committed by payments, in cents: scheduled, issued, cancelled, recouped",
                                    ("movement",))
        # --- the workers ------------------------------------------------------------------------
        self.follower_batch = family("Histogram", "claims_follower_batch_seconds",
                                     "One batch of a follower of the ledger, read to commit", ("follower",),
                                     buckets=BATCH_SECONDS_BUCKETS)
        self.follower_events = family("Counter", "claims_follower_events",
                                      "Ledger notifications a follower processed", ("follower",))

    # --- recording what committed ---------------------------------------------------------------

    def observe_committed(self, events: Iterable[Any], aggregates: Mapping[Any, Any] | None = None) -> None:
        """Count the decisions and money in events that were just committed (never before the
        commit: a batch that rolls back, and is retried, must not count twice). ``aggregates``
        (by id) gives what an event does not carry itself: the amount of an issued payment."""
        if not self.enabled:
            return
        for event in events:
            handler = _COUNTED.get(type(event))
            if handler is not None:
                handler(self, event, aggregates or {})


def _decided(source: str) -> Any:
    def count(metrics: Metrics, event: Any, _aggregates: Mapping[Any, Any]) -> None:
        decision = getattr(event, "decision", None)
        if decision:  # a dispute upheld decides nothing new
            metrics.decisions.labels(str(decision.get("outcome", "unknown")).lower(), source).inc()
    return count


def _moved(movement: str) -> Any:
    def count(metrics: Metrics, event: Any, aggregates: Mapping[Any, Any]) -> None:
        amount = getattr(event, "amount_cents", None)
        if amount is None:  # Issued carries no amount: the payment's own
            payment = aggregates.get(event.originator_id)
            amount = getattr(payment, "amount_cents", None)
        if amount is not None:
            metrics.payment_cents.labels(movement).inc(amount)
    return count


_COUNTED = {
    Claim.Adjudicated: _decided("adjudicator"),
    Claim.Pended: _decided("adjudicator"),
    Claim.ReviewResolved: _decided("review"),
    Claim.DisputeResolved: _decided("dispute"),
    Payment.Scheduled: _moved("scheduled"),
    Payment.Issued: _moved("issued"),
    Payment.Cancelled: _moved("cancelled"),
    Payment.Recouped: _moved("recouped"),
    Payment.Reversed: _moved("recouped"),
}

_current = Metrics(enabled=False)
_configure_lock = threading.Lock()


def get() -> Metrics:
    """This process's metrics (no-ops until ``configure``)."""
    return _current


def configure(directory: Path | None = None, *, clean: bool = False) -> Metrics:
    """Turn metrics on in this process: with ``directory``, in multiprocess mode (the server
    ``clean``s it first; its workers' child finds it in ``PROMETHEUS_MULTIPROC_DIR``, inherited),
    else in memory (one process: tests). Call it before anything records."""
    global _current
    with _configure_lock:
        if directory is None:
            from prometheus_client import CollectorRegistry

            _current = Metrics(enabled=True, registry=CollectorRegistry(auto_describe=True))
            return _current
        from prometheus_client import values

        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if clean:
            for stale in directory.glob("*.db"):
                stale.unlink()
        os.environ[MULTIPROC_ENV] = str(directory)
        # The library chooses its value class when first imported; it may have been imported before
        # the directory was known, so choose again (nothing has recorded yet).
        values.ValueClass = values.MultiProcessValue()
        _current = Metrics(enabled=True)
        return _current


def configure_from_environment() -> Metrics:
    """In the workers' child: multiprocess mode when the server set it up, else off."""
    directory = os.environ.get(MULTIPROC_ENV)
    return configure(Path(directory)) if directory else _current


def disable() -> None:
    """Back to no-ops (tests)."""
    global _current
    _current = Metrics(enabled=False)


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes (``/metrics``): every process's files (or this
    process's registry) and the ``collectors`` given. ``port``; ``close()``."""

    def __init__(self, addr: str, collectors: Iterable[Any] = ()) -> None:
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        host, port = parse_addr(addr)
        registry = CollectorRegistry(auto_describe=False)
        directory = os.environ.get(MULTIPROC_ENV)
        if directory and _current.enabled and _current.registry is None:
            MultiProcessCollector(registry, path=directory)
        elif _current.registry is not None:
            registry.register(_RegistryCollector(_current.registry))
        for collector in collectors:
            registry.register(collector)
        self.registry = registry
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class ProcessesCollector:
    """prometheus-client's process families (CPU seconds, memory, open files, start time) of
    several processes summed under one namespace: ``claims_server`` for the server processes,
    ``claims_workers`` for the worker processes (``pids()`` names them at scrape time; a process
    that is gone is left out). The start time is the earliest; the file limit the lowest."""

    def __init__(self, namespace: str, pids: Any) -> None:
        self.namespace = namespace
        self.pids = pids

    def collect(self) -> Iterable[Any]:
        from prometheus_client import ProcessCollector

        merged: dict[str, Any] = {}
        for pid in self.pids():
            if pid is None:
                continue
            for family in ProcessCollector(namespace=self.namespace, pid=lambda p=pid: p, registry=None).collect():
                if not family.samples:
                    continue  # the process is gone
                kept = merged.get(family.name)
                if kept is None:
                    merged[family.name] = family
                    continue
                combine = min if family.name.endswith(("_start_time_seconds", "_max_fds")) else (lambda a, b: a + b)
                kept.samples[0] = kept.samples[0]._replace(value=combine(kept.samples[0].value, family.samples[0].value))
        return list(merged.values())


class _RegistryCollector:
    """Another registry's families, collected through this one (in-memory mode)."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Any]:
        return self._registry.collect()


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (a bracketed IPv6 host allowed); ValueError when it is not one."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9464 (empty: no metrics)")
    return host.strip("[]"), int(port)
