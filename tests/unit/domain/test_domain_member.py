"""MemberCoverage: enrolment, plan changes, termination, prior authorisations."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from claims_service.domain.member import MemberCoverage
from claims_service.errors import AlreadyExistsError, StateError, ValidationError

ADMIN = "admin:root"


def enrol(terms: dict[str, Any], **overrides: Any) -> MemberCoverage:
    kwargs: dict[str, Any] = {
        "actor": ADMIN,
        "member_id": "M-0001",
        "payer_id": "ACME",
        "plan_id": "GOLD",
        "effective_date": date(2025, 1, 1),
        "terms": terms,
    }
    kwargs.update(overrides)
    return MemberCoverage.enrol(**kwargs)


def test_enrols_with_a_deterministic_id_and_records_the_actor(terms: dict[str, Any]) -> None:
    member = enrol(terms)
    assert member.id == MemberCoverage.create_id("ACME", "M-0001")
    (event,) = member.collect_events()
    assert isinstance(event, MemberCoverage.Enrolled)
    assert event.actor == ADMIN
    assert event.terms == terms
    assert event.termination_date is None
    assert member.coverage_on(date(2025, 6, 1))["terms"] == terms  # type: ignore[index]
    assert member.coverage_on(date(2024, 12, 31)) is None


def test_stored_terms_are_a_copy_of_the_input(terms: dict[str, Any]) -> None:
    member = enrol(terms)
    terms["cost_share"]["default"]["copay_cents"] = 1
    assert member.terms["cost_share"]["default"]["copay_cents"] == 2_500


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"member_id": "  "}, "member_id"),
        ({"member_id": "x" * 65}, "member_id"),
        ({"member_id": "M\x00"}, "member_id"),
        ({"payer_id": 7}, "payer_id"),
        ({"effective_date": date(1, 1, 1)}, "effective_date"),
        ({"effective_date": date(9999, 1, 1)}, "effective_date"),
        ({"effective_date": "2025-01-01"}, "effective_date"),
        ({"termination_date": date(2024, 12, 31)}, "termination_date"),
        ({"actor": "root"}, "actor"),
    ],
)
def test_refuses_invalid_enrolment(terms: dict[str, Any], change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        enrol(terms, **change)
    assert field in info.value.fields


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cost_share": {"specialist": {"copay_cents": 0, "coinsurance_bp": 0}}}, "terms.cost_share"),
        ({"cost_share": {"default": {"copay_cents": 0, "coinsurance_bp": 10_001}}}, "terms.cost_share.default.coinsurance_bp"),
        ({"deductible_cents": -1}, "terms.deductible_cents"),
        ({"deductible_cents": 400_000}, "terms.deductible_cents"),  # above oop max
        ({"oop_max_cents": 10**11 + 1}, "terms.oop_max_cents"),
        ({"in_network_only": 1}, "terms.in_network_only"),
        ({"non_covered_procedures": ["9921"]}, "terms.non_covered_procedures[0]"),
        ({"prior_auth_required": ["70553", "70553"]}, "terms.prior_auth_required[1]"),
        ({"benefit_limits": {"97110": -1}}, 'terms.benefit_limits["97110"]'),
        ({"surprise": 1}, "terms.surprise"),
    ],
)
def test_refuses_invalid_plan_terms(
    terms: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        enrol(dict(terms, **change))
    assert field in info.value.fields


def test_plan_terms_need_every_key(terms: dict[str, Any]) -> None:
    del terms["timely_filing_days"]
    with pytest.raises(ValidationError) as info:
        enrol(terms)
    assert info.value.fields == ["terms.timely_filing_days"]


def test_a_plan_change_applies_from_its_date(terms: dict[str, Any]) -> None:
    member = enrol(terms)
    silver = dict(terms, deductible_cents=100_000)
    member.change(actor=ADMIN, effective_on=date(2025, 7, 1), plan_id="SILVER", terms=silver)
    assert member.coverage_on(date(2025, 6, 30))["plan_id"] == "GOLD"  # type: ignore[index]
    after = member.coverage_on(date(2025, 7, 1))
    assert after is not None and after["plan_id"] == "SILVER"
    assert after["terms"]["deductible_cents"] == 100_000
    # A later, retroactive change supersedes what it covers.
    member.change(actor=ADMIN, effective_on=date(2025, 5, 1), plan_id="BRONZE")
    assert member.coverage_on(date(2025, 8, 1))["plan_id"] == "BRONZE"  # type: ignore[index]
    assert member.coverage_on(date(2025, 8, 1))["terms"] == terms  # type: ignore[index]
    assert member.coverage_on(date(2025, 4, 30))["plan_id"] == "GOLD"  # type: ignore[index]
    events = member.collect_events()
    assert [type(e).__name__ for e in events] == ["Enrolled", "Changed", "Changed"]


def test_a_change_can_move_the_coverage_dates(terms: dict[str, Any]) -> None:
    member = enrol(terms)
    member.change(actor=ADMIN, effective_on=date(2024, 12, 1), effective_date=date(2024, 12, 1))
    assert member.coverage_on(date(2024, 12, 15)) is not None
    member.change(actor=ADMIN, effective_on=date(2024, 12, 1), termination_date=date(2025, 3, 31))
    assert member.coverage_on(date(2025, 4, 1)) is None


def test_refuses_empty_and_out_of_period_changes(terms: dict[str, Any], refused: Any) -> None:
    member = enrol(terms, termination_date=date(2025, 12, 31))
    with refused(member, ValidationError, field="terms"):
        member.change(actor=ADMIN, effective_on=date(2025, 2, 1))
    with refused(member, ValidationError, field="terms.deductible_cents"):
        member.change(actor=ADMIN, effective_on=date(2025, 2, 1), terms=dict(terms, deductible_cents=-5))
    with refused(member, StateError):
        member.change(actor=ADMIN, effective_on=date(2026, 2, 1), plan_id="SILVER")
    with refused(member, StateError):
        member.change(actor=ADMIN, effective_on=date(2025, 2, 1), effective_date=date(2026, 1, 1))


def test_termination_ends_coverage(terms: dict[str, Any]) -> None:
    member = enrol(terms)
    member.terminate(actor=ADMIN, termination_date=date(2025, 3, 31))
    assert member.coverage_on(date(2025, 3, 31)) is not None  # inclusive
    assert member.coverage_on(date(2025, 4, 1)) is None
    # A different date is a correction, and is allowed.
    member.terminate(actor=ADMIN, termination_date=date(2025, 4, 30))
    assert member.covered_on(date(2025, 4, 15))


def test_refuses_terminating_twice_on_the_same_date_or_before_the_start(
    terms: dict[str, Any], refused: Any
) -> None:
    member = enrol(terms)
    member.terminate(actor=ADMIN, termination_date=date(2025, 3, 31))
    with refused(member, StateError):
        member.terminate(actor=ADMIN, termination_date=date(2025, 3, 31))
    with refused(member, StateError):
        member.terminate(actor=ADMIN, termination_date=date(2024, 12, 31))
    with refused(member, ValidationError, field="termination_date"):
        member.terminate(actor=ADMIN, termination_date=date(9999, 12, 31))


def test_records_prior_authorisations(terms: dict[str, Any], refused: Any) -> None:
    member = enrol(terms)
    member.authorize(
        actor="payer:ACME",
        auth_id="PA-1",
        procedure_code="70553",
        units=1,
        valid_from=date(2025, 2, 1),
        valid_to=date(2025, 4, 30),
    )
    assert [a["auth_id"] for a in member.prior_auths_on("70553", date(2025, 3, 1))] == ["PA-1"]
    assert member.prior_auths_on("70553", date(2025, 5, 1)) == []
    assert member.prior_auths_on("99213", date(2025, 3, 1)) == []
    with refused(member, AlreadyExistsError):
        member.authorize(
            actor="payer:ACME", auth_id="PA-1", procedure_code="70553", units=1,
            valid_from=date(2025, 2, 1), valid_to=date(2025, 4, 30),
        )
    with refused(member, ValidationError, field="valid_to"):
        member.authorize(
            actor="payer:ACME", auth_id="PA-2", procedure_code="70553", units=1,
            valid_from=date(2025, 2, 1), valid_to=date(2025, 1, 31),
        )
    with refused(member, ValidationError, field="units"):
        member.authorize(
            actor="payer:ACME", auth_id="PA-2", procedure_code="70553", units=0,
            valid_from=date(2025, 2, 1), valid_to=date(2025, 3, 1),
        )
    with refused(member, ValidationError, field="procedure_code"):
        member.authorize(
            actor="payer:ACME", auth_id="PA-2", procedure_code="7055", units=1,
            valid_from=date(2025, 2, 1), valid_to=date(2025, 3, 1),
        )
