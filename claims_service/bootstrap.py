"""Wire the running service: the ledger, its commands, the read side and the gRPC server in this
process; the background workers (adjudicator partitions, projections, Merkle tree + checkpoints +
auditor) in child processes (`workers.py`); and, with ``CLAIMS_SERVER_PROCESSES`` > 1, further
gRPC server processes on the same port (`ServerProcesses`), each wired the same way but for the
workers, whose news this process relays to them. Wiring only."""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from claims_service.adjudication.partitions import partitions
from claims_service.api.access import AccessLog
from claims_service.api.auth import Authenticator, Principal
from claims_service.api.interceptors import ServiceInterceptor, StreamLimits
from claims_service.api.reads import ReadSide
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.config import Config
from claims_service.errors import AlreadyExistsError
from claims_service.integrity import Integrity
from claims_service.keys import kek
from claims_service.fhir.http import fhir_app
from claims_service.fhir.reads import Records
from claims_service.fhir.server import FhirServer
from claims_service.ledger.checkpointer import Checkpointer
from claims_service.observability import metrics, tracing
from claims_service.observability.progress import ProgressCollector, ProgressMonitor
from projections import catalog
from projections.store import tracking_name
from claims_service.server import GrpcServer, unary_executor
from claims_service.supervisor import ChildProcess, name_process
from claims_service.workers import RelayedWorkers, WorkerProcesses

log = logging.getLogger(__name__)

DEMO_PAYER = "PAYER-DEMO"
DEMO_NPI = "1234567893"
DEMO_MEMBER = "M-DEMO"
# The plan `claimsctl demo` enrols its members in.
DEMO_TERMS = {
    "deductible_cents": 5_000, "oop_max_cents": 300_000, "timely_filing_days": 365, "in_network_only": True,
    "review_threshold_cents": 200_000, "non_covered_procedures": ["97140"], "benefit_limits": {"97110": 40},
    "prior_auth_required": [],
    "cost_share": {"default": {"copay_cents": 0, "coinsurance_bp": 2000},
                   "office_visit": {"copay_cents": 2_500, "coinsurance_bp": 0}},
}


@dataclass
class Service:
    ledger: LedgerApplication
    commands: Commands
    reads: ReadSide
    checkpointer: Checkpointer
    server: GrpcServer
    interceptor: ServiceInterceptor
    workers: WorkerProcesses | RelayedWorkers
    fhir: FhirServer | None = None  # the FHIR endpoint (CLAIMS_FHIR_ADDR; None when off)
    progress: ProgressMonitor | None = None  # the followers' lag: health, metrics, claimsctl status
    servers: ServerProcesses | None = None  # the further gRPC server processes (CLAIMS_SERVER_PROCESSES)

    @property
    def port(self) -> int:
        return self.server.port

    def metric_collectors(self) -> list[object]:
        """What the metrics endpoint reads from this process at scrape time (beside every process's
        recorded families): the followers' progress, health, and both processes' CPU and memory."""
        servers = self.servers
        collectors: list[object] = [
            metrics.ProcessesCollector("claims_server", lambda: [os.getpid(), *(servers.pids if servers else [])]),
            metrics.ProcessesCollector("claims_workers", lambda: list(self.workers.pids.values())),
        ]
        if self.progress is not None:
            collectors.append(ProgressCollector(
                self.progress, failing=lambda: self.server.failing,
                workers=lambda: ("workers" not in self.server.failing, self.workers.restarts)))
        return collectors

    def start(self) -> None:
        self.workers.start()
        self.reads.start()
        if self.fhir is not None:
            self.fhir.start()
        self.server.start()
        if self.servers is not None:
            self.servers.start(self.server.port)  # the port this one bound (it may have asked for 0)
        if self.progress is not None:
            self.progress.start()

    def stop(self, grace: float = 5.0) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.servers is not None:
            self.servers.terminate()  # they finish their calls meanwhile
        if self.fhir is not None:
            self.fhir.stop()
        self.server.stop(grace)
        if self.servers is not None:
            self.servers.stop(grace + 10)
        self.interceptor.close()
        self.workers.stop()
        self.reads.close()
        self.commands.close()
        self.ledger.close()


