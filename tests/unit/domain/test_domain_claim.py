"""Claim: submission, validation, idempotency, the state machine and disputes."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from claims_service.domain.claim import Claim
from claims_service.domain.values import SubmitClaim
from claims_service.errors import (
    AlreadyExistsError,
    DuplicateRequestError,
    StateError,
    ValidationError,
)

NPI = "1234567893"
PROVIDER = f"provider:{NPI}"
ADJUDICATOR = "system:adjudicator"
DISPUTE = "dispute:team-1"
PAYER = "payer:ACME"
RULESET = {"ruleset_version": "2025.1", "ruleset_hash": "ab" * 32}
REVIEW = {"resolution": {"approve": [{"line_number": 1, "allowed_cents": 9_000}], "deny": None}, "facts": {}}
REPLACEMENT_ID = "0b7c6f3e-9a52-5d1c-8a8e-2d7d1f4b9c10"


@pytest.fixture
def claim(claim_kwargs: dict[str, Any]) -> Claim:
    return Claim.submit(**claim_kwargs)


@pytest.fixture
def decided(claim: Claim, decision: dict[str, Any], facts: dict[str, Any]) -> Claim:
    claim.adjudicate(actor=ADJUDICATOR, decision=decision, facts=facts, **RULESET)
    return claim


# --- submission ---------------------------------------------------------------------


def test_submits_a_claim_with_a_time_ordered_id_and_a_deterministic_request_id(claim_kwargs: dict[str, Any]) -> None:
    claim = Claim.submit(**claim_kwargs)
    again = Claim.submit(**claim_kwargs)
    assert claim.id.version == 7 and str(claim.id) < str(again.id) and claim.id.bytes < again.id.bytes
    assert claim.request_id == again.request_id == Claim.request_id_of(NPI, "req-0001")
    assert claim.request_id.version == 5
    assert claim.claim_id == str(claim.id)
    assert claim.status == "submitted"
    assert claim.decision is None
    (event,) = claim.collect_events()
    assert isinstance(event, Claim.Submitted)
    assert event.actor == PROVIDER
    assert event.frequency_code == "1" and event.replaces_claim_id is None
    assert event.lines[1] == {
        "line_number": 2,
        "procedure_code": "36415",
        "modifiers": [],
        "diagnosis_pointers": [2, 1],
        "units": 1,
        "billed_cents": 1_500,
        "date_of_service": date(2025, 3, 3),
    }
    assert event.received_on == date(2025, 3, 10)
    assert len(event.body_hash) == 64
    assert claim.billed_cents == 13_500


def test_event_attributes_are_plain_data(claim: Claim) -> None:
    (event,) = claim.collect_events()
    allowed = (str, int, bool, type(None), date, list, dict)

    def walk(value: Any) -> None:
        assert type(value) in allowed, type(value)
        if isinstance(value, list):
            for item in value:
                walk(item)
        if isinstance(value, dict):
            for key, item in value.items():
                assert type(key) is str
                walk(item)

    for name, value in vars(event).items():
        if name not in ("originator_id", "timestamp"):
            walk(value)


def test_a_retry_has_the_same_body_hash(claim_kwargs: dict[str, Any]) -> None:
    first = Claim.submit(**claim_kwargs)
    retry = dict(claim_kwargs, received_on=date(2025, 3, 11), member_id=" M-0001 ", actor=f"{PROVIDER}")
    second = SubmitClaim.checked(**retry)
    assert second.body_hash() == first.body_hash
    first.ensure_same_request(second.body_hash())
    different = SubmitClaim.checked(**dict(claim_kwargs, place_of_service="22"))
    with pytest.raises(DuplicateRequestError) as info:
        first.ensure_same_request(different.body_hash())
    assert info.value.status == "ALREADY_EXISTS"


def test_submit_request_accepts_a_prevalidated_request(claim_kwargs: dict[str, Any]) -> None:
    request = SubmitClaim.checked(**claim_kwargs)
    assert Claim.submit_request(request).body_hash == request.body_hash()


def bad_line(claim_kwargs: dict[str, Any], index: int, **change: Any) -> dict[str, Any]:
    lines = copy.deepcopy(claim_kwargs["lines"])
    lines[index].update(change)
    return {"lines": lines}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda k: {"provider_id": "1234567890"}, "provider_id"),  # NPI check digit
        (lambda k: {"provider_id": "123456789"}, "provider_id"),
        (lambda k: {"diagnosis_codes": ["E11.9", "I10"]}, "diagnosis_codes[0]"),
        (lambda k: {"diagnosis_codes": ["I10", "XYZ"]}, "diagnosis_codes[1]"),
        (lambda k: {"diagnosis_codes": []}, "diagnosis_codes"),
        (lambda k: {"diagnosis_codes": ["I10"] * 13}, "diagnosis_codes"),
        (lambda k: {"diagnosis_codes": ["I10", "I10"]}, "diagnosis_codes[1]"),
        (lambda k: {"lines": []}, "lines"),
        (
            lambda k: {"lines": [dict(k["lines"][0], line_number=i + 1) for i in range(51)]},
            "lines",
        ),
        (lambda k: bad_line(k, 1, billed_cents=-1), "lines[1].billed_cents"),
        (lambda k: bad_line(k, 1, billed_cents=10**11 + 1), "lines[1].billed_cents"),
        (lambda k: bad_line(k, 0, billed_cents="120.00"), "lines[0].billed_cents"),
        (lambda k: bad_line(k, 0, billed_cents=120.0), "lines[0].billed_cents"),
        (lambda k: bad_line(k, 0, units=True), "lines[0].units"),
        (lambda k: bad_line(k, 0, units=0), "lines[0].units"),
        (lambda k: bad_line(k, 0, date_of_service=date(1, 1, 1)), "lines[0].date_of_service"),
        (lambda k: bad_line(k, 0, date_of_service=date(9999, 12, 31)), "lines[0].date_of_service"),
        (lambda k: bad_line(k, 0, date_of_service="2025-03-03"), "lines[0].date_of_service"),
        (lambda k: bad_line(k, 0, date_of_service=date(2025, 3, 11)), "lines[0].date_of_service"),
        (lambda k: {"received_on": date(9999, 1, 1)}, "received_on"),
        (lambda k: bad_line(k, 1, diagnosis_pointers=[3]), "lines[1].diagnosis_pointers[0]"),
        (lambda k: bad_line(k, 1, diagnosis_pointers=[1, 0]), "lines[1].diagnosis_pointers[1]"),
        (lambda k: bad_line(k, 1, diagnosis_pointers=[]), "lines[1].diagnosis_pointers"),
        (lambda k: bad_line(k, 1, diagnosis_pointers=[1, 1]), "lines[1].diagnosis_pointers[1]"),
        (lambda k: bad_line(k, 1, diagnosis_pointers=[1, 2, 1, 2, 1]), "lines[1].diagnosis_pointers"),
        (lambda k: bad_line(k, 1, line_number=3), "lines[1].line_number"),
        (lambda k: bad_line(k, 0, procedure_code="9921"), "lines[0].procedure_code"),
        (lambda k: bad_line(k, 0, procedure_code="W1234"), "lines[0].procedure_code"),
        (lambda k: bad_line(k, 0, modifiers=["2"]), "lines[0].modifiers[0]"),
        (lambda k: bad_line(k, 0, modifiers=["25", "25"]), "lines[0].modifiers[1]"),
        (lambda k: bad_line(k, 0, surprise=1), "lines[0].surprise"),
        (lambda k: {"place_of_service": "1A"}, "place_of_service"),
        (lambda k: {"idempotency_key": " "}, "idempotency_key"),
        (lambda k: {"idempotency_key": "k" * 65}, "idempotency_key"),
        (lambda k: {"frequency_code": "8"}, "frequency_code"),
        (lambda k: {"frequency_code": "7"}, "replaces_claim_id"),
        (lambda k: {"replaces_claim_id": REPLACEMENT_ID}, "replaces_claim_id"),
        (lambda k: {"frequency_code": "7", "replaces_claim_id": "not-a-uuid"}, "replaces_claim_id"),
        (lambda k: {"actor": ""}, "actor"),
    ],
)
def test_refuses_invalid_submissions(claim_kwargs: dict[str, Any], change: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Claim.submit(**dict(claim_kwargs, **change(claim_kwargs)))
    assert field in info.value.fields, info.value.violations
    assert info.value.status == "INVALID_ARGUMENT"


def test_accepts_fifty_lines_and_twelve_diagnoses(claim_kwargs: dict[str, Any]) -> None:
    codes = ["E119", "E1165", "E785", "I10", "I480", "J069", "J189", "J45909", "M1711", "M1712", "M25561", "M5450"]
    lines = [
        dict(claim_kwargs["lines"][0], line_number=i + 1, diagnosis_pointers=[12, 1, 2, 3])
        for i in range(50)
    ]
    claim = Claim.submit(**dict(claim_kwargs, diagnosis_codes=codes, lines=lines))
    assert len(claim.lines) == 50


def test_a_replacement_claim_names_the_original(claim_kwargs: dict[str, Any]) -> None:
    claim = Claim.submit(
        **dict(claim_kwargs, idempotency_key="req-0002", frequency_code="7", replaces_claim_id=REPLACEMENT_ID)
    )
    assert (claim.frequency_code, claim.replaces_claim_id) == ("7", REPLACEMENT_ID)


# --- adjudication and review -------------------------------------------------------------


def test_adjudication_records_decision_facts_and_ruleset(
    claim: Claim, decision: dict[str, Any], facts: dict[str, Any]
) -> None:
    claim.collect_events()
    claim.adjudicate(actor=ADJUDICATOR, decision=decision, facts=facts, **RULESET)
    assert claim.status == "adjudicated" and claim.decided
    assert claim.decision == decision and claim.facts == facts
    (event,) = claim.collect_events()
    assert isinstance(event, Claim.Adjudicated)
    assert (event.ruleset_version, event.ruleset_hash, event.actor) == ("2025.1", "ab" * 32, ADJUDICATOR)
    decision["outcome"] = "changed"
    assert claim.decision["outcome"] == "paid"


def test_refuses_adjudicating_twice(decided: Claim, decision: dict[str, Any], refused: Any) -> None:
    with refused(decided, StateError):
        decided.adjudicate(actor=ADJUDICATOR, decision=decision, facts={}, **RULESET)
    with refused(decided, StateError):
        decided.pend(actor=ADJUDICATOR, decision=decision, facts={}, **RULESET)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"decision": {"paid": 1.5}}, "decision.paid"),
        ({"decision": {"lines": [(1, 2)]}}, "decision.lines[0]"),
        ({"facts": {"when": object()}}, "facts.when"),
        ({"facts": {"x": {1: "a"}}}, "facts.x"),
        ({"facts": {"x": {"_type_": "date_iso", "_data_": "2025-01-01"}}}, "facts.x"),
        ({"ruleset_hash": "AB" * 32}, "ruleset_hash"),
        ({"ruleset_version": ""}, "ruleset_version"),
        ({"decision": []}, "decision"),
    ],
)
def test_refuses_decisions_that_are_not_plain_data(
    claim: Claim, decision: dict[str, Any], facts: dict[str, Any], change: dict[str, Any], field: str, refused: Any
) -> None:
    kwargs = dict({"decision": decision, "facts": facts}, **RULESET)
    kwargs.update(change)
    with refused(claim, ValidationError, field=field):
        claim.adjudicate(actor=ADJUDICATOR, **kwargs)


def test_a_pended_claim_is_decided_by_review(
    claim: Claim, decision: dict[str, Any], facts: dict[str, Any], refused: Any
) -> None:
    with refused(claim, StateError):
        claim.resolve_review(actor=PAYER, decision=decision, reviewer="nurse-7", **REVIEW)
    claim.pend(actor=ADJUDICATOR, decision={"reason": "high dollar"}, facts=facts, **RULESET)
    assert claim.status == "pended" and not claim.decided
    with refused(claim, StateError):
        claim.void(actor=PROVIDER, reason="cancelled")
    with refused(claim, ValidationError, field="reviewer"):
        claim.resolve_review(actor=PAYER, decision=decision, reviewer="", **REVIEW)
    claim.resolve_review(actor=PAYER, decision=decision, reviewer="nurse-7", note="ok\nchecked", **REVIEW)
    assert claim.status == "adjudicated" and claim.decision == decision
    assert claim.review == {"reviewer": "nurse-7", "note": "ok\nchecked", **REVIEW}
    assert claim.facts == facts  # the engine's facts stay on record
    names = [type(e).__name__ for e in claim.collect_events()]
    assert names == ["ReviewResolved"]
    with refused(claim, StateError):
        claim.resolve_review(actor=PAYER, decision=decision, reviewer="nurse-7", **REVIEW)


# --- corrections and voids ----------------------------------------------------------------


def test_refuses_correcting_or_voiding_an_undecided_claim(claim: Claim, refused: Any) -> None:
    with refused(claim, StateError):
        claim.void(actor=PROVIDER, reason="typo")
    with refused(claim, StateError):
        claim.correct(actor=PROVIDER, replacement_claim_id=REPLACEMENT_ID)


def test_voids_once(decided: Claim, refused: Any) -> None:
    decided.void(actor=PROVIDER, reason="billed in error")
    assert decided.status == "voided" and decided.void_reason == "billed in error"
    (event,) = [e for e in decided.collect_events() if isinstance(e, Claim.Voided)]
    assert event.frequency_code == "8" and event.actor == PROVIDER
    with refused(decided, StateError):
        decided.void(actor=PROVIDER, reason="again")
    with refused(decided, StateError):
        decided.correct(actor=PROVIDER, replacement_claim_id=REPLACEMENT_ID)
    with refused(decided, StateError):
        decided.open_dispute(actor=DISPUTE, dispute_id="D-1", reason="late")


def test_corrects_once(decided: Claim, refused: Any) -> None:
    with refused(decided, ValidationError, field="replacement_claim_id"):
        decided.correct(actor=PROVIDER, replacement_claim_id="nope")
    with refused(decided, ValidationError, field="replacement_claim_id"):
        decided.correct(actor=PROVIDER, replacement_claim_id=decided.claim_id)
    decided.correct(actor=PROVIDER, replacement_claim_id=REPLACEMENT_ID)
    assert decided.status == "replaced" and decided.replaced_by == REPLACEMENT_ID
    (event,) = [e for e in decided.collect_events() if isinstance(e, Claim.Corrected)]
    assert event.frequency_code == "7"
    with refused(decided, StateError):
        decided.correct(actor=PROVIDER, replacement_claim_id=REPLACEMENT_ID)
    with refused(decided, StateError):
        decided.void(actor=PROVIDER, reason="after all")


def test_refuses_a_void_without_a_reason(decided: Claim, refused: Any) -> None:
    with refused(decided, ValidationError, field="reason"):
        decided.void(actor=PROVIDER, reason="   ")


# --- disputes -----------------------------------------------------------------------------


def test_refuses_a_dispute_on_an_undecided_claim(claim: Claim, refused: Any) -> None:
    with refused(claim, StateError):
        claim.open_dispute(actor=DISPUTE, dispute_id="D-1", reason="underpaid")


def test_one_open_dispute_at_a_time(decided: Claim, refused: Any) -> None:
    decided.open_dispute(actor=DISPUTE, dispute_id="D-1", reason="underpaid")
    assert decided.open_dispute_id == "D-1"
    (event,) = [e for e in decided.collect_events() if isinstance(e, Claim.DisputeOpened)]
    assert event.opened_by == DISPUTE
    with refused(decided, StateError):
        decided.open_dispute(actor=DISPUTE, dispute_id="D-2", reason="again")
    with refused(decided, AlreadyExistsError):
        decided.open_dispute(actor=DISPUTE, dispute_id="D-1", reason="again")
    with refused(decided, StateError):
        decided.void(actor=PROVIDER, reason="while disputed")
    with refused(decided, StateError):
        decided.correct(actor=PROVIDER, replacement_claim_id=REPLACEMENT_ID)


def test_refuses_resolving_without_an_open_dispute(decided: Claim, refused: Any) -> None:
    with refused(decided, StateError):
        decided.resolve_dispute(actor=DISPUTE, dispute_id="D-1", resolution="upheld")
    decided.open_dispute(actor=DISPUTE, dispute_id="D-1", reason="underpaid")
    with refused(decided, StateError):
        decided.resolve_dispute(actor=DISPUTE, dispute_id="D-9", resolution="upheld")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"resolution": "overturned"}, "decision"),
        ({"resolution": "upheld", "decision": {"outcome": "paid"}}, "decision"),
        ({"resolution": "withdrawn"}, "resolution"),
        ({"resolution": "overturned", "decision": {"paid": 0.1}}, "decision.paid"),
    ],
)
def test_refuses_malformed_resolutions(
    decided: Claim, kwargs: dict[str, Any], field: str, refused: Any
) -> None:
    decided.open_dispute(actor=DISPUTE, dispute_id="D-1", reason="underpaid")
    with refused(decided, ValidationError, field=field):
        decided.resolve_dispute(actor=DISPUTE, dispute_id="D-1", **kwargs)


def test_an_upheld_dispute_keeps_the_decision(decided: Claim, decision: dict[str, Any]) -> None:
    decided.open_dispute(actor=DISPUTE, dispute_id="D-1", reason="underpaid")
    decided.resolve_dispute(actor=DISPUTE, dispute_id="D-1", resolution="upheld", note="rule applied correctly")
    assert decided.open_dispute_id is None
    assert decided.decision == decision
    assert decided.disputes["D-1"]["resolution"] == "upheld"


def test_an_overturned_dispute_replaces_the_decision(decided: Claim) -> None:
    decided.open_dispute(actor=DISPUTE, dispute_id="D-1", reason="underpaid")
    new = {"outcome": "paid", "lines": []}
    decided.resolve_dispute(actor=DISPUTE, dispute_id="D-1", resolution="overturned", decision=new)
    assert decided.decision == new and decided.status == "adjudicated"
    # A second dispute can follow the first; and then the claim can be voided.
    decided.open_dispute(actor=DISPUTE, dispute_id="D-2", reason="overpaid")
    decided.resolve_dispute(actor=DISPUTE, dispute_id="D-2", resolution="upheld")
    decided.void(actor=PROVIDER, reason="withdrawn")
    names = [type(e).__name__ for e in decided.collect_events()]
    assert names[-5:] == ["DisputeOpened", "DisputeResolved", "DisputeOpened", "DisputeResolved", "Voided"]
