"""OpenTelemetry traces: one claim's trace from SubmitClaim through the group commit, the
adjudication and the projections to the payer's notice.

On only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set: the
OTLP/gRPC exporter, configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables (headers,
certificate, timeout). Otherwise there is no provider, no interceptor and no span: nothing is
exported, nothing is written into events, nothing costs. (Tests install a provider of their own.)

Sampling (``CLAIMS_TRACE_SAMPLE_RATIO``, default 0.01) decides at the root: that fraction of the
calls that arrive without a trace are traced; a call that arrives with a sampled W3C
``traceparent`` is always traced (parent-based), so a client can follow one request on purpose, and
one that arrives with an unsampled one is not. The decision is taken before the instrumentation
sees the call (``SampledCalls``): an untraced call goes straight to the service, without the span,
context and servicer-context wrapper that opentelemetry-instrumentation-grpc builds for every call
it sees, sampled or not. The provider's own sampler then follows the parent and samples the roots
the gate let through. (Before the gate, and before the projections and streams stopped querying
for trace contexts, tracing at a 1 % sample cost a quarter more CPU per call; now about 0.1 %:
docs/OPERATIONS.md, "Cost".)

A claim crosses processes and time through the ledger, so its trace context travels with its
events: the ``traceparent`` of the span that wrote an event goes into the event's ``metadata``
column (migration 0016), never into its payload, so tracing changes no hash. Only sampled traces
are written. The adjudicator and the projections read it back with the events and continue the
trace; the projections NOTIFY it with their progress, and the payer's stream sends the notice in a
span of that trace (``projections.feed.NotificationHub.traceparent``).

Spans: ``/claims.v1.ProviderService/SubmitClaim`` (opentelemetry-instrumentation-grpc's aio server
interceptor) > ``ledger.group_commit``; then, under the submission, ``adjudicator.adjudicate`` (in
the workers' process) and ``projections.apply``; under the adjudication, ``projections.apply`` of
the decision and ``stream.notice`` (the payer's stream sending it).
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import grpc
import grpc.aio
import orjson

TRACER_NAME = "claims_service"
DEFAULT_SAMPLE_RATIO = 0.01
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_provider: Any = None
_tracer: Any = None
_sample_ratio = DEFAULT_SAMPLE_RATIO
_lock = threading.Lock()


def enabled() -> bool:
    return _tracer is not None


def exporter_configured(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


def configure(sample_ratio: float = DEFAULT_SAMPLE_RATIO, *, process: str) -> bool:
    """Trace this process if an OTLP endpoint is set; return whether it does. ``process`` names
    it in the spans' resource ("server", "workers")."""
    if not exporter_configured():
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = new_provider(process=process)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider, sample_ratio)
    return True


def new_provider(*, process: str) -> Any:
    """A provider whose spans follow their parent's decision, and whose roots are all sampled:
    the roots are the calls ``SampledCalls`` chose (the ratio is applied there, before any span)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    resource = Resource.create({"service.name": "claims-ledger", "claims.process": process})
    return TracerProvider(sampler=ParentBased(ALWAYS_ON), resource=resource)


def install(provider: Any, sample_ratio: float = DEFAULT_SAMPLE_RATIO) -> None:
    """Trace with ``provider`` from now on, ``sample_ratio`` of the calls that arrive untraced
    (None: stop tracing). Not the API's global provider: tests install and remove their own in one
    process."""
    global _provider, _tracer, _sample_ratio
    with _lock:
        _provider = provider
        _tracer = provider.get_tracer(TRACER_NAME) if provider is not None else None
        _sample_ratio = sample_ratio


def shutdown() -> None:
    """Export what is buffered and stop (at the end of a process)."""
    provider = _provider
    install(None)
    if provider is not None:
        provider.shutdown()


def server_interceptor() -> Any:
    """The gRPC aio server interceptor that starts each call's span (it reads a caller's
    ``traceparent`` from the metadata); None when tracing is off. Health and reflection are left
    out: probes are not requests."""
    if _provider is None:
        return None
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    instrumented = aio_server_interceptor(tracer_provider=_provider, filter_=filters.negate(filters.service_prefix("grpc.")))
    return SampledCalls(instrumented, _sample_ratio)


def traced_call(metadata: Sequence[tuple[str, Any]] | None, sample_ratio: float) -> bool:
    """Whether to trace a call with this invocation metadata: as its caller's ``traceparent`` says
    (its sampled flag), else by a draw at ``sample_ratio``."""
    for key, value in metadata or ():
        if key == "traceparent":
            flags = value[-2:] if isinstance(value, str) else ""
            try:
                return bool(int(flags, 16) & 1)
            except ValueError:
                break  # malformed: as though there were none (the propagator would ignore it too)
    return random.random() < sample_ratio


class SampledCalls(grpc.aio.ServerInterceptor):
    """A gRPC aio server interceptor that hands ``instrumented`` (the instrumentation's) only the
    calls to be traced (``traced_call``); every other call goes on untouched."""

    def __init__(self, instrumented: grpc.aio.ServerInterceptor, sample_ratio: float) -> None:
        self.instrumented = instrumented
        self.sample_ratio = sample_ratio

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        if traced_call(details.invocation_metadata, self.sample_ratio):
            return await self.instrumented.intercept_service(continuation, details)
        return await continuation(details)


# --- the context that travels with events ------------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span when it is sampled (what is written with events)."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    return traceparent_of(trace.get_current_span())


def traceparent_of(span: Any) -> str | None:
    context = span.get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def metadata_json(traceparent: str) -> str:
    """An event's metadata column for a trace context."""
    return orjson.dumps({"traceparent": traceparent}).decode()


def _parent(traceparent: str | None) -> Any:
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def start_span(name: str, traceparent: str | None, *, attributes: Mapping[str, Any] | None = None,
               start_time: int | None = None) -> Any:
    """A span continuing the trace an event carried (``traceparent``); the caller ends it."""
    assert _tracer is not None
    return _tracer.start_span(name, context=_parent(traceparent), attributes=dict(attributes or {}),
                              start_time=start_time)


@contextmanager
def _current_span(name: str, attributes: Mapping[str, Any] | None) -> Iterator[Any]:
    assert _tracer is not None
    with _tracer.start_as_current_span(name, attributes=dict(attributes or {})) as span:
        yield span


def span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """A child of the current span, made current (a context manager yielding it, or None when
    tracing is off or the current trace is not sampled: nothing to record)."""
    if _tracer is None or current_traceparent() is None:
        return nullcontext(None)
    return _current_span(name, attributes)
