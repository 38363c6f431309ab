"""Rule set 2026.1: the first release. Frozen: its content hash is pinned in a test."""

from __future__ import annotations

from typing import Any

from .. import codeset
from ..rules import (
    bundling,
    cost_share,
    coverage,
    diagnosis_fit,
    duplicates,
    eligibility,
    pend,
    prior_authorization,
    pricing,
    provider,
    timely_filing,
    unit_limits,
)
from ..ruleset import RuleSet

VERSION = "2026.1"

MODULES = (
    eligibility,
    provider,
    timely_filing,
    duplicates,
    coverage,
    diagnosis_fit,
    prior_authorization,
    bundling,
    unit_limits,
    pricing,
    cost_share,
    pend,
)


def reason(group: str, carc: str, *remarks: str) -> dict[str, Any]:
    return {"group": group, "carc": carc, "remarks": list(remarks)}


PARAMETERS: dict[str, Any] = {
    "eligibility": {
        "not_our_member": reason("CO", "31"),
        "before_coverage": reason("CO", "26"),
        "after_coverage": reason("CO", "27"),
    },
    "provider": {
        "no_valid_licence": reason("CO", "B7"),
        "out_of_network": reason("CO", "242"),
    },
    "timely_filing": {"late": reason("CO", "29")},
    "duplicates": {"duplicate": reason("OA", "18")},
    "coverage": {
        "not_covered": reason("CO", "96", "N130"),
        "benefit_limit": reason("CO", "119"),
    },
    "diagnosis_fit": {"table": codeset.diagnosis_fit(), "mismatch": reason("CO", "11")},
    "prior_authorization": {"absent": reason("CO", "197"), "exceeded": reason("CO", "198")},
    "bundling": {
        "pairs": codeset.bundling_pairs(),
        "bypass_modifiers": ["59", "XE", "XP", "XS", "XU"],
        "bundled": reason("CO", "97"),
    },
    "unit_limits": {"per_day": codeset.unit_limits(), "exceeded": reason("CO", "151", "N362")},
    "pricing": {"above_fee_schedule": reason("CO", "45")},
    "cost_share": {
        "categories": codeset.procedure_categories(),
        "copay": reason("PR", "3"),
        "deductible": reason("PR", "1"),
        "coinsurance": reason("PR", "2"),
    },
    "pend": {"review": reason("OA", "133")},
}

RULESET = RuleSet.build(VERSION, MODULES, PARAMETERS)
