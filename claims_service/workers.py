"""The background workers, each kind in a process of its own: the adjudicator (one process per
partition, ``CLAIMS_ADJUDICATOR_PARTITIONS``), the projections, and the Merkle tree with its
checkpoints and the auditor ("tree").

They follow the ledger and do most of the CPU work; in the gRPC server's process they would
compete with request handling for one interpreter lock, and in one process together they would
compete with each other for it (the adjudicator and the projections each take most of a core at
the saturated rate). `WorkerProcesses` starts each in a child process (spawned, so nothing of the
parent's threads or connections is inherited) and starts it again if it dies; inside, each worker
runs under a `Supervisor` that restarts a failed thread. Every worker keeps its position in the
database, so a restart continues exactly where it stopped.

What the workers tell the server processes (a fault the auditor or the signer found, each audit
pass) and whether they all run reach every server process: `WorkerProcesses.subscribe` in the
process that started them, `RelayedWorkers` in a further server process (``bootstrap``), to which
the first relays them.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from claims_service.adjudication.partitions import Partition, partitions
from claims_service.config import Config
from claims_service.supervisor import ChildProcess, Supervisor, name_process

log = logging.getLogger(__name__)

Listener = Callable[[str, Any], None]
"""Told ("alive", bool): every worker process runs, or not; ("fault", reason); ("audit", status dict)."""

PROJECTIONS = "projections"
TREE = "tree"


@dataclass(frozen=True)
class Role:
    """One worker process: an adjudicator partition, the projections, or the tree."""

    name: str  # "adjudicator" or "adjudicator.<index>/<count>", "projections", "tree"
    partition: Partition | None = None

    @property
    def process_name(self) -> str:
        """What ps and top show (15 bytes): claims-adj, claims-adj-1of2, claims-proj, claims-tree."""
        if self.partition is None:
            return "claims-proj" if self.name == PROJECTIONS else "claims-tree"
        partition = self.partition
        return "claims-adj" if partition.count == 1 else f"claims-adj-{partition.index}of{partition.count}"


def roles(adjudicator_partitions: int = 1) -> list[Role]:
    return [*(Role(p.tracking_name, p) for p in partitions(adjudicator_partitions)), Role(PROJECTIONS), Role(TREE)]


def select_roles(chosen: str, adjudicator_partitions: int = 1) -> list[Role]:
    """The worker processes `CLAIMS_WORKERS` names: "all", "none", or a comma-separated choice
    ("adjudicator" is every partition). Each role must run exactly once per ledger: where several
    machines share one, each runs its share (a partition run twice is safe, only wasted)."""
    every = roles(adjudicator_partitions)
    if chosen == "all":
        return every
    names = {name.strip() for name in chosen.split(",") if name.strip() and name.strip() != "none"}
    picked = [r for r in every if r.name in names or (r.partition is not None and "adjudicator" in names)]
    unknown = names - {r.name for r in picked} - {"adjudicator"}
    if unknown:
        raise ValueError(f"CLAIMS_WORKERS names no worker process here: {', '.join(sorted(unknown))}"
                         f" (with CLAIMS_ADJUDICATOR_PARTITIONS={adjudicator_partitions})")
    return picked


def _lower_priority(role: Role, config: Config) -> None:
    """Give the cores to the servers first: a request waits on them, the workers only follow.
    Measured (README "Scale"): at the same paced rate, submit p50 12.5 -> 8.5 ms and the submits
    over 20 ms a third as many; saturated, more claims end to end, since each worker's batch is
    larger when it runs in the gaps (less CPU per claim)."""
    niceness = config.adjudicator_niceness if role.partition is not None else config.background_niceness
    if niceness:
        try:
            os.nice(niceness)
        except OSError as error:  # a platform or sandbox that refuses: run as the servers do
            print(f"could not lower {role.name}'s CPU priority: {error}", file=sys.stderr)  # before logging is set up


def run_worker(role: Role, database_url: str, config: Config, stop: threading.Event | None = None,
               server_pid: int | None = None, report: Callable[[str, str], None] | None = None) -> None:
    """Run one worker process's workers until SIGTERM/SIGINT (or `stop`); what the child executes.
    `report(kind, detail)` tells the server process of a fault ("fault", what was found) and of
    each audit pass ("audit", its status as JSON)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        if server_pid is not None:
            # A terminal's Ctrl-C reaches the whole process group: the server stops its children
            # itself (SIGTERM, in order), so a child that left first would be restarted and logged.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    tell = report or (lambda _kind, _detail: None)
    supervisor = Supervisor()
    closing: list[Callable[[], None]] = []
    try:
        if role.partition is not None:
            _adjudicator(role.partition, database_url, supervisor, closing)
        elif role.name == PROJECTIONS:
            _projections(database_url, closing)
        else:
            _tree(database_url, config, supervisor, tell)
        log.info("workers running in process %d: %s", os.getpid(), role.name)
        # Also stop when the server process is gone (killed with SIGKILL, say): an orphaned
        # worker process would keep a second adjudicator running next to the restarted one.
        while not stop.wait(1.0):
            if server_pid is not None and os.getppid() != server_pid:
                log.warning("the server process %d is gone; workers stopping", server_pid)
                # Everything is transactional: if a clean stop hangs on a dead connection, exiting
                # hard loses nothing.
                threading.Timer(3.0, os._exit, args=(0,)).start()
                break
    finally:
        supervisor.stop()
        for close in reversed(closing):
            close()