def build_service(config: Config, database_url: str, *, addr: str | None = None,
                  workers: RelayedWorkers | None = None) -> Service:
    """The service of one server process: with ``workers`` None, the first, which starts the
    worker processes and the further server processes; else a further one, told of the workers
    by the first through ``workers``."""
    kek.configure(config.load_member_keks())  # member data keys' KEKs: a bad setting stops start-up here
    ledger = LedgerApplication(database_url, pool_size=16, writer="commands", env=config.member_key_settings())
    commands = Commands(ledger)
    # Every read of a member's data is recorded on the ledger, through the commands' group commit.
    reads = ReadSide(ledger, database_url, access=AccessLog(commands.writer), read_url=config.read_database_url)
    checkpointer = Checkpointer.from_settings(database_url, config.load_signing_key(), config.signing_settings())
    authenticator = Authenticator(ledger)
    commands.on_key_revoked(authenticator.forget)  # a key revoked here stops working at once
    integrity = Integrity()
    interceptor = ServiceInterceptor(authenticator, unary_executor(config.unary_threads),
                                     StreamLimits(config.max_streams, config.max_streams_per_key), integrity)
    server = GrpcServer(addr or config.grpc_addr, interceptors=[i for i in (tracing.server_interceptor(), interceptor) if i is not None],
                        servicers=servicers(commands, reads, checkpointer, config, integrity))
    first = workers is None
    running = WorkerProcesses(database_url, config) if workers is None else workers
    # The read-only FHIR endpoint: the same keys (this authenticator) and read pool as gRPC.
    fhir = (FhirServer(config.fhir_addr, fhir_app(HaltingAuthenticator(authenticator, integrity),
                                                Records(reads.pool, reads.access)))
            if config.fhir_addr else None)
    # ... and while the adjudicator or a projection falls too far behind (read every second).
    progress = ProgressMonitor(database_url, max_lag_seconds=config.max_lag_seconds,
                               max_lag_events=config.max_lag_events, sample_waits=first and metrics.get().enabled,
                               expected=(*(p.tracking_name for p in partitions(config.adjudicator_partitions)),
                                         *(tracking_name(name) for name in catalog.NAMES)),
                               on_health=lambda ok, _reason: server.set_condition("followers", ok))

    def halt(reason: str) -> None:
        # The signer (here or in the workers) refused to sign, or the auditor found the ledger
        # altered: health NOT_SERVING, no more signatures, every call but investigation refused.
        log.error("ledger fault: %s; the service is halted (health NOT_SERVING)", reason)
        checkpointer.stop_signing(reason)
        server.set_condition("ledger", False)

    def heard(kind: str, value: Any) -> None:
        if kind == "alive":  # without the workers nothing is adjudicated and reads fall behind: health says so
            server.set_condition("workers", value)
        elif kind == "fault":
            integrity.report_fault(value)
        elif kind == "audit":
            integrity.record_audit(value)

    integrity.on_fault(halt)
    checkpointer.on_fault = integrity.report_fault
    running.subscribe(heard)
    # A fault found here (this process's signer) halts every server process, as the workers' do.
    integrity.on_fault(running.fault_found)
    servers = None
    if first and config.server_processes > 1:
        servers = ServerProcesses(config, database_url, config.server_processes - 1, running)
    return Service(ledger, commands, reads, checkpointer, server, interceptor, running, fhir, progress, servers)


class ServerProcesses:
    """The further gRPC server processes (``CLAIMS_SERVER_PROCESSES`` - 1), each a whole service
    but for the workers (`build_service` with `RelayedWorkers`), on the first one's port: gRPC sets
    SO_REUSEPORT on Linux, so each process binds the same address and the kernel spreads new
    connections among them (a connection, and so a client channel, stays with one process). Each
    has its own pools, group committer, limits and health; none serves FHIR or metrics (the first
    does, for all: multiprocess metrics). Each is started again whenever it exits; whatever the
    workers tell (running or not, faults, audits) is relayed to every one, and a fault one of
    them finds is relayed to all the others."""

    def __init__(self, config: Config, database_url: str, count: int, workers: WorkerProcesses) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._config = config
        self._database_url = database_url
        self._workers = workers
        self.port = 0
        self._relays: dict[int, _Relay] = {}
        self._state = _Relay.State()
        self._lock = threading.Lock()
        self._children = [ChildProcess(f"server {index}", partial(self._spawn, index)) for index in range(1, count + 1)]
        workers.subscribe(self._heard)

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self._children if child.pid is not None]

    @property
    def restarts(self) -> int:
        return sum(child.restarts for child in self._children)

    def start(self, port: int) -> None:
        self.port = port
        for child in self._children:
            child.start()

    def terminate(self) -> None:
        for child in self._children:
            child.terminate()

    def stop(self, timeout: float = 15.0) -> None:
        for child in self._children:
            child.stop(timeout)
        with self._lock:
            for relay in self._relays.values():
                relay.close()

    def _heard(self, kind: str, value: Any) -> None:
        with self._lock:
            if self._state.update(kind, value):
                for relay in self._relays.values():
                    relay.wake()

    def _spawn(self, index: int) -> multiprocessing.process.BaseProcess:
        here, there = self._context.Pipe(duplex=True)
        host = self._config.grpc_addr.rsplit(":", 1)[0]
        process = self._context.Process(
            target=_server_main, name=f"claims-server-{index}",
            args=(self._config, self._database_url, f"{host}:{self.port}", index, os.getpid(), there,
                  logging.getLogger().getEffectiveLevel()))
        process.start()
        there.close()
        with self._lock:
            previous = self._relays.pop(index, None)
            if previous is not None:
                previous.close()
            self._relays[index] = _Relay(here, self._state, self._lock, on_fault=self._workers.fault_found)
        return process


