"""A pended claim's human side (adjudicator/review.py): why it pends, and the reviewer's decision,
made by the engine's own functions with the released rule set 2026.1.

The reviewer's allowed amounts take the place of fee-schedule pricing and nothing pends; cost share
(copay, deductible, coinsurance, out-of-pocket maximum) and the outcome label are the engine's. So
a review must equal `adjudicate` on the same facts with a fee-schedule price equal to the reviewer's
allowed amount. 99215 has no price in kit.FEES: a claim billing it pends for N448.
"""

from __future__ import annotations

import json

import pytest

from adjudicator import Outcome, Resolution, adjudicate, get_ruleset, pend_reasons, review
from adjudicator.codes import CodeNotInForceError
from adjudicator.models import Facts
from adjudicator.review import MISSING_PRICE, PEND_REASONS, REVIEW_THRESHOLD, lines_to_review

from .kit import FEES, accumulators, assert_balanced, claim, day, facts, fee_schedule, line, share, summary

RULESET = get_ruleset("2026.1")

UNPRICED = line(1, "99215", billed=160_000)
UNPRICED_NEXT_DAY = line(2, "99215", billed=160_000, dos=day(1))  # 99215: at most 1 unit a day


def priced_at(facts_: Facts, **prices: int) -> Facts:
    """The same facts with the fee schedule pricing each code as given (per unit)."""
    return facts_.model_copy(update={"fee_schedule": fee_schedule(fees={**FEES, **prices})})


def approve(**allowed: int) -> Resolution:
    """Resolution(allowed=...) from l1=..., l2=... keywords."""
    return Resolution(allowed={int(name.removeprefix("l")): cents for name, cents in allowed.items()})


# --- why a claim pends -----------------------------------------------------------------------


def test_a_claim_billed_above_the_review_threshold_pends_for_n10():
    claim_ = claim(line(1), line(2, "80053", billed=1_500))
    facts_ = facts(review_threshold_cents=16_000)
    assert adjudicate(claim_, facts_, RULESET).outcome is Outcome.PENDED
    assert pend_reasons(claim_, facts_, RULESET) == [REVIEW_THRESHOLD] == ["N10"]


def test_a_claim_at_the_review_threshold_does_not_pend():
    claim_ = claim(line(1), line(2, "80053", billed=1_500))
    assert pend_reasons(claim_, facts(review_threshold_cents=16_500), RULESET) == []


def test_a_procedure_without_a_fee_schedule_price_pends_for_n448():
    claim_ = claim(line(1), line(2, "99215", billed=30_000))
    assert adjudicate(claim_, facts(), RULESET).outcome is Outcome.PENDED
    assert pend_reasons(claim_, facts(), RULESET) == [MISSING_PRICE] == ["N448"]


def test_a_claim_with_no_fee_schedule_at_all_pends_for_n448():
    assert pend_reasons(claim(), facts(schedule=None), RULESET) == ["N448"]


def test_a_claim_can_pend_for_both_reasons():
    assert pend_reasons(claim(UNPRICED), facts(review_threshold_cents=100_000), RULESET) == ["N10", "N448"]


def test_a_clean_claim_has_no_pend_reason():
    claim_ = claim(line(1), line(2, "80053", billed=1_500))
    assert adjudicate(claim_, facts(), RULESET).outcome is Outcome.PAID
    assert pend_reasons(claim_, facts(), RULESET) == []


def test_lines_the_rules_deny_give_no_pend_reason():
    # Over the threshold and unpriced, but the procedure is not covered: denied, not pended.
    claim_ = claim(UNPRICED)
    facts_ = facts(review_threshold_cents=100_000, non_covered_procedures=["99215"])
    assert adjudicate(claim_, facts_, RULESET).outcome is Outcome.DENIED
    assert pend_reasons(claim_, facts_, RULESET) == []


def test_every_pend_reason_is_described():
    assert set(PEND_REASONS) >= {"N10", "N448"}
    assert all(PEND_REASONS.values())


# --- which lines a reviewer must price -------------------------------------------------------


