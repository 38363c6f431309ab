"""What observability costs: the service's saturated load (bench/load.py's mix, 32 calls in flight)
with metrics off, with metrics on (the default), and with metrics and tracing at a 1 % sample,
exported over OTLP/gRPC to a collector in this process that only counts what it receives.

Each configuration runs on a fresh database in its own `claimsctl serve`; the rounds alternate
(off, metrics, tracing, off, ...) so that a machine slowing down or speeding up during the run
weighs on every configuration alike, and each configuration's figure is the median of its rounds.
The cost is 1 - (claims adjudicated end to end/s with it) / (the same with metrics off), and, steadier
on a machine others share, the CPU per call of the server and its workers against metrics off.
Targets: metrics under 3 %, tracing at a 1 % sample under 5 %.
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import psycopg

from bench.load import CpuMeter, Load, PayerStream, Server, alternating_rounds, cpu_seconds, postmaster_pid, set_up
from claims.v1 import common_pb2

CONFIGS: dict[str, dict[str, str]] = {
    "metrics off": {"CLAIMS_METRICS_ADDR": ""},
    "metrics on": {},
    "metrics + tracing 1 %": {"CLAIMS_TRACE_SAMPLE_RATIO": "0.01"},
}
IN_FLIGHT = 32


class SpanSink:
    """An OTLP/gRPC trace receiver that counts the spans it is sent and keeps nothing."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        self.spans = 0
        lock = threading.Lock()
        sink = self

        class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the protocol's name
                with lock:
                    sink.spans += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


def saturate(create_database: Callable[[str], str], name: str, env: dict[str, str], seconds: float) -> dict[str, Any]:
    """One configuration once: claims adjudicated end to end per second at saturation."""
    from claims_service.migrate import migrate

    url = create_database(f"bench_observability_{name}")
    migrate(url)
    with tempfile.TemporaryDirectory(prefix="claims-bench-observability-") as tmp:
        server = Server(url, Path(tmp), port=50000 + random.randrange(1, 9000), env=env)
        try:
            channel = grpc.insecure_channel(server.addr)
            provider_keys = set_up(channel, server.keys)
            with psycopg.connect(url, autocommit=True) as conn:
                head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM ledger_events").fetchone()[0]
            stream = PayerStream(channel, server.keys["payer"]["api_key"], head)
            load = Load(channel, provider_keys, IN_FLIGHT)
            stream.on_notice = lambda claim_id, status: (load.decided.append((load.providers[claim_id], claim_id))
                                                         if claim_id in load.providers and status == common_pb2.CLAIM_STATUS_ADJUDICATED else None)
            stream.start()
            meter = CpuMeter(server.process.pid, postmaster_pid(url))
            roles_before = meter.snapshot()
            cpu_before = cpu_seconds(server.process.pid)
            started = time.monotonic()
            load.run(seconds, lambda _: None)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and set(load.submitted_at) - set(stream.arrived):
                time.sleep(0.1)
            drained = time.monotonic()
            cpu = cpu_seconds(server.process.pid) - cpu_before
            by_role = meter.since(roles_before)
            adjudicated = len([c for c in load.submitted_at if c in stream.arrived])
            stream.stop()
            channel.close()
        finally:
            server.stop()
    return {"claims_per_s": adjudicated / (drained - started), "calls": len(load.latencies),
            "cpu_ms_per_call": cpu / max(len(load.latencies), 1) * 1000, "errors": dict(load.errors),
            "cpu_ms_per_call_by_process": {role: seconds / max(len(load.latencies), 1) * 1000
                                           for role, seconds in sorted(by_role.items())}}


