"""What a client outside this codebase needs, over a real channel: reflection under v1 and
v1alpha (grpcurl asks for v1 first), health per service that follows the workers' process, and
the google.rpc protos that decode error details, shipped beside ours."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import google.rpc
import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"claims.v1.ProviderService", "claims.v1.PayerService", "claims.v1.DisputeService",
            "claims.v1.AdminService", "claims.v1.LedgerService"}


def reflect(channel: grpc.Channel, version: str, request: reflection_pb2.ServerReflectionRequest):
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    [response] = list(call(iter([request]), timeout=10))
    return response


def test_reflection_answers_under_v1_and_v1alpha(parties):
    for version in ("v1", "v1alpha"):
        listed = reflect(parties.channel, version, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {s.name for s in listed.list_services_response.service}
        assert SERVICES | {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                           "grpc.reflection.v1alpha.ServerReflection"} <= names, version
        described = reflect(parties.channel, version, reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="claims.v1.ProviderService"))
        files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
                 for raw in described.file_descriptor_response.file_descriptor_proto]
        assert "claims/v1/provider.proto" in {f.name for f in files}
    # Reflection describes itself under v1 too (a client resolving the service it talks to).
    itself = reflect(parties.channel, "v1", reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.reflection.v1.ServerReflection"))
    [file] = [descriptor_pb2.FileDescriptorProto.FromString(raw)
              for raw in itself.file_descriptor_response.file_descriptor_proto]
    assert file.package == "grpc.reflection.v1"


def health_of(channel: grpc.Channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def wait_for_health(channel: grpc.Channel, status: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(health_of(channel, s) == status for s in ("", *SERVICES)):
            return
        time.sleep(0.1)
    raise AssertionError(f"health never became {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")


def test_health_per_service_follows_the_workers_process(parties):
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    wait_for_health(parties.channel, serving)
    workers = parties.service.workers
    killed = workers.pid_of("adjudicator")
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    wait_for_health(parties.channel, not_serving)
    # The supervisor starts the workers again, and health comes back with them.
    wait_for_health(parties.channel, serving)
    assert workers.pid_of("adjudicator") != killed and workers.restarts == 1
    # An unknown service name is NOT_FOUND, as the health protocol says.
    try:
        health_of(parties.channel, "claims.v1.NoSuchService")
        raise AssertionError("an unknown service had a health status")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND


def test_the_google_rpc_protos_clients_need_are_shipped_as_the_server_uses_them():
    """protos/google/rpc holds the very files whose messages the server puts in error details
    (googleapis-common-protos, pinned), so a Node or Go client generates the same types."""
    installed = Path(google.rpc.__path__[0])
    for name in ("status.proto", "error_details.proto", "code.proto"):
        shipped = ROOT / "protos" / "google" / "rpc" / name
        assert shipped.read_bytes() == (installed / name).read_bytes(), name


def test_health_turns_not_serving_while_the_followers_fall_behind_and_serving_once_they_catch_up(parties):
    """The workers' process is alive but its followers do not move (stopped with SIGSTOP): once the
    ledger holds an event they have not processed for longer than the configured lag, health is
    NOT_SERVING; when they go on and catch up, SERVING again."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    service = parties.service
    assert service.progress is not None
    service.progress.max_lag_seconds = 2.0  # CLAIMS_MAX_LAG_SECONDS, short for the test
    wait_for_health(parties.channel, serving)
    frozen = service.workers.pid_of("adjudicator")
    os.kill(frozen, signal.SIGSTOP)
    try:
        service.commands.register_provider(actor="admin:test", npi="1234567802", name="Hillside", taxonomy="207Q00000X")
        wait_for_health(parties.channel, not_serving)
        assert "followers" in service.server.failing and "workers" not in service.server.failing
        behind = {f.name: f for f in service.progress.snapshot.followers}
        assert behind["adjudicator"].lag_events >= 1 and behind["adjudicator"].lag_seconds > 2.0
    finally:
        os.kill(frozen, signal.SIGCONT)
    wait_for_health(parties.channel, serving)
    assert service.workers.pid_of("adjudicator") == frozen and service.workers.restarts == 0