class _Relay:
    """What the workers told, sent on to one further server process by a thread of its own (a
    stopped process must not hold up the others): whether they run and the latest audit as they
    stand, every fault once; and the faults that process finds, handed back."""

    @dataclass
    class State:
        alive: bool | None = None
        audit: dict[str, Any] | None = None
        faults: list[str] = field(default_factory=list)
        version: int = 0

        def update(self, kind: str, value: Any) -> bool:
            if kind == "alive":
                self.alive = value
            elif kind == "audit":
                self.audit = value
            elif kind == "fault" and value not in self.faults:
                self.faults.append(value)
            else:
                return False
            self.version += 1
            return True

    def __init__(self, conn: multiprocessing.connection.Connection, state: State, lock: threading.Lock, *,
                 on_fault: Any) -> None:
        self._conn = conn
        self._state = state
        self._lock = lock
        self._on_fault = on_fault
        self._wake = threading.Event()
        self._closed = False
        self._wake.set()  # a new process hears everything so far
        threading.Thread(target=self._send, name="server-relay", daemon=True).start()
        threading.Thread(target=self._receive, name="server-relay-in", daemon=True).start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._conn.close()

    def _send(self) -> None:
        sent_alive, sent_audit, sent_faults, seen = None, None, 0, -1
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                if self._state.version == seen:
                    continue
                seen = self._state.version
                alive, audit, faults = self._state.alive, self._state.audit, list(self._state.faults)
            try:
                for fault in faults[sent_faults:]:
                    self._conn.send(("fault", fault))
                sent_faults = len(faults)
                if alive is not None and alive != sent_alive:
                    self._conn.send(("alive", alive))
                    sent_alive = alive
                if audit is not None and audit is not sent_audit:
                    self._conn.send(("audit", audit))
                    sent_audit = audit
            except (OSError, ValueError):
                return  # the process is gone; its next one gets a relay of its own

    def _receive(self) -> None:
        while True:
            try:
                kind, value = self._conn.recv()
            except (EOFError, OSError, ValueError):
                return
            if kind == "fault":
                self._on_fault(value)


def _server_main(config: Config, database_url: str, addr: str, index: int, parent_pid: int,
                 conn: multiprocessing.connection.Connection, log_level: int) -> None:
    """A further server process: the service on ``addr`` (the first one's port) until SIGTERM, or
    until the first process is gone."""
    from claims_service.garbage_collection import tune_garbage_collector
    from claims_service.observability import logs

    name_process(f"claims-server-{index}")
    logs.configure(config.log_format, level=log_level, process="server")
    metrics.configure_from_environment()
    tracing.configure(config.trace_sample_ratio, process="server")
    tune_garbage_collector()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the first process's to act on: it stops this one
    # FHIR and the metrics endpoint are the first process's.
    own = config.model_copy(update={"fhir_addr": "", "server_processes": 1})
    service = build_service(own, database_url, addr=addr, workers=RelayedWorkers(conn))
    service.start()
    log.info("gRPC server process %d (pid %d) serving on %s", index, os.getpid(), addr)
    try:
        while not stop.wait(1.0):
            if os.getppid() != parent_pid:
                log.warning("the first server process %d is gone; server process %d stopping", parent_pid, index)
                threading.Timer(10.0, os._exit, args=(0,)).start()
                break
    finally:
        service.stop(grace=5.0)
        tracing.shutdown()


