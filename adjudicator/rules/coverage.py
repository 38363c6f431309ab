"""Coverage: the plan must cover the procedure, within its yearly benefit limit.

A procedure in the plan's `non_covered_procedures` is denied `not_covered` (CO-96 with N130).
For a procedure with a benefit limit, the units already used in the line's plan year (accumulators,
before this claim) plus those of earlier open lines of this claim in the same year are counted: with
nothing left the line is denied `benefit_limit` (CO-119); with fewer units left than billed, the
excess units are cut with the same reason and the rest goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..findings import Finding, Reason, reasons_reader
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class CoverageParams:
    not_covered: Reason
    benefit_limit: Reason


def coverage(claim: ClaimInput, facts: Facts, params: CoverageParams, state: ClaimState) -> list[Finding]:
    used: dict[tuple[int, str], int] = {}
    findings = []
    for line in state.open_lines():
        terms = line.terms
        if terms is None:
            continue
        if line.procedure in terms.non_covered_procedures:
            findings.append(Finding.deny(line.number, params.not_covered))
            continue
        limit = terms.benefit_limits.get(line.procedure)
        if limit is None:
            continue
        key = (line.plan_year, line.procedure)
        before = used[key] if key in used else state.benefit_units_used(*key)
        left = max(0, limit - before)
        if left == 0:
            findings.append(Finding.deny(line.number, params.benefit_limit))
        elif line.units > left:
            findings.append(Finding.cut(line.number, line.units - left, params.benefit_limit))
        used[key] = before + min(line.units, left)
    return findings


RULE = Rule("coverage", coverage, reasons_reader(CoverageParams))
