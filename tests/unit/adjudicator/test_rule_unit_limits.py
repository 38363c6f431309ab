"""Rule 9, unit limits: units of a procedure per date of service above the limit (CO-151 + N362)."""

from adjudicator.rules import unit_limits

from .kit import KNEE, claim, day, described, facts, findings_of, line


def exercise(number: int, units: int, **changes):
    return line(number, "97110", units=units, pointers=KNEE, **changes)


def test_cuts_only_the_units_above_the_limit():
    assert described(findings_of(unit_limits, claim(exercise(1, 5)), facts())) == ["1 cut CO-151 N362 x1"]


def test_counts_lines_of_the_same_day_in_line_number_order():
    found = findings_of(
        unit_limits,
        claim(exercise(3, 1, modifiers=("GO",)), exercise(1, 3), exercise(2, 2, modifiers=("GP",)), exercise(4, 4, dos=day(1))),
        facts(),
    )
    assert described(found) == ["2 cut CO-151 N362 x1", "3 cut CO-151 N362 x1"]


def test_procedures_without_a_limit_are_never_cut():
    assert findings_of(unit_limits, claim(line(code="80053", units=1), line(2, "85025", units=1)), facts()) == []


def test_2026_2_allows_six_units_of_97110():
    assert findings_of(unit_limits, claim(exercise(1, 6)), facts(), "2026.2") == []
    assert described(findings_of(unit_limits, claim(exercise(1, 7)), facts(), "2026.2")) == ["1 cut CO-151 N362 x1"]
