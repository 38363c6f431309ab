"""Rule 6, diagnosis fit: a pointed diagnosis must support a procedure listed in the fit table (CO-11)."""

from adjudicator.rules import diagnosis_fit

from .kit import claim, described, facts, findings_of, line


def test_matches_diagnoses_by_category_prefix():
    # 20610 lists "M17": M1711 fits it, E119 does not.
    assert findings_of(diagnosis_fit, claim(line(code="20610", pointers=(3,))), facts()) == []
    assert described(findings_of(diagnosis_fit, claim(line(code="20610", pointers=(1,))), facts())) == ["1 deny CO-11"]


def test_only_the_lines_own_pointers_count():
    found = findings_of(
        diagnosis_fit, claim(line(1, "20610", pointers=(1, 2)), line(2, "97110", pointers=(3,))), facts()
    )
    assert described(found) == ["1 deny CO-11"]


def test_unlisted_procedures_fit_any_diagnosis_even_without_pointers():
    assert findings_of(diagnosis_fit, claim(line(pointers=())), facts()) == []
