"""What a rule set is: `Rule` (one rule module's entry point) and `RuleSet` (a named version).

A rule module ends with `RULE = Rule(name, check, params_from)`: `check(claim, facts, params, state)`
returns findings, and `params_from` turns the rule's section of the rule-set parameters (plain JSON,
keyed by rule name) into a typed, precomputed parameter object, once, when the rule set is built.

`RuleSet.content_hash` is SHA-256 over, in order: the source of each rule module, the source of the
engine and the modules it runs on (engine, state, findings, money), and the canonical JSON of the
parameters (sorted keys, no spaces, ASCII). Each source is framed as `name \\n length \\n bytes` with
line endings normalised to LF, so a checkout's line endings do not change the hash; any other edit
does. Released rule sets pin their hash in a test.

Imports: the standard library and this package only.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from . import engine, findings, money, state
from .findings import Finding
from .models import ClaimInput, Facts
from .state import ClaimState

Check = Callable[[ClaimInput, Facts, Any, ClaimState], list[Finding]]

ENGINE_MODULES: tuple[ModuleType, ...] = (engine, state, findings, money)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    check: Check
    params_from: Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Step:
    """One rule of a built rule set, with its parameters already read."""

    rule: Rule
    params: Any


@dataclass(frozen=True)
class RuleSet:
    version: str
    modules: tuple[ModuleType, ...]
    canonical_parameters: str
    steps: tuple[Step, ...] = field(repr=False)
    content_hash: str

    @classmethod
    def build(cls, version: str, modules: Sequence[ModuleType], parameters: Mapping[str, Any]) -> RuleSet:
        """Build a rule set running `modules` in order, each with `parameters[its rule name]`."""
        canonical = canonical_json(parameters)
        # Read back from the canonical text: the rules see exactly what is hashed.
        plain = json.loads(canonical)
        rules = [module.RULE for module in modules]
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule set {version}: a rule is listed twice")
        if set(names) != set(plain):
            raise ValueError(f"rule set {version}: parameter sections {sorted(plain)} != rules {sorted(names)}")
        steps = tuple(Step(rule, rule.params_from(plain[rule.name])) for rule in rules)
        return cls(version, tuple(modules), canonical, steps, content_hash(modules, canonical))

    @property
    def parameters(self) -> dict[str, Any]:
        """A fresh copy of the parameters: changing it changes nothing here."""
        return json.loads(self.canonical_parameters)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def content_hash(modules: Sequence[ModuleType], canonical_parameters: str) -> str:
    digest = hashlib.sha256()
    for module in (*modules, *ENGINE_MODULES):
        source = inspect.getsource(module).replace("\r\n", "\n").encode("utf-8")
        digest.update(f"{module.__name__}\n{len(source)}\n".encode("ascii"))
        digest.update(source)
    parameters = canonical_parameters.encode("ascii")
    digest.update(f"parameters\n{len(parameters)}\n".encode("ascii"))
    digest.update(parameters)
    return digest.hexdigest()
