"""The one place where calls are authenticated, admitted, errors become status codes, and calls
are logged; and where each call runs.

Servicers stay thin: they convert, call, convert, and raise domain errors; this interceptor maps
every `ClaimsError` to its status (INVALID_ARGUMENT carries `google.rpc.BadRequest` field
violations), database outages to UNAVAILABLE, and anything unexpected to INTERNAL with a generic
message (details go to the log, never to the client). Undecodable request bytes are turned into
INVALID_ARGUMENT here too, instead of the INTERNAL that grpcio would send.

Where calls run (the server is `grpc.aio`, see `server.py`): a unary handler is synchronous and
runs, with its authentication, on the unary thread pool; a server stream is an async generator on
the event loop, admitted only while its principal and the server hold fewer open streams than
`StreamLimits` allows (RESOURCE_EXHAUSTED otherwise), so streams never take the threads that
unary calls and health checks need. A client stream (an upload) is a coroutine on the event loop
that reads its requests as they arrive and runs its blocking steps on the unary pool (`blocking`).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Any

import grpc
import psycopg
import psycopg_pool
from eventsourcing.persistence import OperationalError as StoreOperationalError
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from claims_service.api.auth import PUBLIC_SERVICES, Authenticator, Principal, authorize
from claims_service.errors import ClaimsError, TooManyStreamsError, ValidationError
from claims_service.observability import metrics
from claims_service.integrity import Integrity

log = logging.getLogger("claims_service.api")

current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("current_principal")
current_method: contextvars.ContextVar[str] = contextvars.ContextVar("current_method", default="")

# Failures of the database that a retry may outlive.
UNAVAILABLE_ERRORS = (psycopg.OperationalError, psycopg_pool.PoolTimeout, StoreOperationalError)


def principal() -> Principal:
    return current_principal.get()


def method() -> str:
    """The RPC being served, e.g. "claims.v1.ProviderService/GetClaim" (what the access log names)."""
    return current_method.get()


class _Undecodable:
    """Stands in for a request whose bytes did not parse, so the handler can refuse it properly."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _safe_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, ValueError, TypeError) as error:
            return _Undecodable(error)

    return parse


# A status travels in the trailers, and a client refuses trailers over 8 KiB (gRPC's default
# soft limit; 16 KiB hard), which would leave it with RESOURCE_EXHAUSTED instead of the status. The
# message (percent-encoded on the wire) and the field violations (base64) are bounded to fit.
MAX_MESSAGE_WIRE_BYTES = 2000
MAX_DETAILS_BYTES = 3000
MAX_VIOLATION_CHARS = 300


def _wire_length(text: str) -> int:
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode())


def _bounded(text: str, limit: int) -> str:
    if _wire_length(text) <= limit:
        return text
    kept, size = [], 9  # room for the ellipsis
    for char in text:
        size += _wire_length(char)
        if size > limit:
            break
        kept.append(char)
    return "".join(kept) + "…"


def to_status(error: Exception) -> grpc.Status:
    if isinstance(error, ClaimsError):
        code = getattr(code_pb2, error.status, code_pb2.INTERNAL)
        status = status_pb2.Status(code=code, message=_bounded(str(error), MAX_MESSAGE_WIRE_BYTES))
        if isinstance(error, ValidationError):
            detail = error_details_pb2.BadRequest()
            for v in error.violations:
                detail.field_violations.add(field=_bounded(v.field, MAX_VIOLATION_CHARS),
                                            description=_bounded(v.description, MAX_VIOLATION_CHARS))
                if detail.ByteSize() > MAX_DETAILS_BYTES:
                    del detail.field_violations[-1]
                    break
            status.details.add().Pack(detail)
    elif isinstance(error, UNAVAILABLE_ERRORS):
        status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="the ledger database is unavailable; retry")
    else:
        status = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")
    return rpc_status.to_status(status)


