"""Format checkers for health-care codes and the constrained types built on them.

Each checker is a plain function (usable by converters, tests and fixtures) and
each ``Annotated`` type wraps one for pydantic. Only *shape* is checked here:
whether an ICD-10-CM code is a billable code of the release in force is
codesets.py's question (claims and visits are checked against it at intake);
procedure codes have no code set beyond their shape (codesets.py says why).

Messages never repeat the offending value: it may be PHI and they go back to
the caller.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated

from pydantic import AfterValidator, Field

# --- limits -----------------------------------------------------------------

MIN_YEAR = 1900
MAX_YEAR = 2199
# A thousand million dollars in cents: far above any real claim, well below
# the 2**53 that a JSON reader in another language could still hold exactly.
MAX_CENTS = 10**11
MAX_BASIS_POINTS = 10_000
MAX_IDENTIFIER_LENGTH = 64
MAX_UNITS = 9_999
MAX_DIAGNOSES = 12
MAX_LINES = 50
MAX_POINTERS = 4
MAX_MODIFIERS = 4

# --- checkers ---------------------------------------------------------------

_NPI_RE = re.compile(r"^[12][0-9]{9}$")
ICD10CM_RE = re.compile(r"^[A-Z][0-9A][0-9AB][0-9A-Z]{0,4}$")
CPT_RE = re.compile(r"^(?:[0-9]{5}|[0-9]{4}[FTU])$")
HCPCS_RE = re.compile(r"^[A-V][0-9]{4}$")
MODIFIER_RE = re.compile(r"^[0-9A-Z]{2}$")
PLACE_OF_SERVICE_RE = re.compile(r"^[0-9]{2}$")
# Places of service (CMS codes) that make a visit an emergency by themselves: 23, the hospital's
# emergency room. An emergency seen elsewhere (admitted straight to an inpatient bed, 21; carried
# by ambulance, 41/42; at an urgent care facility, 20, which is not itself an emergency) is
# flagged by the provider (RecordVisit's `emergency`).
EMERGENCY_PLACES_OF_SERVICE = frozenset({"23"})
TAXONOMY_RE = re.compile(r"^[0-9]{3}[0-9A-Z]{6}X$")
SHA256_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
ACTOR_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}:[!-~]{1,128}$")
COST_SHARE_CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

# USPS codes of the states, DC and the inhabited territories that license
# health-care providers.
US_STATES = frozenset(
    """
    AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO
    MT NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY
    DC PR GU VI AS MP
    """.split()
)


def luhn_valid(digits: str) -> bool:
    """True if the digit string passes the Luhn (mod 10) check."""
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def npi_check_digit(first_nine: str) -> str:
    """The NPI check digit for nine digits (prefix 80840, per CMS)."""
    for candidate in "0123456789":
        if luhn_valid("80840" + first_nine + candidate):
            return candidate
    msg = "first_nine must be nine digits"
    raise ValueError(msg)


def is_npi(value: str) -> bool:
    """10 digits, first 1 or 2, Luhn over ``80840`` + the ten digits."""
    return bool(_NPI_RE.match(value)) and luhn_valid("80840" + value)


def is_icd10cm(value: str) -> bool:
    """ICD-10-CM shape, sent without the dot."""
    return bool(ICD10CM_RE.match(value))


def is_cpt(value: str) -> bool:
    return bool(CPT_RE.match(value))


def is_hcpcs(value: str) -> bool:
    """HCPCS Level II: a letter A-V and four digits."""
    return bool(HCPCS_RE.match(value))


def is_procedure_code(value: str) -> bool:
    return is_cpt(value) or is_hcpcs(value)


def is_modifier(value: str) -> bool:
    return bool(MODIFIER_RE.match(value))


def is_place_of_service(value: str) -> bool:
    return bool(PLACE_OF_SERVICE_RE.match(value))


def is_us_state(value: str) -> bool:
    return value in US_STATES


def is_taxonomy(value: str) -> bool:
    """NUCC health-care provider taxonomy code shape."""
    return bool(TAXONOMY_RE.match(value))


def is_ledger_date(value: date) -> bool:
    return MIN_YEAR <= value.year <= MAX_YEAR


# --- pydantic validators ----------------------------------------------------


def _check(predicate, message: str):  # type: ignore[no-untyped-def]
    def validator(value):  # type: ignore[no-untyped-def]
        if not predicate(value):
            raise ValueError(message)
        return value

    return validator


def _identifier(value: str) -> str:
    value = value.strip()
    if not value:
        msg = "must not be empty"
        raise ValueError(msg)
    if len(value) > MAX_IDENTIFIER_LENGTH:
        msg = f"must be at most {MAX_IDENTIFIER_LENGTH} characters"
        raise ValueError(msg)
    if not value.isprintable():
        msg = "must contain printable characters only"
        raise ValueError(msg)
    return value


def _text(max_length: int, *, allow_empty: bool = False):  # type: ignore[no-untyped-def]
    def validator(value: str) -> str:
        value = value.strip()
        if not value and not allow_empty:
            msg = "must not be empty"
            raise ValueError(msg)
        if len(value) > max_length:
            msg = f"must be at most {max_length} characters"
            raise ValueError(msg)
        if any(not (ch.isprintable() or ch in "\n\t") for ch in value):
            msg = "must not contain control characters"
            raise ValueError(msg)
        return value

    return validator


def _claim_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value:
        msg = "must be a claim id (a lower-case UUID string)"
        raise ValueError(msg)
    return value


def _fee_key(value: str) -> str:
    code, sep, modifier = value.partition(":")
    if not is_procedure_code(code) or (sep and not is_modifier(modifier)):
        msg = 'must be "CODE" or "CODE:MODIFIER" (CPT/HCPCS code, two-character modifier)'
        raise ValueError(msg)
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
"""Non-empty, stripped, printable, at most 64 characters."""

Actor = Annotated[
    str,
    AfterValidator(
        _check(ACTOR_RE.match, 'must be a principal "role:party", e.g. "provider:1234567893"')
    ),
]
Npi = Annotated[str, AfterValidator(_check(is_npi, "must be a valid NPI (10 digits, check digit)"))]
Icd10Cm = Annotated[
    str, AfterValidator(_check(is_icd10cm, "must be an ICD-10-CM code without the dot"))
]
ProcedureCode = Annotated[
    str,
    AfterValidator(
        _check(is_procedure_code, "must be a CPT (5 digits, or 4 digits + F/T/U) or HCPCS Level II code")
    ),
]
Modifier = Annotated[
    str, AfterValidator(_check(is_modifier, "must be two upper-case letters or digits"))
]
PlaceOfService = Annotated[
    str, AfterValidator(_check(is_place_of_service, "must be a two-digit place of service code"))
]
UsState = Annotated[
    str, AfterValidator(_check(is_us_state, "must be a two-letter US state or territory code"))
]
Taxonomy = Annotated[
    str, AfterValidator(_check(is_taxonomy, "must be a 10-character NUCC taxonomy code"))
]
Sha256Hex = Annotated[
    str, AfterValidator(_check(SHA256_HEX_RE.match, "must be 64 lower-case hex digits"))
]
ClaimId = Annotated[str, AfterValidator(_claim_id)]
FeeKey = Annotated[str, AfterValidator(_fee_key)]
CostShareCategory = Annotated[
    str,
    AfterValidator(
        _check(COST_SHARE_CATEGORY_RE.match, "must be a lower-case snake_case category name")
    ),
]

LedgerDate = Annotated[
    date,
    AfterValidator(_check(is_ledger_date, f"year must be between {MIN_YEAR} and {MAX_YEAR}")),
]
"""A calendar date (not a datetime) with a plausible year."""

Cents = Annotated[int, Field(ge=0, le=MAX_CENTS)]
PositiveCents = Annotated[int, Field(ge=1, le=MAX_CENTS)]
BasisPoints = Annotated[int, Field(ge=0, le=MAX_BASIS_POINTS)]
Units = Annotated[int, Field(ge=1, le=MAX_UNITS)]

ShortText = Annotated[str, AfterValidator(_text(500))]
"""Reasons and names: stripped, non-empty, newlines allowed, at most 500 characters."""
Note = Annotated[str, AfterValidator(_text(4000, allow_empty=True))]
"""Free text that may be empty: stripped, newlines allowed, at most 4000 characters."""
