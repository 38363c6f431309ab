"""The adjudicator: pure, deterministic, versioned rule modules and the engine that runs them.

Lives here: the data models (models.py), code tables with effective dates (codes.py), the synthetic
code set (codeset.py, data/*.json), the rules (rules/, one per file), rule sets (ruleset.py,
rulesets/), the engine (engine.py, over state.py, findings.py, money.py), dispute-replay comparison
(replay.py), and reviewers' decisions on pended claims and the reasons for a pend (review.py). Its
throughput benchmark lives with the others, in bench/engine.py.

`adjudicate(claim, facts, ruleset)` gives the same `Decision` for the same inputs, always: nothing
here reads a clock, randomness, the environment, a database or the network. This package imports the
standard library and pydantic only, and nothing of the service (tests/unit/adjudicator/test_purity.py
walks the imports).
"""

from .engine import adjudicate
from .models import (
    AccumulatorChange,
    Accumulators,
    Adjustment,
    ClaimInput,
    ClaimLineInput,
    CostShare,
    Coverage,
    Credential,
    Decision,
    EarlierClaimLine,
    Facts,
    FeeSchedule,
    LineResult,
    NetworkMembership,
    Outcome,
    PlanTerms,
    PriorAuthorization,
    ProviderFacts,
)
from .review import PEND_REASONS, Resolution, pend_reasons, review
from .ruleset import RuleSet
from .rulesets import RULESETS, UnknownRuleSetError, get_ruleset

__all__ = [
    "PEND_REASONS",
    "RULESETS",
    "AccumulatorChange",
    "Accumulators",
    "Adjustment",
    "ClaimInput",
    "ClaimLineInput",
    "CostShare",
    "Coverage",
    "Credential",
    "Decision",
    "EarlierClaimLine",
    "Facts",
    "FeeSchedule",
    "LineResult",
    "NetworkMembership",
    "Outcome",
    "PlanTerms",
    "PriorAuthorization",
    "Resolution",
    "ProviderFacts",
    "RuleSet",
    "UnknownRuleSetError",
    "adjudicate",
    "pend_reasons",
    "review",
    "get_ruleset",
]
