"""The access log's cost: reads of members' data with their records written to the ledger (as the
service runs) and without (the recorder swapped for one that records nothing), alternating.

    .venv/bin/python -m bench.access_log [--seconds 5] [--threads 8] [--rounds 2] [--claims 400]

One process: an embedded PostgreSQL, the service as ``build_service`` wires it (gRPC server, its
workers process), and the load from threads over a real channel: ``GetClaim`` of a random claim
(one member, one access event per call) and ``ListClaims`` pages of 50 claims of 50 members (50
access events per call, in one write). Client and server share this process's interpreter, so the
absolute rates are below a separate client's; the difference between the two modes is the access
log's. Reported per mode and call: calls/s, p50 and p99 latency, access events written per second.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import psycopg

from claims.v1 import common_pb2, provider_pb2, provider_pb2_grpc
from claims_service.bootstrap import build_service
from claims_service.config import Config
from claims_service.database import embedded_server, server_url
from claims_service.migrate import migrate
from tests import world


class NoAccessLog:
    """Records nothing: the read path as it was before the access log."""

    recorded = 0

    def record(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def arecord(self, *args: Any, **kwargs: Any) -> None:
        return None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def head(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()[0]


def phase(stub: Any, meta: Any, call: str, claim_ids: list[str], threads: int, seconds: float,
          url: str) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def work(seed: int) -> None:
        rng = random.Random(seed)
        mine = []
        while time.monotonic() < stop:
            started = time.perf_counter()
            if call == "GetClaim":
                stub.GetClaim(provider_pb2.GetClaimRequest(claim_id=rng.choice(claim_ids)), metadata=meta, timeout=30)
            else:
                stub.ListClaims(provider_pb2.ListClaimsRequest(page_size=50), metadata=meta, timeout=30)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    before = head(url)
    began = time.monotonic()
    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - began
    return {"calls_per_s": len(latencies) / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "events_per_s": (head(url) - before) / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.access_log")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--claims", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="claims-bench-access-") as tmp, \
            embedded_server(Path(tmp), delete_on_exit=True) as server:
        admin = server_url(server, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_access")
        url = server_url(server, "bench_access")
        migrate(url)
        config = Config(database_url=url, data_dir=Path(tmp) / "data", grpc_addr="127.0.0.1:0", fhir_addr="",
                        metrics_addr="")
        service = build_service(config, url)
        service.start()
        try:
            results = run(service, url, args)
        finally:
            service.stop(grace=1.0)
    print(json.dumps(results, indent=2))


def run(service: Any, url: str, args: argparse.Namespace) -> dict[str, Any]:
    commands = service.commands
    world.set_up(commands, today=date(2026, 11, 2))
    members = [f"BM{n}" for n in range(args.claims)]
    for member in members:
        commands.enroll_member(actor=world.ADMIN, member_id=member, payer_id=world.PAYER, plan_id=world.PLAN,
                               effective_date=date(2026, 1, 1), terms=world.TERMS)
    key = commands.create_api_key(actor=world.ADMIN, role="provider", party_id=world.NPI, label="bench")[0]
    meta = (("authorization", f"Bearer {key}"),)
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    stub = provider_pb2_grpc.ProviderServiceStub(channel)
    claim_ids = []
    for n, member in enumerate(members):
        line = common_pb2.ServiceLine(line_number=1, procedure_code="99213", units=1, billed_cents=12_000,
                                      diagnosis_pointers=[1], date_of_service="2026-10-15")
        claim_ids.append(stub.SubmitClaim(provider_pb2.SubmitClaimRequest(
            idempotency_key=f"bench-{n}", member_id=member, payer_id=world.PAYER, diagnosis_codes=["E119"],
            place_of_service="11", lines=[line]), metadata=meta, timeout=30).claim_id)
    last = stub.GetClaim(provider_pb2.GetClaimRequest(claim_id=claim_ids[-1], min_position=head(url)), metadata=meta,
                         timeout=60)
    assert last.claim.claim_id == claim_ids[-1]
    logging_on = service.reads.access
    results: dict[str, Any] = {"threads": args.threads, "seconds": args.seconds, "rounds": []}
    for round_ in range(args.rounds):
        for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
            service.reads.access = logging_on if mode == "on" else NoAccessLog()
            for call in ("GetClaim", "ListClaims"):
                figures = phase(stub, meta, call, claim_ids, args.threads, args.seconds, url)
                results["rounds"].append({"round": round_, "access_log": mode, "call": call, **figures})
                print(round_, mode, call, {k: round(v, 1) for k, v in figures.items()}, flush=True)
    service.reads.access = logging_on
    summary = {}
    for call in ("GetClaim", "ListClaims"):
        for mode in ("on", "off"):
            rows = [r for r in results["rounds"] if r["call"] == call and r["access_log"] == mode]
            summary[f"{call}/{mode}"] = {k: round(statistics.mean(r[k] for r in rows), 2)
                                         for k in ("calls_per_s", "p50_ms", "p99_ms", "events_per_s")}
    results["summary"] = summary
    channel.close()
    return results


if __name__ == "__main__":
    main()
