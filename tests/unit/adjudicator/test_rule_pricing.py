"""Rule 10, pricing: fee schedule x units, never above billed (the rest CO-45); unpriced lines are left."""

from adjudicator.rules import pricing

from .kit import DOS, claim, day, described, facts, fee_schedule, findings_of, line


def test_allows_the_fee_times_the_units():
    found = findings_of(pricing, claim(line(code="J1100", units=7, billed=5_000, pointers=(3,))), facts())
    assert described(found) == ["1 allow CO-45 $700"]


def test_never_allows_more_than_billed():
    assert described(findings_of(pricing, claim(line(billed=100)), facts())) == ["1 allow CO-45 $100"]


def test_the_first_modifier_with_its_own_price_wins():
    schedule = fee_schedule(fees={"99213": 9_000, "99213:GT": 8_000, "99213:25": 9_500})
    found = findings_of(pricing, claim(line(modifiers=("XX", "GT", "25"))), facts(schedule=schedule))
    assert described(found) == ["1 allow CO-45 $8000"]


def test_leaves_lines_without_a_price_in_force_unpriced():
    assert findings_of(pricing, claim(line(code="99215")), facts()) == []
    assert findings_of(pricing, claim(), facts(schedule=None)) == []
    assert findings_of(pricing, claim(), facts(schedule=fee_schedule(effective=day(1)))) == []
    assert findings_of(pricing, claim(), facts(schedule=fee_schedule(effective=DOS))) != []


def test_prices_the_units_left_after_earlier_cuts():
    # 6 units billed, the daily limit of 97110 leaves 4: 4 x $30.00, within the $160.00 still open.
    found = findings_of(pricing, claim(line(code="97110", units=6, billed=24_000, pointers=(3,))), facts())
    assert described(found) == ["1 allow CO-45 $12000"]
