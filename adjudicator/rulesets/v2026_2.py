"""Rule set 2026.2: 2026.1's rules, by import, with two parameter changes.

- Bundling: modifier 59 alone no longer bypasses a pair; only XE, XP, XS and XU do.
- Unit limits: 97110 (therapeutic exercise) may be billed up to 6 units a day instead of 4.
Frozen once released: its content hash is pinned in a test.
"""

from __future__ import annotations

import json
from typing import Any

from ..ruleset import RuleSet
from . import v2026_1

VERSION = "2026.2"

MODULES = v2026_1.MODULES

# A deep copy, so that 2026.1's parameters stay exactly as released.
PARAMETERS: dict[str, Any] = json.loads(json.dumps(v2026_1.PARAMETERS))
PARAMETERS["bundling"]["bypass_modifiers"] = ["XE", "XP", "XS", "XU"]
PARAMETERS["unit_limits"]["per_day"]["97110"] = 6

RULESET = RuleSet.build(VERSION, MODULES, PARAMETERS)
