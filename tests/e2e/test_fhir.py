"""The FHIR endpoint through a real HTTP client (httpx) against the service as `claimsctl serve`
wires it (the `parties` fixture starts it with its FHIR endpoint on a free port), on a fresh
database: claims go in over gRPC, their resources come out over HTTP, and every resource that
comes out validates (tests/fhir_validation.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from claims.v1 import common_pb2, provider_pb2
from tests import world
from tests.e2e.test_claim_flow import claim_request, set_up, wait_decided
from tests.fhir_validation import validated

AMOUNT_CATEGORIES = ("submitted", "eligible", "deductible", "coinsurance", "copay", "noncovered", "benefit",
                     "memberliability")


@pytest.fixture
def fhir(parties) -> Iterator[Any]:
    """httpx clients of the FHIR endpoint, one per party (`fhir("payer")`), and one with no key."""
    clients: list[httpx.Client] = []

    def client(party: str | None = None, *, key: str | None = None) -> httpx.Client:
        headers = {"Accept": "application/fhir+json"}
        secret = key or (parties.keys[party] if party else None)
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        made = httpx.Client(base_url=parties.fhir_url, headers=headers, timeout=20)
        clients.append(made)
        return made

    yield client
    for made in clients:
        made.close()


def submitted(parties, key: str, **request: Any) -> common_pb2.Claim:
    """A claim submitted by the provider over gRPC, once the adjudicator has decided it."""
    receipt = parties.provider.provider.SubmitClaim(claim_request(key, **request))
    return wait_decided(parties, receipt.claim_id, receipt.receipt.position)


def resource(client: httpx.Client, path: str, *, status: int = 200) -> dict[str, Any]:
    """GET path: its status as expected, its body a valid FHIR resource (an OperationOutcome on error)."""
    answer = client.get(path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    found = validated(answer.content)
    if status >= 400:
        assert found["resourceType"] == "OperationOutcome"
    return found


def decided_eob(client: httpx.Client, claim_id: str) -> dict[str, Any]:
    """The claim's EOB once the benefits read model has its decision (it has no min_position)."""
    deadline = time.monotonic() + 20
    while True:
        eob = resource(client, f"/ExplanationOfBenefit/{claim_id}")
        if eob["outcome"] != "queued" or "lastUpdated" in eob["meta"] or time.monotonic() > deadline:
            return eob
        time.sleep(0.05)


