"""The background workers, in a process of their own: the adjudicator, the projections, and the
Merkle tree with its checkpoints.

They follow the ledger and do most of the CPU work; in the gRPC server's process they would
compete with request handling for one interpreter lock. `WorkerProcess` starts them in a child
process (spawned, so nothing of the parent's threads or connections is inherited) and starts it
again if it dies; inside, each worker runs under a `Supervisor` that restarts a failed thread.
Every worker keeps its position in the database, so a restart continues exactly where it stopped.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.queues
import os
import signal
import threading
from collections.abc import Callable

from claims_service.config import Config
from claims_service.ledger.following import Backoff

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 10.0


def run_workers(database_url: str, config: Config, stop: threading.Event | None = None,
                server_pid: int | None = None, report: Callable[[str, str], None] | None = None) -> None:
    """Run every worker until SIGTERM/SIGINT (or `stop`); what the child process executes.
    `report(kind, detail)` tells the server process of a fault ("fault", what was found) and of
    each audit pass ("audit", its status as JSON)."""
    # Imported here, in the child: the server's process has no use for the workers' modules.
    from claims_service.adjudication import AdjudicationFollower
    from claims_service.application import LedgerApplication
    from claims_service.ledger.auditor import Auditor
    from claims_service.ledger.checkpointer import Checkpointer
    from claims_service.ledger.note import VerifierKey
    from claims_service.supervisor import Supervisor
    from projections.runner import ProjectionSupervisor

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    ledger = LedgerApplication(database_url, pool_size=4, writer="adjudicator")
    checkpointer = Checkpointer.from_settings(database_url, config.load_signing_key(), config.signing_settings())
    tell = report or (lambda _kind, _detail: None)
    checkpointer.on_fault = lambda reason: tell("fault", reason)

    def audit_fault(reason: str) -> None:
        checkpointer.stop_signing(reason)
        tell("fault", reason)

    auditor = Auditor(database_url, verifier=VerifierKey.parse(checkpointer.verifier_key),
                      full_every_seconds=config.audit_every_seconds, on_fault=audit_fault,
                      on_status=lambda status: tell("audit", json.dumps(status.as_dict())))
    supervisor = Supervisor()
    projections = ProjectionSupervisor(database_url)
    try:
        supervisor.start("adjudicator", AdjudicationFollower(ledger).run)
        supervisor.start("merkle-tree", checkpointer.run_forever)
        supervisor.start("auditor", auditor.run_forever)
        projections.start()
        log.info("workers running in process %d: adjudicator, projections, Merkle tree and checkpoints, auditor",
                 os.getpid())
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
        projections.stop(10)
        supervisor.stop()
        ledger.close()


def _child_main(database_url: str, config: Config, log_level: int, server_pid: int,
                reports: multiprocessing.queues.SimpleQueue) -> None:
    from claims_service.observability import logs, metrics, tracing

    # As the server set them up: its log format, its metrics directory (inherited in the
    # environment), traces when an OTLP endpoint is set.
    logs.configure(config.log_format, level=log_level, process="workers")
    metrics.configure_from_environment()
    tracing.configure(config.trace_sample_ratio, process="workers")
    import claims_service.adjudication  # noqa: F401 - loaded before the collector freezes what is alive
    import projections.runner  # noqa: F401
    from claims_service.garbage_collection import tune_garbage_collector

    tune_garbage_collector()
    try:
        run_workers(database_url, config, server_pid=server_pid, report=lambda kind, detail: reports.put((kind, detail)))
    finally:
        tracing.shutdown()  # export the spans still buffered


class WorkerProcess:
    """The workers' child process, restarted whenever it exits on its own."""

    def __init__(self, database_url: str, config: Config) -> None:
        # The child gets the configuration read here (it is not read twice from the environment).
        self._context = multiprocessing.get_context("spawn")
        # The child's reports (faults it found) reach the server process through this queue.
        self._reports = self._context.SimpleQueue()
        self._args = (database_url, config, logging.getLogger().getEffectiveLevel(), os.getpid(), self._reports)
        self._process: multiprocessing.process.BaseProcess | None = None
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._keep_running, name="worker-process", daemon=True)
        self.restarts = 0
        # Told True / False as the child comes and goes (the server's health follows it).
        self.on_alive_change: Callable[[bool], None] = lambda _alive: None
        # Told of each fault the workers report (the signer's refusal, the auditor's finding), and
        # of each audit pass (its status as a dict).
        self.on_fault: Callable[[str], None] = lambda _reason: None
        self.on_audit: Callable[[dict], None] = lambda _status: None
        self._listener = threading.Thread(target=self._listen, name="worker-reports", daemon=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self._spawn()
        self._monitor.start()
        self._listener.start()

    def _listen(self) -> None:
        while True:
            kind, detail = self._reports.get()
            if kind == "stop":
                return
            if kind == "fault":
                self.on_fault(detail)
            elif kind == "audit":
                self.on_audit(json.loads(detail))

    def _spawn(self) -> None:
        self._process = self._context.Process(target=_child_main, args=self._args, name="claims-workers", daemon=False)
        self._process.start()

    def _keep_running(self) -> None:
        backoff = Backoff(RESTART_DELAY, MAX_RESTART_DELAY)
        was_alive: bool | None = None
        while not self._stopping.is_set():
            assert self._process is not None
            self._process.join(0.5)
            alive = self._process.is_alive()
            if alive != was_alive and not self._stopping.is_set():
                was_alive = alive
                self.on_alive_change(alive)
            if self._process.exitcode is not None and not self._stopping.is_set():
                self.restarts += 1
                wait = backoff.next_wait()
                log.error("the worker process exited (code %s); starting it again in %.1f s", self._process.exitcode, wait)
                if not self._stopping.wait(wait):
                    backoff.started()
                    self._spawn()

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self._process is not None and self._process.is_alive():
            self._process.terminate()  # SIGTERM: the workers finish their batch and stop
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        if self._monitor.is_alive():
            self._monitor.join(2)
        if self._listener.is_alive():
            self._reports.put(("stop", ""))
            self._listener.join(2)
