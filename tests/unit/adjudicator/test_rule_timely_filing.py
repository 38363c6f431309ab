"""Rule 3, timely filing: received more than the plan's filing days after the service (CO-29)."""

from adjudicator.rules import timely_filing

from .kit import claim, day, described, facts, findings_of, line


def test_the_last_filing_day_is_in_time_and_the_next_is_late():
    assert findings_of(timely_filing, claim(), facts(received=day(90))) == []
    assert described(findings_of(timely_filing, claim(), facts(received=day(91)))) == ["1 deny CO-29"]


def test_counts_days_from_each_lines_own_date_of_service():
    found = findings_of(timely_filing, claim(line(1, dos=day(-1)), line(2)), facts(received=day(90)))
    assert described(found) == ["1 deny CO-29"]


def test_uses_the_plans_filing_limit():
    assert findings_of(timely_filing, claim(), facts(received=day(300), timely_filing_days=365)) == []
    assert described(findings_of(timely_filing, claim(), facts(received=day(31), timely_filing_days=30))) == [
        "1 deny CO-29"
    ]
