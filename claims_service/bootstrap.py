"""Wire the running service: the ledger, its commands, the read side and the gRPC server in this
process, the background workers (adjudicator, projections, Merkle tree + checkpoints) in a child
process (`workers.py`). Wiring only."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from claims_service.api.access import AccessLog
from claims_service.api.auth import Authenticator, Principal
from claims_service.api.interceptors import ServiceInterceptor, StreamLimits
from claims_service.api.reads import ReadSide
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.config import Config
from claims_service.errors import AlreadyExistsError
from claims_service.integrity import Integrity
from claims_service.fhir.http import fhir_app
from claims_service.fhir.reads import Records
from claims_service.fhir.server import FhirServer
from claims_service.ledger.checkpointer import Checkpointer
from claims_service.observability import metrics, tracing
from claims_service.observability.progress import ProgressCollector, ProgressMonitor
from projections import catalog
from projections.store import tracking_name
from claims_service.server import GrpcServer, unary_executor
from claims_service.workers import WorkerProcess

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
    workers: WorkerProcess
    fhir: FhirServer | None = None  # the FHIR endpoint (CLAIMS_FHIR_ADDR; None when off)
    progress: ProgressMonitor | None = None  # the followers' lag: health, metrics, claimsctl status

    @property
    def port(self) -> int:
        return self.server.port

    def metric_collectors(self) -> list[object]:
        """What the metrics endpoint reads from this process at scrape time (beside every process's
        recorded families): the followers' progress, health, and both processes' CPU and memory."""
        from prometheus_client import ProcessCollector

        collectors: list[object] = [
            ProcessCollector(namespace="claims_server", registry=None),
            ProcessCollector(namespace="claims_workers", pid=lambda: self.workers.pid or "missing", registry=None),
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
        if self.progress is not None:
            self.progress.start()

    def stop(self, grace: float = 5.0) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.fhir is not None:
            self.fhir.stop()
        self.server.stop(grace)
        self.interceptor.close()
        self.workers.stop()
        self.reads.close()
        self.commands.close()
        self.ledger.close()


def build_service(config: Config, database_url: str, *, addr: str | None = None) -> Service:
    ledger = LedgerApplication(database_url, pool_size=16, writer="commands")
    commands = Commands(ledger)
    # Every read of a member's data is recorded on the ledger, through the commands' group commit.
    reads = ReadSide(ledger, database_url, access=AccessLog(commands.writer))
    checkpointer = Checkpointer.from_settings(database_url, config.load_signing_key(), config.signing_settings())
    authenticator = Authenticator(ledger)
    commands.on_key_revoked(authenticator.forget)  # a key revoked here stops working at once
    integrity = Integrity()
    interceptor = ServiceInterceptor(authenticator, unary_executor(config.unary_threads),
                                     StreamLimits(config.max_streams, config.max_streams_per_key), integrity)
    server = GrpcServer(addr or config.grpc_addr, interceptors=[i for i in (tracing.server_interceptor(), interceptor) if i is not None],
                        servicers=servicers(commands, reads, checkpointer, config, integrity))
    workers = WorkerProcess(database_url, config)
    # The read-only FHIR endpoint: the same keys (this authenticator) and read pool as gRPC.
    fhir = (FhirServer(config.fhir_addr, fhir_app(HaltingAuthenticator(authenticator, integrity),
                                                Records(reads.pool, reads.access)))
            if config.fhir_addr else None)
    # Without the workers nothing is adjudicated and reads fall behind: health says so.
    workers.on_alive_change = lambda alive: server.set_condition("workers", alive)
    # ... and while the adjudicator or a projection falls too far behind (read every second).
    progress = ProgressMonitor(database_url, max_lag_seconds=config.max_lag_seconds,
                               max_lag_events=config.max_lag_events, sample_waits=metrics.get().enabled,
                               expected=("adjudicator", *(tracking_name(name) for name in catalog.NAMES)),
                               on_health=lambda ok, _reason: server.set_condition("followers", ok))

    def halt(reason: str) -> None:
        # The signer (here or in the workers) refused to sign, or the auditor found the ledger
        # altered: health NOT_SERVING, no more signatures, every call but investigation refused.
        log.error("ledger fault: %s; the service is halted (health NOT_SERVING)", reason)
        checkpointer.stop_signing(reason)
        server.set_condition("ledger", False)

    integrity.on_fault(halt)
    checkpointer.on_fault = integrity.report_fault
    workers.on_fault = integrity.report_fault
    workers.on_audit = integrity.record_audit
    return Service(ledger, commands, reads, checkpointer, server, interceptor, workers, fhir, progress)


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

    return [
        (provider_pb2_grpc.add_ProviderServiceServicer_to_server, ProviderServicer(commands, reads)),
        (payer_pb2_grpc.add_PayerServiceServicer_to_server, PayerServicer(commands, reads)),
        (dispute_pb2_grpc.add_DisputeServiceServicer_to_server, DisputeServicer(commands, reads, integrity)),
        (admin_pb2_grpc.add_AdminServiceServicer_to_server, AdminServicer(commands)),
        (member_pb2_grpc.add_MemberServiceServicer_to_server, MemberServicer(commands, reads)),
        (ledger_pb2_grpc.add_LedgerServiceServicer_to_server, LedgerServicer(commands, reads, checkpointer,
                                                                                 config.previous_verifier_keys)),
    ]


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
