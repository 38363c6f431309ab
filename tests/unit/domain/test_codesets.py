"""The ICD-10-CM code set intake checks diagnoses against, and a visit's retry."""

from __future__ import annotations

import warnings
from datetime import date
from typing import Any

import pytest

from adjudicator import codeset as adjudicator_codeset
from claims_service.domain import codesets
from claims_service.domain.claim import Claim
from claims_service.domain.values import RecordVisit
from claims_service.domain.visit import Visit
from claims_service.errors import DuplicateRequestError, ValidationError

NPI = "1234567893"

UNKNOWN = "Q9999X"  # well formed, in no release
CATEGORY = "E11"  # type 2 diabetes: a category, billed as E119, E1165, ...
SUBCATEGORY = "E116"
WITHOUT_SEVENTH = "S83241"  # a meniscus tear needs its seventh character (S83241A)


def test_the_pinned_release_and_its_count_of_billable_codes() -> None:
    # CDC publishes 74,719 codes for the April 1, 2026 release; a new pin moves both.
    code_set = codesets.diagnoses()
    assert code_set.release == "April-2026"
    assert len(code_set.billable) == 74_719
    assert code_set.billable.isdisjoint(code_set.headers)


@pytest.mark.parametrize("code", ["E119", "I10", "Z23", "S83241A", "M5450", "J45909", "A09", "U071"])
def test_billable_codes_pass(code: str) -> None:
    assert codesets.diagnosis_problem(code) is None


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        (UNKNOWN, codesets.NOT_IN_CODE_SET),
        ("E1199", codesets.NOT_IN_CODE_SET),  # a code that does not exist under a real category
        ("M545", codesets.NOT_BILLABLE),  # low back pain: split into M5450/M5451/M5459 in FY2022
        (CATEGORY, codesets.NOT_BILLABLE),
        (SUBCATEGORY, codesets.NOT_BILLABLE),
        (WITHOUT_SEVENTH, codesets.NOT_BILLABLE),
    ],
)
def test_unknown_and_header_codes_are_refused_each_with_its_reason(code: str, problem: str) -> None:
    assert codesets.diagnosis_problem(code) == problem
    assert code not in problem


def test_a_code_list_is_read_in_the_classification_order() -> None:
    text = "1\nA00-A09\nA00\nA000\nA001\nA01\nA010\nA0100\nA02\n2\nC00-C14\nC01\nC02\nC020\n3\nP84\nP84\n"
    code_set = codesets.parse_code_list("April-2099", text)
    assert code_set.billable == {"A000", "A001", "A0100", "A02", "C01", "C020", "P84"}
    assert code_set.headers == {"A00", "A01", "A010", "C02"}


def test_the_billable_codes_are_the_leaves_of_the_librarys_own_classification() -> None:
    # The library parses its tabular XML at import (about two seconds): once, here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import simple_icd_10_cm as library
    code_set = codesets.diagnoses()
    # Chapters are numbers and blocks ranges, except a block of one category, which bears the
    # category's name (P84): by default the library resolves such a name to the category.
    codes = {code for code in library.get_all_codes(with_dots=False) if not code.isdigit() and "-" not in code}
    assert {code for code in codes if library.is_leaf(code)} == code_set.billable
    assert {code for code in codes if not library.is_leaf(code)} == code_set.headers


def test_the_adjudicators_synthetic_diagnoses_are_billable_and_its_fit_prefixes_are_codes() -> None:
    code_set = codesets.diagnoses()
    assert [code for code in adjudicator_codeset.diagnoses() if code not in code_set.billable] == []
    prefixes = {prefix for prefixes in adjudicator_codeset.diagnosis_fit().values() for prefix in prefixes}
    assert [prefix for prefix in sorted(prefixes) if prefix not in code_set.headers | code_set.billable] == []


# --- at intake: a claim and a visit --------------------------------------------------------------


def claim_kwargs(diagnoses: list[str]) -> dict[str, Any]:
    return {
        "actor": f"provider:{NPI}", "provider_id": NPI, "member_id": "M-0001", "payer_id": "ACME",
        "idempotency_key": "req-1", "received_on": date(2026, 3, 10), "diagnosis_codes": diagnoses,
        "place_of_service": "11",
        "lines": [{"line_number": 1, "procedure_code": "99213", "modifiers": [], "diagnosis_pointers": [1],
                   "units": 1, "billed_cents": 12_000, "date_of_service": date(2026, 3, 3)}],
    }


def visit_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "actor": f"provider:{NPI}", "visit_id": "V-1", "provider_id": NPI, "member_id": "M-0001",
        "payer_id": "ACME", "date_of_service": date(2026, 3, 3), "place_of_service": "11",
        "diagnosis_codes": ["E119", "I10"],
    }
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize("code", [UNKNOWN, CATEGORY, SUBCATEGORY, WITHOUT_SEVENTH])
def test_a_claim_with_a_code_outside_the_code_set_is_refused_naming_the_field_not_the_code(code: str) -> None:
    with pytest.raises(ValidationError) as info:
        Claim.submit(**claim_kwargs(["I10", code]))
    assert info.value.fields == ["diagnosis_codes[1]"]
    assert code not in str(info.value)


@pytest.mark.parametrize("code", [UNKNOWN, CATEGORY])
def test_a_visit_with_a_code_outside_the_code_set_is_refused_naming_the_field_not_the_code(code: str) -> None:
    with pytest.raises(ValidationError) as info:
        Visit.record(**visit_kwargs(diagnosis_codes=[code, "I10"]))
    assert info.value.fields == ["diagnosis_codes[0]"]
    assert code not in str(info.value)


def test_a_malformed_code_gets_the_format_message_not_the_code_set_one() -> None:
    with pytest.raises(ValidationError) as info:
        Visit.record(**visit_kwargs(diagnosis_codes=["E11.9"]))
    assert [v.description for v in info.value.violations] == ["must be an ICD-10-CM code without the dot"]


def test_a_visit_retried_with_the_same_content_is_the_same_request_whoever_sends_it() -> None:
    visit = Visit.record(**visit_kwargs())
    visit.ensure_same_request(RecordVisit.checked(**visit_kwargs()))
    visit.ensure_same_request(RecordVisit.checked(**visit_kwargs(actor=f"provider:{NPI}/front-desk")))


@pytest.mark.parametrize("change", [
    {"member_id": "M-SECRET-4711"},
    {"payer_id": "OTHER"},
    {"date_of_service": date(2026, 3, 4)},
    {"place_of_service": "22"},
    {"diagnosis_codes": ["I10", "E119"]},  # the order is the pointers' order
    {"diagnosis_codes": ["E119", "I10", "Z23"]},
])
def test_a_visit_id_reused_for_a_different_visit_is_refused_without_echoing_it(change: dict[str, Any]) -> None:
    visit = Visit.record(**visit_kwargs())
    with pytest.raises(DuplicateRequestError) as info:
        visit.ensure_same_request(RecordVisit.checked(**visit_kwargs(**change)))
    assert info.value.status == "ALREADY_EXISTS"
    message = str(info.value)
    assert message.startswith("visit_id: ")
    values = [str(v) for value in change.values() for v in (value if isinstance(value, list) else [value])]
    assert not [value for value in [*values, "V-1", "M-0001"] if value in message]
