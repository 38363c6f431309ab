"""Rule 5, coverage: non-covered procedures (CO-96 + N130) and yearly benefit limits (CO-119)."""

from datetime import date

from adjudicator.rules import coverage

from .kit import KNEE, accumulators, claim, day, described, facts, findings_of, line


def test_denies_a_non_covered_procedure_with_its_remark():
    found = findings_of(coverage, claim(), facts(non_covered_procedures=["99213"]))
    assert described(found) == ["1 deny CO-96 N130"]


def test_cuts_the_units_over_the_limit_and_denies_once_nothing_is_left():
    found = findings_of(
        coverage,
        claim(
            line(1, "97110", units=2, pointers=KNEE),
            line(2, "97110", units=3, pointers=KNEE, dos=day(1)),
            line(3, "97110", units=1, pointers=KNEE, dos=day(2)),
        ),
        facts(benefit_limits={"97110": 10}, accumulators=[accumulators(**{"97110": 6})]),
    )
    assert described(found) == ["2 cut CO-119 x1", "3 deny CO-119"]


def test_counts_benefit_units_per_plan_year():
    found = findings_of(
        coverage,
        claim(line(1, "97110", units=2, pointers=KNEE, dos=date(2025, 12, 30)), line(2, "97110", units=2, pointers=KNEE)),
        facts(received=date(2026, 1, 5), benefit_limits={"97110": 2}, accumulators=[accumulators(2026, **{"97110": 1})]),
    )
    assert described(found) == ["2 cut CO-119 x1"]


def test_procedures_without_a_limit_are_not_counted():
    assert findings_of(coverage, claim(line(units=1)), facts(benefit_limits={"97110": 0})) == []
