"""The service interceptor keeps one wrapped handler per method, yet authenticates every call by
its own credential: two callers of one method each run as themselves, a call without a key is
refused, and a method nobody registered is neither served nor kept."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from claims_service.api import interceptors
from claims_service.api.auth import Principal
from claims_service.errors import UnauthenticatedError

METHOD = "/claims.v1.ProviderService/GetClaim"


class Authenticator:
    def __init__(self) -> None:
        self.keys = {"Bearer ck_a": Principal(role="provider", party_id="1234567893", key_id="a"),
                     "Bearer ck_b": Principal(role="provider", party_id="1245319599", key_id="b")}

    def authenticate(self, authorization: str | None) -> Principal:
        if authorization not in self.keys:
            raise UnauthenticatedError("invalid, expired or revoked API key")
        return self.keys[authorization]


class Aborted(Exception):
    pass


class Context:
    def __init__(self, authorization: str | None) -> None:
        self.metadata = (("user-agent", "test"),) + ((("authorization", authorization),) if authorization else ())

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = None) -> None:
        raise Aborted(code, details)


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def whoami(request: Any, context: Any) -> tuple[str, str]:
    return interceptors.principal().party_id, interceptors.method()


@pytest.fixture
def interceptor():
    made = interceptors.ServiceInterceptor(Authenticator(), ThreadPoolExecutor(2), interceptors.StreamLimits(4, 2))
    yield made
    made.close()


def test_one_handler_per_method_and_each_call_as_its_own_caller(interceptor) -> None:
    looked_up = []

    async def continuation(details: Details) -> grpc.RpcMethodHandler:
        looked_up.append(details.method)
        return grpc.unary_unary_rpc_method_handler(whoami)

    async def calls() -> list[Any]:
        first = await interceptor.intercept_service(continuation, Details(METHOD))
        second = await interceptor.intercept_service(continuation, Details(METHOD))
        assert first is second
        return [await first.unary_unary(b"", Context("Bearer ck_a")), await second.unary_unary(b"", Context("Bearer ck_b"))]

    assert asyncio.run(calls()) == [("1234567893", METHOD.lstrip("/")), ("1245319599", METHOD.lstrip("/"))]
    assert looked_up == [METHOD]


def test_a_call_without_a_key_is_refused_by_the_kept_handler(interceptor) -> None:
    async def continuation(details: Details) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(whoami)

    async def calls() -> Any:
        handler = await interceptor.intercept_service(continuation, Details(METHOD))
        assert await handler.unary_unary(b"", Context("Bearer ck_a")) == ("1234567893", METHOD.lstrip("/"))
        handler = await interceptor.intercept_service(continuation, Details(METHOD))
        return await handler.unary_unary(b"", Context(None))

    with pytest.raises(Aborted) as refused:
        asyncio.run(calls())
    assert refused.value.args[0] == grpc.StatusCode.UNAUTHENTICATED


def test_an_unknown_method_is_not_served_nor_kept(interceptor) -> None:
    async def continuation(details: Details) -> None:
        return None

    async def calls() -> list[Any]:
        return [await interceptor.intercept_service(continuation, Details(f"/claims.v1.ProviderService/Nope{i}"))
                for i in range(3)]

    assert asyncio.run(calls()) == [None, None, None]
    assert interceptor._wrapped == {}
