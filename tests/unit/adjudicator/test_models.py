"""The models: strict where money and counts are concerned, frozen, and equal after a JSON round trip."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from pydantic import ValidationError

from adjudicator import (
    Adjustment,
    ClaimInput,
    Decision,
    Facts,
    LineResult,
    Outcome,
)

from .kit import accumulators, authorization, claim, earlier, facts, line, run


def full_facts() -> Facts:
    return facts(
        accumulators=[accumulators(2025, 100, 200, **{"97110": 3}), accumulators(2026)],
        authorizations=[authorization("29881", 1, used=1)],
        earlier_lines=[earlier(voided=True), earlier("80053", modifiers=("59",))],
        benefit_limits={"97110": 12},
        prior_auth_required=["29881"],
        non_covered_procedures=["99395"],
    )


def test_claim_facts_and_decision_survive_a_json_round_trip():
    a_claim = claim(line(1, modifiers=("25",)), line(2, "80053", billed=3_000), frequency="7", original="OLD-1")
    a_facts = full_facts()
    decision = run(a_claim, a_facts)
    for value in (a_claim, a_facts, decision):
        dumped = value.model_dump(mode="json")
        json.dumps(dumped)  # plain JSON
        assert type(value).model_validate(dumped) == value
        assert type(value).model_validate_json(value.model_dump_json()) == value


def test_decision_outcome_is_written_as_its_name():
    assert run(claim(), facts()).model_dump(mode="json")["outcome"] == "PAID"
    assert Outcome("PENDED") is Outcome.PENDED


def test_models_are_frozen():
    with pytest.raises(ValidationError):
        claim().claim_id = "other"


@pytest.mark.parametrize(
    "changes",
    [
        {"billed_cents": 100.0},  # never a float
        {"billed_cents": True},  # never a bool
        {"billed_cents": "100"},  # never text
        {"billed_cents": -1},
        {"units": 0},
        {"line_number": 51},
        {"procedure_code": "9921"},
        {"modifiers": ["5"]},
        {"date_of_service": datetime(2026, 3, 10, 12, 0)},
        {"date_of_service": 1_773_100_800},
        {"surprise": 1},  # unknown fields are refused
    ],
)
def test_claim_line_refuses_loose_values(changes):
    values = line().model_dump()
    values.update(changes)
    with pytest.raises(ValidationError):
        type(line()).model_validate(values)


def test_claim_line_accepts_an_iso_date():
    values = line().model_dump()
    values["date_of_service"] = "2026-03-10"
    assert type(line()).model_validate(values).date_of_service == date(2026, 3, 10)


def claim_values(**changes):
    values = claim().model_dump(mode="json")
    values.update(changes)
    return values


def test_claim_refuses_duplicate_line_numbers_and_pointers_past_the_diagnoses():
    two = claim(line(1), line(2)).model_dump(mode="json")
    two["lines"][1]["line_number"] = 1
    with pytest.raises(ValidationError, match="unique"):
        ClaimInput.model_validate(two)
    with pytest.raises(ValidationError, match="pointer"):
        ClaimInput.model_validate(claim_values(diagnosis_codes=["E119"], lines=[line(pointers=(2,)).model_dump(mode="json")]))


@pytest.mark.parametrize(
    "changes",
    [
        {"frequency_code": "2"},
        {"diagnosis_codes": ["E11.9"]},  # sent without the dot
        {"lines": []},
        {"place_of_service": "1"},
    ],
)
def test_claim_refuses_malformed_values(changes):
    with pytest.raises(ValidationError):
        ClaimInput.model_validate(claim_values(**changes))


def test_facts_refuse_two_accumulators_for_one_year():
    with pytest.raises(ValidationError, match="plan year"):
        facts(accumulators=[accumulators(2026), accumulators(2026)])


def test_coinsurance_is_basis_points_up_to_one_hundred_percent():
    with pytest.raises(ValidationError):
        facts(cost_share={"default": {"copay_cents": 0, "coinsurance_bp": 10_001}})


def test_line_result_must_balance():
    values = dict(
        line_number=1,
        billed_cents=100,
        allowed_cents=80,
        paid_cents=60,
        patient_responsibility_cents=20,
        adjustments=[Adjustment(group="CO", carc="45", amount_cents=20), Adjustment(group="PR", carc="2", amount_cents=20)],
        remarks=[],
        status="paid",
    )
    assert LineResult(**values).paid_cents == 60
    with pytest.raises(ValidationError, match="billed"):
        LineResult(**{**values, "paid_cents": 61})
    with pytest.raises(ValidationError, match="patient responsibility"):
        LineResult(**{**values, "patient_responsibility_cents": 21})


def test_decision_totals_must_be_the_sums_of_its_lines():
    values = run(claim(), facts()).model_dump(mode="json")
    values["total_paid_cents"] += 1
    with pytest.raises(ValidationError, match="sums"):
        Decision.model_validate(values)
