"""The one place where calls are authenticated, errors become status codes, and calls are logged.

Servicers stay thin: they convert, call, convert, and raise domain errors; this interceptor maps
every `ClaimsError` to its status (INVALID_ARGUMENT carries `google.rpc.BadRequest` field
violations), database outages to UNAVAILABLE, and anything unexpected to INTERNAL with a generic
message (details go to the log, never to the client). Undecodable request bytes are turned into
INVALID_ARGUMENT here too, instead of the INTERNAL that grpcio would send.
"""

from __future__ import annotations

import contextvars
import logging
import time
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import psycopg
import psycopg_pool
from eventsourcing.persistence import OperationalError as StoreOperationalError
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from claims_service.api.auth import PUBLIC_SERVICES, Authenticator, Principal, authorize
from claims_service.errors import ClaimsError, ValidationError

log = logging.getLogger("claims_service.api")

current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("current_principal")

# Failures of the database that a retry may outlive.
UNAVAILABLE_ERRORS = (psycopg.OperationalError, psycopg_pool.PoolTimeout, StoreOperationalError)


def principal() -> Principal:
    return current_principal.get()


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


class ServiceInterceptor(grpc.ServerInterceptor):
    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    def intercept_service(self, continuation: Callable[..., Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        service = method.split("/")[1] if method.count("/") >= 2 else ""
        if service in PUBLIC_SERVICES:
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ())}
        authorization = metadata.get("authorization")

        @contextmanager
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[None]:
            """Authenticate, authorise, run the handler as the principal; log; map every failure."""
            started, who, outcome = time.perf_counter(), "-", "OK"
            try:
                principal_ = self._authenticator.authenticate(authorization if isinstance(authorization, str) else None)
                authorize(principal_, service)
                if isinstance(request, _Undecodable):
                    raise ValidationError.single("", f"the request bytes are not a valid message ({type(request.error).__name__})")
                who = principal_.actor
                token = current_principal.set(principal_)
                try:
                    yield
                finally:
                    current_principal.reset(token)
            except Exception as error:  # every failure leaves as a status, never a traceback
                status = self._status_for(context, error, method)
                outcome = status.code.name
                context.abort_with_status(status)
            finally:
                _log_call(method, who, outcome, started)

        wrap = {"request_deserializer": _safe_deserializer(handler.request_deserializer),
                "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                with call(request, context):
                    return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, **wrap)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with call(request, context):
                    yield from inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(stream, **wrap)
        return handler

    @staticmethod
    def _status_for(context: grpc.ServicerContext, error: Exception, method: str) -> grpc.Status:
        if context.code() is not None:
            raise error  # the call was already ended (aborted or cancelled): nothing to add
        status = to_status(error)
        if status.code == grpc.StatusCode.INTERNAL:
            log.error("unexpected error in %s", method, exc_info=error)
        return status


def _log_call(method: str, who: str, outcome: str, started: float) -> None:
    log.info("call method=%s principal=%s code=%s ms=%.1f", method, who, outcome, (time.perf_counter() - started) * 1000)
