"""Shared inputs for the domain tests: valid commands to start from, and a
check that a refused command leaves its aggregate exactly as it was."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import pytest

NPI = "1234567893"  # valid: Luhn over 80840 + first nine digits (test files repeat what they need:
# importing "conftest" by name is fragile when other conftest.py files exist)
OTHER_NPI = "1245319599"
ADMIN = "admin:root"
PROVIDER = f"provider:{NPI}"
ADJUDICATOR = "system:adjudicator"
DISPUTE = "dispute:team-1"
PAYER = "payer:ACME"


@pytest.fixture
def terms() -> dict[str, Any]:
    return {
        "deductible_cents": 50_000,
        "oop_max_cents": 300_000,
        "cost_share": {
            "default": {"copay_cents": 2_500, "coinsurance_bp": 2_000},
            "specialist": {"copay_cents": 5_000, "coinsurance_bp": 2_000},
        },
        "timely_filing_days": 90,
        "in_network_only": False,
        "review_threshold_cents": 1_000_000,
        "non_covered_procedures": ["S9999"],
        "benefit_limits": {"97110": 20},
        "prior_auth_required": ["70553"],
    }


@pytest.fixture
def line() -> dict[str, Any]:
    return {
        "line_number": 1,
        "procedure_code": "99213",
        "modifiers": ["25"],
        "diagnosis_pointers": [1],
        "units": 1,
        "billed_cents": 12_000,
        "date_of_service": date(2025, 3, 3),
    }


@pytest.fixture
def claim_kwargs(line: dict[str, Any]) -> dict[str, Any]:
    second = dict(line, line_number=2, procedure_code="36415", modifiers=[], diagnosis_pointers=[2, 1], billed_cents=1_500)
    return {
        "actor": PROVIDER,
        "provider_id": NPI,
        "member_id": "M-0001",
        "payer_id": "ACME",
        "idempotency_key": "req-0001",
        "received_on": date(2025, 3, 10),
        "diagnosis_codes": ["E119", "I10"],
        "place_of_service": "11",
        "lines": [line, second],
    }


@pytest.fixture
def decision() -> dict[str, Any]:
    return {
        "outcome": "paid",
        "lines": [
            {"line_number": 1, "paid_cents": 9_000, "adjustments": [{"group": "CO", "carc": "45", "cents": 3_000}]},
            {"line_number": 2, "paid_cents": 1_500, "adjustments": []},
        ],
    }


@pytest.fixture
def facts() -> dict[str, Any]:
    return {"coverage": {"plan_id": "GOLD", "effective_date": date(2025, 1, 1)}, "accumulators": {"deductible_met_cents": 0}}


@pytest.fixture
def refused() -> Callable[..., Any]:
    """``with refused(aggregate, ErrorType, field="x"):`` — the command inside must
    raise, name ``field`` (for validation errors), leave no pending event and
    change no attribute."""

    @contextmanager
    def check(aggregate: Any, error: type[Exception], field: str | None = None) -> Iterator[Any]:
        aggregate.collect_events()
        before = copy.deepcopy(aggregate.__dict__)
        with pytest.raises(error) as info:
            yield info
        assert aggregate.pending_events == []
        assert aggregate.__dict__ == before
        if field is not None:
            assert field in info.value.fields, info.value.violations

    return check
