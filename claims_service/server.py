"""Build the gRPC server: wiring only, no logic.

`create_server` registers the health and reflection services and every servicer on one
`grpc.Server`; `wait_for_signal` blocks until SIGINT/SIGTERM, after which the caller shuts down
gracefully (in-flight calls get a grace period to finish).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

GRACE_SECONDS = 5.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def create_server(
    addr: str,
    *,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    servicers: Sequence[tuple[Callable[[Any, grpc.Server], None], Any]] = (),
    max_workers: int = 64,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=list(interceptors),
        # Streams (payer subscriptions, claim watches) hold a worker each; bound them so that
        # unary calls always find a thread.
        maximum_concurrent_rpcs=max_workers * 4,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_names = [
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    for add, servicer in servicers:
        add(servicer, server)
    from claims.v1 import admin_pb2, dispute_pb2, ledger_pb2, payer_pb2, provider_pb2

    for module in (provider_pb2, payer_pb2, dispute_pb2, admin_pb2, ledger_pb2):
        service_names += [s.full_name for s in module.DESCRIPTOR.services_by_name.values()]
    reflection.enable_server_reflection(service_names, server)
    port = server.add_insecure_port(addr)
    if port == 0:
        raise OSError(f"cannot listen on {addr}")
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
