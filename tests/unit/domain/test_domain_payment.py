"""Payment: scheduling with balanced totals, issuing once, reversing after issue."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from claims_service.domain.payment import Payment
from claims_service.errors import StateError, ValidationError

NPI = "1234567893"
PAYER = "payer:ACME"
C1 = "0b7c6f3e-9a52-5d1c-8a8e-2d7d1f4b9c10"
C2 = "5f0e1d2c-3b4a-5968-8776-655443322110"


def schedule_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "actor": PAYER,
        "payment_id": "PAY-1",
        "payer_id": "ACME",
        "provider_id": NPI,
        "claim_ids": [C1, C2],
        "amount_cents": 12_000,
        "lines": {
            C1: [{"line_number": 1, "paid_cents": 9_000}, {"line_number": 2, "paid_cents": 1_500}],
            C2: [{"line_number": 1, "paid_cents": 1_500}],
        },
    }
    kwargs.update(overrides)
    return kwargs


def test_schedules_a_payment() -> None:
    payment = Payment.schedule(**schedule_kwargs())
    assert payment.id == Payment.create_id("PAY-1")
    assert payment.status == "scheduled"
    (event,) = payment.collect_events()
    assert isinstance(event, Payment.Scheduled)
    assert event.claim_ids == [C1, C2] and event.amount_cents == 12_000
    assert event.lines[C2] == [{"line_number": 1, "paid_cents": 1_500}]
    assert event.actor == PAYER


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_cents": 12_001}, "amount_cents"),
        ({"amount_cents": -1}, "amount_cents"),
        ({"claim_ids": []}, "claim_ids"),
        ({"claim_ids": [C1, C1]}, "claim_ids[1]"),
        ({"claim_ids": [C1, "nope"]}, "claim_ids[1]"),
        ({"claim_ids": [C1]}, f'lines["{C2}"]'),
        ({"provider_id": "1234567890"}, "provider_id"),
        ({"payment_id": ""}, "payment_id"),
        (
            {"lines": {C1: [{"line_number": 1, "paid_cents": -5}], C2: []}},
            f'lines["{C1}"][0].paid_cents',
        ),
    ],
)
def test_refuses_invalid_schedules(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Payment.schedule(**schedule_kwargs(**change))
    assert field in info.value.fields, info.value.violations


def test_issues_once(refused: Any) -> None:
    payment = Payment.schedule(**schedule_kwargs())
    payment.issue(actor=PAYER, trace_number="EFT-0001", issued_on=date(2025, 4, 1))
    assert payment.status == "issued" and payment.trace_number == "EFT-0001"
    with refused(payment, StateError):
        payment.issue(actor=PAYER, trace_number="EFT-0002", issued_on=date(2025, 4, 2))


def test_refuses_recouping_before_issue(refused: Any) -> None:
    payment = Payment.schedule(**schedule_kwargs())
    claim_id = payment.claim_ids[0]
    with refused(payment, StateError):
        payment.recoup(actor=PAYER, reason="sent to wrong account", lines={claim_id: [{"line_number": 1, "paid_cents": 100}]})
    with refused(payment, ValidationError, field="issued_on"):
        payment.issue(actor=PAYER, trace_number="EFT-1", issued_on=date(1, 1, 1))


def test_a_scheduled_payment_is_cancelled_never_issued(refused: Any) -> None:
    payment = Payment.schedule(**schedule_kwargs())
    payment.cancel(actor=PAYER, reason="claim voided")
    assert payment.status == "cancelled" and payment.cancel_reason == "claim voided" and payment.net_cents == 0
    with refused(payment, StateError):
        payment.issue(actor=PAYER, trace_number="EFT-0001", issued_on=date(2025, 4, 1))
    with refused(payment, StateError):
        payment.cancel(actor=PAYER, reason="again")


def test_an_issued_payment_cannot_be_cancelled_only_recouped(refused: Any) -> None:
    payment = Payment.schedule(**schedule_kwargs())
    payment.issue(actor=PAYER, trace_number="EFT-0001", issued_on=date(2025, 4, 1))
    with refused(payment, StateError):
        payment.cancel(actor=PAYER, reason="too late")


def test_recoups_up_to_the_amount(refused: Any) -> None:
    payment = Payment.schedule(**schedule_kwargs())
    claim_id = payment.claim_ids[0]
    payment.issue(actor=PAYER, trace_number="EFT-0001", issued_on=date(2025, 4, 1))
    assert payment.net_cents == 12_000
    with refused(payment, ValidationError, field="lines"):
        payment.recoup(actor=PAYER, reason="overpaid", lines={claim_id: [{"line_number": 1, "paid_cents": 0}]})
    with refused(payment, StateError):
        payment.recoup(actor=PAYER, reason="overpaid", lines={claim_id: [{"line_number": 1, "paid_cents": 12_001}]})
    payment.recoup(actor=PAYER, reason="overpaid", lines={claim_id: [{"line_number": 1, "paid_cents": 2_000}]})
    assert payment.status == "recouped" and payment.reversed_cents == 2_000 and payment.net_cents == 10_000
    payment.recoup(actor=PAYER, reason="claim voided", lines={claim_id: [{"line_number": 1, "paid_cents": 10_000}]})
    assert payment.net_cents == 0
    with refused(payment, StateError):
        payment.recoup(actor=PAYER, reason="again", lines={claim_id: [{"line_number": 1, "paid_cents": 1}]})
    with refused(payment, StateError):
        payment.issue(actor=PAYER, trace_number="EFT-0002", issued_on=date(2025, 4, 2))
