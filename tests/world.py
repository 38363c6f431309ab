"""A small, realistic set-up shared by integration and end-to-end tests: one payer, one plan,
one credentialed in-network provider with a fee schedule, one enrolled member."""

from __future__ import annotations

from datetime import date
from typing import Any

PAYER = "PAYER-ACME"
PLAN = "ACME-GOLD"
MEMBER = "M-1001"
NPI = "1234567893"
OTHER_NPI = "1245319599"
CONTRACT = "ACME-2026"
ADMIN = "admin:test"

TERMS: dict[str, Any] = {
    "deductible_cents": 5_000,
    "oop_max_cents": 300_000,
    "cost_share": {
        "default": {"copay_cents": 0, "coinsurance_bp": 2000},
        "office_visit": {"copay_cents": 2_500, "coinsurance_bp": 0},
    },
    "timely_filing_days": 365,
    "in_network_only": True,
    "review_threshold_cents": 1_000_000,
    "non_covered_procedures": ["97140"],
    "benefit_limits": {"97110": 20},
    "prior_auth_required": ["73721"],
}

FEES = {"99213": 9_000, "99214": 13_000, "80053": 1_500, "36415": 300, "85025": 1_000, "93000": 2_000, "97110": 3_000}


def set_up(service: Any, *, today: date = date(2026, 11, 2)) -> None:
    """Everything an administrator does before the first claim (through Commands commands)."""
    service.enroll_member(actor=ADMIN, member_id=MEMBER, payer_id=PAYER, plan_id=PLAN,
                          effective_date=date(2026, 1, 1), terms=TERMS)
    service.register_provider(actor=ADMIN, npi=NPI, name="Riverside Family Clinic", taxonomy="207Q00000X")
    service.record_credential(actor=ADMIN, npi=NPI, licence_number="MD-55012", state="NY",
                              valid_from=date(2020, 1, 1), valid_to=date(2028, 12, 31))
    service.publish_fee_schedule(actor=ADMIN, contract_id=CONTRACT, payer_id=PAYER, version=1,
                                 effective_date=date(2026, 1, 1), fees=FEES)
    service.join_network(actor=ADMIN, npi=NPI, payer_id=PAYER, contract_id=CONTRACT,
                         effective_date=date(2026, 1, 1))
    service.deploy_ruleset(actor=ADMIN, version="2026.1", effective_date=date(2026, 1, 1))


def claim_body(key: str, *, lines: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """A clean office-visit claim for MEMBER from NPI: 99213 for 120.00 on 2026-10-15."""
    body: dict[str, Any] = {
        "provider_id": NPI,
        "member_id": MEMBER,
        "payer_id": PAYER,
        "idempotency_key": key,
        "diagnosis_codes": ["E119"],
        "place_of_service": "11",
        "lines": lines or [line(1, "99213", 12_000)],
    }
    body.update(overrides)
    return body


def line(number: int, code: str, billed_cents: int, *, units: int = 1, day: date = date(2026, 10, 15),
         modifiers: list[str] | None = None) -> dict[str, Any]:
    return {"line_number": number, "procedure_code": code, "modifiers": modifiers or [],
            "diagnosis_pointers": [1], "units": units, "billed_cents": billed_cents, "date_of_service": day}
