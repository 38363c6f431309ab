"""Released rule sets are frozen: their content hashes are pinned here.

If one of these fails, released rule code, engine code or parameters changed. Do not update the
literal: put the change in a new rule-set version (rulesets/), reusing the unchanged rules by import.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from adjudicator import RULESETS, RuleSet, UnknownRuleSetError, get_ruleset
from adjudicator.codes import CARC, GROUP_CODES, RARC
from adjudicator.rules import eligibility, pend, timely_filing
from adjudicator.ruleset import canonical_json, content_hash
from adjudicator.rulesets import v2026_1

PINNED = {
    "2026.1": "32465a8716d08dc5a398842966821957f97f3d7f55c2545e29af05c34734acc8",
    "2026.2": "1646c97b20d49e2136d2004b72ac046e97e6e0200bfe3fc06bd3a4eef9925ac1",
}
RELEASED_ORDER = [
    "eligibility",
    "provider",
    "timely_filing",
    "duplicates",
    "coverage",
    "diagnosis_fit",
    "prior_authorization",
    "bundling",
    "unit_limits",
    "pricing",
    "cost_share",
    "pend",
]


@pytest.mark.parametrize("version", sorted(PINNED))
def test_released_rule_set_hash_is_pinned(version):
    assert get_ruleset(version).content_hash == PINNED[version]


def test_every_released_rule_set_is_pinned():
    assert sorted(RULESETS) == sorted(PINNED)


def test_released_rule_sets_run_the_rules_in_the_documented_order():
    for ruleset in RULESETS.values():
        assert [step.rule.name for step in ruleset.steps] == RELEASED_ORDER


def test_get_ruleset_refuses_an_unknown_version():
    with pytest.raises(UnknownRuleSetError):
        get_ruleset("1999.1")


def test_2026_2_reuses_the_rule_modules_and_differs_only_in_two_parameters():
    old, new = get_ruleset("2026.1"), get_ruleset("2026.2")
    assert new.modules == old.modules
    assert old.content_hash != new.content_hash
    changed = {name for name in old.parameters if old.parameters[name] != new.parameters[name]}
    assert changed == {"bundling", "unit_limits"}
    assert new.parameters["bundling"]["bypass_modifiers"] == ["XE", "XP", "XS", "XU"]
    assert new.parameters["unit_limits"]["per_day"]["97110"] == 6
    assert old.parameters["unit_limits"]["per_day"]["97110"] == 4


def test_hash_covers_rule_sources_engine_and_canonical_parameters():
    ruleset = get_ruleset("2026.1")
    assert ruleset.content_hash == content_hash(ruleset.modules, ruleset.canonical_parameters)
    assert json.loads(ruleset.canonical_parameters) == v2026_1.PARAMETERS
    assert canonical_json({"b": 1, "a": [1, "x"]}) == '{"a":[1,"x"],"b":1}'
    # Another order of modules or another parameter value is another hash.
    swapped = (ruleset.modules[1], ruleset.modules[0], *ruleset.modules[2:])
    assert content_hash(swapped, ruleset.canonical_parameters) != ruleset.content_hash
    assert content_hash(ruleset.modules, ruleset.canonical_parameters.replace('"29"', '"28"')) != ruleset.content_hash
    assert len(ruleset.content_hash) == 64 and int(ruleset.content_hash, 16) >= 0


def test_parameters_handed_out_are_copies():
    ruleset = get_ruleset("2026.1")
    ruleset.parameters["pend"]["review"]["carc"] = "X"
    assert ruleset.parameters["pend"]["review"]["carc"] == "133"


def test_every_code_a_released_rule_set_emits_exists_and_is_not_retired():
    def reasons(value):
        if isinstance(value, dict):
            if {"group", "carc"} <= value.keys():
                yield value
            for item in value.values():
                yield from reasons(item)
        elif isinstance(value, list):
            for item in value:
                yield from reasons(item)

    for ruleset in RULESETS.values():
        found = list(reasons(ruleset.parameters))
        assert len(found) == 19
        for reason in found:
            entries = [GROUP_CODES[reason["group"]], CARC[reason["carc"]], *(RARC[r] for r in reason["remarks"])]
            for entry in entries:
                assert entry.valid_to is None, entry
                assert entry.in_force_on(date(2026, 1, 1)), entry


def minimal_parameters(**changes):
    parameters = {
        "eligibility": v2026_1.PARAMETERS["eligibility"],
        "timely_filing": v2026_1.PARAMETERS["timely_filing"],
        "pend": v2026_1.PARAMETERS["pend"],
    }
    parameters.update(changes)
    return parameters


def test_building_refuses_unknown_or_incomplete_codes():
    modules = (eligibility, timely_filing, pend)
    assert RuleSet.build("t", modules, minimal_parameters()).version == "t"
    for bad in (
        {"late": {"group": "XX", "carc": "29", "remarks": []}},
        {"late": {"group": "CO", "carc": "999", "remarks": []}},
        {"late": {"group": "CO", "carc": "29", "remarks": ["N999"]}},
        {"late": {"group": "CO", "carc": "96", "remarks": []}},  # CARC 96 needs a remark
    ):
        with pytest.raises(ValueError):
            RuleSet.build("t", modules, minimal_parameters(timely_filing=bad))


def test_building_refuses_parameters_that_do_not_match_the_rules():
    with pytest.raises(ValueError):
        RuleSet.build("t", (eligibility, timely_filing), minimal_parameters())
    with pytest.raises(ValueError):
        RuleSet.build("t", (eligibility, timely_filing, pend, pend), minimal_parameters())
