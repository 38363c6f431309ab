"""X12 interchanges as text: reading segments (delimiters from the ISA, as the standard defines
them), writing envelopes (ISA/GS/ST ... SE/GE/IEA with their counts and control numbers), and the
exact conversions between the service's values and X12's: amounts (integer cents <-> decimal
dollars, never a float), dates (CCYYMMDD).

Reading is forgiving only where the standard is: line breaks after segment terminators are
ignored; everything else is reported by pyx12 (validation.py), not fixed here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from claims_service.errors import ValidationError

ISA_LENGTH = 106  # the ISA segment is fixed length: 105 characters and its terminator
VERSION = "00501"


@dataclass(frozen=True)
class Delimiters:
    element: str = "*"
    component: str = ":"
    repetition: str = "^"
    segment: str = "~"


OUTPUT = Delimiters()


class Segment:
    """One segment: ``seg[1]`` is its first element ("" when absent), ``seg.id`` its name;
    ``position`` counts from ST (1) to SE within a transaction set, 0 outside one."""

    __slots__ = ("elements", "position", "delimiters")

    def __init__(self, elements: list[str], position: int, delimiters: Delimiters) -> None:
        self.elements = elements
        self.position = position
        self.delimiters = delimiters

    @property
    def id(self) -> str:
        return self.elements[0]

    def __getitem__(self, index: int) -> str:
        return self.elements[index] if index < len(self.elements) else ""

    def components(self, index: int) -> list[str]:
        value = self[index]
        return value.split(self.delimiters.component) if value else []

    def component(self, index: int, sub: int) -> str:
        """Element ``index``'s component ``sub`` (1-based), "" when absent."""
        parts = self.components(index)
        return parts[sub - 1] if sub <= len(parts) else ""

    def __repr__(self) -> str:
        return f"<{self.id} at {self.position}>"


def not_an_interchange(why: str) -> ValidationError:
    return ValidationError.single("interchange", f"is not an X12 interchange: {why}")


def decode(data: bytes) -> str:
    """The interchange as text. X12's character sets are ASCII; any other byte is kept (as
    Latin-1) for the validator to report, rather than failing the whole file here."""
    return data.decode("latin-1")


def read(text: str) -> tuple[Delimiters, list[Segment]]:
    """The segments of an interchange; ValidationError (field ``interchange``) when it does not
    begin with a complete ISA segment, whose fixed layout gives the delimiters."""
    text = text.lstrip("\r\n\t ")
    if not text.startswith("ISA"):
        raise not_an_interchange("it must begin with an ISA segment")
    if len(text) < ISA_LENGTH:
        raise not_an_interchange("its ISA segment is cut short (an ISA has 106 characters)")
    element = text[3]
    if text[:ISA_LENGTH - 1].count(element) != 16 or element.isalnum() or element.isspace():
        raise not_an_interchange("its ISA segment does not have 16 elements of fixed length")
    delimiters = Delimiters(element=element, component=text[104], repetition=text[82], segment=text[105])
    if len({delimiters.element, delimiters.component, delimiters.segment}) < 3 or delimiters.segment.isalnum():
        raise not_an_interchange("its ISA segment names delimiters that are not distinct")
    segments: list[Segment] = []
    position = 0
    for raw in text.split(delimiters.segment):
        raw = raw.strip("\r\n")
        if not raw:
            continue
        elements = raw.split(delimiters.element)
        name = elements[0]
        if name == "ST":
            position = 1
        elif position:
            position += 1
        segments.append(Segment(elements, position, delimiters))
        if name == "SE":
            position = 0
    return delimiters, segments


# --- values ---------------------------------------------------------------------------------------

_AMOUNT = re.compile(r"(-?)([0-9]*)(?:\.([0-9]*))?")


