"""The whole service under load, over gRPC, from a separate client process.

Starts `claimsctl serve` on its own fresh database, sets up a payer, a plan, several providers
and many members through AdminService, opens a payer stream, then keeps `--in-flight` SubmitClaim
calls going for `--seconds` with a realistic mix: mostly clean claims, some duplicates, non-covered
and high-dollar (pended) ones, plus corrections and voids of earlier claims. It reports submit
throughput and latency, submit-to-notification latency, the server's CPU per claim, bytes stored
per event, projection lag, and the chain-verification rate, with ratios to the baselines measured
in the `ledger` part; then the paced load again while another tenant holds 1,000 streams open
(`bench/streams.py`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psycopg

from bench import floor, statements, streams
from bench.disk import (DiskProbe, data_directory, full_page_images_by_relation, wal_by_record, wal_counters, wal_position,
                        wal_written)
from bench.machine import CpuReading, cpu_figures
from claims_service.ledger.auditor import Auditor
from claims_service.ledger.note import VerifierKey
from claims_service.ledger.verify import verify_ledger
from claims.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    common_pb2,
    dispute_pb2,
    dispute_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    payer_pb2,
    payer_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
)

PAYER = "PAYER-DEMO"
PROVIDERS = ["1234567893", "1234567802", "1234567810", "1234567828", "1234567836"]
MEMBERS = 400
STREAMS = 1_000  # streams of one tenant held open in phase 3 (the per-key default limit)
PACED_ROUNDS = 3  # paced phases in a row, each with the disk probed beside it
GROWTH_ROUNDS = 2  # empty and prefilled ledgers compared this many times, alternating
CONTRACT = "BENCH-2026"
FEES = {"99213": 9_000, "99214": 13_000, "80053": 1_500, "36415": 300, "85025": 1_000, "97110": 3_000, "29881": 180_000}


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def children(pid: int) -> list[int]:
    """The child processes of `pid`, whichever of its threads started them (Linux /proc)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
        except OSError:
            continue
    return found


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of one process and its threads (None: it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, its threads and its child processes (the workers), from /proc."""
    return sum(cpu or 0.0 for cpu in map(process_cpu, [pid, *children(pid)]))


ROLES = {"claims-adj": "adjudicator", "claims-proj": "projections", "claims-tree": "tree", "claims-server": "server"}


def role_of(pid: int) -> str:
    """Which of the service's processes it is, by the name it gave itself (claims_service.supervisor.name_process)."""
    try:
        with open(f"/proc/{pid}/comm") as handle:
            comm = handle.read().strip()
    except OSError:
        return "gone"
    return next((role for prefix, role in ROLES.items() if comm.startswith(prefix)), "other")


def postmaster_pid(database_url: str) -> int | None:
    """The PostgreSQL server's pid, when it runs on this machine and we may read its data directory."""
    from bench.disk import data_directory

    try:
        return int((data_directory(database_url) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


K = TypeVar("K")


def alternating_rounds(progress: Any, title: str, configs: Mapping[K, str], rounds: int,
                       measure: Callable[[K, int, int], dict[str, Any]]) -> dict[K, list[dict[str, Any]]]:
    """Each configuration (its label by it) measured once a round, in turn, for ``rounds`` rounds:
    ``measure(config, its index, the round)``. So a machine that slows down or speeds up during
    the run weighs on every configuration alike; the caller takes each one's median."""
    runs: dict[K, list[dict[str, Any]]] = {config: [] for config in configs}
    task = progress.add_task(title, total=rounds * len(configs))
    try:
        for round_ in range(rounds):
            for index, (config, label) in enumerate(configs.items()):
                progress.update(task, description=f"{title}: {label}, round {round_ + 1} of {rounds}")
                runs[config].append(measure(config, index, round_))
                progress.advance(task)
    finally:
        progress.remove_task(task)
    return runs


class CpuMeter:
    """CPU seconds by role over a phase: the server processes, the adjudicator, the projections,
    the tree (with the auditor), PostgreSQL (every process of the server) and this load client."""

    def __init__(self, server_pid: int, postmaster: int | None) -> None:
        self.server_pid, self.postmaster = server_pid, postmaster

    def _processes(self) -> dict[int, str]:
        found = {self.server_pid: "server", os.getpid(): "client"}
        for pid in children(self.server_pid):
            role = role_of(pid)
            if role != "other":
                found[pid] = role
        if self.postmaster is not None:
            found[self.postmaster] = "postgres"
            found.update(dict.fromkeys(children(self.postmaster), "postgres"))
        return found

    def snapshot(self) -> dict[int, tuple[str, float]]:
        return {pid: (role, cpu) for pid, role in self._processes().items() if (cpu := process_cpu(pid)) is not None}

    def since(self, before: dict[int, tuple[str, float]],
              group: Callable[[int, str], str | None] | None = None) -> dict[str, float]:
        """CPU seconds per role since ``before`` (a process started meanwhile counts from zero);
        with ``group``, per what it makes of each (pid, role), leaving out the processes it gives None."""
        totals: dict[str, float] = {}
        for pid, (role, cpu) in self.snapshot().items():
            key = role if group is None else group(pid, role)
            if key is not None:
                totals[key] = totals.get(key, 0.0) + cpu - (before[pid][1] if pid in before else 0.0)
        return totals

    def postgres_by_connection(self, before: dict[int, tuple[str, float]], database_url: str) -> dict[str, float]:
        """PostgreSQL's CPU seconds since ``before``, by whose connection each backend serves (the
        service's processes name theirs: claims_service.supervisor.name_connections); "own": its
        other processes (autovacuum, the WAL writer, the checkpointer ...) and this client's."""
        with psycopg.connect(database_url, autocommit=True) as conn:
            names = dict(conn.execute("SELECT pid, application_name FROM pg_stat_activity").fetchall())
        return self.since(before, lambda pid, role: connection_role(names.get(pid) or "") if role == "postgres" else None)


# Connections named by the service's processes, or by the server's pools and listeners -> their role.
CONNECTION_ROLES = {**ROLES, "claims-reads": "server", "claims-feed": "server", "claims-notification-hub": "server",
                    "claims-progress": "server"}


def connection_role(application_name: str) -> str:
    return next((role for prefix, role in CONNECTION_ROLES.items() if application_name.startswith(prefix)), "own")


class Server:
    """`claimsctl serve` in a child process on a given database; keys in a temporary data dir."""

    def __init__(self, database_url: str, data_dir: Path, port: int, env: dict[str, str] | None = None,
                 start_timeout: float = 60.0) -> None:
        # Metrics on, as by default, on a port of their own (9464 may be taken); `env` adds or
        # overrides settings (bench/observability.py: metrics off, tracing on).
        env = {**os.environ, "CLAIMS_DATABASE_URL": database_url, "CLAIMS_DATA_DIR": str(data_dir),
               "CLAIMS_GRPC_ADDR": f"127.0.0.1:{port}", "CLAIMS_DEMO_KEYS": "1",
               "CLAIMS_FHIR_ADDR": "",  # no FHIR endpoint: the load is gRPC, and 8080 may be taken
               "CLAIMS_METRICS_ADDR": f"127.0.0.1:{port + 1}", **(env or {})}
        self.addr = f"127.0.0.1:{port}"
        self.log = open(data_dir / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "claims_service.cli", "serve"], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.keys_path = data_dir / "demo-keys.json"
        deadline = time.monotonic() + start_timeout
        while not self.keys_path.exists() or "serving gRPC" not in (data_dir / "server.log").read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                tail = (data_dir / "server.log").read_text().splitlines()[-20:]  # the data dir is temporary
                raise RuntimeError("the service did not start:\n" + "\n".join(tail))
            time.sleep(0.2)
        self.keys = json.loads(self.keys_path.read_text())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def auth(key: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {key}"),)


def set_up(channel: grpc.Channel, keys: dict[str, Any]) -> dict[str, str]:
    """Plan, providers (each with a key), fee schedule, members. Returns NPI -> provider key."""
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    meta = auth(keys["admin"]["api_key"])
    terms = admin_pb2.PlanTerms(
        deductible_cents=5_000, oop_max_cents=300_000, timely_filing_days=365, in_network_only=True,
        review_threshold_cents=200_000, non_covered_procedures=["97140"], benefit_limits={"97110": 60},
        cost_share={"default": admin_pb2.CostShare(coinsurance_bp=2000), "office_visit": admin_pb2.CostShare(copay_cents=2_500)},
    )
    try:
        admin.PublishFeeSchedule(admin_pb2.PublishFeeScheduleRequest(
            contract_id=CONTRACT, payer_id=PAYER, version=1, effective_date="2020-01-01",
            entries=[admin_pb2.FeeScheduleEntry(procedure_code=c, allowed_cents=v) for c, v in FEES.items()]), metadata=meta)
    except grpc.RpcError as error:  # set up by an earlier run on this database (--growth runs twice): new keys only
        if error.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS):
            raise
        return {npi: admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(role=common_pb2.ROLE_PROVIDER, party_id=npi,
                                                                      label="bench"), metadata=meta).api_key
                for npi in PROVIDERS}
    admin.DeployRuleSet(admin_pb2.DeployRuleSetRequest(version="2026.1", effective_date="2020-01-01"), metadata=meta)
    provider_keys = {}
    for npi in PROVIDERS:
        try:
            admin.RegisterProvider(admin_pb2.RegisterProviderRequest(npi=npi, name=f"Clinic {npi}", taxonomy="207Q00000X"),
                                   metadata=meta)
        except grpc.RpcError as error:  # the demo keys' provider, registered on the server's first start
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        admin.RecordCredential(admin_pb2.RecordCredentialRequest(npi=npi, licence_number=f"L-{npi}", state="NY",
                                                                 valid_from="2020-01-01", valid_to="2030-12-31"), metadata=meta)
        admin.JoinNetwork(admin_pb2.JoinNetworkRequest(npi=npi, payer_id=PAYER, contract_id=CONTRACT,
                                                       effective_date="2020-01-01"), metadata=meta)
        provider_keys[npi] = admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(
            role=common_pb2.ROLE_PROVIDER, party_id=npi, label="bench"), metadata=meta).api_key
    year = datetime.now(UTC).year
    for start in range(0, MEMBERS, 50):  # in waves: the server bounds concurrent calls
        futures = [admin.EnrollMember.future(admin_pb2.EnrollMemberRequest(
            member_id=f"BM{m}", payer_id=PAYER, plan_id="BENCH-GOLD", effective_date=f"{year - 1}-01-01", terms=terms),
            metadata=meta) for m in range(start, min(start + 50, MEMBERS))]
        for future in futures:
            future.result()
    return provider_keys


# The RPC each kind of call in the mix is (every other kind is a SubmitClaim).
METHOD_OF_KIND = {"void": "VoidClaim", "correction": "CorrectClaim"}


class Load:
    """Keeps `in_flight` submissions going; records latencies and submit times per claim."""

    def __init__(self, channel: grpc.Channel | list[grpc.Channel], provider_keys: dict[str, str], in_flight: int,
                 seed: int = 7) -> None:
        # Several channels (each with a connection of its own) spread the calls over server processes.
        self.stubs = [provider_pb2_grpc.ProviderServiceStub(c) for c in (channel if isinstance(channel, list) else [channel])]
        self.stub = self.stubs[0]
        self.keys = provider_keys
        self.in_flight = in_flight
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.calls: list[tuple[float, float]] = []  # (sent, seconds) of each answered call
        self.by_method: dict[str, list[float]] = {}  # seconds of each answered call, by RPC
        self.submitted_at: dict[str, float] = {}
        # Claims the payer's stream has seen decided: the only ones a provider may void or correct.
        self.decided: list[tuple[str, str]] = []
        self.providers: dict[str, str] = {}
        self.errors: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.counter = 0
        self.keys_of = uuid.uuid4().hex[:8]  # idempotency keys of this load's own (a database may see several)
        self.today = datetime.now(UTC).date()

    def request(self) -> tuple[str, str, Any, Callable[..., Any]]:
        """The next call of the mix: (kind, npi, request, stub method)."""
        roll = self.rng.random()
        with self.lock:
            self.counter += 1
            n = self.counter
            # A claim is voided or corrected at most once: take it off the list.
            target = self.decided.pop(self.rng.randrange(len(self.decided))) if roll < 0.08 and self.decided else None
        npi = self.rng.choice(PROVIDERS)
        member = f"BM{self.rng.randrange(MEMBERS)}"
        stub = self.stubs[n % len(self.stubs)]
        day = (self.today - timedelta(days=self.rng.randrange(1, 300))).isoformat()
        lines = [("99213", 1, 12_000, 1), ("80053", 1, 2_500, 1), ("36415", 1, 500, 1)]
        kind = "clean"
        if roll < 0.05 and target:
            kind = "void"
            npi, claim_id = target
            return kind, npi, provider_pb2.VoidClaimRequest(claim_id=claim_id, reason="billed in error"), stub.VoidClaim
        if roll < 0.08 and target:
            kind = "correction"
            npi, claim_id = target
            body = self._claim(f"fix-{self.keys_of}-{n}", member, day, [("99214", 1, 15_000, 1)])
            return kind, npi, provider_pb2.CorrectClaimRequest(claim_id=claim_id, **body), stub.CorrectClaim
        if roll < 0.13:
            kind = "duplicate"
            lines = [("99213", 1, 12_000, 1)]
            day = (self.today - timedelta(days=1)).isoformat()
            member = "BM0"
        elif roll < 0.18:
            kind, lines = "not covered", [("97140", 1, 4_000, 2)]
        elif roll < 0.21:
            kind, lines = "high dollar", [("29881", 1, 250_000, 3)]
        body = self._claim(f"load-{self.keys_of}-{n}", member, day, lines)
        return kind, npi, provider_pb2.SubmitClaimRequest(**body), stub.SubmitClaim

    @staticmethod
    def _claim(key: str, member: str, day: str, lines: list[tuple[str, int, int, int]]) -> dict[str, Any]:
        return {
            "idempotency_key": key, "member_id": member, "payer_id": PAYER, "place_of_service": "11",
            "diagnosis_codes": ["E119", "M5450", "M1711"],
            "lines": [common_pb2.ServiceLine(line_number=i + 1, procedure_code=c, units=u, billed_cents=b,
                                             diagnosis_pointers=[p], date_of_service=day)
                      for i, (c, u, b, p) in enumerate(lines)],
        }

    def reset(self) -> None:
        with self.lock:
            self.latencies, self.calls, self.submitted_at, self.errors, self.kinds = [], [], {}, {}, {}
            self.by_method = {}

    def run(self, seconds: float, on_progress: Callable[[float], None], *, rate: float | None = None) -> float:
        """Send for `seconds`: as fast as `in_flight` allows, or paced at `rate` calls/s."""
        stop_at = time.monotonic() + seconds
        slots = threading.Semaphore(self.in_flight)
        started = time.monotonic()
        completed = threading.Event()
        pending = [0]
        sent_count = 0

        def done(kind: str, npi: str, sent: float, future: grpc.Future) -> None:
            took = time.monotonic() - sent
            try:
                response = future.result()
            except grpc.RpcError as error:
                with self.lock:
                    self.errors[error.code().name] = self.errors.get(error.code().name, 0) + 1
            else:
                with self.lock:
                    self.latencies.append(took)
                    self.calls.append((sent, took))
                    self.kinds[kind] = self.kinds.get(kind, 0) + 1
                    self.by_method.setdefault(METHOD_OF_KIND.get(kind, "SubmitClaim"), []).append(took)
                    claim_id = getattr(response, "claim_id", "")
                    if claim_id:
                        self.submitted_at[claim_id] = sent
                        self.providers[claim_id] = npi
            finally:
                slots.release()
                with self.lock:
                    pending[0] -= 1
                    if pending[0] == 0 and time.monotonic() >= stop_at:
                        completed.set()

        while time.monotonic() < stop_at:
            if rate:
                delay = started + sent_count / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent_count += 1
            slots.acquire()
            kind, npi, request, method = self.request()
            with self.lock:
                pending[0] += 1
            sent = time.monotonic()
            future = method.future(request, metadata=auth(self.keys[npi]), timeout=30)
            future.add_done_callback(lambda f, k=kind, p=npi, s=sent: done(k, p, s, f))
            on_progress(min(1.0, (time.monotonic() - started) / seconds))
        for _ in range(self.in_flight):
            slots.acquire()
        return time.monotonic() - started


class PayerStream(threading.Thread):
    """The payer's subscription: notes when each claim's first adjudication notice arrives."""

    def __init__(self, channel: grpc.Channel, key: str, after: int) -> None:
        super().__init__(daemon=True)
        self.stub = payer_pb2_grpc.PayerServiceStub(channel)
        self.key, self.after = key, after
        self.arrived: dict[str, float] = {}
        self.positions: list[int] = []
        self.call: Any = None
        self.on_notice: Callable[[str, int], object] = lambda claim_id, status: None

    def run(self) -> None:
        self.call = self.stub.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(after_position=self.after),
                                                     metadata=auth(self.key))
        try:
            for item in self.call:
                if item.WhichOneof("kind") == "notice":
                    self.positions.append(item.notice.position)
                    if item.notice.claim_id not in self.arrived:
                        self.arrived[item.notice.claim_id] = time.monotonic()
                        self.on_notice(item.notice.claim_id, item.notice.status)
        except grpc.RpcError:
            pass

    def stop(self) -> None:
        if self.call is not None:
            self.call.cancel()


