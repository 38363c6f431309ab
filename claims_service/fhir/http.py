"""The read-only FHIR REST endpoint, a Starlette app (served by uvicorn, `server.py`):

    GET /fhir/metadata                                  the CapabilityStatement (no credential)
    GET /fhir/ExplanationOfBenefit/{id}                 one claim's EOB
    GET /fhir/ExplanationOfBenefit?patient=ID[&_count=N] a member's EOBs, a searchset Bundle whose
                                                        `next` link carries an opaque page token
    GET /fhir/ClaimResponse/{id}                        one claim's ClaimResponse

Every other request carries `Authorization: Bearer <api key>`, checked by the gRPC server's own
`Authenticator` (the same keys, cache and revocations); who may read what is `reads.visibility`.
Errors are OperationOutcome resources with the HTTP status of the domain error's code: 400 a bad
search parameter or page token, 401 no or a bad key, 403 a role that reads no claims, 404 no such
resource (another party's answers the same), 405 anything but GET, 503 the database unreachable
(retry), 500 a defect (details in the log only). Handlers are plain functions: Starlette runs
them on its thread pool, where the database reads block. Nothing of a request (no member id) is
logged, and uvicorn's access log is off for that reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from importlib import metadata
from typing import Any, Protocol
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from claims_service.api.auth import Principal
from claims_service.api.interceptors import UNAVAILABLE_ERRORS
from claims_service.errors import ClaimsError, ValidationError
from claims_service.integrity import LedgerHaltedError
from claims_service.fhir.reads import RecordPage, Records
from claims_service.fhir.resources import (
    JSON_MEDIA_TYPE,
    ClaimRecord,
    capability_statement,
    claim_response,
    dumps,
    explanation_of_benefit,
    operation_outcome,
    searchset,
)
from projections.reading import MAX_PAGE_SIZE

log = logging.getLogger("claims_service.fhir")

DEFAULT_COUNT = 50
SEARCH_PARAMETERS = ("patient", "_count", "page_token", "_format")
JSON_FORMATS = ("json", "application/json", "application/fhir+json")
COUNT = re.compile(r"^[0-9]{1,9}$")

# A domain error's status, as HTTP, with the OperationOutcome issue code it carries.
HTTP_STATUS = {
    "INVALID_ARGUMENT": (400, "invalid"),
    "OUT_OF_RANGE": (400, "invalid"),
    "UNAUTHENTICATED": (401, "login"),
    "PERMISSION_DENIED": (403, "forbidden"),
    "NOT_FOUND": (404, "not-found"),
    "DEADLINE_EXCEEDED": (503, "transient"),
    "UNAVAILABLE": (503, "transient"),
}
# The read models' field names, as the search parameters that carry them.
PARAMETER_OF_FIELD = {"member_id": "patient", "page_size": "_count", "page_token": "page_token"}


class Authenticates(Protocol):
    def authenticate(self, authorization: str | None) -> Principal: ...


def fhir_app(authenticator: Authenticates, records: Records) -> Starlette:
    """The ASGI app; `records` reads the read models, `authenticator` turns keys into principals."""
    endpoint = Endpoint(authenticator, records)
    routes = [
        Route("/fhir/metadata", endpoint.metadata, methods=["GET"]),
        Route("/fhir/ExplanationOfBenefit", endpoint.search_eobs, methods=["GET"]),
        Route("/fhir/ExplanationOfBenefit/{id}", endpoint.read(explanation_of_benefit, "ExplanationOfBenefit"),
              methods=["GET"]),
        Route("/fhir/ClaimResponse/{id}", endpoint.read(claim_response, "ClaimResponse"), methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


class Endpoint:
    def __init__(self, authenticator: Authenticates, records: Records) -> None:
        self.authenticator = authenticator
        self.records = records
        try:
            self.version = metadata.version("claims-ledger")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            self.version = "0"

    def metadata(self, request: Request) -> Response:
        return answered(lambda: fhir_response(capability_statement(
            base_url(request), self.version, page_size=DEFAULT_COUNT, most=MAX_PAGE_SIZE)))

    def read(self, build: Callable[[ClaimRecord], dict[str, Any]], kind: str) -> Callable[[Request], Response]:
        def read(request: Request) -> Response:
            def answer() -> Response:
                principal = self._principal(request)
                _json_only(request)
                record = self.records.claim(request.path_params["id"], principal, kind)
                return fhir_response(build(record), headers={"ETag": f'W/"{record.eob.last_position}"'})

            return answered(answer, not_found=f"no {kind} with this id")

        return read

    def search_eobs(self, request: Request) -> Response:
        def answer() -> Response:
            principal = self._principal(request)
            _json_only(request)
            params = search_parameters(request)
            page = self.records.patient(params["patient"], principal, page_size=params["_count"],
                                        page_token=params.get("page_token"))
            return fhir_response(eob_bundle(request, params, page))

        return answered(answer, not_found="no such page")

    def _principal(self, request: Request) -> Principal:
        return self.authenticator.authenticate(request.headers.get("authorization"))


# --- search ------------------------------------------------------------------------------------


def search_parameters(request: Request) -> dict[str, Any]:
    """The search's parameters, checked: `patient` required (a member id, bare or as
    `Patient/<id>`), `_count` a positive integer (default 50; more than 500 returns 500),
    `page_token` as a `next` link gave it. Unknown parameters are ignored, as FHIR's lenient
    handling says, unless the request asks `Prefer: handling=strict`."""
    given = request.query_params.multi_items()
    names = [name for name, _ in given]
    strict = "handling=strict" in request.headers.get("prefer", "").replace(" ", "")
    unknown = sorted({name for name in names if name not in SEARCH_PARAMETERS})
    if unknown and strict:
        raise ValidationError.single(unknown[0], "is not a search parameter of ExplanationOfBenefit here "
                                                 "(known: patient, _count)")
    for name in SEARCH_PARAMETERS:
        if names.count(name) > 1:
            raise ValidationError.single(name, "must be given once")
    values = {name: value for name, value in given if name in SEARCH_PARAMETERS}
    patient = values.get("patient", "").removeprefix("Patient/")
    if not patient:
        raise ValidationError.single("patient", "is required: the member id, e.g. patient=Patient/M-1001")
    count = values.get("_count", str(DEFAULT_COUNT))
    if not COUNT.match(count) or int(count) < 1:
        raise ValidationError.single("_count", "must be a positive integer")
    checked: dict[str, Any] = {"patient": patient, "_count": min(int(count), MAX_PAGE_SIZE)}
    if values.get("page_token"):
        checked["page_token"] = values["page_token"]
    return checked


def eob_bundle(request: Request, params: dict[str, Any], page: RecordPage) -> dict[str, Any]:
    base = base_url(request)
    search = f"{base}/ExplanationOfBenefit?"
    kept = {"patient": params["patient"], "_count": params["_count"]}
    this_page = {"page_token": params["page_token"]} if "page_token" in params else {}
    links = {"self": search + urlencode({**kept, **this_page})}
    if page.next_page_token:
        links["next"] = search + urlencode({**kept, "page_token": page.next_page_token})
    first_and_only = "page_token" not in params and not page.next_page_token
    entries = [(f"{base}/ExplanationOfBenefit/{record.eob.claim_id}", explanation_of_benefit(record))
               for record in page.records]
    return searchset(entries, links, total=len(entries) if first_and_only else None)


# --- responses ---------------------------------------------------------------------------------


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def fhir_response(resource: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(resource), status_code=status, media_type=JSON_MEDIA_TYPE, headers=headers)


def outcome_response(status: int, code: str, diagnostics: str, expression: tuple[str, ...] = (),
                     headers: dict[str, str] | None = None) -> Response:
    severity = "fatal" if status >= 500 else "error"
    return fhir_response(operation_outcome(severity, code, diagnostics, expression), status, headers)


def answered(answer: Callable[[], Response], *, not_found: str = "not found") -> Response:
    """The answer, or the OperationOutcome of what went wrong."""
    try:
        return answer()
    except ValidationError as error:
        fields = tuple(PARAMETER_OF_FIELD.get(v.field, v.field) for v in error.violations)
        messages = "; ".join(f"{field}: {v.description}" for field, v in zip(fields, error.violations, strict=True))
        code = "not-supported" if "is not a search parameter" in messages else "invalid"
        return outcome_response(400, code, messages, fields)
    except LedgerHaltedError as error:
        # The ledger failed verification and the service is halted (claims_service/integrity.py).
        return outcome_response(503, "exception", str(error))
    except ClaimsError as error:
        status, code = HTTP_STATUS.get(error.status, (500, "exception"))
        if status == 404:
            return outcome_response(404, code, not_found)
        if status == 401:
            return outcome_response(401, code, str(error), headers={"WWW-Authenticate": 'Bearer realm="claims-ledger"'})
        if status == 503:
            return unavailable()
        if status == 500:
            log.error("FHIR request failed: %s", type(error).__name__, exc_info=error)
            return outcome_response(500, code, "internal error")
        return outcome_response(status, code, str(error))
    except UNAVAILABLE_ERRORS:
        log.warning("FHIR request: the database is unavailable", exc_info=True)
        return unavailable()
    except Exception:
        log.exception("FHIR request failed")
        return outcome_response(500, "exception", "internal error")


def unavailable() -> Response:
    return outcome_response(503, "transient", "the claims database is unavailable; retry", headers={"Retry-After": "1"})


def _json_only(request: Request) -> None:
    wanted = request.query_params.get("_format")
    if wanted is not None and wanted.split(";")[0].strip() not in JSON_FORMATS:
        raise ValidationError.single("_format", "only JSON is served (json, application/fhir+json)")


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own errors (no such route, a method other than GET) as OperationOutcomes."""
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        return outcome_response(405, "not-supported", "this endpoint is read-only: GET only",
                                headers={"Allow": "GET, HEAD"})
    if error.status_code == 404:
        return outcome_response(404, "not-found", "no such resource type or interaction here (see /fhir/metadata)")
    return outcome_response(error.status_code, "processing", error.detail)