def _adjudicator(partition: Partition, database_url: str, supervisor: Supervisor,
                 closing: list[Callable[[], None]]) -> None:
    from claims_service.adjudication import AdjudicationFollower
    from claims_service.application import LedgerApplication

    ledger = LedgerApplication(database_url, pool_size=4, writer=partition.tracking_name)
    closing.append(ledger.close)
    supervisor.start(partition.tracking_name, AdjudicationFollower(ledger, partition=partition).run)


def _projections(database_url: str, closing: list[Callable[[], None]]) -> None:
    from projections.runner import ProjectionSupervisor

    projections = ProjectionSupervisor(database_url)
    projections.start()
    closing.append(lambda: projections.stop(10))


def _tree(database_url: str, config: Config, supervisor: Supervisor, tell: Callable[[str, str], None]) -> None:
    from claims_service.ledger.auditor import Auditor
    from claims_service.ledger.checkpointer import Checkpointer
    from claims_service.ledger.note import VerifierKey

    checkpointer = Checkpointer.from_settings(database_url, config.load_signing_key(), config.signing_settings())
    checkpointer.on_fault = lambda reason: tell("fault", reason)

    def audit_fault(reason: str) -> None:
        checkpointer.stop_signing(reason)
        tell("fault", reason)

    # The latest checkpoint may be a retired key's (signed before a rotation): those are trusted too.
    trusted = [VerifierKey.parse(key) for key in (checkpointer.verifier_key, *config.previous_verifier_keys)]
    auditor = Auditor(database_url, verifier=trusted,
                      full_every_seconds=config.audit_every_seconds, state_file=config.auditor_state_path(),
                      sweep_events_per_second=config.audit_sweep_events_per_second, on_fault=audit_fault,
                      on_status=lambda status: tell("audit", json.dumps(status.as_dict())))
    supervisor.start("merkle-tree", checkpointer.run_forever)
    supervisor.start("auditor", auditor.run_forever)


def _child_main(role: Role, database_url: str, config: Config, log_level: int, server_pid: int,
                reports: multiprocessing.connection.Connection) -> None:
    from claims_service.observability import logs, metrics, tracing

    _lower_priority(role, config)
    name_process(role.process_name)  # after: a process named as a worker runs as one
    # As the server set them up: its log format, its metrics directory (inherited in the
    # environment), traces when an OTLP endpoint is set.
    logs.configure(config.log_format, level=log_level, process="workers")
    metrics.configure_from_environment()
    tracing.configure(config.trace_sample_ratio, process="workers")
    import claims_service.adjudication  # noqa: F401 - loaded before the collector freezes what is alive
    import projections.runner  # noqa: F401
    from claims_service.garbage_collection import tune_garbage_collector

    tune_garbage_collector()
    sending = threading.Lock()  # the signer and the auditor report from threads of their own

    def report(kind: str, detail: str) -> None:
        with sending:
            reports.send((kind, detail))

    try:
        run_worker(role, database_url, config, server_pid=server_pid, report=report)
    finally:
        tracing.shutdown()  # export the spans still buffered


