"""One claim's trace, in this process, exported to an in-memory exporter: the submission's span
(as the gRPC interceptor would start it), the group commit, the trace context in the event's
metadata column, the adjudicator's span continuing it, the projections' spans and the payer's
notice. The metadata is not hashed: the chain verifies and the Merkle proofs hold as before."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import psycopg
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from claims_service.adjudication import AdjudicationFollower
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.ledger import merkle, tree
from claims_service.ledger.chain import row_hash
from claims_service.ledger.verify import verify_ledger
from claims_service.observability import tracing
from projections import catalog
from projections.feed import Heartbeat, NotificationHub
from projections.runner import GroupRunner
from projections.streams import ADJUDICATIONS, FeedStreams
from tests import world

PROVIDER = "provider:" + world.NPI


@pytest.fixture
def exported():
    exporter = InMemorySpanExporter()
    provider = tracing.new_provider(process="test")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider, 1.0)
    yield exporter
    tracing.install(None)
    provider.shutdown()


@pytest.fixture
def service(database_url: str):
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    world.set_up(service)  # before tracing: these events carry no trace context
    yield service
    service.close()
    ledger.close()


def first_notice(hub: NotificationHub, payer: str, claim_id: str) -> None:
    """Read the payer's stream until the claim's notice has been sent (and its span ended)."""

    async def read() -> None:
        executor = ThreadPoolExecutor(2)
        streams = FeedStreams(hub, executor)
        stream = streams.stream(ADJUDICATIONS, payer, 0)
        try:
            async for item in stream:
                if not isinstance(item, Heartbeat) and item.claim_id == claim_id:
                    break
        finally:
            await stream.aclose()
            streams.close()
            executor.shutdown()

    asyncio.run(asyncio.wait_for(read(), 30))


def test_a_claims_trace_goes_through_the_ledger_to_the_adjudication_the_projections_and_the_notice(
        service, database_url, exported):
    tracer = tracing._provider.get_tracer("test")
    with tracer.start_as_current_span("/claims.v1.ProviderService/SubmitClaim") as rpc:
        submitted = service.submit_claim(actor=PROVIDER, **world.claim_body("traced"))
    untraced = service.submit_claim(actor=PROVIDER, **world.claim_body("untraced", lines=[world.line(1, "80053", 2_500)]))
    while AdjudicationFollower(service.ledger).process_available():
        pass
    # The server's hub listens while the projections run: they tell it the trace contexts.
    with NotificationHub(database_url) as hub:
        runner = GroupRunner(database_url, catalog.NAMES)
        runner.drain()
        runner.close()
        first_notice(hub, world.PAYER, submitted.claim_id)

    spans = exported.get_finished_spans()
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    trace_id = rpc.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}  # the untraced claim made no span
    [commit] = by_name["ledger.group_commit"]
    [adjudicate] = by_name["adjudicator.adjudicate"]
    [notice] = by_name["stream.notice"]
    assert commit.parent.span_id == rpc.get_span_context().span_id
    assert adjudicate.parent.span_id == rpc.get_span_context().span_id
    assert adjudicate.attributes["claims.outcome"] == "PAID"
    assert notice.parent.span_id == adjudicate.context.span_id
    projected = {s.parent.span_id for s in by_name["projections.apply"]}
    assert projected == {rpc.get_span_context().span_id, adjudicate.context.span_id}

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state, prev_hash, hash, leaf_index,"
            " metadata->>'traceparent' FROM ledger_events ORDER BY notification_id").fetchall()
        traced = {row[0]: row[8] for row in rows if row[8]}
        # The submission carries the RPC's context; the decision and its payment the adjudication's.
        assert traced[submitted.receipt.position] == tracing.traceparent_of(rpc)
        assert untraced.receipt.position not in traced
        decided = [position for position, context in traced.items() if context.split("-")[2] == f"{adjudicate.context.span_id:016x}"]
        assert len(decided) == 2  # Claim.Adjudicated and Payment.Scheduled
        # The hash covers position, stream, version, topic and payload only: not the metadata.
        for position, stream, version, topic, state, prev_hash, stored, _leaf, _ in rows:
            assert row_hash(bytes(prev_hash), position, stream, version, topic, bytes(state)) == bytes(stored)
        builder = tree.TreeBuilder(database_url)
        builder.catch_up()
        builder.close()
        size = len(rows)
        root = tree.root_at(conn, size)
        for position, *_, stored, leaf, _context in rows:
            if position in traced:
                proof = tree.inclusion_proof(conn, leaf, size)
                assert merkle.verify_inclusion(merkle.leaf_hash(bytes(stored)), leaf, size, proof, root)
    assert verify_ledger(database_url).intact


# --- which calls are traced ---------------------------------------------------------------------


@pytest.mark.parametrize(("metadata", "ratio", "traced"), [
    ((), 0.0, False),
    ((), 1.0, True),
    ((("traceparent", "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"),), 0.0, True),  # the caller's sampled trace
    ((("traceparent", "00-" + "ab" * 16 + "-" + "cd" * 8 + "-00"),), 1.0, False),  # the caller chose not to
    ((("traceparent", "garbage"),), 0.0, False),
    ((("x-other", "01"),), 1.0, True),
])
def test_a_call_is_traced_as_its_callers_traceparent_says_else_by_the_ratio(metadata, ratio, traced):
    assert tracing.traced_call(metadata, ratio) is traced


def test_only_the_sampled_calls_reach_the_instrumentation_and_make_a_span(exported):
    """Through a real channel to a real aio server with the interceptor the service installs: at a
    ratio of 0, a call makes no span unless its caller sends a sampled traceparent."""
    import grpc

    tracing.install(tracing._provider, 0.0)

    async def echo(request: bytes, context) -> bytes:
        return request

    async def run() -> None:
        handler = grpc.method_handlers_generic_handler("test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
        server = grpc.aio.server(interceptors=[tracing.server_interceptor()])
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary("/test.Echo/Echo")
                for _ in range(20):
                    assert await call(b"x") == b"x"
                sampled = "00-" + "12" * 16 + "-" + "34" * 8 + "-01"
                assert await call(b"y", metadata=(("traceparent", sampled),)) == b"y"
        finally:
            await server.stop(None)

    asyncio.run(run())
    [span] = exported.get_finished_spans()
    assert span.name == "/test.Echo/Echo"
    assert span.context.trace_id == int("12" * 16, 16)
