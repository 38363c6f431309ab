"""The synthetic code set shipped as JSON in `data/`, read with importlib.resources.

Files: procedures.json (code -> service category, description), diagnoses.json (ICD-10-CM-shaped
codes), diagnosis_fit.json (procedure -> supporting diagnosis prefixes), bundling_pairs.json
(column-1 / column-2 pairs, whether a modifier may bypass), unit_limits.json (units per day).
Codes and structure only: every description is our own wording.

Rule sets copy what their rules use from here into their parameters, so the content hash covers
the data too: editing a file a released rule set reads fails its pinned-hash test.

Imports: the standard library only.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def load(name: str) -> Any:
    """The parsed content of `data/<name>`."""
    return json.loads(resources.files(__package__).joinpath("data").joinpath(name).read_text(encoding="utf-8"))


def procedure_categories() -> dict[str, str]:
    return {code: entry["category"] for code, entry in load("procedures.json")["procedures"].items()}


def diagnoses() -> dict[str, str]:
    return dict(load("diagnoses.json")["diagnoses"])


def diagnosis_fit() -> dict[str, list[str]]:
    return dict(load("diagnosis_fit.json")["table"])


def bundling_pairs() -> list[dict[str, Any]]:
    return list(load("bundling_pairs.json")["pairs"])


def unit_limits() -> dict[str, int]:
    return dict(load("unit_limits.json")["per_day"])
