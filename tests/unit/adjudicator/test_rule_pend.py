"""Rule 12, pend: total billed above the review threshold, or an unpriced line (OA-133 on every open line)."""

from adjudicator.rules import pend

from .kit import claim, described, facts, findings_of, line


def test_pends_every_open_line_above_the_threshold():
    found = findings_of(pend, claim(line(1), line(2, "80053", billed=1_000)), facts(review_threshold_cents=15_999))
    assert described(found) == ["1 pend OA-133", "2 pend OA-133"]


def test_counts_denied_lines_in_the_total_but_pends_only_open_ones():
    found = findings_of(
        pend,
        claim(line(1), line(2, "80053", billed=1_000)),
        facts(review_threshold_cents=15_500, non_covered_procedures=["80053"]),
    )
    assert described(found) == ["1 pend OA-133"]


def test_pends_the_claim_for_one_unpriced_line():
    found = findings_of(pend, claim(line(1), line(2, "99215")), facts())
    assert described(found) == ["1 pend OA-133", "2 pend OA-133"]


def test_a_priced_claim_at_the_threshold_is_not_pended():
    assert findings_of(pend, claim(), facts(review_threshold_cents=15_000)) == []