class StreamLimits:
    """How many server streams may be open at once: in all, and per principal (API key)."""

    def __init__(self, total: int, per_principal: int) -> None:
        self.total, self.per_principal = total, per_principal
        self._open: dict[str, int] = {}
        self._all = 0

    @contextmanager
    def admit(self, principal_: Principal) -> Iterator[None]:
        """Hold one stream slot while the stream is open; used on the event loop only."""
        mine = self._open.get(principal_.key_id, 0)
        if mine >= self.per_principal:
            raise TooManyStreamsError(f"this credential already has {mine} open streams (at most {self.per_principal});"
                                      " close one or resume on an existing stream")
        if self._all >= self.total:
            raise TooManyStreamsError("the server holds as many open streams as it allows; retry later")
        self._open[principal_.key_id], self._all = mine + 1, self._all + 1
        try:
            yield
        finally:
            self._all -= 1
            left = self._open[principal_.key_id] - 1
            if left:
                self._open[principal_.key_id] = left
            else:
                del self._open[principal_.key_id]

    @property
    def open_streams(self) -> int:
        return self._all


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """``ServiceInterceptor(authenticator, unary_executor, stream_limits)``."""

    def __init__(self, authenticator: Authenticator, unary_executor: Executor, stream_limits: StreamLimits,
                 integrity: Integrity | None = None) -> None:
        self._authenticator = authenticator
        self._executor = unary_executor
        self.stream_limits = stream_limits
        self._integrity = integrity or Integrity()
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}  # by method, built at its first call

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        # A method's wrapped handler is built at its first call and kept: the handler the servicers
        # registered never changes, and building closures and a handler for every call cost the
        # server 1.5-5 % of its CPU. What differs per call (the credential) is read from the
        # call's own context. An unknown method is not kept (any name can be sent).
        method = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return None
            wrapped = self._wrapped.setdefault(method, self._wrap(handler, method))
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        if service in PUBLIC_SERVICES:
            return handler
        logged = _CallLog(method)
        name = logged.name

        def admit(request: Any, authorization: str | None) -> Principal:
            """Authenticate and authorise (blocking: a key lookup may read the ledger)."""
            principal_ = self._authenticator.authenticate(authorization)
            authorize(principal_, service)
            self._integrity.check(service)  # a ledger that failed verification halts the service
            if isinstance(request, _Undecodable):
                raise ValidationError.single("", f"the request bytes are not a valid message ({type(request.error).__name__})")
            return principal_

        wrap = {"request_deserializer": _safe_deserializer(handler.request_deserializer),
                "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            inner = handler.unary_unary

            def run(request: Any, context: Any, authorization: str | None) -> tuple[Any, grpc.Status | None, Principal | None]:
                who: Principal | None = None
                try:
                    principal_ = admit(request, authorization)
                    who = principal_
                    current_principal.set(principal_)  # in this call's own copy of the context
                    current_method.set(name)
                    return inner(request, context), None, who
                except Exception as error:  # every failure leaves as a status, never a traceback
                    return None, _status_for(error, method), who

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                response, status, who = await asyncio.get_running_loop().run_in_executor(
                    self._executor, contextvars.copy_context().run, run, request, context, _authorization(context))
                logged.call(who, status.code.name if status else "OK", started)
                if status is not None:
                    await context.abort(status.code, status.details, status.trailing_metadata)
                return response

            return grpc.unary_unary_rpc_method_handler(unary, **wrap)
        if handler.unary_stream:
            inner_stream = handler.unary_stream
            if not inspect.isasyncgenfunction(inner_stream):
                raise TypeError(f"{method}: a server stream must be an async generator (it would hold a thread)")

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                started, who, outcome = time.perf_counter(), None, "OK"
                try:
                    principal_ = await asyncio.get_running_loop().run_in_executor(
                        self._executor, admit, request, _authorization(context))
                    who = principal_
                    with self.stream_limits.admit(principal_), logged.open_stream():
                        current_principal.set(principal_)  # this call's task has its own context
                        current_method.set(name)
                        async for response in inner_stream(request, context):
                            yield response
                except Exception as error:  # every failure leaves as a status, never a traceback
                    status = _status_for(error, method)
                    outcome = status.code.name
                    await context.abort(status.code, status.details, status.trailing_metadata)
                except asyncio.CancelledError:
                    outcome = "CANCELLED"  # the client went away
                    raise
                finally:
                    logged.call(who, outcome, started, stream=True)

            return grpc.unary_stream_rpc_method_handler(stream, **wrap)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._client_stream(handler.stream_unary, logged, admit), **wrap)
        return handler

    def _client_stream(self, inner: Callable[..., Any], logged: _CallLog,
                       admit: Callable[[Any, str | None], Principal]) -> Any:
        """A client stream (an upload): a coroutine on the event loop that reads the requests as
        they come and hands its blocking work to the unary pool (`blocking`); authenticated,
        mapped to a status, logged and counted like a unary call."""
        if not inspect.iscoroutinefunction(inner):
            raise TypeError(f"{logged.method}: a client stream must be a coroutine function (it would hold a thread)")
        executor, method = self._executor, logged.method

        async def requests(iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in iterator:
                if isinstance(request, _Undecodable):
                    raise ValidationError.single("", f"the request bytes are not a valid message ({type(request.error).__name__})")
                yield request

        async def client_stream(request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            started, who, response, status = time.perf_counter(), None, None, None
            try:
                principal_ = await asyncio.get_running_loop().run_in_executor(executor, admit, None, _authorization(context))
                who = principal_
                current_principal.set(principal_)  # this call's task has its own context
                current_method.set(logged.name)
                current_executor.set(executor)
                response = await inner(requests(request_iterator), context)
            except Exception as error:  # every failure leaves as a status, never a traceback
                status = _status_for(error, method)
            logged.call(who, status.code.name if status else "OK", started)
            if status is not None:
                await context.abort(status.code, status.details, status.trailing_metadata)
            return response

        return client_stream


current_executor: contextvars.ContextVar[Executor] = contextvars.ContextVar("current_executor")


async def blocking(function: Callable[..., Any], *args: Any) -> Any:
    """Run blocking work of a client stream (a store write, a ledger command) on the unary pool,
    in the call's context (its principal); of a server stream, on the loop's default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(current_executor.get(None), contextvars.copy_context().run, function, *args)


def _status_for(error: Exception, method: str) -> grpc.Status:
    status = to_status(error)
    if status.code == grpc.StatusCode.INTERNAL:
        log.error("unexpected error in %s", method, exc_info=error)
    return status


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    """The call's `authorization` metadata (the last one sent), None when absent or binary."""
    authorization = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            authorization = value
    return authorization if isinstance(authorization, str) else None


class _CallLog:
    """One method's log line per call (its principal's role and party, never its key) and its
    metrics: a count per status code, the time a unary call took, the streams open. The metric
    children are looked up once per method and code, not at every call."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.name = method.lstrip("/")  # what `current_method` holds
        service, _, name = method.rpartition("/")
        self._labels = (service.lstrip("/"), name)
        recorded = metrics.get()
        self._calls = recorded.rpc_calls
        self._by_code: dict[str, Any] = {}
        self._duration = recorded.rpc_duration.labels(*self._labels)
        self._open = recorded.open_streams.labels(*self._labels)

    def call(self, who: Principal | None, outcome: str, started: float, *, stream: bool = False) -> None:
        seconds = time.perf_counter() - started
        count = self._by_code.get(outcome)
        if count is None:
            count = self._by_code.setdefault(outcome, self._calls.labels(*self._labels, outcome))
        count.inc()
        if not stream:
            self._duration.observe(seconds)
        log.info("call method=%s principal=%s code=%s ms=%.1f", self.method, who.actor if who else "-", outcome,
                 seconds * 1000, extra={"rpc": self.method, "code": outcome, "ms": round(seconds * 1000, 1),
                                        "role": who.role if who else None,
                                        "party": (who.party_id or None) if who else None})

    @contextmanager
    def open_stream(self) -> Iterator[None]:
        """Count the stream as open while it is."""
        self._open.inc()
        try:
            yield
        finally:
            self._open.dec()
