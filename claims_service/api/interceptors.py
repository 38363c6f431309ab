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

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        if service in PUBLIC_SERVICES:
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ())}
        authorization = metadata.get("authorization")
        authorization = authorization if isinstance(authorization, str) else None

        def admit(request: Any) -> Principal:
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

            def run(request: Any, context: Any) -> tuple[Any, grpc.Status | None, Principal | None]:
                who: Principal | None = None
                try:
                    principal_ = admit(request)
                    who = principal_
                    current_principal.set(principal_)  # in this call's own copy of the context
                    current_method.set(method.lstrip("/"))
                    return inner(request, context), None, who
                except Exception as error:  # every failure leaves as a status, never a traceback
                    return None, _status_for(error, method), who

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                loop = asyncio.get_running_loop()
                response, status, who = await loop.run_in_executor(
                    self._executor, contextvars.copy_context().run, run, request, context)
                _log_call(method, who, status.code.name if status else "OK", started)
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
                    principal_ = await asyncio.get_running_loop().run_in_executor(self._executor, admit, request)
                    who = principal_
                    with self.stream_limits.admit(principal_), _open_stream(method):
                        current_principal.set(principal_)  # this call's task has its own context
                        current_method.set(method.lstrip("/"))
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
                    _log_call(method, who, outcome, started, stream=True)

            return grpc.unary_stream_rpc_method_handler(stream, **wrap)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._client_stream(handler.stream_unary, method, admit), **wrap)
        return handler

    def _client_stream(self, inner: Callable[..., Any], method: str, admit: Callable[[Any], Principal]) -> Any:
        """A client stream (an upload): a coroutine on the event loop that reads the requests as
        they come and hands its blocking work to the unary pool (`blocking`); authenticated,
        mapped to a status, logged and counted like a unary call."""
        if not inspect.iscoroutinefunction(inner):
            raise TypeError(f"{method}: a client stream must be a coroutine function (it would hold a thread)")
        executor = self._executor

        async def requests(iterator: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in iterator:
                if isinstance(request, _Undecodable):
                    raise ValidationError.single("", f"the request bytes are not a valid message ({type(request.error).__name__})")
                yield request

        async def client_stream(request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            started, who, response, status = time.perf_counter(), None, None, None
            try:
                principal_ = await asyncio.get_running_loop().run_in_executor(executor, admit, None)
                who = principal_
                current_principal.set(principal_)  # this call's task has its own context
                current_method.set(method.lstrip("/"))
                current_executor.set(executor)
                response = await inner(requests(request_iterator), context)
            except Exception as error:  # every failure leaves as a status, never a traceback
                status = _status_for(error, method)
            _log_call(method, who, status.code.name if status else "OK", started)
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


def _split(method: str) -> tuple[str, str]:
    """("claims.v1.ProviderService", "SubmitClaim") from "/claims.v1.ProviderService/SubmitClaim"."""
    service, _, name = method.rpartition("/")
    return service.lstrip("/"), name


@contextmanager
def _open_stream(method: str) -> Iterator[None]:
    """Count the stream as open (metrics) while it is."""
    gauge = metrics.get().open_streams.labels(*_split(method))
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def _log_call(method: str, who: Principal | None, outcome: str, started: float, *, stream: bool = False) -> None:
    """One line per call (its principal's role and party, never its key) and its metrics: a count
    per status code, and the time a unary call took."""
    seconds = time.perf_counter() - started
    service, name = _split(method)
    recorded = metrics.get()
    recorded.rpc_calls.labels(service, name, outcome).inc()
    if not stream:
        recorded.rpc_duration.labels(service, name).observe(seconds)
    log.info("call method=%s principal=%s code=%s ms=%.1f", method, who.actor if who else "-", outcome, seconds * 1000,
             extra={"rpc": method, "code": outcome, "ms": round(seconds * 1000, 1),
                    "role": who.role if who else None, "party": (who.party_id or None) if who else None})
