"""The FHIR resources built from read-model rows: each validates against fhir.resources' R4B
models (docs/FHIR.md), and every amount is the decision's to the cent."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from claims_service.fhir.resources import (
    C4BB_ADJUDICATION,
    CARIN_EOB_PROFILE,
    HL7_ADJUDICATION,
    X12_CARC,
    ClaimRecord,
    amounts,
    capability_statement,
    claim_response,
    dumps,
    explanation_of_benefit,
    icd_10_cm,
    money,
    operation_outcome,
    searchset,
)
from projections.benefits import Eob
from projections.claims import ClaimStatus
from tests.fhir_validation import validated

CLAIM_ID = "5f0c1d2e-3a4b-4c5d-8e6f-708192a3b4c5"
WHEN = datetime(2026, 10, 16, 9, 30, 12, 345678, tzinfo=UTC)


def adjustment(group: str, carc: str, cents: int) -> dict[str, Any]:
    return {"group": group, "carc": carc, "amount_cents": cents}


def eob_line(number: int, *, billed: int, allowed: int | None, paid: int | None, owe: int | None, status: str,
             adjustments: list[dict[str, Any]] = (), remarks: list[str] = (), code: str = "99213",
             modifiers: list[str] = ()) -> dict[str, Any]:
    return {"line_number": number, "date_of_service": "2026-10-15", "procedure_code": code,
            "modifiers": list(modifiers), "units": 1, "billed_cents": billed, "allowed_cents": allowed,
            "paid_cents": paid, "you_owe_cents": owe, "status": status, "adjustments": list(adjustments),
            "remarks": list(remarks)}


# A therapy claim: a paid office visit (copay, deductible, fee-schedule cut), a line partly cut over
# its unit limit (with coinsurance), and a denied line (not covered, with its remark).
LINES = [
    eob_line(1, billed=12_000, allowed=9_000, paid=1_500, owe=7_500, status="paid",
             adjustments=[adjustment("CO", "45", 3_000), adjustment("PR", "3", 2_500), adjustment("PR", "1", 5_000)]),
    eob_line(2, billed=21_000, allowed=12_000, paid=9_600, owe=2_400, status="paid", code="97110",
             adjustments=[adjustment("CO", "151", 7_000), adjustment("CO", "45", 2_000), adjustment("PR", "2", 2_400)],
             remarks=["N362"], modifiers=["GP", "59"]),
    eob_line(3, billed=4_000, allowed=0, paid=0, owe=0, status="denied", code="97140",
             adjustments=[adjustment("CO", "96", 4_000)], remarks=["N130"]),
]


def eob_row(lines: list[dict[str, Any]] = LINES, **changes: Any) -> Eob:
    decided = all(line["status"] in ("paid", "denied") for line in lines)
    row = Eob(claim_id=CLAIM_ID, payer_id="PAYER-ACME", member_id="M-1001", provider_id="1234567893",
              claim_status="adjudicated", outcome="PARTIALLY_PAID", received_on=date(2026, 10, 16),
              first_date_of_service=date(2026, 10, 15), lines=lines,
              total_billed_cents=sum(line["billed_cents"] for line in lines),
              total_allowed_cents=sum(line["allowed_cents"] or 0 for line in lines) if decided else None,
              total_paid_cents=sum(line["paid_cents"] or 0 for line in lines) if decided else None,
              total_you_owe_cents=sum(line["you_owe_cents"] or 0 for line in lines) if decided else None,
              submitted_position=10, last_position=12)
    return replace(row, **changes)


def claim_row(**changes: Any) -> ClaimStatus:
    row = ClaimStatus(
        claim_id=CLAIM_ID, provider_id="1234567893", payer_id="PAYER-ACME", member_id="M-1001", visit_id=None,
        status="adjudicated", frequency_code="1", replaces_claim_id=None, replaced_by=None, void_reason=None,
        place_of_service="11", received_on=date(2026, 10, 16), first_date_of_service=date(2026, 10, 15),
        last_date_of_service=date(2026, 10, 15), diagnosis_codes=["E119", "M5450", "I10"],
        lines=[{"line_number": n, "diagnosis_pointers": [1, 2] if n == 1 else [2]} for n in (1, 2, 3)],
        outcome="PARTIALLY_PAID", total_billed_cents=37_000, total_allowed_cents=21_000, total_paid_cents=11_100,
        total_patient_responsibility_cents=9_900, decision={}, ruleset_version="2026.1", ruleset_hash="h",
        review=None, disputes=[], open_dispute_id=None, submitted_position=10, last_position=12, stream_version=2)
    return replace(row, **changes)


def by_category(adjudications: list[dict[str, Any]]) -> dict[str, Decimal]:
    return {a["category"]["coding"][0]["code"]: a["amount"]["value"] for a in adjudications
            if a["category"]["coding"][0]["code"] not in ("adjustmentreason", "benefitpaymentstatus")}


def dollars(cents: int) -> Decimal:
    return Decimal(cents) / 100


def test_money_is_an_exact_decimal_written_digit_for_digit():
    assert money(12_000) == {"value": Decimal("120.00"), "currency": "USD"}
    assert dumps({"m": [money(1), money(0), money(-5), money(9_007_199_254_740_993)]}) == \
        b'{"m":[{"value":0.01,"currency":"USD"},{"value":0.00,"currency":"USD"},' \
        b'{"value":-0.05,"currency":"USD"},{"value":90071992547409.93,"currency":"USD"}]}'


def test_line_amounts_follow_the_mapping_table():
    assert amounts(LINES[0]) == {"submitted": 12_000, "eligible": 9_000, "deductible": 5_000, "coinsurance": 0,
                                 "copay": 2_500, "noncovered": 0, "benefit": 1_500, "memberliability": 7_500}
    assert amounts(LINES[1])["noncovered"] == 7_000  # the units cut (CO-151), not the fee-schedule cut (CO-45)
    assert amounts(LINES[2]) == {"submitted": 4_000, "eligible": 0, "deductible": 0, "coinsurance": 0, "copay": 0,
                                 "noncovered": 4_000, "benefit": 0, "memberliability": 0}
    held = eob_line(1, billed=250_000, allowed=0, paid=0, owe=0, status="pended", adjustments=[adjustment("OA", "133", 250_000)])
    assert amounts(held) == {"submitted": 250_000}


def test_an_eob_validates_and_carries_every_amount_to_the_cent():
    eob = validated(explanation_of_benefit(ClaimRecord(eob_row(), claim_row(), WHEN)))
    assert eob["meta"]["profile"] == [CARIN_EOB_PROFILE]
    assert eob["meta"]["lastUpdated"] == "2026-10-16T09:30:12.345+00:00" and eob["meta"]["versionId"] == "12"
    assert eob["id"] == CLAIM_ID and eob["status"] == "active" and eob["outcome"] == "complete"
    assert eob["patient"]["reference"] == "Patient/M-1001"
    assert eob["provider"]["identifier"] == {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}
    assert [d["diagnosisCodeableConcept"]["coding"][0]["code"] for d in eob["diagnosis"]] == ["E11.9", "M54.50", "I10"]
    assert eob["item"][0]["diagnosisSequence"] == [1, 2]
    assert eob["item"][0]["locationCodeableConcept"]["coding"][0]["code"] == "11"
    assert [m["coding"][0]["code"] for m in eob["item"][1]["modifier"]] == ["GP", "59"]
    for item, line in zip(eob["item"], LINES, strict=True):
        assert by_category(item["adjudication"]) == {k: dollars(v) for k, v in amounts(line).items()}
        reasons = [a for a in item["adjudication"] if a["category"]["coding"][0]["code"] == "adjustmentreason"]
        carcs = [(r["reason"]["text"], r["amount"]["value"]) for r in reasons if "amount" in r]
        assert carcs == [(f"{a['group']}-{a['carc']}", dollars(a["amount_cents"])) for a in line["adjustments"]]
        assert all(r["reason"]["coding"][0]["system"] == X12_CARC for r in reasons if "amount" in r)
        assert [r["reason"]["text"] for r in reasons if "amount" not in r] == line["remarks"]
    totals = by_category(eob["total"])
    assert totals["submitted"] == dollars(37_000) and totals["eligible"] == dollars(21_000)
    assert totals["benefit"] == dollars(11_100) and totals["memberliability"] == dollars(9_900)
    assert totals["noncovered"] == dollars(11_000)
    assert eob["payment"]["amount"]["value"] == dollars(11_100)
    assert eob["payment"]["type"]["coding"][0]["code"] == "partiallypaid"
    systems = {a["category"]["coding"][0]["code"]: a["category"]["coding"][0]["system"] for a in eob["total"]}
    assert systems["coinsurance"] == systems["noncovered"] == C4BB_ADJUDICATION
    assert systems["submitted"] == systems["eligible"] == systems["benefit"] == HL7_ADJUDICATION


def test_a_pended_claim_is_queued_with_its_reason_and_no_payment():
    held = [eob_line(1, billed=250_000, allowed=0, paid=0, owe=0, status="pended",
                     adjustments=[adjustment("OA", "133", 250_000)], remarks=["N10"])]
    record = ClaimRecord(eob_row(held, outcome="PENDED", claim_status="pended"), claim_row(pend_reasons=["N10", "N448"]), WHEN)
    for resource in (explanation_of_benefit(record), claim_response(record)):
        found = validated(resource)
        assert found["outcome"] == "queued" and "payment" not in found
        assert by_category(found["total"]) == {"submitted": Decimal("2500.00")}
        reasons = [a["reason"]["text"] for a in found["item"][0]["adjudication"] if "reason" in a]
        assert reasons[:3] == ["OA-133", "N10", "N448"]  # the line's remark once, then the claim's other reason
    partly = held + [LINES[2]]
    found = validated(explanation_of_benefit(ClaimRecord(eob_row(partly, outcome="PENDED"), claim_row(), WHEN)))
    assert found["outcome"] == "partial"


def test_a_claim_not_yet_decided_nor_in_claim_status_still_validates():
    fresh = [eob_line(1, billed=12_000, allowed=None, paid=None, owe=None, status="submitted")]
    record = ClaimRecord(eob_row(fresh, outcome=None, claim_status="submitted"), None, None)
    eob = validated(explanation_of_benefit(record))
    assert eob["outcome"] == "queued" and "lastUpdated" not in eob["meta"] and eob["created"] == "2026-10-16"
    assert "diagnosis" not in eob and "locationCodeableConcept" not in eob["item"][0]
    validated(claim_response(record))


def test_voided_and_replaced_claims_are_cancelled_and_name_their_related_claims():
    other = "0f0c1d2e-3a4b-4c5d-8e6f-708192a3b4c5"
    voided = validated(explanation_of_benefit(ClaimRecord(eob_row(claim_status="voided"), claim_row(), WHEN)))
    assert voided["status"] == "cancelled"
    replaced = validated(explanation_of_benefit(ClaimRecord(
        eob_row(claim_status="replaced"), claim_row(replaced_by=other, replaces_claim_id=other), WHEN)))
    assert [(r["relationship"]["coding"][0]["code"], r["reference"]["value"]) for r in replaced["related"]] == \
        [("prior", other), ("replacedby", other)]


def test_a_claim_response_validates_and_pays_what_the_decision_pays():
    response = validated(claim_response(ClaimRecord(eob_row(), claim_row(), WHEN)))
    assert response["request"]["identifier"]["value"] == CLAIM_ID
    assert [item["itemSequence"] for item in response["item"]] == [1, 2, 3]
    assert response["payment"]["amount"]["value"] == dollars(11_100)
    assert response["payment"]["type"]["coding"][0]["code"] == "partial"
    for item, line in zip(response["item"], LINES, strict=True):
        assert by_category(item["adjudication"]) == {k: dollars(v) for k, v in amounts(line).items()}


@pytest.mark.parametrize("member", ["M 1001", "M_1001", "x" * 65])
def test_a_member_id_that_is_no_fhir_id_is_referenced_by_identifier_only(member):
    eob = validated(explanation_of_benefit(ClaimRecord(eob_row(member_id=member), claim_row(), WHEN)))
    assert "reference" not in eob["patient"] and eob["patient"]["identifier"]["value"] == member


def test_the_other_resources_validate():
    validated(capability_statement("http://127.0.0.1:8080/fhir", "0.1.0", page_size=50, most=500))
    validated(operation_outcome("error", "not-found", "no ExplanationOfBenefit with this id"))
    validated(operation_outcome("error", "invalid", "_count: must be a positive integer", ["_count"]))
    eob = explanation_of_benefit(ClaimRecord(eob_row(), claim_row(), WHEN))
    bundle = validated(searchset([("http://x/fhir/ExplanationOfBenefit/" + CLAIM_ID, eob)],
                                 {"self": "http://x/fhir/ExplanationOfBenefit?patient=M-1001"}, total=1))
    validated(bundle["entry"][0]["resource"])
    assert validated(searchset([], {"self": "http://x"}, total=0))["total"] == 0


def test_icd_10_cm_codes_get_their_dot():
    assert [icd_10_cm(c) for c in ("I10", "E119", "S83241A")] == ["I10", "E11.9", "S83.241A"]


def test_the_validation_catches_what_the_models_let_through():
    eob = explanation_of_benefit(ClaimRecord(eob_row(), claim_row(), WHEN))
    with pytest.raises(AssertionError, match="outcome"):
        validated({**eob, "outcome": "done"})
    with pytest.raises(AssertionError, match="related is empty"):
        validated({**eob, "related": []})
    with pytest.raises(Exception, match="foo"):
        validated({**eob, "foo": 1})
