"""Unit limits (MUE-style): at most `per_day[procedure]` units of a procedure per date of service.

Units of open lines of this claim with the same procedure and date are counted in line-number order;
units beyond the limit are cut `exceeded` (CO-151 with N362), and a line with no units left under the
limit is denied by that cut. Procedures without a limit are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from ..findings import Finding, Reason
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class UnitLimitsParams:
    per_day: Mapping[str, int]
    exceeded: Reason

    @classmethod
    def from_parameters(cls, section: Mapping[str, Any]) -> UnitLimitsParams:
        return cls(per_day=dict(section["per_day"]), exceeded=Reason.from_json(section["exceeded"]))


def unit_limits(claim: ClaimInput, facts: Facts, params: UnitLimitsParams, state: ClaimState) -> list[Finding]:
    counted: dict[tuple[str, date], int] = {}
    findings = []
    for line in state.open_lines():
        limit = params.per_day.get(line.procedure)
        if limit is None:
            continue
        key = (line.procedure, line.dos)
        before = counted.get(key, 0)
        left = max(0, limit - before)
        if line.units > left:
            findings.append(Finding.cut(line.number, line.units - left, params.exceeded))
        counted[key] = before + min(line.units, left)
    return findings


RULE = Rule("unit_limits", unit_limits, UnitLimitsParams.from_parameters)