def test_lines_to_review_are_the_pended_lines_only():
    # Line 2 is not covered (denied CO-96); lines 1 and 3 are held by the pend.
    claim_ = claim(UNPRICED, line(2, "99395", billed=2_500, pointers=(4,)), line(3, "80053", billed=1_500))
    pended = adjudicate(claim_, facts(non_covered_procedures=["99395"]), RULESET)
    assert [result.status for result in pended.lines] == ["pended", "denied", "pended"]
    assert lines_to_review(pended) == [1, 3]


def test_a_decided_claim_has_no_line_to_review():
    assert lines_to_review(adjudicate(claim(), facts(), RULESET)) == []


# --- the reviewer's approval: cost share as the engine does it -------------------------------


def test_an_approval_pays_the_allowed_amount_when_the_member_shares_nothing():
    decision = review(claim(UNPRICED), facts(), RULESET, approve(l1=140_000))
    assert decision.outcome is Outcome.PAID
    # The billed amount above the reviewer's amount is a contractual adjustment, like a price.
    assert [summary(r) for r in decision.lines] == [(1, "paid", 140_000, 140_000, 0, "CO-45:20000", "")]
    assert decision.accumulator_changes == []
    assert_balanced(decision)


def test_an_approval_takes_copay_then_deductible_then_coinsurance():
    # 1. Copay $25.00; $100.00 of the deductible left; 20 % coinsurance of the $875.00 rest.
    facts_ = facts(
        deductible_cents=50_000,
        cost_share={"office_visit": share(2_500, 2_000)},
        accumulators=[accumulators(2026, deductible=40_000, oop=40_000)],
    )
    decision = review(claim(UNPRICED), facts_, RULESET, approve(l1=100_000))
    assert [summary(r) for r in decision.lines] == [
        (1, "paid", 100_000, 70_000, 30_000, "CO-45:60000 PR-3:2500 PR-1:10000 PR-2:17500", "")
    ]
    assert decision.outcome is Outcome.PAID
    [change] = decision.accumulator_changes
    assert (change.plan_year, change.deductible_cents, change.oop_cents) == (2026, 10_000, 30_000)


def test_the_member_share_is_capped_by_the_out_of_pocket_maximum():
    # 2. $155.00 of the $2,000.00 maximum left. Uncapped, the member would owe $100.00 of deductible
    #    and 20 % of $1,300.00 (= $260.00), $360.00 in all: they owe exactly $155.00, the plan the rest.
    facts_ = facts(
        deductible_cents=50_000,
        oop_max_cents=200_000,
        cost_share={"default": share(0, 2_000)},
        accumulators=[accumulators(2026, deductible=40_000, oop=184_500)],
    )
    decision = review(claim(UNPRICED), facts_, RULESET, approve(l1=140_000))
    [result] = decision.lines
    assert result.patient_responsibility_cents == 15_500
    assert result.paid_cents == 140_000 - 15_500 == 124_500
    assert summary(result)[5] == "CO-45:20000 PR-1:10000 PR-2:5500"
    [change] = decision.accumulator_changes
    assert (change.deductible_cents, change.oop_cents) == (10_000, 15_500)
    assert decision.outcome is Outcome.PAID


def test_a_member_at_the_out_of_pocket_maximum_owes_nothing():
    facts_ = facts(
        deductible_cents=50_000,
        oop_max_cents=200_000,
        cost_share={"default": share(2_000, 2_000)},
        accumulators=[accumulators(2026, deductible=0, oop=200_000)],
    )
    decision = review(claim(UNPRICED), facts_, RULESET, approve(l1=140_000))
    assert (decision.total_paid_cents, decision.total_patient_responsibility_cents) == (140_000, 0)
    assert decision.accumulator_changes == []


def test_an_approval_wholly_to_the_deductible_is_paid_with_nothing_paid():
    decision = review(claim(UNPRICED), facts(deductible_cents=500_000), RULESET, approve(l1=140_000))
    assert decision.outcome is Outcome.PAID
    assert (decision.total_paid_cents, decision.total_patient_responsibility_cents) == (0, 140_000)
    assert decision.accumulator_changes[0].deductible_cents == 140_000


