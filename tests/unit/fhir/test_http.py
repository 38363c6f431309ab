"""The FHIR app's answers to what goes wrong, with the database and the keys stood in for: each
failure is an OperationOutcome with its HTTP status, and nothing of a defect reaches the client."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg
import pytest

from claims_service.api.auth import Principal
from claims_service.errors import DataLossError, PermissionDeniedError, UnauthenticatedError
from claims_service.fhir.http import fhir_app
from projections.errors import ProjectionLagError
from tests.fhir_validation import validated

CLAIM = "5f0c1d2e-3a4b-4c5d-8e6f-708192a3b4c5"


class Keys:
    def authenticate(self, authorization: str | None) -> Principal:
        if authorization != "Bearer good":
            raise UnauthenticatedError("missing credential")
        return Principal(role="payer", party_id="PAYER-ACME", key_id="k")


class Failing:
    """Records whose every read raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def claim(self, *_: Any, **__: Any) -> Any:
        raise self.error

    def patient(self, *_: Any, **__: Any) -> Any:
        raise self.error


def get(records: Any, path: str, headers: dict[str, str]) -> httpx.Response:
    """One request through the ASGI app itself, in process."""

    async def request() -> httpx.Response:
        transport = httpx.ASGITransport(app=fhir_app(Keys(), records))
        async with httpx.AsyncClient(transport=transport, base_url="http://fhir.test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(request())


def answer(error: BaseException, path: str = f"/fhir/ExplanationOfBenefit/{CLAIM}") -> tuple[int, dict[str, Any], Any]:
    found = get(Failing(error), path, {"Authorization": "Bearer good"})
    return found.status_code, validated(found.content), found.headers


@pytest.mark.parametrize("path", [f"/fhir/ExplanationOfBenefit/{CLAIM}", f"/fhir/ClaimResponse/{CLAIM}",
                                  "/fhir/ExplanationOfBenefit?patient=M-1"])
def test_the_database_down_is_503_to_retry(path):
    status, outcome, headers = answer(psycopg.OperationalError("connection refused"), path)
    assert status == 503 and outcome["issue"][0]["code"] == "transient" and headers["retry-after"] == "1"
    assert "refused" not in outcome["issue"][0]["diagnostics"]


def test_each_domain_error_has_its_status():
    assert answer(PermissionDeniedError("role admin may not read claims"))[0] == 403
    assert answer(ProjectionLagError("benefits", 10, 5))[0] == 503
    status, outcome, _ = answer(DataLossError(7, "bad bytes"))
    assert status == 500 and outcome["issue"][0]["diagnostics"] == "internal error"


def test_a_defect_is_500_without_its_details():
    status, outcome, _ = answer(RuntimeError("secret detail M-1001"))
    assert status == 500 and outcome["issue"] == [{"severity": "fatal", "code": "exception", "diagnostics": "internal error"}]


def test_no_key_is_401_before_anything_is_read():
    found = get(Failing(AssertionError("read without a key")), f"/fhir/ExplanationOfBenefit/{CLAIM}", {})
    assert found.status_code == 401 and validated(found.content)["issue"][0]["code"] == "login"
