"""Dispute replays: what differs between a recorded decision and the same claim judged again.

`compare(recorded, replayed)` lists the differences as sentences, in a fixed order (claim fields,
then lines by line number, then accumulator changes by plan year); an empty list means identical.
Adjustments and remarks are compared as the ordered lists the engine produced.

Imports: the standard library and this package's models only.
"""

from __future__ import annotations

from .models import AccumulatorChange, Decision, LineResult

_CLAIM_FIELDS = (
    "claim_id",
    "outcome",
    "ruleset_version",
    "ruleset_hash",
    "total_billed_cents",
    "total_allowed_cents",
    "total_paid_cents",
    "total_patient_responsibility_cents",
)
_LINE_FIELDS = (
    "status",
    "billed_cents",
    "allowed_cents",
    "paid_cents",
    "patient_responsibility_cents",
)


def compare(recorded: Decision, replayed: Decision) -> list[str]:
    """Human-readable differences from `recorded` to `replayed`; empty when they are identical."""
    differences = [
        f"{name}: recorded {_show(getattr(recorded, name))}, replayed {_show(getattr(replayed, name))}"
        for name in _CLAIM_FIELDS
        if getattr(recorded, name) != getattr(replayed, name)
    ]
    differences += _compare_keyed(
        "line",
        {line.line_number: line for line in recorded.lines},
        {line.line_number: line for line in replayed.lines},
        _compare_line,
    )
    differences += _compare_keyed(
        "accumulator change for plan year",
        {change.plan_year: change for change in recorded.accumulator_changes},
        {change.plan_year: change for change in replayed.accumulator_changes},
        _compare_change,
    )
    return differences


def _compare_keyed(label, recorded: dict, replayed: dict, compare_one) -> list[str]:
    differences = []
    for key in sorted(recorded.keys() | replayed.keys()):
        if key not in replayed:
            differences.append(f"{label} {key}: recorded, missing from the replay")
        elif key not in recorded:
            differences.append(f"{label} {key}: not recorded, present in the replay")
        else:
            differences += [f"{label} {key}: {difference}" for difference in compare_one(recorded[key], replayed[key])]
    return differences


def _compare_line(recorded: LineResult, replayed: LineResult) -> list[str]:
    differences = [
        f"{name} recorded {_show(getattr(recorded, name))}, replayed {_show(getattr(replayed, name))}"
        for name in _LINE_FIELDS
        if getattr(recorded, name) != getattr(replayed, name)
    ]
    if recorded.adjustments != replayed.adjustments:
        differences.append(
            f"adjustments recorded {_adjustments(recorded)}, replayed {_adjustments(replayed)}"
        )
    if recorded.remarks != replayed.remarks:
        differences.append(f"remarks recorded {_codes(recorded.remarks)}, replayed {_codes(replayed.remarks)}")
    return differences


def _compare_change(recorded: AccumulatorChange, replayed: AccumulatorChange) -> list[str]:
    return [
        f"{name} recorded {_show(getattr(recorded, name))}, replayed {_show(getattr(replayed, name))}"
        for name in ("deductible_cents", "oop_cents", "benefit_units")
        if getattr(recorded, name) != getattr(replayed, name)
    ]


def _adjustments(line: LineResult) -> str:
    return _codes([f"{a.group}-{a.carc} {a.amount_cents}" for a in line.adjustments])


def _codes(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]" if items else "none"


def _show(value: object) -> str:
    if hasattr(value, "value"):  # an enum such as Outcome
        return str(value.value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {value[key]}" for key in sorted(value)) + "}"
    return str(value)
