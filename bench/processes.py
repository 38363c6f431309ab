"""Every core (#18, point 4): the service's saturated load (bench/load.py's mix, 32 calls in
flight) with one gRPC server process and one adjudicator (the default), and with two of each
(``CLAIMS_SERVER_PROCESSES`` = ``CLAIMS_ADJUDICATOR_PARTITIONS`` = 2).

Each configuration runs on a fresh database in its own `claimsctl serve`; the load goes over
several channels, each with a connection of its own, so that the kernel spreads them over the
server processes (SO_REUSEPORT); rounds alternate, and each figure is the median of its rounds.
Reported per configuration: claims adjudicated end to end per second, and the CPU per claim of
every process of the service (servers and workers, from /proc) — on a 2-core machine shared with
the load client and PostgreSQL, what more processes buy is less contention for one interpreter
lock, not more cores.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg

from bench.load import Load, PayerStream, Server, alternating_rounds, cpu_seconds, set_up
from claims.v1 import common_pb2

CONFIGS = {1: "1 server process, 1 adjudicator", 2: "2 server processes, 2 adjudicator partitions"}
IN_FLIGHT = 32
CHANNELS = 4


def channels_to(addr: str, count: int = CHANNELS) -> list[grpc.Channel]:
    return [grpc.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(count)]


def saturate(create_database: Callable[[str], str], name: str, processes: int, seconds: float) -> dict[str, Any]:
    from claims_service.migrate import migrate

    url = create_database(f"bench_processes_{name}")
    migrate(url)
    env = {"CLAIMS_SERVER_PROCESSES": str(processes), "CLAIMS_ADJUDICATOR_PARTITIONS": str(processes)}
    with tempfile.TemporaryDirectory(prefix="claims-bench-processes-") as tmp:
        server = Server(url, Path(tmp), port=50000 + random.randrange(1, 9000), env=env)
        try:
            channels = channels_to(server.addr)
            provider_keys = set_up(channels[0], server.keys)
            with psycopg.connect(url, autocommit=True) as conn:
                head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()[0]
            stream = PayerStream(channels[0], server.keys["payer"]["api_key"], head)
            load = Load(channels, provider_keys, IN_FLIGHT)
            stream.on_notice = lambda claim_id, status: (load.decided.append((load.providers[claim_id], claim_id))
                                                         if claim_id in load.providers and status == common_pb2.CLAIM_STATUS_ADJUDICATED else None)
            stream.start()
            cpu_before = cpu_seconds(server.process.pid)
            started = time.monotonic()
            load.run(seconds, lambda _: None)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and set(load.submitted_at) - set(stream.arrived):
                time.sleep(0.1)
            drained = time.monotonic()
            cpu = cpu_seconds(server.process.pid) - cpu_before
            adjudicated = len([c for c in load.submitted_at if c in stream.arrived])
            stream.stop()
            for channel in channels:
                channel.close()
        finally:
            server.stop()
    return {"claims_per_s": adjudicated / (drained - started), "calls": len(load.latencies),
            "calls_per_s": len(load.latencies) / seconds, "cpu_ms_per_claim": cpu / max(adjudicated, 1) * 1000,
            "errors": dict(load.errors)}


def run(create_database: Callable[[str], str], args: Any, progress: Any) -> dict[str, Any]:
    rounds = 1 if args.quick else 2
    seconds = max(args.seconds, 4.0)
    runs = alternating_rounds(progress, "processes", CONFIGS, rounds, lambda processes, _index, round_: saturate(
        create_database, f"{processes}_{round_}", processes, seconds))
    claims = {n: statistics.median(r["claims_per_s"] for r in found) for n, found in runs.items()}
    cpu = {n: statistics.median(r["cpu_ms_per_claim"] for r in found) for n, found in runs.items()}
    result = {"rounds": rounds, "seconds_per_run": seconds, "runs": {str(n): r for n, r in runs.items()},
              "claims_per_s": {str(n): v for n, v in claims.items()}, "cpu_ms_per_claim": {str(n): v for n, v in cpu.items()}}
    result["table"] = [
        (f"processes: {label}: claims end to end/s · CPU ms per claim", f"{claims[n]:,.0f} · {cpu[n]:.2f}",
         "≥ 800 · ≤ 1.2" if n == 1 else "")
        for n, label in CONFIGS.items()
    ]
    return result