def growth(create_database: Callable[[str], str], args: Any, progress: Any) -> dict[str, Any]:
    """The same load on a ledger that already holds `args.growth` events, against an empty one:
    nothing on the write or read path may scan history, so throughput and latency should stay
    flat (targets: ≥ 0.9 of the calls/s, ≤ 1.2 × the paced p99).

    The prefilled ledger is as a service that has run for long leaves it: its read models, its
    adjudicator's position and its Merkle tree caught up (built here, before the service starts);
    the auditor's state file (the head it audited) is there too. What the service still does on
    start-up over the whole history (the auditor's start-up round, paced in the background) is timed
    on its own and waited out before the load begins. The disk's flush stalls land at random
    in either phase, so the comparison is made `GROWTH_ROUNDS` times, empty and big alternating,
    each run with the disk probed beside it; the ratios are of the medians. So do checkpoints: after
    one, the first change to every page logs the whole page, and on a history far more pages are
    first changes (whatever a claim touches at random). Each paced run therefore begins with a checkpoint,
    in both phases alike, instead of taking one by chance (README, "Scale")."""
    from bench.projections import generate_history
    from claims_service.adjudication.partitions import NAME as ADJUDICATOR
    from claims_service.keys.kek import kek_file_path
    from claims_service.ledger.tree import TreeBuilder
    from claims_service.migrate import migrate
    from projections import catalog
    from projections.runner import ProjectionRunner

    rounds = 1 if args.quick else GROWTH_ROUNDS
    url = create_database("bench_growth")
    migrate(url)
    task = progress.add_task(f"growth: writing a history of {args.growth:,} events", total=None)
    started = time.monotonic()
    generate_history(url, args.growth)
    generated = time.monotonic() - started
    progress.update(task, description=f"growth: the read models, the adjudicator and the tree over {args.growth:,} events")
    for name in catalog.NAMES:  # the read models start caught up, as in a service that has run for long
        runner = ProjectionRunner(url, name)
        runner.drain()
        runner.close()
    with psycopg.connect(url, autocommit=True) as conn:  # the history is decided: the adjudicator is past it
        head = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()[0]
        conn.execute("INSERT INTO ledger_tracking (application_name, notification_id) VALUES (%s, %s)"
                     " ON CONFLICT (application_name) DO UPDATE SET notification_id = excluded.notification_id",
                     (ADJUDICATOR, head))
    with TreeBuilder(url) as tree:
        tree.catch_up()
    # What autovacuum would have done over a long-running service's life, done now and at once:
    # otherwise its workers may go through the bulk-written history while a run is measured (a
    # full run's first empty run, right after the history was written, had 498 slow submits that
    # no slow flush explained; the cause was not confirmed).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    # The service on the history keeps one data directory across its runs, as a restarted service
    # does: its signing key (its checkpoints verify), and the auditor's state, audited as written.
    service_dir = Path(tempfile.mkdtemp(prefix="claims-bench-growth-"))
    audited = Auditor(url, state_file=service_dir / AUDITOR_STATE)
    with psycopg.connect(url, autocommit=True) as conn:
        while audited.audit_new(conn):
            pass
    audited.save_state(force=True)
    progress.remove_task(task)
    # The history's member data keys are wrapped under this process's KEKs: the service needs them.
    keks = {} if {"CLAIMS_MEMBER_KEKS", "CLAIMS_MEMBER_KEK_PROVIDER"} & os.environ.keys() else {
        "CLAIMS_MEMBER_KEK_FILE": str(kek_file_path(os.environ).resolve())}
    runs: dict[str, list[dict[str, Any]]] = {"empty": [], "big": []}
    try:
        for round_ in range(rounds):
            empty = run(create_database, args, progress, light=True, name=f"bench_growth_empty_{round_}",
                        after_checkpoint=True)
            runs["empty"].append(empty)
            # Paced at the empty run's rate: the tails of the two are compared at the same load.
            runs["big"].append(run(create_database, args, progress, database_url=url, light=True, catch_up=True,
                                   data_dir=service_dir, env=keks, paced_rate=empty["paced"]["rate"], after_checkpoint=True))
    finally:
        shutil.rmtree(service_dir, ignore_errors=True)

    def figures(found: dict[str, Any]) -> dict[str, Any]:
        return {"calls_per_s": found["saturated"]["calls_per_s"], "paced_p99_ms": found["paced"]["submit_ms"]["p99"],
                "disk_p99_ms": found["paced"]["disk"]["p99_ms"], "disk_stalls": found["paced"]["disk"]["stalls_over_20ms"],
                "paced_p50_ms": found["paced"]["submit_ms"]["p50"],
                # The calls over 20 ms, and how many of them no slow flush of the disk overlapped.
                "slow_calls": found["paced"]["submit_stalls"]["slow_calls"],
                "slow_calls_unexplained": found["paced"]["submit_stalls"]["unexplained"],
                "autovacuum_waited_s": found["saturated"]["autovacuum_waited_s"] + found["paced"]["autovacuum_waited_s"],
                "paced_autovacuum_runs": found["paced"]["autovacuum_runs"],
                "cpu_ms_per_claim": found["cpu_ms_per_claim"], "start_up_seconds": found.get("start_up_seconds"),
                "cpu_per_claim_in_client_units": found["cpu_per_claim_in_client_units"],
                "cpu_ms_per_claim_by_role": found["cpu_ms_per_claim_by_role"],
                "paced_wal_per_call": wal_figures(found["paced"]),
                "paced_machine_cpu": cpu_figures(found["paced"].get("machine_cpu")),
                "paced_fpi_per_call_by_relation": {
                    name: round(n / max(1, found["paced"]["calls"]), 2)
                    for name, n in found["paced"].get("full_page_images_by_relation", {}).items()},
                "paced_wal_kb_per_call_by_record": {
                    name: round(size / 1024 / max(1, found["paced"]["calls"]), 1)
                    for name, size in found["paced"].get("wal_bytes_by_record", {}).items()}}

    per_run = {kind: [figures(found) for found in found_runs] for kind, found_runs in runs.items()}
    median = {kind: {key: statistics.median(r[key] for r in rows) for key in ("calls_per_s", "paced_p99_ms", "cpu_ms_per_claim",
                                                                         "cpu_per_claim_in_client_units")}
              for kind, rows in per_run.items()}
    found = {
        "prefilled_events": args.growth,
        "generate_seconds": round(generated, 1),
        "rounds": rounds,
        "runs": per_run,
        "baseline": median["empty"],
        "big": median["big"],
        "calls_ratio": median["big"]["calls_per_s"] / median["empty"]["calls_per_s"],
        "p99_ratio": median["big"]["paced_p99_ms"] / median["empty"]["paced_p99_ms"],
        "cpu_ratio": median["big"]["cpu_ms_per_claim"] / median["empty"]["cpu_ms_per_claim"],
        "cpu_in_client_units_ratio": (median["big"]["cpu_per_claim_in_client_units"]
                                      / max(median["empty"]["cpu_per_claim_in_client_units"], 1e-9)),
        "start_up_seconds": statistics.median(r["start_up_seconds"] for r in per_run["big"]),
    }
    if args.statements:
        found["statements"] = statements.compare([r["saturated"]["statements"] for r in runs["empty"]],
                                                 [r["saturated"]["statements"] for r in runs["big"]])
    return found


