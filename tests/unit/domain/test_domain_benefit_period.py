"""A benefit period's day index answers a claim's duplicate check exactly as a walk over every
line of the member's year would, whatever order claims are applied, applied again and reversed."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from claims_service.domain.benefits import BenefitPeriod

DAYS = [date(2026, 3, 1) + timedelta(days=n) for n in range(5)]
CLAIMS = [f"claim-{n}" for n in range(6)]


def line(day: date, code: str) -> dict[str, Any]:
    return {"date_of_service": day, "procedure_code": code, "provider_id": "1234567893", "modifiers": [], "units": 1}


def walked(period: BenefitPeriod, excluding: set[str], on: set[date]) -> list[dict[str, Any]]:
    """Every line of every claim applied, in the claims' first-applied order, then filtered."""
    return [
        {**item, "claim_id": claim_id, "voided": record["reversed"]}
        for claim_id, record in period.claims.items()
        if claim_id not in excluding
        for item in record["lines"]
        if item["date_of_service"] in on
    ]


lines_strategy = st.lists(st.builds(line, st.sampled_from(DAYS), st.sampled_from(["99213", "99214", "97110"])), max_size=4)
steps_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), st.sampled_from(CLAIMS), lines_strategy),
        st.tuples(st.just("reverse"), st.sampled_from(CLAIMS), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(steps=steps_strategy, excluding=st.sets(st.sampled_from(CLAIMS), max_size=2), on=st.sets(st.sampled_from(DAYS), min_size=1))
def test_the_day_index_finds_what_a_walk_over_the_year_finds(steps, excluding, on) -> None:
    period = BenefitPeriod.open(payer_id="PAYER", member_id="M1", plan_year=2026)
    for kind, claim_id, lines in steps:
        if kind == "apply":
            period.apply_claim(actor="adjudicator", claim_id=claim_id, deductible_cents=0, oop_cents=0,
                               benefit_units={}, lines=lines)
        else:
            period.reverse_claim(actor="adjudicator", claim_id=claim_id, reason="voided claim")
    assert period.earlier_lines(excluding=excluding, on=on) == walked(period, excluding, on)
    assert period.earlier_lines(excluding=excluding) == walked(period, excluding, set(DAYS))


def test_a_claim_applied_again_keeps_its_place_and_drops_its_old_days() -> None:
    period = BenefitPeriod.open(payer_id="PAYER", member_id="M1", plan_year=2026)
    for claim_id, day in (("a", DAYS[0]), ("b", DAYS[0]), ("c", DAYS[1])):
        period.apply_claim(actor="adjudicator", claim_id=claim_id, deductible_cents=0, oop_cents=0,
                           benefit_units={}, lines=[line(day, "99213")])
    period.apply_claim(actor="adjudicator", claim_id="a", deductible_cents=0, oop_cents=0,
                       benefit_units={}, lines=[line(DAYS[1], "99214"), line(DAYS[0], "99213")])
    period.reverse_claim(actor="adjudicator", claim_id="b", reason="voided claim")
    found = period.earlier_lines(excluding=set(), on={DAYS[0], DAYS[1]})
    assert [(f["claim_id"], f["procedure_code"], f["voided"]) for f in found] == [
        ("a", "99214", False), ("a", "99213", False), ("b", "99213", True), ("c", "99213", False)]
    assert [f["claim_id"] for f in period.earlier_lines(excluding={"a"}, on={DAYS[0]})] == ["b"]