def amount(cents: int) -> str:
    """Integer cents as an X12 decimal amount (R: no trailing zeros after the point, no leading
    zero before it): 150000 -> "1500", 150050 -> "1500.5", -1205 -> "-12.05", 5 -> ".05"; no
    float is involved."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    if part == 0:
        return f"{sign}{whole}"
    fraction = f"{part // 10}" if part % 10 == 0 else f"{part:02d}"
    return f"{sign}{whole or ''}.{fraction}"


def cents(value: str) -> int | None:
    """An X12 decimal amount as integer cents; None when it is no amount or holds a fraction of a
    cent ("12.345" is refused, "12.340" is 1234)."""
    match = _AMOUNT.fullmatch(value)
    if match is None or not (match.group(2) or match.group(3)):
        return None
    whole = int(match.group(2) or "0")
    fraction = (match.group(3) or "").rstrip("0")
    if len(fraction) > 2:
        return None
    total = whole * 100 + int(fraction.ljust(2, "0"))
    return -total if match.group(1) else total


def d8(day: date) -> str:
    return day.strftime("%Y%m%d")


def parse_d8(value: str) -> date | None:
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


_UNSAFE = re.compile(r"[*:^~|>]|[^ -~]")  # delimiters we write or may meet, and anything not printable ASCII


def clean(value: str, limit: int | None = None) -> str:
    """A value safe to write as one element: delimiters and other characters outside printable
    ASCII become spaces, surrounding spaces go, and it is cut at ``limit`` characters."""
    out = _UNSAFE.sub(" ", value).strip() if _UNSAFE.search(value) else value.strip()
    return out[:limit].rstrip() if limit else out


def control_number(*parts: str, digits: int = 9) -> int:
    """A control number derived from what it answers (stable for the same input), at least 1."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (10**digits - 1) + 1


# --- writing ----------------------------------------------------------------------------------------

Element = str | Sequence[str]


def segment_text(elements: Sequence[Element], delimiters: Delimiters = OUTPUT) -> str:
    """One segment: composites given as sequences; trailing empty elements and components left out."""
    values = []
    for value in elements:
        if isinstance(value, str):
            values.append(value)
        else:
            parts = list(value)
            while parts and not parts[-1]:
                parts.pop()
            values.append(delimiters.component.join(parts))
    while len(values) > 1 and not values[-1]:
        values.pop()
    return delimiters.element.join(values) + delimiters.segment


@dataclass
class Transaction:
    """A transaction set's segments between ST and SE (the writer adds both): each a tuple of
    elements, or (where speed matters) the segment's text in the output delimiters without its
    terminator."""

    code: str  # ST01: "999", "277", "835"
    version: str | None  # ST03 (None where the guide does not use it)
    segments: list[tuple[Element, ...] | str] = field(default_factory=list)

    def add(self, *elements: Element) -> None:
        self.segments.append(elements)


@dataclass
class Group:
    functional_id: str  # GS01
    sender: str  # GS02
    receiver: str  # GS03
    version: str  # GS08
    control: int  # GS06
    transactions: list[Transaction] = field(default_factory=list)


@dataclass
class Envelope:
    sender: tuple[str, str]  # ISA05, ISA06
    receiver: tuple[str, str]  # ISA07, ISA08
    control: int  # ISA13
    when: datetime
    usage: str = "P"  # ISA15: production or test
    ta1: tuple[str, str, str, str, str] | None = None  # (TA101..TA105), an interchange acknowledgement


def write(envelope: Envelope, groups: Iterable[Group], delimiters: Delimiters = OUTPUT) -> str:
    """The interchange as text, one segment a line, every count and control number in place."""
    d = delimiters
    when = envelope.when
    lines = [
        segment_text(["ISA", "00", " " * 10, "00", " " * 10, envelope.sender[0], envelope.sender[1].ljust(15)[:15],
                      envelope.receiver[0], envelope.receiver[1].ljust(15)[:15], when.strftime("%y%m%d"),
                      when.strftime("%H%M"), d.repetition, VERSION, f"{envelope.control:09d}", "0", envelope.usage,
                      d.component], d)
    ]
    groups = list(groups)
    for group in groups:
        lines.append(segment_text(["GS", group.functional_id, group.sender, group.receiver, when.strftime("%Y%m%d"),
                                   when.strftime("%H%M"), str(group.control), "X", group.version], d))
        for number, transaction in enumerate(group.transactions, start=1):
            control = f"{number:04d}"
            head = ["ST", transaction.code, control] + ([transaction.version] if transaction.version else [])
            lines.append(segment_text(head, d))
            lines += [elements + d.segment if isinstance(elements, str) else segment_text(elements, d)
                      for elements in transaction.segments]
            lines.append(segment_text(["SE", str(len(transaction.segments) + 2), control], d))
        lines.append(segment_text(["GE", str(len(group.transactions)), str(group.control)], d))
    if envelope.ta1 is not None:
        lines.append(segment_text(["TA1", *envelope.ta1], d))
    lines.append(segment_text(["IEA", str(len(groups)), f"{envelope.control:09d}"], d))
    return "\n".join(lines) + "\n"
