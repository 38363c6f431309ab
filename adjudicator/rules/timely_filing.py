"""Timely filing: a line received more than the plan's `timely_filing_days` after its date of
service is denied `late` (CO-29). Received exactly on the last day is in time."""

from __future__ import annotations

from dataclasses import dataclass

from ..findings import Finding, Reason, reasons_reader
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class TimelyFilingParams:
    late: Reason


def timely_filing(claim: ClaimInput, facts: Facts, params: TimelyFilingParams, state: ClaimState) -> list[Finding]:
    return [
        Finding.deny(line.number, params.late)
        for line in state.open_lines()
        if line.terms is not None and (facts.received_on - line.dos).days > line.terms.timely_filing_days
    ]


RULE = Rule("timely_filing", timely_filing, reasons_reader(TimelyFilingParams))
