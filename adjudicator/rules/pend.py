"""Pend for review: the claim waits for a person, paying nothing yet and moving no accumulators.

The claim is pended when its total billed amount (all lines) exceeds the `review_threshold_cents` of
the plan of any open line, or when an open line has no fee-schedule price. Every open line is then
pended with `review` (OA-133); the engine reports each with its whole billed amount as that
adjustment. Denied lines keep their denials.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..findings import Finding, Reason, reasons_reader
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class PendParams:
    review: Reason


def pend(claim: ClaimInput, facts: Facts, params: PendParams, state: ClaimState) -> list[Finding]:
    lines = state.open_lines()
    needs_review = any(
        line.allowed is None or (line.terms is not None and state.total_billed > line.terms.review_threshold_cents)
        for line in lines
    )
    return [Finding.pend(line.number, params.review) for line in lines] if needs_review else []


RULE = Rule("pend", pend, reasons_reader(PendParams))
