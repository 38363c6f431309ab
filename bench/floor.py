"""What a call costs the server before any of our work: the floor under its CPU per call.

Three calls, each as fast as 32 in flight go, with the server process's CPU measured over them:
- a health check: the gRPC framework alone (`grpc.aio`'s call handling, served on its event loop);
- a `GetClaim` of a claim that does not exist: what every unary call adds to that (the
  interceptor's authentication, logging and metrics, the hop to the unary thread pool and back),
  one indexed read of the read model and a NOT_FOUND status;
- a `GetClaim` of a claim that exists: the same read, and the access log's record of it (a ledger
  event through the group commit: README "The access log").
A `SubmitClaim`'s CPU beyond the second is its write path (validation, the aggregate, sealing, the
group commit)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from claims.v1 import provider_pb2, provider_pb2_grpc

IN_FLIGHT = 32


def _saturate(call: Callable[[], grpc.Future], seconds: float) -> tuple[int, int]:
    """Keep IN_FLIGHT calls going for `seconds`; (answered, failed)."""
    slots = threading.Semaphore(IN_FLIGHT)
    counts = [0, 0]
    lock = threading.Lock()

    def done(future: grpc.Future) -> None:
        with lock:
            counts[0 if future.exception() is None else 1] += 1
        slots.release()

    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        slots.acquire()
        call().add_done_callback(done)
    for _ in range(IN_FLIGHT):
        slots.acquire()
    return counts[0], counts[1]


def measure(channel: grpc.Channel, server_cpu: Callable[[], float], provider_key: str, claim_id: str,
            seconds: float) -> dict[str, Any]:
    """Server CPU ms per call of each of the three calls (see the module docstring)."""
    missing = str(uuid.uuid4())
    health = health_pb2_grpc.HealthStub(channel)
    provider = provider_pb2_grpc.ProviderServiceStub(channel)
    metadata = (("authorization", f"Bearer {provider_key}"),)
    calls = {
        "health_check": lambda: health.Check.future(health_pb2.HealthCheckRequest(), timeout=30),
        "get_claim_not_found": lambda: provider.GetClaim.future(provider_pb2.GetClaimRequest(claim_id=missing),
                                                                metadata=metadata, timeout=30),
        "get_claim": lambda: provider.GetClaim.future(provider_pb2.GetClaimRequest(claim_id=claim_id),
                                                      metadata=metadata, timeout=30),
    }
    found: dict[str, Any] = {}
    for name, call in calls.items():
        before, started = server_cpu(), time.monotonic()
        answered, failed = _saturate(call, seconds)
        elapsed, cpu = time.monotonic() - started, server_cpu() - before
        # A NOT_FOUND is the answer expected of the missing claim, not a failure.
        found[name] = {"calls_per_s": (answered + failed) / elapsed,
                       "server_cpu_ms_per_call": cpu / max(answered + failed, 1) * 1000, "failed": failed}
    return found
