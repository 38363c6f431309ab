"""What an operator sees of the service as `claimsctl serve` runs it (its own process, its workers'
child, a fresh database): the metrics endpoint after a demo and a few calls of our own, one claim's
trace exported over OTLP by both processes to a collector this test runs, the JSON log lines, and
`claimsctl status`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from claims.v1 import common_pb2, payer_pb2, payer_pb2_grpc, provider_pb2, provider_pb2_grpc
from tests.conftest import _create_database, _drop_database

CLAIMSCTL = [sys.executable, "-m", "claims_service.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: every span both processes export, with the process it came from."""

    spans: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the protocol's name
        with self.lock:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    self.spans.extend((attributes.get("claims.process", "?"), span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def in_trace(self, trace_id: bytes) -> list[tuple[str, Any]]:
        with self.lock:
            return [(process, span) for process, span in self.spans if span.trace_id == trace_id]


@dataclass
class Running:
    channel: grpc.Channel
    keys: dict[str, Any]
    metrics_url: str
    env: dict[str, str]
    log_path: Path
    collector: Collector
    demo_output: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def running(pg_admin_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    name = f"claims_test_{uuid.uuid4().hex[:12]}"
    url = _create_database(pg_admin_url, name, template=template_database)
    data_dir = tmp_path_factory.mktemp("observed")
    collector = Collector()
    receiver = grpc.server(futures.ThreadPoolExecutor(4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, receiver)
    otlp_port = receiver.add_insecure_port("127.0.0.1:0")
    receiver.start()
    grpc_port, metrics_port = free_port(), free_port()
    env = dict(os.environ, CLAIMS_DATABASE_URL=url, CLAIMS_DATA_DIR=str(data_dir), CLAIMS_DEMO_KEYS="1",
               CLAIMS_GRPC_ADDR=f"127.0.0.1:{grpc_port}", CLAIMS_METRICS_ADDR=f"127.0.0.1:{metrics_port}",
               CLAIMS_FHIR_ADDR="", CLAIMS_LOG_FORMAT="json", CLAIMS_TRACE_SAMPLE_RATIO="1",
               OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}", OTEL_EXPORTER_OTLP_INSECURE="true",
               OTEL_BSP_SCHEDULE_DELAY="200")
    log_path = data_dir / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*CLAIMSCTL, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"serving gRPC" not in log_path.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        demo = subprocess.run([*CLAIMSCTL, "demo"], env=env, capture_output=True, text=True, timeout=120)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        keys = json.loads((data_dir / "demo-keys.json").read_text())
        yield Running(channel, keys, f"http://127.0.0.1:{metrics_port}/metrics", env, log_path, collector, demo.stdout,
                      process)
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        receiver.stop(0)
        _drop_database(pg_admin_url, name)


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, ()) if all(found.get(k) == w for k, w in labels.items()))


def demo_member(running: Running) -> str:
    return re.search(r"member (M-[0-9a-f]+) enrolled", running.demo_output).group(1)


def claim_request(member: str, key: str, day: str, diagnosis: str = "E119") -> provider_pb2.SubmitClaimRequest:
    return provider_pb2.SubmitClaimRequest(
        idempotency_key=key, member_id=member, payer_id="PAYER-DEMO", diagnosis_codes=[diagnosis], place_of_service="11",
        lines=[common_pb2.ServiceLine(line_number=1, procedure_code="99213", units=1, billed_cents=12_000,
                                      diagnosis_pointers=[1], date_of_service=day)])


def auth(running: Running, role: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {running.keys[role]['api_key']}"), *extra)


def test_the_metrics_endpoint_counts_what_the_service_did(running: Running) -> None:
    before = scrape(running.metrics_url)
    # The demo: five claims decided by the adjudicator, one by a review, one by a dispute; money moved.
    assert value(before, "claims_decisions_total", source="adjudicator") >= 5
    assert value(before, "claims_decisions_total", source="review") >= 1
    assert value(before, "claims_decisions_total", source="dispute") >= 1
    assert {labels["outcome"] for labels, _ in before["claims_decisions_total"]} >= {"paid", "denied", "pended"}
    assert value(before, "claims_payment_cents_total", movement="scheduled") > 0
    assert value(before, "claims_payment_cents_total", movement="issued") > 0
    assert value(before, "claims_rpc_calls_total", method="SubmitClaim", code="OK") >= 10  # five claims, each retried

    # Our own calls, counted exactly.
    provider = provider_pb2_grpc.ProviderServiceStub(running.channel)
    day = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    member = demo_member(running)
    for n in range(3):
        provider.SubmitClaim(claim_request(member, f"metrics-{n}", day), metadata=auth(running, "provider"), timeout=20)
    with pytest.raises(grpc.RpcError) as refused:
        provider.SubmitClaim(claim_request(member, "metrics-bad", day, diagnosis="Q9999X"),
                             metadata=auth(running, "provider"), timeout=20)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as missing:
        provider.GetClaim(provider_pb2.GetClaimRequest(claim_id=str(uuid.uuid4())), metadata=auth(running, "provider"),
                          timeout=20)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    deadline = time.monotonic() + 20
    while True:  # the followers catch up with our claims; the monitor reads them every second
        after = scrape(running.metrics_url)
        lags = [v for _, v in after.get("claims_follower_lag_events", ())]
        if value(after, "claims_decisions_total") >= value(before, "claims_decisions_total") + 3 and lags and max(lags) == 0:
            break
        assert time.monotonic() < deadline, "the followers did not catch up"
        time.sleep(0.3)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("claims_rpc_calls_total", service="claims.v1.ProviderService", method="SubmitClaim", code="OK") == 3
    assert delta("claims_rpc_calls_total", method="SubmitClaim", code="INVALID_ARGUMENT") == 1
    assert delta("claims_rpc_calls_total", method="GetClaim", code="NOT_FOUND") == 1
    assert delta("claims_rpc_duration_seconds_count", method="SubmitClaim") == 4
    assert delta("claims_rpc_duration_seconds_count", method="GetClaim") == 1
    assert delta("claims_decisions_total", source="adjudicator") == 3
    assert delta("claims_group_commit_batch_requests_count") == 3  # the refused one never reached the ledger
    assert delta("claims_ledger_commit_seconds_count", writer="commands") == 3
    assert delta("claims_ledger_commit_seconds_count", writer="adjudicator") >= 1
    assert value(after, "claims_ledger_commit_seconds_sum", writer="commands") > 0
    assert delta("claims_follower_events_total", follower="adjudicator") >= 3
    assert delta("claims_follower_events_total", follower="projections") >= 3

    # The followers, the head, the tree, the checkpoint, health and the processes, read at scrape time.
    head = value(after, "claims_ledger_head_position")
    followers = {labels["follower"]: v for labels, v in after["claims_follower_position"]}
    assert set(followers) >= {"adjudicator", "merkle_tree", "projection.claim_status", "projection.benefits",
                              "projection.payments", "projection.dispute_timeline"}
    assert all(position == head for position in followers.values())
    assert {labels["follower"] for labels, _ in after["claims_follower_lag_seconds"]} == set(followers)
    assert value(after, "claims_merkle_tree_leaves") > 0
    assert value(after, "claims_checkpoint_tree_size") > 0  # the demo asked for a checkpoint
    assert 0 <= value(after, "claims_checkpoint_age_seconds") < 600
    assert value(after, "claims_health_serving") == 1 and value(after, "claims_workers_up") == 1
    assert value(after, "claims_server_process_cpu_seconds_total") > 0
    assert value(after, "claims_workers_process_cpu_seconds_total") > 0
    assert value(after, "claims_db_wal_bytes_total") > 0
    assert value(after, "claims_rpc_open_streams", method="SubscribeAdjudications") == 0  # the demo's closed
    # Prometheus conventions: a counter's samples end in _total, times in seconds.
    assert all(not n.startswith("claims_") or n.endswith(("_total", "_seconds", "_bucket", "_count", "_sum", "_bytes",
                                                          "_position", "_events", "_leaves", "_size", "_up", "_serving",
                                                          "_failing", "_intact", "_streams", "_fds"))
               for n in after), sorted(after)


def test_one_claims_trace_runs_from_submit_through_adjudication_and_projections_to_the_notice(running: Running) -> None:
    provider = provider_pb2_grpc.ProviderServiceStub(running.channel)
    payer = payer_pb2_grpc.PayerServiceStub(running.channel)
    day = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    trace_id = uuid.uuid4().bytes
    traceparent = f"00-{trace_id.hex()}-{uuid.uuid4().hex[:16]}-01"  # this client's own trace, sampled
    submitted = provider.SubmitClaim(claim_request(demo_member(running), "traced", day),
                                     metadata=auth(running, "provider", ("traceparent", traceparent)), timeout=20)
    # The payer's stream sends the decision's notice.
    stream = payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(after_position=submitted.receipt.position - 1),
                                          metadata=auth(running, "payer"), timeout=30)
    for item in stream:
        if item.WhichOneof("kind") == "notice" and item.notice.claim_id == submitted.claim_id:
            break
    stream.cancel()

    deadline = time.monotonic() + 20
    while True:
        spans = running.collector.in_trace(trace_id)
        names = {span.name for _, span in spans}
        if {"adjudicator.adjudicate", "stream.notice"} <= names and sum(1 for n in names if n == "projections.apply"):
            by_name: dict[str, list[tuple[str, Any]]] = {}
            for process, span in spans:
                by_name.setdefault(span.name, []).append((process, span))
            if len(by_name.get("projections.apply", ())) >= 2:
                break
        assert time.monotonic() < deadline, f"spans of the trace so far: {sorted(names)}"
        time.sleep(0.2)
    [(server, submit)] = by_name["/claims.v1.ProviderService/SubmitClaim"]
    [(_, commit)] = by_name["ledger.group_commit"]
    [(workers, adjudicate)] = by_name["adjudicator.adjudicate"]
    [(_, notice)] = by_name["stream.notice"]
    assert (server, workers) == ("server", "workers")
    assert submit.parent_span_id == bytes.fromhex(traceparent.split("-")[2])  # the client's span is its parent
    assert commit.parent_span_id == submit.span_id
    assert adjudicate.parent_span_id == submit.span_id  # carried through the event's metadata
    assert notice.parent_span_id == adjudicate.span_id  # the decision's event carried the adjudication's span
    projected = {span.parent_span_id for _, span in by_name["projections.apply"]}
    assert {submit.span_id, adjudicate.span_id} <= projected  # the submission and the decision, projected
    attributes = {a.key: a.value.string_value for a in adjudicate.attributes}
    assert attributes["claims.outcome"] in {"PAID", "PARTIALLY_PAID", "DENIED", "PENDED"}


def test_json_log_lines_parse_and_hold_no_key_and_no_member_id(running: Running) -> None:
    lines = [line for line in running.log_path.read_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        if not line.startswith("{"):
            assert "claims" not in line, line  # only foreign libraries' stray lines (gRPC's C core) may be plain
            continue
        entries.append(json.loads(line))
    calls = [e for e in entries if e.get("rpc")]
    assert calls and {e["process"] for e in entries} == {"server", "workers"}
    for entry in calls:
        assert {"time", "level", "logger", "message", "rpc", "code", "ms", "role", "trace_id"} <= entry.keys(), entry
    submits = [e for e in calls if e["rpc"].endswith("/SubmitClaim")]
    assert submits and all(e["role"] == "provider" and e["party"] == running.keys["provider"]["party_id"] for e in submits)
    text = running.log_path.read_text()
    for key in running.keys.values():
        secret = key["api_key"]
        assert secret not in text and secret.split("_")[-1] not in text
        assert key["key_id"] not in text
    member = demo_member(running)
    assert member not in text and "M-DEMO" not in text


def test_claimsctl_status_prints_the_picture_from_the_metrics(running: Running) -> None:
    shown = subprocess.run([*CLAIMSCTL, "status", "--json"], env=running.env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    picture = json.loads(shown.stdout)
    assert picture["source"] == running.metrics_url and picture["health"] == "SERVING"
    assert picture["processes"]["workers"]["up"] and picture["processes"]["workers"]["restarts"] == 0
    assert {f["name"] for f in picture["followers"]} >= {"adjudicator", "merkle_tree", "projection.claim_status"}
    assert picture["checkpoint"]["tree_size"] > 0
    printed = subprocess.run([*CLAIMSCTL, "status"], env=running.env, capture_output=True, text=True, timeout=60)
    assert "health: SERVING" in printed.stdout and "adjudicator" in printed.stdout
    # `claimsctl verify` keeps its outcome, which status shows, from the database too.
    subprocess.run([*CLAIMSCTL, "verify"], env=running.env, check=True, capture_output=True, timeout=120)
    database = subprocess.run([*CLAIMSCTL, "status", "--database", "--json"], env=running.env, capture_output=True,
                              text=True, timeout=60)
    verified = json.loads(database.stdout)["verification"]
    assert verified["intact"] and verified["verified_by"] == "claimsctl verify" and verified["events"] > 0
