"""Released rule sets: named versions, each listing its rule modules in order and its parameters.

A claim is judged by the rule set in force on its RECEIVED date. Deploying a rule set is a ledger
event with an effective date, so the service decides which version applies and passes it to the
engine; the engine just takes the `RuleSet` and records its version and content hash in the
decision. A dispute replays a decision with the version it recorded; a what-if replay passes another.

A released rule set never changes: its content hash (rule-module sources, engine, parameters) is
pinned in tests/unit/adjudicator. A change is a new version that reuses the unchanged rule modules
by import and names its own parameters.

- 2026.1: the first release (v2026_1.py).
- 2026.2: as 2026.1, but modifier 59 alone no longer bypasses a bundling pair (only XE, XP, XS, XU
  do), and the daily limit of 97110 rises from 4 to 6 units (v2026_2.py).

Parameters are plain JSON keyed by rule name; each rule module reads its own section (see its
`from_parameters`): the reasons it emits as {"group", "carc", "remarks"}, and the tables it needs.

Imports: the standard library and this package only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..ruleset import RuleSet
from . import v2026_1, v2026_2

RULESETS: Mapping[str, RuleSet] = MappingProxyType(
    {ruleset.version: ruleset for ruleset in (v2026_1.RULESET, v2026_2.RULESET)}
)


class UnknownRuleSetError(KeyError):
    """No released rule set has this version."""


def get_ruleset(version: str) -> RuleSet:
    """The released rule set named `version` (e.g. "2026.1")."""
    try:
        return RULESETS[version]
    except KeyError:
        raise UnknownRuleSetError(version) from None
