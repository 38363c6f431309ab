"""Adjustment group codes, claim adjustment reason codes (CARC) and remark codes (RARC), with dates.

Lives here: the code tables the engine may emit and `require_in_force`, which the engine calls on
every code of a decision with the claim's received date, so that a decision only ever carries codes
valid on that date. A rule set names the codes it emits in its parameters (not in rule code), so a
retired code is replaced by releasing a new rule set, never by editing a released one.

The descriptions are our own short wording, not the X12 text. The effective dates are illustrative
for this synthetic code set: CARC 15, 28, 38, 42 and 62 and group CR (gone with 5010) are marked
retired, but confirm every date against the current X12 lists before using these tables for real
remittances.

Imports: the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class CodeEntry:
    """One code, in force from `valid_from` to `valid_to` inclusive (no end = still in force)."""

    code: str
    description: str
    valid_from: date
    valid_to: date | None = None
    replaced_by: tuple[str, ...] = ()
    needs_remark: bool = False
    """True when an 835 must carry at least one remark code with this reason code."""

    def in_force_on(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


class CodeNotInForceError(ValueError):
    """A decision would carry a code that is unknown or not valid on the claim's received date.

    This is a rule-set configuration error (the rule set is being used on a date its codes do not
    cover), not a claim outcome, so the engine refuses to produce the decision.
    """


def _table(*entries: CodeEntry) -> MappingProxyType[str, CodeEntry]:
    return MappingProxyType({entry.code: entry for entry in entries})


_START = date(1995, 1, 1)

GROUP_CODES = _table(
    CodeEntry("CO", "contractual obligation: the provider may not bill the member", _START),
    CodeEntry("PR", "patient responsibility: the member owes this amount", _START),
    CodeEntry("OA", "other adjustment", _START),
    CodeEntry("PI", "payer-initiated reduction", _START),
    # 5010 (mandatory from 2012-01-01) allows CO, OA, PI and PR only.
    CodeEntry("CR", "correction or reversal", _START, valid_to=date(2011, 12, 31)),
)

CARC = _table(
    CodeEntry("1", "deductible", _START),
    CodeEntry("2", "coinsurance", _START),
    CodeEntry("3", "copayment", _START),
    CodeEntry("11", "diagnosis does not support the procedure", _START),
    CodeEntry("15", "authorisation number missing or invalid", _START, date(2007, 6, 30), ("197",)),
    CodeEntry("16", "claim lacks information needed to adjudicate", _START, needs_remark=True),
    CodeEntry("18", "exact duplicate of a claim or service", _START),
    CodeEntry("26", "service before coverage began", _START),
    CodeEntry("27", "service after coverage ended", _START),
    CodeEntry("28", "coverage not in effect on the date of service", _START, date(2003, 10, 16), ("26", "27")),
    CodeEntry("29", "filing time limit has passed", _START),
    CodeEntry("31", "patient is not identified as our member", _START),
    CodeEntry("38", "service not from a designated provider", _START, date(2013, 6, 30), ("242",)),
    CodeEntry("42", "charge exceeds the maximum allowable amount", _START, date(2007, 6, 30), ("45",)),
    CodeEntry("45", "charge exceeds the fee schedule or contracted amount", _START),
    CodeEntry("62", "authorisation absent or exceeded", _START, date(2007, 6, 30), ("197", "198")),
    CodeEntry("96", "non-covered charge", _START, needs_remark=True),
    CodeEntry("97", "included in the payment for another service", _START),
    CodeEntry("119", "benefit maximum for the period has been reached", _START),
    CodeEntry("133", "pending further review", date(2003, 1, 1)),
    CodeEntry("151", "information does not support this many services", date(2003, 1, 1)),
    CodeEntry("197", "authorisation absent", date(2006, 10, 1)),
    CodeEntry("198", "authorisation exceeded", date(2006, 10, 1)),
    CodeEntry("234", "procedure is not paid separately", date(2009, 1, 1), needs_remark=True),
    CodeEntry("242", "service not from a network provider", date(2008, 1, 1)),
    CodeEntry("A1", "claim or service denied", _START, needs_remark=True),
    CodeEntry("B7", "provider not eligible to be paid for this service on this date", _START),
)

RARC = _table(
    CodeEntry("M15", "separately billed services have been bundled", _START),
    CodeEntry("M76", "diagnosis missing or incomplete", _START),
    CodeEntry("N130", "see the plan's benefit documents for this service", date(2002, 1, 1)),
    CodeEntry("N362", "days or units of service exceed the acceptable maximum", date(2006, 1, 1)),
)


def is_in_force(table: MappingProxyType[str, CodeEntry], code: str, day: date) -> bool:
    """Whether `code` is in `table` and valid on `day`."""
    entry = table.get(code)
    return entry is not None and entry.in_force_on(day)


def require_in_force(group: str, carc: str, remarks: tuple[str, ...] | list[str], day: date) -> None:
    """Raise `CodeNotInForceError` unless the group, CARC and every remark are valid on `day`."""
    for kind, table, code in (("group", GROUP_CODES, group), ("CARC", CARC, carc)):
        if not is_in_force(table, code, day):
            raise CodeNotInForceError(f"{kind} code {code!r} is not in force on {day.isoformat()}")
    for remark in remarks:
        if not is_in_force(RARC, remark, day):
            raise CodeNotInForceError(f"RARC {remark!r} is not in force on {day.isoformat()}")