def test_the_deductible_and_maximum_accumulate_across_the_lines_of_the_claim():
    # 3. $50.00 of deductible left: line 1 takes it all; line 2 pays only coinsurance (50 %),
    #    capped by what line 1 left of the $80.00 maximum.
    claim_ = claim(UNPRICED, UNPRICED_NEXT_DAY)
    facts_ = facts(
        deductible_cents=5_000, oop_max_cents=8_000, cost_share={"default": share(0, 5_000)},
    )
    decision = review(claim_, facts_, RULESET, approve(l1=10_000, l2=10_000))
    assert [summary(r)[:5] for r in decision.lines] == [
        (1, "paid", 10_000, 2_500, 7_500),  # 5_000 deductible + 2_500 coinsurance
        (2, "paid", 10_000, 9_500, 500),  # 5_000 coinsurance capped at the 500 left
    ]
    [change] = decision.accumulator_changes
    assert (change.deductible_cents, change.oop_cents) == (5_000, 8_000)


def test_an_allowed_amount_above_the_billed_amount_is_cut_to_the_billed_amount():
    decision = review(claim(UNPRICED), facts(), RULESET, approve(l1=200_000))
    assert [summary(r) for r in decision.lines] == [(1, "paid", 160_000, 160_000, 0, "", "")]


# --- the same decision as the engine with the reviewer's amount as the price -----------------


@pytest.mark.parametrize(
    "facts_",
    [
        facts(),
        facts(
            deductible_cents=50_000,
            oop_max_cents=200_000,
            cost_share={"office_visit": share(2_500, 2_000), "laboratory": share(0, 1_000)},
            accumulators=[accumulators(2026, deductible=40_000, oop=184_500)],
        ),
        facts(deductible_cents=500_000, cost_share={"default": share(1_000, 3_000)}),
    ],
    ids=["no cost share", "capped by the maximum", "all to the deductible"],
)
def test_a_review_decides_like_the_engine_priced_at_the_reviewers_amounts(facts_):
    claim_ = claim(UNPRICED, line(2, "80053", billed=2_000))
    reviewed = review(claim_, facts_, RULESET, approve(l1=140_000, l2=1_500))
    automatic = adjudicate(claim_, priced_at(facts_, **{"99215": 140_000, "80053": 1_500}), RULESET)
    assert automatic.outcome is not Outcome.PENDED
    assert [summary(r) for r in reviewed.lines] == [summary(r) for r in automatic.lines]
    assert reviewed == automatic
    assert_balanced(reviewed)


def test_a_review_of_a_claim_pended_over_the_threshold_ignores_the_threshold():
    claim_ = claim(line(1), line(2, "80053", billed=1_500))
    facts_ = facts(review_threshold_cents=10_000, cost_share={"default": share(1_000, 0)})
    assert adjudicate(claim_, facts_, RULESET).outcome is Outcome.PENDED
    reviewed = review(claim_, facts_, RULESET, approve(l1=8_000, l2=1_200))
    assert reviewed.outcome is Outcome.PAID
    assert [summary(r)[:5] for r in reviewed.lines] == [(1, "paid", 8_000, 7_000, 1_000), (2, "paid", 1_200, 200, 1_000)]
    priced = priced_at(facts(cost_share={"default": share(1_000, 0)}), **{"99213": 8_000, "80053": 1_200})
    assert reviewed == adjudicate(claim_, priced, RULESET)


def test_a_line_that_lost_units_is_partially_paid_as_the_engine_labels_it():
    # 99215 is limited to 1 unit a day: one of the 2 billed units is cut (CO-151) before the review.
    claim_ = claim(line(1, "99215", units=2, billed=320_000))
    reviewed = review(claim_, facts(), RULESET, approve(l1=140_000))
    assert reviewed.outcome is Outcome.PARTIALLY_PAID
    assert [summary(r) for r in reviewed.lines] == [(1, "paid", 140_000, 140_000, 0, "CO-151:160000 CO-45:20000", "N362")]
    assert reviewed == adjudicate(claim_, priced_at(facts(), **{"99215": 140_000}), RULESET)


# --- lines the rules deny, and lines left without an amount ----------------------------------