AUDITOR_STATE = "auditor.audited-head"  # Config.auditor_state_path()'s name in the data directory


def measure_auditor(url: str, verifier_key: str) -> dict[str, Any]:
    """The auditor over the whole ledger: its pass as a workers process without a state file makes
    it (each event verified as new), then a round over the same events, unpaced: the chain again,
    the tree recomputed from its leaves, and the latest checkpoint held to it."""
    auditor = Auditor(url, verifier=VerifierKey.parse(verifier_key))
    started, cpu = time.monotonic(), time.thread_time()
    with psycopg.connect(url, autocommit=True) as conn:
        while auditor.audit_new(conn):
            pass
    cpu_used, elapsed = time.thread_time() - cpu, time.monotonic() - started
    round_started, round_cpu = time.monotonic(), time.thread_time()
    full = auditor.audit_full()
    round_cpu_used, round_elapsed = time.thread_time() - round_cpu, time.monotonic() - round_started
    return {"events": auditor.events, "events_per_s": auditor.events / max(elapsed, 1e-9),
            "cpu_s_per_event": cpu_used / max(auditor.events, 1),
            "round_events_per_s": full.events / max(round_elapsed, 1e-9),
            "round_cpu_s_per_event": round_cpu_used / max(full.events, 1),
            "intact": auditor.fault is None and full.intact}


