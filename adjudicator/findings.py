"""What a rule says about a line: a `Finding`, and the `Reason` (group, CARC, remarks) it carries.

A rule returns findings; only the engine applies them (engine.py), in the order returned:
- DENY: the line pays nothing; everything of its billed amount not yet explained goes to the reason.
  A denied line stops every later rule for that line.
- CUT: `units` of the line are refused; their share of the billed amount goes to the reason and the
  line goes on with the rest. Cutting every unit denies the line.
- ALLOW: the line's allowed amount; the billed amount above it goes to the reason (e.g. CO-45).
- COPAY, DEDUCTIBLE, COINSURANCE: the member's share of the allowed amount (PR adjustments); all three
  count toward the out-of-pocket accumulator, DEDUCTIBLE also toward the deductible.
- PEND: the claim waits for review and pays nothing yet.

Reasons come from the rule set's parameters, never from constants in rule code.
Imports: the standard library and this package's code tables only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, TypeVar

from .codes import CARC, GROUP_CODES, RARC


class Kind(Enum):
    DENY = "deny"
    CUT = "cut"
    ALLOW = "allow"
    COPAY = "copay"
    DEDUCTIBLE = "deductible"
    COINSURANCE = "coinsurance"
    PEND = "pend"


@dataclass(frozen=True, slots=True)
class Reason:
    """Group code, claim adjustment reason code and remark codes, e.g. CO-96 with N130."""

    group: str
    carc: str
    remarks: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Reason:
        """Read `{"group": "CO", "carc": "96", "remarks": ["N130"]}`, checking the codes exist."""
        reason = cls(value["group"], value["carc"], tuple(value.get("remarks", ())))
        if reason.group not in GROUP_CODES:
            raise ValueError(f"unknown group code {reason.group!r}")
        if reason.carc not in CARC:
            raise ValueError(f"unknown CARC {reason.carc!r}")
        unknown = [remark for remark in reason.remarks if remark not in RARC]
        if unknown:
            raise ValueError(f"unknown RARC {unknown}")
        if CARC[reason.carc].needs_remark and not reason.remarks:
            raise ValueError(f"CARC {reason.carc} needs a remark code")
        return reason

    def __str__(self) -> str:
        return f"{self.group}-{self.carc}" + "".join(f" {remark}" for remark in self.remarks)


P = TypeVar("P")


def reasons_reader(params_class: type[P]) -> Callable[[Mapping[str, Any]], P]:
    """A rule's `params_from` for a parameter class made only of reasons, each read from the
    section key of the same name."""
    names = [field.name for field in fields(params_class)]

    def read(section: Mapping[str, Any]) -> P:
        return params_class(**{name: Reason.from_json(section[name]) for name in names})

    return read


@dataclass(frozen=True, slots=True)
class Finding:
    line_number: int
    kind: Kind
    reason: Reason
    units: int = 0
    amount_cents: int = 0

    @classmethod
    def deny(cls, line_number: int, reason: Reason) -> Finding:
        return cls(line_number, Kind.DENY, reason)

    @classmethod
    def cut(cls, line_number: int, units: int, reason: Reason) -> Finding:
        return cls(line_number, Kind.CUT, reason, units=units)

    @classmethod
    def allow(cls, line_number: int, allowed_cents: int, reason: Reason) -> Finding:
        return cls(line_number, Kind.ALLOW, reason, amount_cents=allowed_cents)

    @classmethod
    def member_share(cls, line_number: int, kind: Kind, amount_cents: int, reason: Reason) -> Finding:
        return cls(line_number, kind, reason, amount_cents=amount_cents)

    @classmethod
    def pend(cls, line_number: int, reason: Reason) -> Finding:
        return cls(line_number, Kind.PEND, reason)
