"""Rule 8, bundling: a column-2 code with its column-1 code on the same day (CO-97), modifier bypass."""

from adjudicator.rules import bundling

from .kit import KNEE, claim, day, described, facts, findings_of, line


def scope(number: int = 1, **changes):
    return line(number, "29881", billed=80_000, pointers=KNEE, **changes)


def injection(number: int = 2, **changes):
    return line(number, "20610", billed=10_000, pointers=KNEE, **changes)


def test_denies_the_column2_line_only():
    assert described(findings_of(bundling, claim(scope(), injection()), facts())) == ["2 deny CO-97"]


def test_a_bypass_modifier_unbundles_only_where_the_pair_allows():
    assert findings_of(bundling, claim(scope(), injection(modifiers=("XU",))), facts()) == []
    panels = claim(line(1, "80053"), line(2, "80048", modifiers=("XU",)))
    assert described(findings_of(bundling, panels, facts())) == ["2 deny CO-97"]


def test_a_modifier_on_the_column1_line_does_not_unbundle():
    found = findings_of(bundling, claim(scope(modifiers=("59",)), injection()), facts())
    assert described(found) == ["2 deny CO-97"]


def test_a_chain_of_pairs_denies_each_column2_line_present_with_its_column1():
    # 29881 includes 20610, and 20610 includes 96372: both column-2 lines are denied.
    found = findings_of(bundling, claim(scope(), injection(), line(3, "96372", pointers=KNEE)), facts())
    assert described(found) == ["2 deny CO-97", "3 deny CO-97"]


def test_needs_the_same_date_of_service():
    assert findings_of(bundling, claim(scope(), injection(dos=day(1))), facts()) == []


def test_2026_2_accepts_only_the_x_modifiers():
    with_59 = claim(scope(), injection(modifiers=("59",)))
    assert findings_of(bundling, with_59, facts(), "2026.1") == []
    assert described(findings_of(bundling, with_59, facts(), "2026.2")) == ["2 deny CO-97"]
