"""Many open streams from one tenant while another tenant works (part of the service benchmark).

One provider holds `count` WatchClaims streams open from a separate client process (grpc.aio, so
the holder is cheap); meanwhile the service load's other providers submit at the paced rate and
a health probe checks every 20 ms. Reported: the open streams, the other tenant's submit
latencies, the health check's. Run alone, this module is that holder:
`python -m bench.streams ADDR COUNT` with the provider's key in BENCH_STREAM_KEY; it prints
"ready" once every stream has caught up, and on SIGTERM (or stdin closing) the messages received.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from claims.v1 import admin_pb2, admin_pb2_grpc, common_pb2, provider_pb2, provider_pb2_grpc
from claims_service.domain.formats import is_npi

# A provider of its own, outside the load's: the tenant that holds the streams.
STREAM_NPI = next(f"123456790{d}" for d in range(10) if is_npi(f"123456790{d}"))


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def stream_tenant_key(channel: grpc.Channel, admin_key: str) -> str:
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    meta = (("authorization", f"Bearer {admin_key}"),)
    admin.RegisterProvider(admin_pb2.RegisterProviderRequest(npi=STREAM_NPI, name="Stream Clinic", taxonomy="207Q00000X"),
                           metadata=meta)
    return admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(role=common_pb2.ROLE_PROVIDER, party_id=STREAM_NPI,
                                                            label="bench streams"), metadata=meta).api_key


class HealthProbe(threading.Thread):
    """Checks the server's health every `interval` seconds; keeps each answer's latency."""

    def __init__(self, channel: grpc.Channel, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.stub = health_pb2_grpc.HealthStub(channel)
        self.interval = interval
        self.latencies: list[float] = []
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            started = time.monotonic()
            try:
                answer = self.stub.Check(health_pb2.HealthCheckRequest(service="claims.v1.ProviderService"), timeout=5)
                ok = answer.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                ok = False
            self.latencies.append(time.monotonic() - started)
            self.failures += not ok

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def measure(channel: grpc.Channel, addr: str, admin_key: str, load: Any, rate: float, seconds: float,
            count: int, on_progress: Callable[[float], None]) -> dict[str, Any]:
    """The paced load again, with `count` streams of another tenant open and a health probe."""
    key = stream_tenant_key(channel, admin_key)
    holder = subprocess.Popen([sys.executable, "-m", "bench.streams", addr, str(count)],
                              env=dict(os.environ, BENCH_STREAM_KEY=key), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        ready = holder.stdout.readline().strip()
        if ready != "ready":
            raise RuntimeError(f"the stream holder did not get its {count} streams going: {ready!r}")
        probe = HealthProbe(channel)
        probe.start()
        load.reset()
        elapsed = load.run(seconds, on_progress, rate=rate)
        probe.stop()
    finally:
        holder.send_signal(signal.SIGTERM)
        out, _ = holder.communicate(timeout=30)
    received = int(out.split()[-1]) if out.split() else 0
    return {
        "open_streams": count,
        "rate": rate,
        "calls_per_s": len(load.latencies) / elapsed,
        "submit_ms": {q: percentile(load.latencies, v) * 1000 for q, v in (("p50", 0.5), ("p99", 0.99))},
        "health_ms": {q: percentile(probe.latencies, v) * 1000 for q, v in (("p50", 0.5), ("p99", 0.99))},
        "health_failures": probe.failures,
        "errors": dict(load.errors),
        "stream_messages_received": received,
    }


async def hold(addr: str, key: str, count: int) -> None:
    """Open `count` streams, say "ready" once each has caught up, read until told to stop."""
    received = 0
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = provider_pb2_grpc.ProviderServiceStub(channel)
        calls = [stub.WatchClaims(provider_pb2.WatchClaimsRequest(), metadata=(("authorization", f"Bearer {key}"),))
                 for _ in range(count)]
        caught_up = asyncio.Event()
        pending = [count]

        async def read(call: Any) -> None:
            nonlocal received
            first = True
            try:
                async for _item in call:
                    received += 1
                    if first:
                        first = False
                        pending[0] -= 1
                        if not pending[0]:
                            caught_up.set()
            except grpc.aio.AioRpcError:
                pass

        readers = [asyncio.create_task(read(call)) for call in calls]
        await asyncio.wait_for(caught_up.wait(), 120)
        print("ready", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
        await stop.wait()
        for call in calls:
            call.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    print("received", received, flush=True)


if __name__ == "__main__":
    asyncio.run(hold(sys.argv[1], os.environ["BENCH_STREAM_KEY"], int(sys.argv[2])))
