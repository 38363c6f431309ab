"""Eligibility: the member must hold coverage with this payer on each line's date of service.

Not our member (`member_known` is false, or no coverage period with this payer at all): every line is
denied `not_our_member` (CO-31). Otherwise a line outside every period is denied `after_coverage`
(CO-27) when some period ended before its date of service, else `before_coverage` (CO-26).
Periods include both ends. The period a line falls in (state.py) gives later rules the plan terms.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..findings import Finding, Reason, reasons_reader
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class EligibilityParams:
    not_our_member: Reason
    before_coverage: Reason
    after_coverage: Reason


def eligibility(claim: ClaimInput, facts: Facts, params: EligibilityParams, state: ClaimState) -> list[Finding]:
    if not facts.member_known or not state.coverages:
        return [Finding.deny(line.number, params.not_our_member) for line in state.open_lines()]
    findings = []
    for line in state.open_lines():
        if line.coverage is not None:
            continue
        ended_before = any(
            coverage.termination_date is not None and coverage.termination_date < line.dos
            for coverage in state.coverages
        )
        findings.append(Finding.deny(line.number, params.after_coverage if ended_before else params.before_coverage))
    return findings


RULE = Rule("eligibility", eligibility, reasons_reader(EligibilityParams))
