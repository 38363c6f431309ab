"""Pricing: allowed = the fee-schedule price per unit x the line's open units, never above billed.

The price is the first of the line's modifiers (in billed order) with a "CODE:MODIFIER" price, else
the plain "CODE" price. The billed amount above the allowed amount goes to `above_fee_schedule`
(CO-45). A line with no price (no schedule, a schedule not yet effective on the date of service, or
no entry for the code) is left unpriced: the pend rule pends the claim for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..findings import Finding, Reason, reasons_reader
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class PricingParams:
    above_fee_schedule: Reason


def pricing(claim: ClaimInput, facts: Facts, params: PricingParams, state: ClaimState) -> list[Finding]:
    schedule = facts.fee_schedule
    if schedule is None:
        return []
    fees = schedule.fees
    findings = []
    for line in state.open_lines():
        if line.dos < schedule.effective_date:
            continue
        price = None
        for modifier in line.modifiers:
            price = fees.get(f"{line.procedure}:{modifier}")
            if price is not None:
                break
        if price is None:
            price = fees.get(line.procedure)
        if price is None:
            continue
        findings.append(Finding.allow(line.number, min(price * line.units, line.billed_open), params.above_fee_schedule))
    return findings


RULE = Rule("pricing", pricing, reasons_reader(PricingParams))
