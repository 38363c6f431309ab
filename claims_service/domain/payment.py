"""A payment (remittance) from a payer to a provider for one or more claims.

``scheduled`` -> ``issued`` -> (partially) ``reversed``. Amounts are integer
cents and the schedule's total must equal the sum of its lines, so the 835
built from it balances by construction.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id
from claims_service.domain.values import IssuePayment, ReversePayment, SchedulePayment, copy_plain
from claims_service.errors import StateError

SCHEDULED = "scheduled"
ISSUED = "issued"
REVERSED = "reversed"


class Payment(Aggregate):
    """Id from ``payment_id``.

    State: ``payment_id``, ``payer_id``, ``provider_id``, ``claim_ids``,
    ``amount_cents``, ``lines`` (claim_id -> ``[{line_number, paid_cents}]``),
    ``status``, ``trace_number``, ``issued_on``, ``reversed_cents``,
    ``reversals`` (``[{reason, amount_cents}]``).
    """

    class Scheduled(Aggregate.Created):
        actor: str
        payment_id: str
        payer_id: str
        provider_id: str
        claim_ids: list[str]
        amount_cents: int
        lines: dict[str, list[dict[str, Any]]]

        def apply(self, payment: Payment) -> None:
            payment.payment_id = self.payment_id
            payment.payer_id = self.payer_id
            payment.provider_id = self.provider_id
            payment.claim_ids = list(self.claim_ids)
            payment.amount_cents = self.amount_cents
            payment.lines = copy_plain(self.lines)
            payment.status = SCHEDULED
            payment.trace_number = None
            payment.issued_on = None
            payment.reversed_cents = 0
            payment.reversals = []

    class Issued(Aggregate.Event):
        actor: str
        trace_number: str
        issued_on: date

        def apply(self, payment: Payment) -> None:
            payment.trace_number = self.trace_number
            payment.issued_on = self.issued_on
            payment.status = ISSUED

    class Reversed(Aggregate.Event):
        actor: str
        reason: str
        amount_cents: int

        def apply(self, payment: Payment) -> None:
            payment.reversals.append({"reason": self.reason, "amount_cents": self.amount_cents})
            payment.reversed_cents += self.amount_cents
            if payment.reversed_cents == payment.amount_cents:
                payment.status = REVERSED

    @staticmethod
    def create_id(payment_id: str) -> UUID:
        return make_id("payment", payment_id)

    @classmethod
    def schedule(
        cls,
        *,
        actor: str,
        payment_id: str,
        payer_id: str,
        provider_id: str,
        claim_ids: list[str],
        amount_cents: int,
        lines: dict[str, list[dict[str, Any]]],
    ) -> Payment:
        cmd = SchedulePayment.checked(
            actor=actor,
            payment_id=payment_id,
            payer_id=payer_id,
            provider_id=provider_id,
            claim_ids=claim_ids,
            amount_cents=amount_cents,
            lines=lines,
        )
        dumped = cmd.model_dump(mode="python")
        return cls._create(
            cls.Scheduled,
            id=cls.create_id(cmd.payment_id),
            actor=cmd.actor,
            payment_id=cmd.payment_id,
            payer_id=cmd.payer_id,
            provider_id=cmd.provider_id,
            claim_ids=dumped["claim_ids"],
            amount_cents=cmd.amount_cents,
            lines=dumped["lines"],
        )

    def issue(self, *, actor: str, trace_number: str, issued_on: date) -> None:
        cmd = IssuePayment.checked(actor=actor, trace_number=trace_number, issued_on=issued_on)
        if self.status != SCHEDULED:
            msg = f"only a scheduled payment can be issued (this payment is {self.status})"
            raise StateError(msg)
        self.trigger_event(
            self.Issued, actor=cmd.actor, trace_number=cmd.trace_number, issued_on=cmd.issued_on
        )

    def reverse(self, *, actor: str, reason: str, amount_cents: int) -> None:
        """Take back ``amount_cents`` of an issued payment (several partial reversals allowed)."""
        cmd = ReversePayment.checked(actor=actor, reason=reason, amount_cents=amount_cents)
        if self.status == SCHEDULED:
            msg = "a payment cannot be reversed before it is issued"
            raise StateError(msg)
        if self.status == REVERSED:
            msg = "this payment is already fully reversed"
            raise StateError(msg)
        if cmd.amount_cents > self.amount_cents - self.reversed_cents:
            msg = "amount_cents exceeds what is left of the payment"
            raise StateError(msg)
        self.trigger_event(
            self.Reversed, actor=cmd.actor, reason=cmd.reason, amount_cents=cmd.amount_cents
        )