def test_a_line_the_rules_deny_stays_denied_whatever_the_reviewer_allowed():
    claim_ = claim(UNPRICED, line(2, "99395", billed=2_500, pointers=(4,)))
    facts_ = facts(non_covered_procedures=["99395"])
    pended = adjudicate(claim_, facts_, RULESET)
    assert lines_to_review(pended) == [1]
    reviewed = review(claim_, facts_, RULESET, approve(l1=140_000, l2=2_500))
    assert reviewed.outcome is Outcome.PARTIALLY_PAID
    assert [summary(r) for r in reviewed.lines] == [
        (1, "paid", 140_000, 140_000, 0, "CO-45:20000", ""),
        (2, "denied", 0, 0, 0, "CO-96:2500", "N130"),
    ]
    assert reviewed.lines[1] == pended.lines[1]


def test_an_open_line_the_reviewer_gave_no_amount_leaves_the_claim_pended():
    claim_ = claim(UNPRICED, UNPRICED_NEXT_DAY)
    reviewed = review(claim_, facts(), RULESET, approve(l1=140_000))
    assert reviewed.outcome is Outcome.PENDED
    assert [r.status for r in reviewed.lines] == ["pended", "pended"]
    assert reviewed.total_paid_cents == 0
    assert reviewed.accumulator_changes == []


# --- the reviewer's denial -------------------------------------------------------------------


@pytest.mark.parametrize(("group", "carc"), [("CO", "B7"), ("CO", "45"), ("OA", "18"), ("PI", "29")])
def test_a_denial_denies_every_line_with_the_reviewers_code_and_pays_nothing(group, carc):
    claim_ = claim(UNPRICED, line(2, "80053", billed=2_000))
    facts_ = facts(deductible_cents=50_000, cost_share={"default": share(2_000, 2_000)})
    decision = review(claim_, facts_, RULESET, Resolution(deny_group=group, deny_carc=carc))
    assert decision.outcome is Outcome.DENIED
    assert [summary(r) for r in decision.lines] == [
        (1, "denied", 0, 0, 0, f"{group}-{carc}:160000", ""),
        (2, "denied", 0, 0, 0, f"{group}-{carc}:2000", ""),
    ]
    assert (decision.total_allowed_cents, decision.total_paid_cents, decision.total_patient_responsibility_cents) == (0, 0, 0)
    assert decision.accumulator_changes == []
    assert_balanced(decision)


@pytest.mark.parametrize(("group", "carc"), [("CO", "42"), ("CO", "Z9"), ("CR", "45")])
def test_a_denial_with_a_code_not_in_force_on_the_received_date_is_refused(group, carc):
    # 42 retired in 2007; Z9 is in no table; group CR went with 5010.
    with pytest.raises(CodeNotInForceError):
        review(claim(UNPRICED), facts(), RULESET, Resolution(deny_group=group, deny_carc=carc))


# --- replay ----------------------------------------------------------------------------------


def test_the_same_review_gives_the_same_decision_twice():
    claim_ = claim(UNPRICED, line(2, "80053", billed=2_000))
    facts_ = facts(deductible_cents=50_000, oop_max_cents=60_000, cost_share={"default": share(1_000, 2_000)})
    resolution = approve(l1=140_000, l2=1_500)
    first = review(claim_, facts_, RULESET, resolution)
    assert review(claim_, facts_, RULESET, resolution) == first
    # As recorded and read back years later: resolution, facts and decision through JSON.
    again = review(
        claim_,
        Facts.model_validate(json.loads(json.dumps(facts_.model_dump(mode="json")))),
        get_ruleset(first.ruleset_version),
        Resolution.from_json(json.loads(json.dumps(resolution.to_json()))),
    )
    assert again == first == type(first).model_validate(first.model_dump(mode="json"))
    assert first.ruleset_hash == RULESET.content_hash


def test_an_approval_round_trips_through_json_in_line_order():
    resolution = Resolution(allowed={2: 1_500, 1: 140_000})
    assert resolution.to_json() == {
        "approve": [{"line_number": 1, "allowed_cents": 140_000}, {"line_number": 2, "allowed_cents": 1_500}],
        "deny": None,
    }
    assert Resolution.from_json(resolution.to_json()) == resolution


def test_a_denial_round_trips_through_json():
    resolution = Resolution(deny_group="CO", deny_carc="B7")
    assert resolution.to_json() == {"approve": None, "deny": {"group": "CO", "carc": "B7"}}
    assert Resolution.from_json(resolution.to_json()) == resolution
