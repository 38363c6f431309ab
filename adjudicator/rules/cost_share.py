"""Member cost share: copay, then deductible, then coinsurance, capped by the out-of-pocket maximum.

For each priced open line in line-number order, with the plan's `cost_share` for the procedure's
service category (the `categories` table; "default" for a category the plan does not list; none at
all when the plan lists neither):
1. copay (PR-3): the plan's copay, at most the allowed amount;
2. deductible (PR-1): what is left of the deductible, at most what is left of the allowed amount;
3. coinsurance (PR-2): basis points of the rest, rounded half up to the cent (money.py).
Every step is capped by what is left of the out-of-pocket maximum (oop_max - oop_met). Deductible
and out-of-pocket amounts start from the accumulators of the line's plan year (the calendar year of
its date of service) and accumulate across the lines of the claim, separately per plan year; each
line uses its own plan's deductible and maximum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..findings import Finding, Kind, Reason
from ..models import ClaimInput, CostShare, Facts
from ..money import coinsurance
from ..ruleset import Rule
from ..state import ClaimState

_NONE = CostShare(copay_cents=0, coinsurance_bp=0)


@dataclass(frozen=True, slots=True)
class CostShareParams:
    categories: Mapping[str, str]
    """procedure code -> service category; codes not listed are "default"."""
    copay: Reason
    deductible: Reason
    coinsurance: Reason

    @classmethod
    def from_parameters(cls, section: Mapping[str, Any]) -> CostShareParams:
        return cls(
            categories=dict(section["categories"]),
            copay=Reason.from_json(section["copay"]),
            deductible=Reason.from_json(section["deductible"]),
            coinsurance=Reason.from_json(section["coinsurance"]),
        )


def cost_share(claim: ClaimInput, facts: Facts, params: CostShareParams, state: ClaimState) -> list[Finding]:
    met: dict[int, list[int]] = {}
    findings = []
    for line in state.open_lines():
        terms = line.terms
        if terms is None or line.allowed is None:
            continue
        share = terms.cost_share.get(params.categories.get(line.procedure, "default"))
        if share is None:
            share = terms.cost_share.get("default", _NONE)
        year = met.get(line.plan_year)
        if year is None:
            year = met[line.plan_year] = list(state.accumulators(line.plan_year))
        deductible_met, oop_met = year
        oop_left = max(0, terms.oop_max_cents - oop_met)
        rest = line.allowed

        copay = min(share.copay_cents, rest, oop_left)
        rest -= copay
        oop_left -= copay
        deductible = min(max(0, terms.deductible_cents - deductible_met), rest, oop_left)
        rest -= deductible
        oop_left -= deductible
        coins = min(coinsurance(rest, share.coinsurance_bp), oop_left)

        for kind, amount, reason in (
            (Kind.COPAY, copay, params.copay),
            (Kind.DEDUCTIBLE, deductible, params.deductible),
            (Kind.COINSURANCE, coins, params.coinsurance),
        ):
            if amount:
                findings.append(Finding.member_share(line.number, kind, amount, reason))
        year[0] = deductible_met + deductible
        year[1] = oop_met + copay + deductible + coins
    return findings


RULE = Rule("cost_share", cost_share, CostShareParams.from_parameters)
