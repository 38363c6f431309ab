"""Format checkers: NPI check digit, ICD-10-CM, CPT/HCPCS and the rest."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claims_service.domain import formats as codes
from claims_service.domain.ids import NAMESPACE, make_id, ordered_id, time_ordered_id
from claims_service.domain.payment import Payment


@pytest.mark.parametrize("npi", ["1234567893", "1245319599", "2000000002"])
def test_accepts_valid_npis(npi: str) -> None:
    assert codes.is_npi(npi)


@pytest.mark.parametrize(
    "npi",
    [
        "1234567890",  # wrong check digit
        "1234567894",
        "3234567893",  # must start with 1 or 2
        "123456789",  # nine digits
        "12345678930",
        "123456789X",
        "１234567893",  # full-width digit
        "",
    ],
)
def test_refuses_invalid_npis(npi: str) -> None:
    assert not codes.is_npi(npi)


@given(st.text(alphabet="0123456789", min_size=8, max_size=8), st.sampled_from("12"))
def test_exactly_one_check_digit_completes_an_npi(body: str, first: str) -> None:
    nine = first + body
    valid = [d for d in "0123456789" if codes.is_npi(nine + d)]
    assert valid == [codes.npi_check_digit(nine)]


@pytest.mark.parametrize("code", ["E119", "I10", "A00", "S72001A", "Z20822", "QA0", "U071", "M1A00"])
def test_accepts_icd10cm_shapes(code: str) -> None:
    assert codes.is_icd10cm(code)


@pytest.mark.parametrize("code", ["E11.9", "e119", "E1", "1E19", "S72001AB", "EC19", "E1C9", ""])
def test_refuses_bad_icd10cm(code: str) -> None:
    assert not codes.is_icd10cm(code)


@pytest.mark.parametrize("code", ["99213", "0001F", "0075T", "0001U", "J1100", "A0425", "V2020"])
def test_accepts_procedure_codes(code: str) -> None:
    assert codes.is_procedure_code(code)


@pytest.mark.parametrize("code", ["9921", "992131", "0001X", "W1234", "j1100", "J110", "99213 ", ""])
def test_refuses_bad_procedure_codes(code: str) -> None:
    assert not codes.is_procedure_code(code)


def test_small_formats() -> None:
    assert codes.is_modifier("25") and codes.is_modifier("LT") and not codes.is_modifier("l1")
    assert codes.is_place_of_service("11") and not codes.is_place_of_service("1")
    assert codes.is_us_state("CA") and codes.is_us_state("PR") and not codes.is_us_state("XX")
    assert codes.is_taxonomy("207Q00000X") and not codes.is_taxonomy("207Q00000")
    assert codes.is_ledger_date(date(1900, 1, 1)) and codes.is_ledger_date(date(2199, 12, 31))
    assert not codes.is_ledger_date(date(1, 1, 1)) and not codes.is_ledger_date(date(9999, 1, 1))


def test_ids_are_deterministic_and_unambiguous() -> None:
    assert make_id("claim", "a", "b") == make_id("claim", "a", "b")
    assert make_id("claim", "a:b", "c") != make_id("claim", "a", "b:c")
    assert make_id("claim", "a") != make_id("visit", "a")
    assert make_id("claim", "a").version == 5
    assert str(NAMESPACE) == "e290a70c-ef41-557c-85b3-9b66b265524b"  # never change


def test_time_ordered_ids_sort_in_the_order_made_and_ids_beside_them_sort_with_them() -> None:
    made = [time_ordered_id() for _ in range(1_000)]
    assert all(i.version == 7 for i in made) and made == sorted(made) and len(set(made)) == 1_000
    beside = [ordered_id(i, "payment", f"{i}/0") for i in made]
    assert all(b.version == 8 and b.variant == made[0].variant for b in beside)
    assert [b.bytes[:6] for b in beside] == [i.bytes[:6] for i in made]  # the same milliseconds
    assert ordered_id(made[0], "payment", "x") == ordered_id(made[0], "payment", "x") != ordered_id(made[0], "payment", "y")


def test_a_payment_of_a_time_ordered_claim_sorts_beside_it_and_other_payment_ids_stay_uuid5() -> None:
    claim = time_ordered_id()
    assert Payment.create_id(f"{claim}/0") == ordered_id(claim, "payment", f"{claim}/0")
    assert Payment.create_id(f"{claim}/0").bytes[:6] == claim.bytes[:6]
    assert Payment.create_id(f"{claim}/1") != Payment.create_id(f"{claim}/0")
    legacy = make_id("claim", "1234567893", "key-1")  # a claim submitted before migration 0027
    assert Payment.create_id(f"{legacy}/0") == make_id("payment", f"{legacy}/0")
    assert Payment.create_id("PAY-1") == make_id("payment", "PAY-1")
