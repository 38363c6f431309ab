"""Rule 11, member cost share: copay PR-3, deductible PR-1, coinsurance PR-2, within the out-of-pocket cap."""

from datetime import date

from adjudicator.money import coinsurance, divide_half_up
from adjudicator.rules import cost_share

from .kit import KNEE, accumulators, claim, described, facts, findings_of, line, share


def test_rounds_half_up_to_the_cent_with_integers_only():
    assert divide_half_up(5, 2) == 3
    assert divide_half_up(7, 2) == 4
    assert divide_half_up(14, 10) == 1
    assert coinsurance(1001, 5_000) == 501
    assert coinsurance(1003, 1_500) == 150
    assert coinsurance(0, 2_000) == 0
    assert coinsurance(10_000, 10_000) == 10_000


def test_copay_then_deductible_then_coinsurance():
    found = findings_of(
        cost_share,
        claim(line(code="29881", billed=80_000, pointers=KNEE)),
        facts(deductible_cents=10_000, cost_share={"surgery": share(5_000, 2_000)}),
    )
    assert described(found) == ["1 copay PR-3 $5000", "1 deductible PR-1 $10000", "1 coinsurance PR-2 $9000"]


def test_shares_nothing_for_unpriced_lines():
    found = findings_of(cost_share, claim(line(code="99215")), facts(cost_share={"default": share(1_000, 2_000)}))
    assert found == []


def test_accumulates_deductible_and_out_of_pocket_per_plan_year_across_lines():
    found = findings_of(
        cost_share,
        claim(
            line(1, dos=date(2025, 12, 30)),
            line(2, "99214", billed=20_000, dos=date(2026, 1, 2)),
            line(3, "99214", billed=20_000, dos=date(2026, 1, 3)),
        ),
        facts(
            received=date(2026, 1, 10),
            deductible_cents=10_000,
            oop_max_cents=15_000,
            cost_share={"default": share(0, 5_000)},
            accumulators=[accumulators(2025, deductible=10_000, oop=14_000)],
        ),
    )
    assert described(found) == [
        # 2025: deductible met; coinsurance $45.00 capped at the $10.00 left of the maximum.
        "1 coinsurance PR-2 $1000",
        # 2026: deductible $100.00 of $130.00, coinsurance 50 % of $30.00.
        "2 deductible PR-1 $10000",
        "2 coinsurance PR-2 $1500",
        # $115.00 of the $150.00 maximum used: 50 % of $130.00 is capped at the $35.00 left.
        "3 coinsurance PR-2 $3500",
    ]
