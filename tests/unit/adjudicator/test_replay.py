"""Dispute replays: `compare` says what differs between a recorded and a replayed decision."""

from __future__ import annotations

from adjudicator import Decision
from adjudicator.replay import compare

from .kit import KNEE, claim, facts, line, run


def bundled_with_59():
    return claim(line(1, "29881", billed=80_000, pointers=KNEE), line(2, "20610", billed=10_000, pointers=KNEE, modifiers=("59",)))


def test_identical_decisions_have_no_differences():
    decision = run(bundled_with_59(), facts())
    assert compare(decision, decision) == []
    replayed = Decision.model_validate(decision.model_dump(mode="json"))
    assert compare(decision, replayed) == []


def test_a_what_if_replay_under_another_rule_set_names_each_difference():
    recorded = run(bundled_with_59(), facts(), "2026.1")
    replayed = run(bundled_with_59(), facts(), "2026.2")
    differences = compare(recorded, replayed)
    assert differences[:2] == [
        "outcome: recorded PAID, replayed PARTIALLY_PAID",
        "ruleset_version: recorded 2026.1, replayed 2026.2",
    ]
    assert "total_paid_cents: recorded 67000, replayed 60000" in differences
    assert "line 2: status recorded paid, replayed denied" in differences
    assert "line 2: adjustments recorded [CO-45 3000], replayed [CO-97 10000]" in differences
    assert not any(difference.startswith("line 1") for difference in differences)


def test_names_missing_lines_remarks_and_accumulator_changes():
    recorded = run(claim(line(1), line(2, "97110", units=5, billed=20_000, pointers=KNEE)), facts(cost_share={"default": {"copay_cents": 500, "coinsurance_bp": 0}}))
    replayed = run(claim(line(1)), facts(cost_share={"default": {"copay_cents": 700, "coinsurance_bp": 0}}))
    differences = compare(recorded, replayed)
    assert "line 2: recorded, missing from the replay" in differences
    assert "accumulator change for plan year 2026: oop_cents recorded 1000, replayed 700" in differences
    assert compare(replayed, recorded)[-2:] == [
        "line 2: not recorded, present in the replay",
        "accumulator change for plan year 2026: oop_cents recorded 700, replayed 1000",
    ]