def isolated_costs(sink_port: int, claims: int = 20_000) -> dict[str, float]:
    """CPU µs per claim of what metrics and tracing add, in this process alone (run in a child of
    its own: it turns metrics on). The end-to-end figures move by more than the targets from round to
    round; these are what the service's code adds, counted update by update.

    Metrics: the fifteen multiprocess-mode updates one claim makes when each call is a batch of its
    own (no amortizing): its call's count and duration, its group commit's three histograms and
    commit timings, the adjudicator's commit timings, decision, money and batch, the projections'
    batch. Tracing at ``ratio``: the gate on every call, plus, for the traced share, a claim's six
    spans (the call, the group commit, the adjudication, two projection batches, the notice) with
    their trace context, exported over OTLP/gRPC by the batch processor (its thread's CPU counted:
    ``time.process_time`` is the whole process's)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from claims_service.observability import metrics, tracing

    with tempfile.TemporaryDirectory(prefix="claims-bench-metrics-") as directory:
        recorded = metrics.configure(Path(directory), clean=True)
        service, method = "claims.v1.ProviderService", "SubmitClaim"
        started = time.process_time()
        for _ in range(claims):
            recorded.rpc_calls.labels(service, method, "OK").inc()
            recorded.rpc_duration.labels(service, method).observe(0.004)
            recorded.group_commit_queue.observe(0.001)
            recorded.group_commit_requests.observe(1)
            recorded.group_commit_events.observe(1)
            for writer in ("server", "adjudicator"):
                recorded.commit_seconds.labels(writer).observe(0.003)
            recorded.decisions.labels("paid", "adjudicator").inc()
            recorded.payment_cents.labels("scheduled").inc(12_345)
            for follower in ("adjudicator", "projections"):
                recorded.follower_batch.labels(follower).observe(0.01)
                recorded.follower_events.labels(follower).inc(3)
        metrics_us = (time.process_time() - started) / claims * 1e6
        metrics.disable()

    metadata = (("authorization", "Bearer k1.abcdef.0123456789"), ("user-agent", "grpc-python/1.66"))
    started = time.process_time()
    for _ in range(claims):
        tracing.traced_call(metadata, 0.01)
    gate_us = (time.process_time() - started) / claims * 1e6

    import os

    os.environ["OTEL_EXPORTER_OTLP_INSECURE"] = "true"
    provider = tracing.new_provider(process="bench")
    traced = claims // 10
    # A queue for every span: the service's default (2,048) drops spans made faster than exported.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sink_port}"),
                                                   max_queue_size=traced * 6))
    tracing.install(provider, 1.0)
    tracer = provider.get_tracer("bench")
    started = time.process_time()
    for _ in range(traced):
        with tracer.start_as_current_span(f"/{service}/{method}", attributes={"rpc.system": "grpc"}):
            with tracing.span("ledger.group_commit") as commit:
                commit.set_attributes({"claims.batch.requests": 1, "claims.events": 1})
            context = tracing.current_traceparent()
        adjudication = tracing.start_span("adjudicator.adjudicate", context, attributes={"claims.outcome": "PAID"})
        own = tracing.traceparent_of(adjudication)
        tracing.metadata_json(own)
        adjudication.end()
        for parent in (context, own):
            tracing.start_span("projections.apply", parent, attributes={"claims.position": 1}).end()
        tracing.start_span("stream.notice", own, attributes={"claims.feed": "adjudications"}).end()
    provider.force_flush()
    traced_claim_us = (time.process_time() - started) / traced * 1e6
    tracing.shutdown()
    return {"metrics_us_per_claim": metrics_us, "gate_us_per_call": gate_us, "traced_claim_us": traced_claim_us,
            "tracing_1pct_us_per_claim": gate_us + 0.01 * traced_claim_us}


def run(create_database: Callable[[str], str], args: Any, progress: Any) -> dict[str, Any]:
    rounds = 1 if args.quick else 4
    seconds = max(args.seconds, 4.0)
    sink = SpanSink()
    tracing_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}", "OTEL_EXPORTER_OTLP_INSECURE": "true"}
    task = None
    try:
        runs = alternating_rounds(progress, "observability cost", {name: name for name in CONFIGS}, rounds,
                                  lambda name, index, round_: saturate(
                                      create_database, f"{index}_{round_}",
                                      dict(CONFIGS[name], **(tracing_env if "tracing" in name else {})), seconds))
        task = progress.add_task("observability cost: in process, update by update", total=None)
        with futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            isolated = child.submit(isolated_costs, sink.port, 2_000 if args.quick else 20_000).result()
    finally:
        sink.stop()
        if task is not None:
            progress.remove_task(task)
    medians = {name: statistics.median(r["claims_per_s"] for r in found) for name, found in runs.items()}
    cpu = {name: statistics.median(r["cpu_ms_per_call"] for r in found) for name, found in runs.items()}
    roles = sorted({role for found in runs.values() for r in found for role in r["cpu_ms_per_call_by_process"]})
    by_role = {name: {role: statistics.median(r["cpu_ms_per_call_by_process"].get(role, 0.0) for r in found)
                      for role in roles} for name, found in runs.items()}
    base = medians["metrics off"]
    cost = {name: 1 - rate / base for name, rate in medians.items() if name != "metrics off"}
    result = {
        "rounds": rounds, "seconds_per_run": seconds, "runs": runs, "claims_per_s": medians, "cpu_ms_per_call": cpu,
        "cost": cost, "spans_exported": sink.spans, "cpu_ms_per_call_by_process": by_role, "isolated": isolated,
    }
    result["table"] = [
        ("claims end to end/s, saturated: metrics off / on / on + tracing 1 %",
         " / ".join(f"{medians[name]:,.0f}" for name in CONFIGS), ""),
        ("  cost of metrics (end-to-end claims/s)", f"{cost['metrics on'] * 100:+.1f} %", "< 3 %"),
        ("  cost of metrics + tracing at 1 %", f"{cost['metrics + tracing 1 %'] * 100:+.1f} %", "< 5 %"),
        ("  cost of tracing at 1 % alone (over metrics on)",
         f"{(1 - medians['metrics + tracing 1 %'] / medians['metrics on']) * 100:+.1f} %", "< 5 %"),
        ("  CPU ms per call (server + workers): off / on / on + tracing",
         " / ".join(f"{cpu[name]:.2f}" for name in CONFIGS), ""),
        ("  cost in CPU per call: metrics / metrics + tracing 1 %",
         f"{(cpu['metrics on'] / cpu['metrics off'] - 1) * 100:+.1f} % / "
         f"{(cpu['metrics + tracing 1 %'] / cpu['metrics off'] - 1) * 100:+.1f} %", "< 3 % / < 5 %"),
    ]
    per_claim_us = cpu["metrics off"] * 1000  # the service's CPU per call with metrics off (a call is a claim here, about)
    result["table"] += [
        ("  in process, CPU µs per claim: metrics / tracing at 1 % (gate per call + 1 % of a traced claim's "
         f"{isolated['traced_claim_us']:.0f})",
         f"{isolated['metrics_us_per_claim']:.1f} / {isolated['tracing_1pct_us_per_claim']:.1f}", ""),
        ("    the same as a share of the service's CPU per call",
         f"{isolated['metrics_us_per_claim'] / per_claim_us * 100:.1f} % / "
         f"{isolated['tracing_1pct_us_per_claim'] / per_claim_us * 100:.1f} %", "< 3 % / < 5 %"),
    ]
    result["table"] += [(f"    {role}: off / on / on + tracing", " / ".join(f"{by_role[name][role]:.2f}" for name in CONFIGS), "")
                        for role in roles if role != "client"]
    return result
