"""Server streams over a real channel: WatchClaims delivers every change of a provider's claims in
ledger order, with heartbeats, resumable; a tenant holding hundreds of open streams takes no
capacity from another tenant's calls or from health checks; stream limits answer
RESOURCE_EXHAUSTED."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from claims.v1 import common_pb2, payer_pb2, provider_pb2, provider_pb2_grpc
from tests.e2e.test_claim_flow import claim_request, set_up, wait_decided

STATUS = common_pb2.ClaimStatus


def changes_until(client, position: int, *, after: int = 0) -> tuple[list[tuple[int, str, str]], list[int]]:
    """(position, claim id, status) of each change from `after`, read until a heartbeat at or past
    `position`; and the heartbeats' positions."""
    stream = client.provider.WatchClaims(provider_pb2.WatchClaimsRequest(after_position=after), timeout=30)
    changes, beats = [], []
    try:
        for item in stream:
            if item.WhichOneof("kind") == "claim":
                assert item.position == item.claim.last_position
                changes.append((item.position, item.claim.claim_id, STATUS.Name(item.claim.status)))
            else:
                assert item.heartbeat.position == item.position
                beats.append(item.position)
                if item.position >= position:
                    break
    finally:
        stream.cancel()
    return changes, beats


def test_watch_claims_delivers_every_change_in_ledger_order_with_heartbeats(parties):
    set_up(parties)
    submitted = [parties.provider.provider.SubmitClaim(claim_request(f"watch-{n}")) for n in range(3)]
    decided = [wait_decided(parties, s.claim_id, s.receipt.position) for s in submitted]
    voided = parties.provider.provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=submitted[0].claim_id,
                                                                               reason="entered in error"))
    head = max(voided.receipt.position, *(c.last_position for c in decided))
    parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(claim_id=submitted[0].claim_id,
                                                                    min_position=head))

    changes, beats = changes_until(parties.provider, head)
    positions = [p for p, *_ in changes]
    assert positions == sorted(set(positions)), "changes out of ledger order or repeated"
    assert beats and beats[-1] >= head
    # Every change of each claim, each with the claim as it stood then: not only the latest state.
    first = submitted[0].claim_id
    assert [status for _, claim_id, status in changes if claim_id == first] == [
        "CLAIM_STATUS_SUBMITTED", "CLAIM_STATUS_ADJUDICATED", "CLAIM_STATUS_VOIDED"]
    for s in submitted[1:]:
        assert [status for _, claim_id, status in changes if claim_id == s.claim_id] == [
            "CLAIM_STATUS_SUBMITTED", "CLAIM_STATUS_ADJUDICATED"]

    # Resumed after any change: exactly the ones after it.
    middle = positions[len(positions) // 2]
    resumed, _ = changes_until(parties.provider, head, after=middle)
    assert resumed == [c for c in changes if c[0] > middle]
    # Another provider's stream sees none of them, and its heartbeats still move on.
    theirs, their_beats = changes_until(parties.other_provider, head)
    assert theirs == [] and their_beats[-1] >= head


async def _open_streams(port: int, key: str, count: int) -> tuple[grpc.aio.Channel, list]:
    """`count` WatchClaims streams on one aio channel, each read until its first heartbeat."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = provider_pb2_grpc.ProviderServiceStub(channel)
    calls = [stub.WatchClaims(provider_pb2.WatchClaimsRequest(), metadata=(("authorization", f"Bearer {key}"),))
             for _ in range(count)]

    async def caught_up(call) -> None:
        async for item in call:
            if item.WhichOneof("kind") == "heartbeat":
                return

    await asyncio.wait_for(asyncio.gather(*(caught_up(call) for call in calls)), 60)
    return channel, calls


def test_one_tenants_open_streams_leave_others_calls_and_health_alone(parties):
    set_up(parties)
    limits = parties.service.interceptor.stream_limits
    count = 1_000  # the per-key default; far more than the unary threads (64), which streams once took
    limits.per_principal = count
    loop = asyncio.new_event_loop()
    try:
        channel, calls = loop.run_until_complete(_open_streams(parties.service.port, parties.provider.key, count))
        assert limits.open_streams == count

        # Health answers, for the server and for each service.
        health = health_pb2_grpc.HealthStub(parties.channel)
        for service in ("", "claims.v1.ProviderService", "claims.v1.PayerService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        # Another tenant's unary calls go through well within their deadline.
        for n in range(10):
            started = time.monotonic()
            submitted = parties.other_provider.provider.SubmitClaim(claim_request(f"other-{n}"), timeout=5)
            parties.other_provider.provider.GetClaim(provider_pb2.GetClaimRequest(
                claim_id=submitted.claim_id, min_position=submitted.receipt.position), timeout=5)
            assert time.monotonic() - started < 5

        # One stream more for this key: refused, and says why; another key still gets its stream.
        extra = parties.provider.provider.WatchClaims(provider_pb2.WatchClaimsRequest(), timeout=10)
        try:
            next(iter(extra))
            raise AssertionError("the stream over the limit was admitted")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "open streams" in error.details()
        other = parties.other_provider.provider.WatchClaims(provider_pb2.WatchClaimsRequest(), timeout=10)
        assert next(iter(other)).WhichOneof("kind") in {"claim", "heartbeat"}
        other.cancel()

        # The streams' slots come back when their clients go away.
        for call in calls:
            call.cancel()
        loop.run_until_complete(channel.close())
        deadline = time.monotonic() + 10
        while limits.open_streams and time.monotonic() < deadline:
            time.sleep(0.05)
        assert limits.open_streams == 0
    finally:
        loop.close()


def test_the_server_wide_stream_limit_is_resource_exhausted(parties):
    limits = parties.service.interceptor.stream_limits
    limits.total = 2
    streams = [client.provider.WatchClaims(provider_pb2.WatchClaimsRequest(), timeout=10)
               for client in (parties.provider, parties.other_provider)]
    for stream in streams:
        assert next(iter(stream)).WhichOneof("kind") == "heartbeat"
    third = parties.payer.payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(), timeout=10)
    try:
        next(iter(third))
        raise AssertionError("a stream over the server's limit was admitted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for stream in streams:
        stream.cancel()