def amounts(adjudications: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {a["category"]["coding"][0]["code"]: a["amount"]["value"] for a in adjudications
            if a["category"]["coding"][0]["code"] in AMOUNT_CATEGORIES}


def dollars(cents: int) -> Decimal:
    return Decimal(cents) / 100


def reasons(adjudications: list[dict[str, Any]]) -> list[tuple[str, Decimal | None]]:
    return [(a["reason"]["text"], a.get("amount", {}).get("value")) for a in adjudications
            if a["category"]["coding"][0]["code"] == "adjustmentreason"]


def test_a_paid_claims_eob_is_its_adjudication_to_the_cent(parties, fhir):
    set_up(parties)
    claim = submitted(parties, "paid-visit")  # 99213 billed 120.00: allowed 90.00, copay, deductible
    decision = claim.decision
    assert decision.outcome == common_pb2.OUTCOME_PAID
    payer = fhir("payer")
    eob = decided_eob(payer, claim.claim_id)
    assert eob["id"] == claim.claim_id and eob["status"] == "active" and eob["outcome"] == "complete"
    assert eob["patient"]["reference"] == f"Patient/{world.MEMBER}"
    assert eob["insurer"]["identifier"]["value"] == world.PAYER
    assert eob["provider"]["identifier"]["value"] == world.NPI
    assert eob["diagnosis"][0]["diagnosisCodeableConcept"]["coding"][0]["code"] == "E11.9"
    for item, line in zip(eob["item"], decision.lines, strict=True):
        shares = {carc: sum(a.amount_cents for a in line.adjustments if a.group == "PR" and a.carc == carc)
                  for carc in ("1", "2", "3")}
        assert amounts(item["adjudication"]) == {
            "submitted": dollars(line.billed_cents), "eligible": dollars(line.allowed_cents),
            "deductible": dollars(shares["1"]), "coinsurance": dollars(shares["2"]), "copay": dollars(shares["3"]),
            "noncovered": dollars(0), "benefit": dollars(line.paid_cents),
            "memberliability": dollars(line.patient_responsibility_cents)}
        assert reasons(item["adjudication"]) == [(f"{a.group}-{a.carc}", dollars(a.amount_cents)) for a in line.adjustments]
    totals = amounts(eob["total"])
    assert totals["submitted"] == dollars(decision.total_billed_cents)
    assert totals["eligible"] == dollars(decision.total_allowed_cents)
    assert totals["benefit"] == dollars(decision.total_paid_cents)
    assert totals["memberliability"] == dollars(decision.total_patient_responsibility_cents)
    assert eob["payment"]["amount"]["value"] == dollars(decision.total_paid_cents)
    assert eob["payment"]["type"]["coding"][0]["code"] == "paid"
    # The same claim as its provider and a dispute team see it; its ClaimResponse pays the same.
    assert resource(fhir("provider"), f"/ExplanationOfBenefit/{claim.claim_id}") == eob
    assert resource(fhir("dispute"), f"/ExplanationOfBenefit/{claim.claim_id}") == eob
    response = resource(payer, f"/ClaimResponse/{claim.claim_id}")
    assert response["outcome"] == "complete" and amounts(response["total"]) == totals
    assert response["payment"]["amount"]["value"] == dollars(decision.total_paid_cents)


def test_pended_and_denied_claims(parties, fhir):
    set_up(parties)
    pended = submitted(parties, "unpriced", code="99215")  # no price in the fee schedule: N448
    denied = submitted(parties, "not-covered", code="97140", billed=4_000)  # CO-96, N130
    assert pended.decision.outcome == common_pb2.OUTCOME_PENDED
    assert denied.decision.outcome == common_pb2.OUTCOME_DENIED
    payer = fhir("payer")
    held = decided_eob(payer, pended.claim_id)
    assert held["outcome"] == "queued" and "payment" not in held
    assert amounts(held["total"]) == {"submitted": dollars(12_000)}
    assert ("N448", None) in reasons(held["item"][0]["adjudication"])
    assert resource(payer, f"/ClaimResponse/{pended.claim_id}")["outcome"] == "queued"
    refused = decided_eob(payer, denied.claim_id)
    assert refused["outcome"] == "complete" and refused["payment"]["type"]["coding"][0]["code"] == "denied"
    assert amounts(refused["total"]) == {
        "submitted": dollars(4_000), "eligible": dollars(0), "deductible": dollars(0), "coinsurance": dollars(0),
        "copay": dollars(0), "noncovered": dollars(4_000), "benefit": dollars(0), "memberliability": dollars(0)}
    assert reasons(refused["item"][0]["adjudication"]) == [("CO-96", dollars(4_000)), ("N130", None)]
    assert refused["payment"]["amount"]["value"] == Decimal("0.00")


def test_a_members_eobs_page_through_next_links(parties, fhir):
    set_up(parties)
    claims = [submitted(parties, f"page-{n}", billed=10_000 + n) for n in range(5)]
    payer = fhir("payer")
    for claim in claims:
        decided_eob(payer, claim.claim_id)
    seen: list[str] = []
    url: str | None = f"/ExplanationOfBenefit?patient=Patient/{world.MEMBER}&_count=2"
    pages = 0
    while url:
        bundle = resource(payer, url)
        assert bundle["type"] == "searchset"
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        assert len(bundle["entry"]) <= 2 and "total" not in bundle
        for entry in bundle["entry"]:
            assert entry["fullUrl"] == f"{parties.fhir_url}/ExplanationOfBenefit/{entry['resource']['id']}"
            assert entry["resource"]["patient"]["identifier"]["value"] == world.MEMBER
            seen.append(entry["resource"]["id"])
        url = links.get("next")
        pages += 1
    assert pages == 3 and sorted(seen) == sorted(c.claim_id for c in claims) and len(set(seen)) == 5
    # One page holds them all: no next link, and the total is known.
    whole = resource(payer, f"/ExplanationOfBenefit?patient={world.MEMBER}")
    assert whole["total"] == 5 and [e["resource"]["id"] for e in whole["entry"]] == seen
    # Another payer's search for the same member id finds none of them.
    assert resource(fhir("other_payer"), f"/ExplanationOfBenefit?patient={world.MEMBER}") == {
        "resourceType": "Bundle", "type": "searchset", "total": 0,
        "link": [{"relation": "self", "url": f"{parties.fhir_url}/ExplanationOfBenefit?patient={world.MEMBER}&_count=50"}]}
    # A provider finds its own claims; another provider none.
    assert len(resource(fhir("provider"), f"/ExplanationOfBenefit?patient={world.MEMBER}")["entry"]) == 5
    assert "entry" not in resource(fhir("other_provider"), f"/ExplanationOfBenefit?patient={world.MEMBER}")


def test_another_tenants_claim_is_not_found_exactly_like_a_missing_one(parties, fhir):
    set_up(parties)
    claim = submitted(parties, "mine")
    decided_eob(fhir("payer"), claim.claim_id)
    missing = str(uuid.uuid4())
    for party in ("other_payer", "other_provider"):
        client = fhir(party)
        for kind in ("ExplanationOfBenefit", "ClaimResponse"):
            theirs = client.get(f"/{kind}/{claim.claim_id}")
            nothing = client.get(f"/{kind}/{missing}")
            assert theirs.status_code == nothing.status_code == 404
            assert theirs.content == nothing.content
            assert validated(theirs.content)["issue"][0]["code"] == "not-found"
            assert claim.claim_id not in theirs.text
    # An id that is no claim id at all, or one spelt in upper case, is not found either.
    for odd in ("not-a-claim", claim.claim_id.upper()):
        resource(fhir("payer"), f"/ExplanationOfBenefit/{odd}", status=404)


def test_credentials_roles_and_parameters(parties, fhir):
    set_up(parties)
    claim = submitted(parties, "checked")
    path = f"/ExplanationOfBenefit/{claim.claim_id}"
    # No key, a malformed one, an unknown one: 401 with a Bearer challenge.
    for client in (fhir(), fhir(key="nonsense"), fhir(key="ck_000000000000_" + "A" * 52)):
        answer = client.get(path)
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
        assert validated(answer.content)["issue"][0]["code"] == "login"
    # An admin key reads no claims.
    assert resource(fhir("admin"), path, status=403)["issue"][0]["code"] == "forbidden"
    payer = fhir("payer")
    # Bad search parameters: 400 naming the parameter.
    for query, parameter in (("_count=abc", "_count"), ("_count=0", "_count"), ("_count=-1", "_count"),
                             ("_count=2.5", "_count"), ("page_token=forged", "page_token"), ("", "patient"),
                             ("patient=M-1&patient=M-2", "patient")):
        separator = "&" if query and not query.startswith("patient") else ""
        prefix = f"patient={world.MEMBER}{separator}" if parameter != "patient" else ""
        outcome = resource(payer, f"/ExplanationOfBenefit?{prefix}{query}", status=400)
        assert outcome["issue"][0]["expression"] == [parameter], query
    # A page token of another patient's search is refused too (its filters are in the token).
    first = resource(payer, f"/ExplanationOfBenefit?patient={world.MEMBER}&_count=1")
    submitted(parties, "second")
    token = None
    for _ in range(100):
        first = resource(payer, f"/ExplanationOfBenefit?patient={world.MEMBER}&_count=1")
        token = {link["relation"]: link["url"] for link in first["link"]}.get("next")
        if token:
            break
        time.sleep(0.05)
    assert token is not None
    stolen = token.split("page_token=")[1]
    resource(payer, f"/ExplanationOfBenefit?patient=M-OTHER&page_token={stolen}", status=400)
    # Unknown parameters are ignored, unless the client asks for strict handling.
    assert resource(payer, f"/ExplanationOfBenefit?patient={world.MEMBER}&_sort=date")["type"] == "searchset"
    strict = payer.get(f"/ExplanationOfBenefit?patient={world.MEMBER}&_sort=date", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and validated(strict.content)["issue"][0]["code"] == "not-supported"
    # Read-only; only JSON; unknown paths are OperationOutcomes too.
    posted = payer.post("/ExplanationOfBenefit", json={"resourceType": "ExplanationOfBenefit"})
    assert posted.status_code == 405 and validated(posted.content)["issue"][0]["code"] == "not-supported"
    resource(payer, f"{path}?_format=xml", status=400)
    resource(payer, "/Patient/M-1001", status=404)


def test_the_capability_statement_needs_no_key(parties, fhir):
    statement = resource(fhir(), "/metadata")
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    served = {r["type"]: [i["code"] for i in r["interaction"]] for r in statement["rest"][0]["resource"]}
    assert served == {"ExplanationOfBenefit": ["read", "search-type"], "ClaimResponse": ["read"]}


def test_a_key_revoked_through_the_service_stops_working_over_http_at_once(parties, fhir):
    set_up(parties)
    claim = submitted(parties, "revoked")
    key, key_id, _ = parties.service.commands.create_api_key(actor="admin:test", role="payer", party_id=world.PAYER,
                                                             label="soon revoked")
    client = fhir(key=key)
    resource(client, f"/ExplanationOfBenefit/{claim.claim_id}")
    parties.service.commands.revoke_api_key(actor="admin:test", key_id=key_id, reason="test")
    resource(client, f"/ExplanationOfBenefit/{claim.claim_id}", status=401)


def test_the_provider_reads_only_its_own(parties, fhir):
    set_up(parties)
    claim = submitted(parties, "own")
    resource(fhir("provider"), f"/ClaimResponse/{claim.claim_id}")
    outcome = resource(fhir("other_provider"), f"/ClaimResponse/{claim.claim_id}", status=404)
    assert outcome["issue"][0]["diagnostics"] == "no ClaimResponse with this id"
    listed = parties.other_provider.provider.ListClaims(provider_pb2.ListClaimsRequest())
    assert list(listed.claims) == []


def test_claimsctl_prints_the_resource_the_endpoint_serves(parties, fhir, monkeypatch, capsys):
    from claims_service.cli.main import main

    set_up(parties)
    claim = submitted(parties, "printed")
    served = decided_eob(fhir("payer"), claim.claim_id)
    monkeypatch.setenv("CLAIMS_DATABASE_URL", parties.service.ledger.database_url)
    monkeypatch.setenv("CLAIMS_FHIR_ADDR", "")
    capsys.readouterr()
    assert main(["fhir", "eob", claim.claim_id]) == 0
    assert validated(capsys.readouterr().out.encode()) == served
    assert main(["fhir", "claim-response", claim.claim_id, "--compact"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and validated(printed.encode())["resourceType"] == "ClaimResponse"
    assert main(["fhir", "eob", str(uuid.uuid4())]) == 2
    assert "not found" in capsys.readouterr().err
