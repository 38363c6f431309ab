"""The engine: order of rules, balance and totals, outcome, pending, determinism."""

from __future__ import annotations

from adjudicator import Outcome, RuleSet, adjudicate, get_ruleset
from adjudicator.engine import evaluate
from adjudicator.rules import eligibility, pricing, timely_filing
from adjudicator.rulesets import v2026_1
from adjudicator.state import DENIED, OPEN

from .kit import assert_balanced, claim, facts, line, run, summary


def test_reports_lines_in_line_number_order_whatever_the_claim_order():
    decision = run(claim(line(3, "80053", billed=3_000), line(1), line(2, "85025", billed=2_000)), facts())
    assert [result.line_number for result in decision.lines] == [1, 2, 3]


def test_records_the_rule_set_version_and_hash():
    decision = run(claim(), facts(), "2026.2")
    assert decision.ruleset_version == "2026.2"
    assert decision.ruleset_hash == get_ruleset("2026.2").content_hash


def test_totals_are_the_sums_of_the_lines():
    decision = run(claim(line(1), line(2, "80053", billed=3_000), line(3, "99395", billed=2_500, pointers=(4,))), facts(non_covered_procedures=["99395"]))
    assert (decision.total_billed_cents, decision.total_allowed_cents, decision.total_paid_cents) == (20_500, 10_500, 10_500)
    assert_balanced(decision)


def test_a_claim_wholly_to_the_deductible_is_paid_not_denied():
    decision = run(claim(), facts(deductible_cents=50_000))
    assert decision.outcome is Outcome.PAID
    assert (decision.total_paid_cents, decision.total_patient_responsibility_cents) == (0, 9_000)


def test_a_claim_that_lost_units_is_partially_paid():
    decision = run(claim(line(code="97110", units=5, billed=20_000, pointers=(3,))), facts())
    assert decision.outcome is Outcome.PARTIALLY_PAID


def test_a_denied_line_is_not_shown_to_later_rules():
    state = evaluate(claim(), facts(member_known=False), get_ruleset("2026.1").steps[:1])
    assert [line_.status for line_ in state.lines] == [DENIED]
    assert state.open_lines() == []
    assert evaluate(claim(), facts(), get_ruleset("2026.1").steps[:3]).lines[0].status is OPEN


def test_engine_pends_a_line_no_rule_priced_even_without_a_pend_rule():
    parameters = {name: v2026_1.PARAMETERS[name] for name in ("eligibility", "timely_filing", "pricing")}
    no_pend = RuleSet.build("test-no-pend", (eligibility, timely_filing, pricing), parameters)
    decision = adjudicate(claim(line(1), line(2, "99215", billed=20_000)), facts(), no_pend)
    assert decision.outcome is Outcome.PENDED
    assert [summary(result)[1:] for result in decision.lines] == [
        ("pended", 0, 0, 0, "OA-133:15000", ""),
        ("pended", 0, 0, 0, "OA-133:20000", ""),
    ]
    assert decision.accumulator_changes == []


def test_same_inputs_give_the_same_decision():
    a_claim = claim(line(1, "29881", billed=80_000, pointers=(3,)), line(2, "20610", billed=10_000, pointers=(3,)))
    a_facts = facts(deductible_cents=10_000, cost_share={"default": {"copay_cents": 0, "coinsurance_bp": 2_000}})
    first = run(a_claim, a_facts)
    assert all(run(a_claim, a_facts) == first for _ in range(3))
    assert run(a_claim, a_facts).model_dump_json() == first.model_dump_json()
