"""The gRPC server: `grpc.aio` on an event loop of its own thread; wiring only, no logic.

Why aio: a server stream (a payer's subscription, a provider's claim watch) mostly waits, and on
an asyncio loop a waiting stream is a coroutine, not a thread: a tenant that opens a thousand
streams takes no capacity from unary calls or health checks. Unary handlers stay synchronous
(the ledger, the database pools and the commands block) and run on a thread pool of their own,
which streams never touch (`api/interceptors.py` decides where each call runs).

`GrpcServer` hides the loop: `start()` returns once the port is bound, `stop(grace)` lets
in-flight calls finish, `set_condition(name, ok)` moves every service's health status: SERVING
while every condition holds (the workers' process is up, the ledger passed its audits, ...),
NOT_SERVING while any does not. Health answers
for the empty service name and for each `claims.v1` service; reflection answers both `v1` and
`v1alpha` (the messages are the same on the wire; see `_reflection_v1`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

log = logging.getLogger(__name__)

GRACE_SECONDS = 5.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def claims_service_names() -> list[str]:
    from claims.v1 import admin_pb2, dispute_pb2, ledger_pb2, member_pb2, payer_pb2, provider_pb2

    return [s.full_name for module in (provider_pb2, payer_pb2, member_pb2, dispute_pb2, admin_pb2, ledger_pb2)
            for s in module.DESCRIPTOR.services_by_name.values()] + attachment_service_names()


def attachment_service_names() -> list[str]:
    from claims.v1 import attachment_pb2

    return [s.full_name for s in attachment_pb2.DESCRIPTOR.services_by_name.values()]


class GrpcServer:
    """``GrpcServer(addr, *, interceptors, servicers)``: ``start()``, ``port``, ``stop(grace)``,
    ``set_condition(name, ok)``, ``failing``; ``loop`` is the server's event loop."""

    def __init__(
        self,
        addr: str,
        *,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        servicers: Sequence[tuple[Callable[[Any, Any], None], Any]] = (),
    ) -> None:
        self.addr = addr
        self._interceptors = list(interceptors)
        self._servicers = list(servicers)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-loop", daemon=True)
        self._server: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None
        self.port = 0
        self.service_names = claims_service_names()
        self._failing: dict[str, bool] = {}  # condition -> True while it does not hold
        self._conditions_lock = threading.Lock()
        self._publishing = asyncio.Lock()  # one health publication at a time, each from the latest

    def _call(self, coroutine: Any, timeout: float | None = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self) -> None:
        self._thread.start()
        self.port = self._call(self._start())

    async def _start(self) -> int:
        server = grpc.aio.server(
            interceptors=self._interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for add, servicer in self._servicers:
            add(servicer, server)
        public = [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME, REFLECTION_V1]
        reflection.enable_server_reflection([*public, *self.service_names], server)
        _reflection_v1(server, [*public, *self.service_names])
        port = server.add_insecure_port(self.addr)
        if port == 0:
            raise OSError(f"cannot listen on {self.addr}")
        await server.start()
        self._server = server
        await self._publish_health()
        return port

    def _status(self) -> int:
        return health_pb2.HealthCheckResponse.NOT_SERVING if self.failing else health_pb2.HealthCheckResponse.SERVING

    @property
    def failing(self) -> list[str]:
        """The conditions that do not hold now (health is NOT_SERVING while any is listed)."""
        return sorted(name for name, failing in self._failing.items() if failing)

    async def _publish_health(self) -> None:
        # Each publication reads the conditions as they are when it runs, so one scheduled before a
        # later change cannot leave its older status behind.
        assert self._health is not None
        async with self._publishing:
            with self._conditions_lock:
                status = self._status()
            for name in ("", *self.service_names):
                await self._health.set(name, status)

    def set_condition(self, name: str, ok: bool) -> None:
        """Health follows every named condition: NOT_SERVING while any fails (clients and balancers
        move away). Callable from any thread, before or after ``start()``; it does not wait."""
        with self._conditions_lock:
            self._failing[name] = not ok
        if self._server is not None and self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._publish_health(), self.loop)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        if self._server is not None:
            self._call(self._stop(grace), timeout=grace + 30)
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.loop.close()

    async def _stop(self, grace: float) -> None:
        assert self._server is not None and self._health is not None
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        # Whatever the server's calls left behind on the loop (the feeds' readers): cancelled.
        current = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not current:
                task.cancel()


def _reflection_v1(server: grpc.aio.Server, service_names: list[str]) -> None:
    """Serve reflection under ``grpc.reflection.v1`` too (grpcurl and newer clients ask for it
    first). grpcio-reflection ships only v1alpha; v1 has the same messages under another package,
    so the v1alpha servicer answers both, and the v1 file descriptor, derived from the v1alpha one
    with the package renamed, goes into the pool so reflection can describe itself."""
    pool = descriptor_pool.Default()
    try:
        pool.FindServiceByName(REFLECTION_V1)
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto()
        reflection_pb2.DESCRIPTOR.CopyToProto(file)
        old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
        file.name, file.package = "grpc/reflection/v1/reflection.proto", "grpc.reflection.v1"
        for message in file.message_type:
            for field in message.field:
                if field.type_name:
                    field.type_name = field.type_name.replace(old, new)
        for method in file.service[0].method:
            method.input_type, method.output_type = method.input_type.replace(old, new), method.output_type.replace(old, new)
        pool.Add(file)
    servicer = reflection.aio.ReflectionServicer(service_names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),))


def unary_executor(workers: int = 64) -> futures.ThreadPoolExecutor:
    """The threads unary handlers run on; streams never take one."""
    return futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-unary")


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