def wait_caught_up(url: str, server: Server, timeout: float = 1800.0) -> float:
    """Seconds until the service started on a long history has done what it does on start-up: the
    followers at the head, and the tree process quiet (its auditor's start-up round over the whole
    chain done: paced, it takes about a third of a core while it walks)."""
    started = time.monotonic()
    deadline = started + timeout
    quiet = 0
    while time.monotonic() < deadline:
        trees = [pid for pid in children(server.process.pid) if role_of(pid) == "tree"]
        before = sum(process_cpu(pid) or 0.0 for pid in trees)
        time.sleep(1.0)
        busy = sum(process_cpu(pid) or 0.0 for pid in trees) - before
        quiet = quiet + 1 if trees and busy < 0.1 and not followers_behind(url) else 0
        if quiet >= 2:
            return time.monotonic() - started - 2.0
    raise RuntimeError("the service did not catch up with its history in time")


def followers_behind(url: str) -> int:
    """How many followers (the adjudicator's partitions, the read models) are short of the head."""
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM ledger_tracking t, (SELECT max(notification_id) AS head FROM ledger_events) e"
            " WHERE t.application_name <> '__migration__' AND t.application_name NOT LIKE '%%.rebuild'"
            " AND t.notification_id < e.head").fetchone()[0])


def wait_for_followers(url: str, timeout: float = 60.0) -> None:
    """Until every follower has reached the head (or `timeout` seconds have passed)."""
    deadline = time.monotonic() + timeout
    while followers_behind(url) and time.monotonic() < deadline:
        time.sleep(0.2)


