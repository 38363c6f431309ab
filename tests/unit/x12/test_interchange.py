"""Reading and writing X12 text: delimiters from the ISA, segment positions, exact amounts."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claims_service.errors import ValidationError
from claims_service.x12.interchange import (
    Envelope,
    Group,
    Transaction,
    amount,
    cents,
    clean,
    d8,
    parse_d8,
    read,
    write,
)
from claims_service.x12.validation import validate


@given(st.integers(min_value=-(10**13), max_value=10**13))
def test_amounts_go_to_dollars_and_back_exactly(value):
    text = amount(value)
    assert cents(text) == value
    assert "e" not in text and ("." not in text or not text.endswith("0"))
    assert not text.lstrip("-").startswith("0") or text == "0"


@pytest.mark.parametrize(("text", "value"), [("150", 15_000), ("150.5", 15_050), ("150.50", 15_050), ("-12.05", -1_205),
                                             (".5", 50), ("0", 0), ("12.340", 1_234)])
def test_x12_amounts_are_read_as_cents(text, value):
    assert cents(text) == value


@pytest.mark.parametrize("text", ["", "-", ".", "12.345", "1e3", "12,50", "+5", "five"])
def test_what_is_no_amount_or_holds_a_fraction_of_a_cent_is_none(text):
    assert cents(text) is None


def test_dates_and_elements():
    assert d8(date(2026, 10, 15)) == "20261015" and parse_d8("20261015") == date(2026, 10, 15)
    assert parse_d8("20261315") is None and parse_d8("2026101") is None
    assert clean("A*B:C~D^E\n", 6) == "A B C"


@pytest.mark.parametrize("data", ["", "GS*HC~", "ISA*00*", "ISA" + "*" * 20, "ISA" + "x" * 200])
def test_what_does_not_begin_with_a_whole_isa_is_refused_naming_the_field(data):
    with pytest.raises(ValidationError) as error:
        read(data)
    assert error.value.fields == ["interchange"]


def test_delimiters_come_from_the_isa_and_positions_count_from_st():
    text = ("ISA|00|          |00|          |ZZ|A              |ZZ|B              |261120|1015|^|00501|000000001|0|P|>!"
            "\r\nGS|HC|A|B|20261120|1015|1|X|005010X222A1!ST|837|0001|005010X222A1!HI|ABK>E119!SE|3|0001!GE|1|1!"
            "IEA|1|000000001!")
    delimiters, segments = read(text)
    assert (delimiters.element, delimiters.component, delimiters.segment) == ("|", ">", "!")
    assert [(s.id, s.position) for s in segments] == [("ISA", 0), ("GS", 0), ("ST", 1), ("HI", 2), ("SE", 3), ("GE", 0),
                                                      ("IEA", 0)]
    assert segments[3].component(1, 2) == "E119" and segments[3][5] == ""


def test_written_envelopes_count_their_segments_and_validate():
    t = Transaction("999", "005010X231A1")
    t.add("AK1", "HC", "1", "005010X222A1")
    t.add("AK2", "837", "0001", "005010X222A1")
    t.add("IK5", "A")
    t.add("AK9", "A", "1", "1", "1")
    text = write(Envelope(("ZZ", "PAYER"), ("ZZ", "CLINIC"), 42, datetime(2026, 11, 20, 10, 15)),
                 [Group("FA", "PAYER", "CLINIC", "005010X231A1", 42, [t])])
    assert "SE*6*0001~" in text and "GE*1*42~" in text and "IEA*1*000000042~" in text
    [report] = validate(text)
    assert report.clean, report.problems()
