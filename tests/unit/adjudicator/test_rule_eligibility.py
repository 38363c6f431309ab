"""Rule 1, eligibility: coverage with this payer on the date of service (CO-31 / CO-26 / CO-27)."""

from datetime import date

from adjudicator.rules import eligibility

from .kit import DOS, claim, coverage, day, described, facts, findings_of, line


def test_finds_nothing_for_a_covered_member():
    assert findings_of(eligibility, claim(), facts()) == []


def test_denies_every_line_of_an_unknown_member_even_with_coverage_on_file():
    found = findings_of(eligibility, claim(line(1), line(2, "80053")), facts(member_known=False))
    assert described(found) == ["1 deny CO-31", "2 deny CO-31"]


def test_denies_not_our_member_when_no_period_is_with_this_payer():
    found = findings_of(eligibility, claim(), facts(coverages=[coverage(payer="PAYER-B")]))
    assert described(found) == ["1 deny CO-31"]


def test_tells_before_coverage_from_after_coverage():
    found = findings_of(
        eligibility,
        claim(line(1, dos=date(2026, 1, 5)), line(2, dos=date(2026, 7, 1)), line(3, dos=date(2026, 5, 1))),
        facts(coverages=[coverage(start=date(2026, 2, 1), end=date(2026, 6, 30))]),
    )
    assert described(found) == ["1 deny CO-26", "2 deny CO-27"]


def test_coverage_periods_include_both_ends():
    covered = facts(coverages=[coverage(start=DOS, end=DOS)])
    assert findings_of(eligibility, claim(), covered) == []
    assert described(findings_of(eligibility, claim(line(dos=day(1))), covered)) == ["1 deny CO-27"]
