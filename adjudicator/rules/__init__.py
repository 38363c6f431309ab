"""Rule modules: one pure rule per file, each ending with `RULE = Rule(name, check, params_from)`.

A rule is `check(claim, facts, params, state) -> list[Finding]`: it reads the claim, the facts, its
parameters (from the rule set, never constants in the rule) and the lines still open (`state`), and
says what it finds; the engine applies the findings. Rules see only lines no earlier rule denied.
The order they run in is the rule set's (rulesets/); the released order is eligibility, provider,
timely_filing, duplicates, coverage, diagnosis_fit, prior_authorization, bundling, unit_limits,
pricing, cost_share, pend.

A released rule module is frozen (its source is in its rule sets' pinned hashes): a change is a new
module, listed by a new rule-set version.

Imports: the standard library and this package only.
"""
