"""Duplicates: a line identical to an earlier one is denied `duplicate` (OA-18).

Identical means same provider, date of service, procedure, modifiers (in any order) and units; the
member is the same because the facts are this member's. Earlier means a line of an earlier claim
that is not voided (lines of this same claim, and for a replacement those of the claim it replaces,
do not count: state.py), or an earlier open line of this claim, in line-number order.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..findings import Finding, Reason, reasons_reader
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState, DuplicateKey


@dataclass(frozen=True, slots=True)
class DuplicatesParams:
    duplicate: Reason


def duplicates(claim: ClaimInput, facts: Facts, params: DuplicatesParams, state: ClaimState) -> list[Finding]:
    earlier = state.earlier_line_keys()
    seen: set[DuplicateKey] = set()
    findings = []
    for line in state.open_lines():
        key = line.duplicate_key(claim.provider_id)
        if key in earlier or key in seen:
            findings.append(Finding.deny(line.number, params.duplicate))
        else:
            seen.add(key)
    return findings


RULE = Rule("duplicates", duplicates, reasons_reader(DuplicatesParams))