class _Listeners:
    """Who hears of the workers, and what they last said (health starts from it)."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def emit(self, kind: str, value: Any) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(kind, value)
            except Exception:  # noqa: BLE001 - one listener's failure must not silence the others
                log.exception("a listener of the workers failed on %s", kind)


def decode_report(kind: str, detail: str) -> tuple[str, Any]:
    return (kind, json.loads(detail)) if kind == "audit" else (kind, detail)


class WorkerProcesses:
    """Every worker process (`roles`), each started again whenever it exits on its own.
    ``subscribe(listener)``: see `Listener`; ``pid_of(role name)``, ``pids``, ``restarts``."""

    def __init__(self, database_url: str, config: Config) -> None:
        # The children get the configuration read here (it is not read twice from the environment).
        self._context = multiprocessing.get_context("spawn")
        self._args = (database_url, config, logging.getLogger().getEffectiveLevel(), os.getpid())
        self.roles = select_roles(config.workers, config.adjudicator_partitions)
        self._listeners = _Listeners()
        self._alive: dict[str, bool] = {}
        self._all_alive: bool | None = None
        self._alive_lock = threading.Lock()
        self._children = {role.name: ChildProcess(f"worker ({role.name})", partial(self._spawn, role),
                                                  on_alive_change=partial(self._alive_changed, role.name))
                          for role in self.roles}

    def subscribe(self, listener: Listener) -> None:
        self._listeners.subscribe(listener)

    def fault_found(self, reason: str) -> None:
        """A fault found outside the workers (a server process's signer): told like theirs."""
        self._listeners.emit("fault", reason)

    @property
    def pids(self) -> dict[str, int | None]:
        return {name: child.pid for name, child in self._children.items()}

    def pid_of(self, role: str) -> int | None:
        """The pid of a worker process: "adjudicator" (the first partition's when there are
        several), "projections", "tree", or a partition's full name."""
        if role not in self._children and role == Partition().tracking_name:
            role = self.roles[0].name
        return self._children[role].pid

    @property
    def restarts(self) -> int:
        return sum(child.restarts for child in self._children.values())

    def start(self) -> None:
        for child in self._children.values():
            child.start()
        if not self._children:  # CLAIMS_WORKERS=none: no worker process of its own to be down
            self._listeners.emit("alive", True)

    def stop(self, timeout: float = 15.0) -> None:
        for child in self._children.values():
            child.terminate()  # SIGTERM to all: each finishes its batch and stops, together
        for child in self._children.values():
            child.stop(timeout)

    def _spawn(self, role: Role) -> multiprocessing.process.BaseProcess:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_child_main, args=(role, *self._args, writer),
                                        name=f"claims-{role.name}", daemon=False)
        process.start()
        writer.close()  # the child's now: the reader sees the end of it when the child is gone
        threading.Thread(target=self._listen, args=(reader,), name=f"reports-{role.name}", daemon=True).start()
        return process

    def _listen(self, reader: multiprocessing.connection.Connection) -> None:
        with reader:
            while True:
                try:
                    kind, detail = reader.recv()
                except (EOFError, OSError):
                    return
                self._listeners.emit(*decode_report(kind, detail))

    def _alive_changed(self, name: str, alive: bool) -> None:
        # Told under the lock: each child's monitor thread calls this, and a verdict told after a
        # newer one (the first child up says "not all", the last "all") would stick.
        with self._alive_lock:
            self._alive[name] = alive
            if len(self._alive) < len(self._children):
                # Starting: no verdict until every child has been heard from once (each monitor
                # tells within half a second). Else the first child up said "not all", and health
                # went NOT_SERVING for a moment at every start, with every worker running.
                return
            everyone = all(self._alive.values())
            if everyone != self._all_alive:
                self._all_alive = everyone
                self._listeners.emit("alive", everyone)


class RelayedWorkers:
    """The workers as a further server process knows them: what the process that runs them
    relays (``bootstrap.ServerProcesses``), read from ``inbox`` (a duplex pipe: this process's own
    faults go back on it). The same face as `WorkerProcesses`, without processes of its own."""

    def __init__(self, inbox: multiprocessing.connection.Connection) -> None:
        self._inbox = inbox
        self._sending = threading.Lock()
        self._listeners = _Listeners()
        self._thread = threading.Thread(target=self._listen, name="worker-relay", daemon=True)
        self.pids: dict[str, int | None] = {}
        self.restarts = 0

    def subscribe(self, listener: Listener) -> None:
        self._listeners.subscribe(listener)

    def fault_found(self, reason: str) -> None:
        """A fault this process found: to the first process, which tells every other."""
        try:
            with self._sending:
                self._inbox.send(("fault", reason))
        except (OSError, ValueError):
            log.error("the first server process could not be told of the fault")

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        pass  # the relay ends with the process (or with the inbox's writer)

    def _listen(self) -> None:
        while True:
            try:
                kind, value = self._inbox.recv()
            except (EOFError, OSError):
                return
            self._listeners.emit(kind, value)
