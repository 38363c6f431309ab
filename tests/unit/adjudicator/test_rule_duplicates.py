"""Rule 4, duplicates: an identical earlier line, not voided, or an identical line earlier in the claim (OA-18)."""

from adjudicator.rules import duplicates

from .kit import claim, described, earlier, facts, findings_of, line


def test_denies_a_line_identical_to_an_earlier_claims_line():
    assert described(findings_of(duplicates, claim(), facts(earlier_lines=[earlier()]))) == ["1 deny OA-18"]


def test_voided_earlier_lines_do_not_count():
    assert findings_of(duplicates, claim(), facts(earlier_lines=[earlier(voided=True)])) == []


def test_a_voided_and_a_live_copy_still_duplicate():
    found = findings_of(duplicates, claim(), facts(earlier_lines=[earlier(voided=True), earlier(claim_id="OLD-2")]))
    assert described(found) == ["1 deny OA-18"]


def test_keeps_the_first_of_identical_lines_in_line_number_order():
    found = findings_of(duplicates, claim(line(2), line(1), line(3, units=2)), facts())
    assert described(found) == ["2 deny OA-18"]


def test_modifier_order_does_not_matter():
    found = findings_of(duplicates, claim(line(1, modifiers=("25", "GT")), line(2, modifiers=("GT", "25"))), facts())
    assert described(found) == ["2 deny OA-18"]


def test_a_replacement_is_not_a_duplicate_of_what_it_replaces_but_of_anything_else():
    replacement = claim(frequency="7", original="OLD-1")
    assert findings_of(duplicates, replacement, facts(earlier_lines=[earlier(claim_id="OLD-1")])) == []
    assert described(findings_of(duplicates, replacement, facts(earlier_lines=[earlier(claim_id="OLD-2")]))) == [
        "1 deny OA-18"
    ]
