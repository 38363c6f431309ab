"""The human side of a pend: why a claim waits for a reviewer, and the reviewer's decision.

`review(claim, facts, ruleset, resolution)` decides a pended claim by the engine's own functions,
so that a reviewer's decision is capped, labelled and balanced exactly like an automatic one:
the rule set's rules run again on the facts, except that the reviewer's allowed amounts take the
place of fee-schedule pricing and nothing pends (the review *is* the human look the pend asked
for); a denial denies, in the same place, every line the rules left open, with the reviewer's
group and CARC (a line the rules denied keeps its own reason). Cost share
(deductible, copay, coinsurance, out-of-pocket maximum) and the outcome label come from the
engine. Same claim, facts, rule set and resolution: same decision, so a review replays like any
other decision.

`pend_reasons(claim, facts, ruleset)` names why the rule set pended a claim, as remark codes.

Imports: the standard library and this package only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import engine
from .findings import Finding, Reason
from .models import ClaimInput, Decision, Facts
from .ruleset import Rule, RuleSet, Step
from .state import OPEN, ClaimState

# Why a claim waits for a person, as remittance advice remark codes (RARC), one reason each.
REVIEW_THRESHOLD = "N10"  # billed above the plan's review threshold: manual adjudication
MISSING_PRICE = "N448"  # a service not in the fee schedule or contracted fee arrangement
RULESET_FAILED = "N463"  # the rule set could not decide on the data given: support data to be reviewed

PEND_REASONS: Mapping[str, str] = {
    REVIEW_THRESHOLD: "billed amount is above the plan's review threshold",
    MISSING_PRICE: "a service has no price in the provider's fee schedule",
    RULESET_FAILED: "the rule set could not decide this claim",
}

_SKIPPED = frozenset({"pend"})
_REPLACED = "pricing"
# A reviewer's allowed amount below the billed amount is a contractual adjustment, like a price.
_ALLOWED = Reason("CO", "45")


@dataclass(frozen=True)
class Resolution:
    """A reviewer's resolution: allowed amounts per line (line number -> cents), or a denial."""

    allowed: Mapping[int, int] | None = None
    deny_group: str | None = None
    deny_carc: str | None = None

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Resolution:
        if value.get("deny") is not None:
            return cls(deny_group=value["deny"]["group"], deny_carc=value["deny"]["carc"])
        return cls(allowed={int(entry["line_number"]): int(entry["allowed_cents"]) for entry in value["approve"]})

    def to_json(self) -> dict[str, Any]:
        if self.deny_group is not None:
            return {"approve": None, "deny": {"group": self.deny_group, "carc": self.deny_carc}}
        allowed = self.allowed or {}
        return {"approve": [{"line_number": n, "allowed_cents": allowed[n]} for n in sorted(allowed)], "deny": None}


def _reviewer(claim: ClaimInput, facts: Facts, resolution: Resolution, state: ClaimState) -> list[Finding]:
    if resolution.deny_group is not None:
        reason = Reason(resolution.deny_group, resolution.deny_carc or "")
        return [Finding.deny(line.number, reason) for line in state.open_lines()]
    allowed = resolution.allowed or {}
    return [Finding.allow(line.number, allowed[line.number], _ALLOWED)
            for line in state.open_lines() if line.number in allowed]


_REVIEWER = Rule("review", _reviewer, lambda section: section)


def review_steps(ruleset: RuleSet, resolution: Resolution) -> list[Step]:
    """The rule set's steps with the reviewer's in place of pricing and without the pend rule: a
    line the rules deny keeps its own denial; the reviewer prices (or denies) the rest."""
    reviewer = Step(_REVIEWER, resolution)
    steps = []
    for step in ruleset.steps:
        if step.rule.name in _SKIPPED:
            continue
        steps.append(reviewer if step.rule.name == _REPLACED else step)
    return steps


def review(claim: ClaimInput, facts: Facts, ruleset: RuleSet, resolution: Resolution) -> Decision:
    """The decision on a pended claim that `resolution` stands for (see the module docstring).

    A line the rules deny stays denied whatever the reviewer allowed; an open line the reviewer
    gave no amount leaves the claim pended (the caller requires an amount for every pended line).
    """
    return engine._decide(claim, facts, ruleset, engine.evaluate(claim, facts, review_steps(ruleset, resolution)))


def lines_to_review(decision: Decision) -> list[int]:
    """The lines a reviewer must give an amount for: those the pend held, not those already denied."""
    return [line.line_number for line in decision.lines if line.status == "pended"]


def pend_reasons(claim: ClaimInput, facts: Facts, ruleset: RuleSet) -> list[str]:
    """Why `ruleset` pends this claim, as remark codes (empty when it does not pend it on these
    facts): the rules run up to the pend rule, and what that rule would look at is named."""
    steps: Sequence[Step] = [step for step in ruleset.steps if step.rule.name not in _SKIPPED]
    state = engine.evaluate(claim, facts, steps)
    reasons = []
    open_lines = [line for line in state.lines if line.status is OPEN]
    if any(line.terms is not None and state.total_billed > line.terms.review_threshold_cents for line in open_lines):
        reasons.append(REVIEW_THRESHOLD)
    if any(line.allowed is None for line in open_lines):
        reasons.append(MISSING_PRICE)
    return reasons
