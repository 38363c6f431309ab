"""Bundling (NCCI-style pairs): a column-2 code billed with its column-1 code is not paid separately.

When an open line's procedure is the column-2 code of a pair whose column-1 code is on another open
line of this claim with the same date of service, the line is denied `bundled` (CO-97), unless the
pair allows a modifier bypass and the line carries one of `bypass_modifiers` (59, XE, XS, XP, XU).
Lines are compared as they stand when the rule starts, so line order does not matter; a column-1
line an earlier rule denied bundles nothing.
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
class BundlingParams:
    column1_for: Mapping[str, tuple[tuple[str, bool], ...]]
    """column-2 code -> ((column-1 code, modifier may bypass), ...)"""
    bypass_modifiers: frozenset[str]
    bundled: Reason

    @classmethod
    def from_parameters(cls, section: Mapping[str, Any]) -> BundlingParams:
        column1_for: dict[str, list[tuple[str, bool]]] = {}
        for pair in section["pairs"]:
            if pair["column1"] == pair["column2"]:
                raise ValueError(f"bundling pair of {pair['column1']} with itself")
            column1_for.setdefault(pair["column2"], []).append((pair["column1"], bool(pair["modifier_bypass"])))
        return cls(
            column1_for={code: tuple(pairs) for code, pairs in column1_for.items()},
            bypass_modifiers=frozenset(section["bypass_modifiers"]),
            bundled=Reason.from_json(section["bundled"]),
        )


def bundling(claim: ClaimInput, facts: Facts, params: BundlingParams, state: ClaimState) -> list[Finding]:
    lines = state.open_lines()
    codes_on: dict[date, set[str]] = {}
    for line in lines:
        codes_on.setdefault(line.dos, set()).add(line.procedure)
    findings = []
    for line in lines:
        for column1, may_bypass in params.column1_for.get(line.procedure, ()):
            if column1 not in codes_on[line.dos]:
                continue
            if may_bypass and not params.bypass_modifiers.isdisjoint(line.modifiers):
                continue
            findings.append(Finding.deny(line.number, params.bundled))
            break
    return findings


RULE = Rule("bundling", bundling, BundlingParams.from_parameters)