@dataclass
class HaltingAuthenticator:
    """The FHIR endpoint's keys, as gRPC's, and its halt: once the ledger failed verification it
    serves nothing built from it (503 with an OperationOutcome naming the fault)."""

    authenticator: Authenticator
    integrity: Integrity

    def authenticate(self, authorization: str | None) -> Principal:
        principal = self.authenticator.authenticate(authorization)
        self.integrity.check("fhir")
        return principal


def servicers(commands: Commands, reads: ReadSide, checkpointer: Checkpointer, config: Config,
              integrity: Integrity | None = None) -> list[tuple[object, object]]:
    from claims.v1 import (
        admin_pb2_grpc,
        dispute_pb2_grpc,
        ledger_pb2_grpc,
        member_pb2_grpc,
        payer_pb2_grpc,
        provider_pb2_grpc,
    )
    from claims_service.api.admin import AdminServicer
    from claims_service.api.dispute import DisputeServicer
    from claims_service.api.ledger import LedgerServicer
    from claims_service.api.member import MemberServicer
    from claims_service.api.payer import PayerServicer
    from claims_service.api.provider import ProviderServicer

    attachments, eraser, attachment_servicer = attachment_servicers(commands, config)
    return [
        (provider_pb2_grpc.add_ProviderServiceServicer_to_server, ProviderServicer(commands, reads, attachments)),
        attachment_servicer,
        (payer_pb2_grpc.add_PayerServiceServicer_to_server, PayerServicer(commands, reads)),
        (dispute_pb2_grpc.add_DisputeServiceServicer_to_server, DisputeServicer(commands, reads, integrity)),
        (admin_pb2_grpc.add_AdminServiceServicer_to_server, AdminServicer(commands, eraser)),
        (member_pb2_grpc.add_MemberServiceServicer_to_server, MemberServicer(commands, reads)),
        (ledger_pb2_grpc.add_LedgerServiceServicer_to_server, LedgerServicer(commands, reads, checkpointer,
                                                                                 config.previous_verifier_keys)),
    ]


def attachment_servicers(commands: Commands, config: Config) -> tuple[Any, Any, tuple[object, object]]:
    """Attachments (their blob store, CLAIMS_MAX_ATTACHMENT_BYTES), the eraser that deletes a
    member's documents with their key, and AttachmentService."""
    from claims.v1 import attachment_pb2_grpc
    from claims_service.api.attachment import AttachmentServicer
    from claims_service.attachments import Attachments
    from claims_service.erasure import Eraser

    blobs = config.open_blob_store()
    attachments = Attachments(commands, blobs, max_bytes=config.max_attachment_bytes)
    return (attachments, Eraser(commands.ledger, commands._save, blobs),
            (attachment_pb2_grpc.add_AttachmentServiceServicer_to_server, AttachmentServicer(attachments)))


def ensure_demo_keys(commands: Commands, path: Path) -> bool:
    """First run in development: one API key per role, written to `path` (mode 0600).

    Returns True when it created them. Never overwrites a file that exists: the keys in it are
    the ones the ledger knows.
    """
    if path.exists():
        return False
    ensure_demo_parties(commands)
    keys = {}
    for role, party in (("admin", ""), ("provider", DEMO_NPI), ("payer", DEMO_PAYER), ("dispute", ""),
                        ("member", DEMO_MEMBER)):
        api_key, key_id, _ = commands.create_api_key(actor="admin:bootstrap", role=role, party_id=party,
                                                     label=f"demo {role} key")
        keys[role] = {"api_key": api_key, "key_id": key_id, "party_id": party}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(keys, handle, indent=2)
    return True


def ensure_demo_parties(commands: Commands) -> None:
    """Keys are issued only for parties the ledger knows: register the demo provider and enrol one
    member with the demo payer, as an administrator would, unless that was done before."""
    try:
        commands.register_provider(actor="admin:bootstrap", npi=DEMO_NPI, name="Riverside Family Clinic",
                                   taxonomy="207Q00000X")
    except AlreadyExistsError:
        pass
    try:
        commands.enroll_member(actor="admin:bootstrap", member_id=DEMO_MEMBER, payer_id=DEMO_PAYER,
                               plan_id="DEMO-GOLD", effective_date=date(commands.today().year, 1, 1), terms=DEMO_TERMS)
    except AlreadyExistsError:
        pass