def wait_for_autovacuum(url: str, timeout: float = 600.0) -> float:
    """Seconds until no autovacuum worker runs on the server (or `timeout` passed): the upkeep of
    one run's writes is not the next run's cost."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < timeout and conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'").fetchone()[0]:
            time.sleep(0.5)
    return time.monotonic() - started


def maintenance_runs(url: str) -> int:
    """Autovacuum and autoanalyze runs so far over the database's tables (each counted as it ends)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return int(conn.execute("SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0)"
                                " FROM pg_stat_all_tables").fetchone()[0])


def paced_round(load: Load, stream: PayerStream, rate: float, seconds: float, probe: DiskProbe,
                on_progress: Callable[[float], None], database_url: str, *,
                after_checkpoint: bool = False) -> dict[str, Any]:
    """One paced phase with the disk's flushes probed beside it: the client's tails and the disk's,
    which slow calls the disk explains, and the WAL segments the server had to create meanwhile.
    `after_checkpoint`: a checkpoint first, so that the phase begins where the first change to
    every page writes the whole page to the WAL (what a checkpoint every `checkpoint_timeout` does
    to the service), rather than wherever the last one happened to fall; and before it, the vacuum
    that the last phase's writes are due, so that autovacuum does not do it inside this phase in
    one run and not in another."""
    autovacuum_waited = 0.0
    if after_checkpoint:
        # The followers first: still reading the last phase's events after the checkpoint, they set
        # hint bits on its pages, each a whole page in the WAL of this phase (9.78 full-page images
        # a call in an empty run where the followers lagged, against 1.2 where they had caught up).
        wait_for_followers(database_url)
        autovacuum_waited = wait_for_autovacuum(database_url)
        with psycopg.connect(database_url, autocommit=True) as conn:
            # Vacuum sets hint bits and visibility-map bits on the pages the last phase wrote; after
            # the checkpoint, each is a whole page in the WAL. Left to autovacuum, it fell inside an
            # empty run's paced phase (a new database's tables cross its thresholds within minutes,
            # a history's do not): 91.3 kB of WAL a call, 34.2 of them hint bits' full-page images
            # and 15.3 visibility-map records, against 43.7 kB a call in a run without it (README,
            # "Scale", twelfth pass). Done here, in both phases alike, it lands in neither.
            conn.execute("VACUUM (ANALYZE)")
            conn.execute("CHECKPOINT")
        maintenance_before = maintenance_runs(database_url)
    load.reset()
    wal_before, lsn_before = wal_counters(database_url), wal_position(database_url)
    probe.start()
    cpu_before = CpuReading.now()
    elapsed = load.run(seconds, on_progress, rate=rate)
    cpu = CpuReading.now().since(cpu_before)
    flushes = probe.stop()
    wal_after, lsn_after = wal_counters(database_url), wal_position(database_url)
    maintenance = maintenance_runs(database_url) - maintenance_before if after_checkpoint else None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and set(load.submitted_at) - set(stream.arrived):
        time.sleep(0.2)
    notices = [(t, stream.arrived[c] - t) for c, t in load.submitted_at.items() if c in stream.arrived]
    notify = [took for _, took in notices]
    return {
        "rate": rate,
        "calls": len(load.latencies),
        "calls_per_s": len(load.latencies) / elapsed,
        "submit_ms": {q: percentile(load.latencies, v) * 1000 for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        # Voids and corrections (8 % of the mix once claims are decided) read the claim and its
        # payments before they write: their share of the slowest calls, told apart.
        "by_method_ms": {method: {"calls": len(took), **{q: percentile(took, v) * 1000 for q, v in (("p50", 0.5), ("p99", 0.99))}}
                         for method, took in sorted(load.by_method.items())},
        "slowest_1pct_by_method": _slowest_by_method(load.by_method),
        "notify_ms": {q: percentile(notify, v) * 1000 for q, v in (("p50", 0.5), ("p99", 0.99))},
        "disk": flushes.summary(),
        "submit_stalls": flushes.explain(list(load.calls)),
        # How much of the shared cores was left over meanwhile (bench/machine.py).
        "machine_cpu": cpu,
        "wal": wal_written(wal_before, wal_after),
        # Which pages the checkpoint made whole-page writes of (growth runs only: reading the WAL
        # back takes seconds).
        "full_page_images_by_relation": (full_page_images_by_relation(database_url, lsn_before, lsn_after)
                                         if after_checkpoint else {}),
        "wal_bytes_by_record": wal_by_record(database_url, lsn_before, lsn_after) if after_checkpoint else {},
        # Autovacuum and autoanalyze runs that ended within the phase (they still may, the vacuum
        # above notwithstanding: what the phase itself writes can cross their thresholds).
        "autovacuum_runs": maintenance,
        "errors": dict(load.errors),
        "autovacuum_waited_s": autovacuum_waited,
    }


def _slowest_by_method(by_method: dict[str, list[float]]) -> dict[str, int]:
    """How many of the slowest 1 % of calls (those at or over the p99) each RPC made."""
    everything = sorted(((took, method) for method, took_all in by_method.items() for took in took_all), reverse=True)
    slowest = everything[:max(1, len(everything) // 100)] if everything else []
    counts: dict[str, int] = {}
    for _, method in slowest:
        counts[method] = counts.get(method, 0) + 1
    return counts


def wal_figures(paced: dict[str, Any]) -> str:
    """A paced run's WAL, per call answered: what a commit has to flush, and how much of it is
    whole pages (a checkpoint began not long before); and the segments the server had to create."""
    wal, calls = paced.get("wal"), paced.get("calls", 0)
    if wal is None or not calls:
        return "?"
    created = "?" if wal["segments_created"] is None else str(wal["segments_created"])
    return f"{wal['bytes'] / calls / 1024:.1f} · {wal['full_page_images'] / calls:.2f}; {created}"


def run(create_database: Callable[[str], str], args: Any, progress: Any, *, database_url: str | None = None,
        light: bool = False, catch_up: bool = False, env: dict[str, str] | None = None,
        name: str = "bench_service", data_dir: Path | None = None, paced_rate: float | None = None,
        after_checkpoint: bool = False) -> dict[str, Any]:
    """The service under load: saturated, then paced at half the end-to-end rate (or `paced_rate`, else `--paced-rate`) in
    `PACED_ROUNDS` rounds (one when `light`), then (unless `light`) with many streams open, and
    the verification costs. `catch_up`: the database holds a history; wait for the service to
    have done its start-up work on it first (timed). `data_dir`: the service's data directory,
    kept from one run to the next as a restarted service keeps it (its signing key, the signer's
    and the auditor's state); else a temporary one."""
    from claims_service.migrate import migrate

    url = database_url or create_database(name)
    migrate(url)
    seconds = max(args.seconds * 2, 8.0)
    in_flight = 32
    rounds = 1 if (light or args.quick) else PACED_ROUNDS
    task = progress.add_task("service over gRPC: starting", total=1.0)
    start_up = None
    with tempfile.TemporaryDirectory(prefix="claims-bench-service-") as tmp:
        tmp = str(data_dir or tmp)
        # On a long history the start takes longer (its keys, its first checkpoint): give it time.
        server = Server(url, Path(tmp), port=50000 + random.randrange(1, 9000), env=env,
                        start_timeout=600.0 if catch_up else 60.0)
        try:
            if catch_up:
                progress.update(task, description="service over gRPC: catching up with the history")
                start_up = wait_caught_up(url, server)
            channel = grpc.insecure_channel(server.addr)
            provider_keys = set_up(channel, server.keys)
            with psycopg.connect(url, autocommit=True) as conn:
                head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()[0]
            stream = PayerStream(channel, server.keys["payer"]["api_key"], head)
            load = Load(channel, provider_keys, in_flight)
            # Only claims decided automatically (not pended, whose review comes first) may be voided or corrected.
            stream.on_notice = lambda claim_id, status: (load.decided.append((load.providers[claim_id], claim_id))
                                                         if claim_id in load.providers and status == common_pb2.CLAIM_STATUS_ADJUDICATED else None)
            stream.start()
            meter = CpuMeter(server.process.pid, postmaster_pid(url))
            autovacuum_waited = wait_for_autovacuum(url)
            relations_before = statements.reset(url) if args.statements else {}
            cpu_before = meter.snapshot()
            # Phase 1: as fast as 32 calls in flight go: the throughput.
            progress.update(task, description=f"service over gRPC: saturating, {in_flight} in flight, {seconds:.0f} s")
            load_started = time.monotonic()
            elapsed = load.run(seconds, lambda f: progress.update(task, completed=f / 2))
            submits = len(load.latencies)
            saturated = {
                "calls_per_s": submits / elapsed,
                "submit_ms": {q: percentile(load.latencies, v) * 1000 for q, v in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
                "errors": dict(load.errors),
                "kinds": dict(load.kinds),
                "autovacuum_waited_s": autovacuum_waited,
            }
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and set(load.submitted_at) - set(stream.arrived):
                time.sleep(0.2)
            drained = time.monotonic()
            adjudicated = len([c for c in load.submitted_at if c in stream.arrived])
            cpu_by_role = meter.since(cpu_before)
            postgres_by_connection = meter.postgres_by_connection(cpu_before, url)
            if args.statements:
                saturated["statements"] = statements.measured(url, adjudicated, relations_before)
            service_cpu = sum(v for k, v in cpu_by_role.items() if k in ("server", "adjudicator", "projections", "tree"))
            saturated["adjudicated_end_to_end_per_s"] = adjudicated / (drained - load_started)
            # Phase 2: paced at half that rate, in rounds, the disk probed beside each: the
            # latencies a client sees below saturation, and how much of their tail is the disk's.
            rate = paced_rate or args.paced_rate or max(10.0, saturated["adjudicated_end_to_end_per_s"] * 0.5)
            probe = DiskProbe(data_directory(url))
            paced_rounds = []
            for round_ in range(rounds):
                progress.update(task, description=f"service over gRPC: paced at {rate:.0f}/s, {seconds:.0f} s,"
                                                  f" round {round_ + 1} of {rounds}")
                paced_rounds.append(paced_round(load, stream, rate, seconds, probe,
                                                lambda f, r=round_: progress.update(task, completed=0.5 + (r + f) / rounds / 2),
                                                url, after_checkpoint=after_checkpoint))
            paced = paced_rounds[0]
            many_streams: dict[str, Any] | None = None
            if not light:
                # Phase 3: the same pace with another tenant holding many streams open.
                progress.update(task, description=f"service over gRPC: paced, {STREAMS} streams of another tenant open")
                many_streams = streams.measure(channel, server.addr, server.keys["admin"]["api_key"], load, rate, seconds,
                                               STREAMS, lambda f: None)
            stream.stop()
            call_floor: dict[str, Any] | None = None
            if not light:
                # Phase 4: the floor under the server's CPU per call, once the followers are quiet.
                progress.update(task, description="service over gRPC: the floor of a call's CPU")
                wait_for_followers(url)
                claim_id, npi = next(iter(load.providers.items()))
                call_floor = floor.measure(
                    channel, lambda: sum(cpu for role, cpu in meter.snapshot().values() if role == "server"),
                    provider_keys[npi], claim_id, max(3.0, seconds / 2))
            verification: dict[str, Any] = {}
            if not light:
                # The service's own auditor has verified these events as they arrived: VerifyLedger
                # answers from it. What verification costs: the chain walked here, and the auditor's
                # pass over the same events (its CPU per event times the saturated event rate is its
                # share of a core under that load).
                dispute = dispute_pb2_grpc.DisputeServiceStub(channel)
                audited = dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest(),
                                               metadata=auth(server.keys["dispute"]["api_key"]), timeout=600)
                verify_started = time.monotonic()
                verified = verify_ledger(url)
                verify_seconds = time.monotonic() - verify_started
                signer = ledger_pb2_grpc.LedgerServiceStub(channel).GetPublicKey(
                    ledger_pb2.GetPublicKeyRequest(), metadata=auth(server.keys["dispute"]["api_key"]), timeout=30)
                verification = {"verify_events_per_s": verified.events / verify_seconds,
                                "verify_intact": verified.intact and audited.intact,
                                "auditor": measure_auditor(url, signer.verifier_key)}
            with psycopg.connect(url, autocommit=True) as conn:
                events, size = conn.execute(
                    "SELECT count(*), pg_total_relation_size('ledger_events') FROM ledger_events").fetchone()
                lag = conn.execute(
                    "SELECT max(e.head - t.notification_id) FROM ledger_tracking t,"
                    " (SELECT max(notification_id) AS head FROM ledger_events) e"
                    " WHERE t.application_name <> '__migration__'").fetchone()[0]
            channel.close()
        finally:
            server.stop()
        progress.remove_task(task)
    result = {
        "seconds_per_phase": seconds,
        "in_flight": in_flight,
        "saturated": saturated,
        "paced": paced,
        "paced_rounds": paced_rounds,
        "many_streams": many_streams,
        "cpu_ms_per_call_saturated": service_cpu / max(submits, 1) * 1000,
        "cpu_ms_per_claim": service_cpu / max(adjudicated, 1) * 1000,
        "cpu_ms_per_claim_by_role": {role: cpu / max(adjudicated, 1) * 1000 for role, cpu in sorted(cpu_by_role.items())},
        "postgres_cpu_ms_per_claim_by_connection": {role: cpu / max(adjudicated, 1) * 1000
                                                    for role, cpu in sorted(postgres_by_connection.items())},
        "server_cpu_ms_per_call_saturated": cpu_by_role.get("server", 0.0) / max(submits, 1) * 1000,
        # The load client does the same work per claim in every run, so the service's CPU in its
        # units moves less with the machine's speed than milliseconds do; roughly (README, "Scale":
        # 1.27x between the phases of a comparison with no real history).
        "cpu_per_claim_in_client_units": service_cpu / max(cpu_by_role.get("client", 0.0), 1e-9),
        "call_floor": call_floor,
        "bytes_per_event": size / max(events, 1),
        "events": events,
        "projection_lag_after_drain": lag,
        "start_up_seconds": start_up,
        **verification,
    }
    if "auditor" in result:
        auditor = result["auditor"]
        auditor["core_share_saturated"] = (auditor["cpu_s_per_event"] * saturated["calls_per_s"] * events
                                           / max(submits + len(load.latencies), 1))
    by_role = result["cpu_ms_per_claim_by_role"]
    table = [
        ("calls/s over gRPC, saturated (32 in flight)", saturated["calls_per_s"], "≥ 500"),
        ("claims adjudicated end to end/s, saturated", saturated["adjudicated_end_to_end_per_s"], "≥ 800"),
        ("submit p50 / p95 / p99 ms, saturated", " / ".join(f"{saturated['submit_ms'][q]:.1f}" for q in ("p50", "p95", "p99")), ""),
    ]
    for number, found in enumerate(paced_rounds, 1):
        disk, stalls = found["disk"], found["submit_stalls"]
        table += [
            (f"paced at {rate:.0f}/s, run {number}: submit p50 / p99 ms · disk fsync p50 / p99 / max ms",
             f"{found['submit_ms']['p50']:.1f} / {found['submit_ms']['p99']:.1f} · "
             f"{disk['p50_ms']:.1f} / {disk['p99_ms']:.1f} / {disk['max_ms']:.0f}",
             f"p99 ≤ {disk['p99_ms'] + 15:.0f} (disk + 15)"),
            (f"  run {number}: p50 / p99 ms by call: " + ", ".join(found["by_method_ms"]) + "; the slowest 1 % by call",
             "; ".join(f"{m['p50']:.1f} / {m['p99']:.1f}" for m in found["by_method_ms"].values()) + " · "
             + ", ".join(f"{n}" for n in (found["slowest_1pct_by_method"].get(method, 0) for method in found["by_method_ms"])), ""),
            (f"  run {number}: submits over 20 ms: the disk's (a flush > 20 ms meanwhile) / ours (slowest ms)",
             f"{stalls['explained_by_the_disk']} / {stalls['unexplained']} ({stalls['unexplained_max_ms']:.0f})", "ours: 0"),
            (f"  run {number}: WAL per call: kB · full-page images; WAL segments created", wal_figures(found), ""),
            (f"  run {number}: the machine's cores, % of the run: busy · some task waiting for a core · stolen",
             cpu_figures(found.get("machine_cpu")), ""),
            (f"  run {number}: submit → payer notification p50 / p99 ms", f"{found['notify_ms']['p50']:.0f} / {found['notify_ms']['p99']:.0f}",
             "p99 < 500"),
        ]
    if many_streams is not None:
        table += [
            (f"{STREAMS:,} streams of one tenant open: other tenant's submit p50 / p99 ms (paced)",
             " / ".join(f"{many_streams['submit_ms'][q]:.1f}" for q in ("p50", "p99")), "p99 < 100"),
            ("  … meanwhile health check p50 / p99 ms (failures)",
             f"{many_streams['health_ms']['p50']:.1f} / {many_streams['health_ms']['p99']:.1f} ({many_streams['health_failures']})", ""),
        ]
    table += [
        ("CPU ms per claim, service (server + workers), saturated", f"{result['cpu_ms_per_claim']:.2f}", "≤ 1.2"),
        ("  of which server / adjudicator / projections / tree; PostgreSQL, load client",
         " / ".join(f"{by_role.get(r, 0.0):.2f}" for r in ("server", "adjudicator", "projections", "tree"))
         + f"; {by_role.get('postgres', 0.0):.2f}, {by_role.get('client', 0.0):.2f}", ""),
        ("  PostgreSQL's, by whose connections: server / adjudicator / projections / tree; its own processes",
         " / ".join(f"{result['postgres_cpu_ms_per_claim_by_connection'].get(r, 0.0):.2f}"
                    for r in ("server", "adjudicator", "projections", "tree"))
         + f"; {result['postgres_cpu_ms_per_claim_by_connection'].get('own', 0.0):.2f}", ""),
        ("  in units of the load client's own CPU per claim (the same client work in every run: a rough"
         " guide between runs on a machine whose speed moves)", f"{result['cpu_per_claim_in_client_units']:.2f}", ""),
        ("bytes stored per event (ledger_events, with indexes)", result["bytes_per_event"], ""),
    ]
    if call_floor is not None:
        table.append((
            "server CPU ms per call: health check (gRPC alone) / GetClaim not found (+ auth, thread hop, a read) /"
            " GetClaim (+ its access record written) / the mix, saturated",
            " / ".join(f"{call_floor[name]['server_cpu_ms_per_call']:.2f}" for name in ("health_check", "get_claim_not_found", "get_claim"))
            + f" / {result['server_cpu_ms_per_call_saturated']:.2f}", ""))
    if verification:
        table += [
            ("chain verification events/s (claimsctl verify, in-process)", result["verify_events_per_s"], ""),
            ("auditor events/s, and its share of a core at the saturated rate",
             f"{result['auditor']['events_per_s']:,.0f} / {result['auditor']['core_share_saturated']:.1%}", ""),
            ("auditor round, unpaced (chain, tree recomputed, checkpoint): events/s · CPU µs per event",
             f"{result['auditor']['round_events_per_s']:,.0f} · {result['auditor']['round_cpu_s_per_event'] * 1e6:.1f}", ""),
        ]
    table.append(("errors (saturated / paced)", f"{json.dumps(saturated['errors']) or '{}'} / {json.dumps(paced['errors'])}", ""))
    result["table"] = table
    return result
