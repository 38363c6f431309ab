"""A payment (remittance) from a payer to a provider for one or more claims.

Lifecycle (``status``)::

    scheduled --issue--> issued --recoup--> recouped (fully or in part; recoup again until nothing is left)
        |
        +--cancel--> cancelled

A scheduled payment is cancelled (never issued) when the decision it pays is voided, replaced or
lowered; an issued one is recouped: the amount taken back appears as a negative line on the
provider's remittance. Amounts are integer cents and every total equals the sum of its lines, so
the 835 built from it balances by construction. Which action a decision change calls for is decided
by ``claims_service.adjudication.effects``; this aggregate only guards the transitions.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id, ordered_id
from claims_service.domain.values import CancelPayment, IssuePayment, RecoupPayment, SchedulePayment, copy_plain
from claims_service.errors import StateError

SCHEDULED = "scheduled"
ISSUED = "issued"
CANCELLED = "cancelled"
RECOUPED = "recouped"

# A payment run (one IssuePayments call) pays each provider once: every payment it issues to one
# provider carries the same trace number (TRN02 of that provider's 835, the EFT's trace), made
# of the run's id and the provider's NPI. Run ids sort by time: "R", the run's UTC time to the
# microsecond (YYYYMMDDHHMMSSffffff), and 3 hex digits of its payments' ids.
RUN_ID = re.compile(r"R[0-9]{20}[0-9A-F]{3}")


def run_id(issued_at: datetime, payment_ids: Iterable[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(payment_ids)).encode()).hexdigest()[:3].upper()
    return f"R{issued_at.astimezone(UTC).strftime('%Y%m%d%H%M%S%f')}{digest}"


def run_trace_number(run: str, provider_id: str) -> str:
    """The trace number of what run `run` pays provider `provider_id` (an NPI: ten digits)."""
    return f"{run}-{provider_id}"


def run_of_trace(trace_number: str) -> str | None:
    """The run a trace number belongs to (None for trace numbers of single payments, issued
    before runs had ids)."""
    run, _, provider = trace_number.partition("-")
    return run if RUN_ID.fullmatch(run) and provider else None


class Payment(Aggregate):
    """Id from ``payment_id``.

    State: ``payment_id``, ``payer_id``, ``provider_id``, ``claim_ids``,
    ``amount_cents``, ``lines`` (claim_id -> ``[{line_number, paid_cents}]``),
    ``status``, ``trace_number``, ``issued_on``, ``cancel_reason``,
    ``reversed_cents`` (recouped so far), ``reversals`` (``[{reason, amount_cents, lines}]``).
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
            payment.cancel_reason = None

    class Issued(Aggregate.Event):
        actor: str
        trace_number: str
        issued_on: date

        def apply(self, payment: Payment) -> None:
            payment.trace_number = self.trace_number
            payment.issued_on = self.issued_on
            payment.status = ISSUED

    class Cancelled(Aggregate.Event):
        """Never to be issued: the decision it paid was voided, replaced or lowered."""

        actor: str
        reason: str
        # Copied from the payment, so that a reader of this event alone knows what was not paid.
        payment_id: str
        claim_ids: list[str]
        amount_cents: int

        def apply(self, payment: Payment) -> None:
            payment.cancel_reason = self.reason
            payment.status = CANCELLED

    class Recouped(Aggregate.Event):
        """Part or all of an issued payment taken back; ``lines`` maps each claim id to the
        amounts taken back per claim line (they add up to ``amount_cents``)."""

        actor: str
        reason: str
        amount_cents: int
        lines: dict[str, list[dict[str, Any]]]
        payment_id: str  # copied from the payment, for a reader of this event alone

        def apply(self, payment: Payment) -> None:
            payment._take_back(self.reason, self.amount_cents, self.lines)

    class Reversed(Aggregate.Event):
        """A recoupment as ledgers recorded it before recoupments were itemised by line."""

        actor: str
        reason: str
        amount_cents: int

        def apply(self, payment: Payment) -> None:
            payment._take_back(self.reason, self.amount_cents, {})

    def _take_back(self, reason: str, amount_cents: int, lines: dict[str, list[dict[str, Any]]]) -> None:
        self.reversals.append({"reason": reason, "amount_cents": amount_cents, "lines": copy_plain(lines)})
        self.reversed_cents += amount_cents
        self.status = RECOUPED

    @staticmethod
    def create_id(payment_id: str) -> UUID:
        return payment_stream_id(payment_id)

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

    def cancel(self, *, actor: str, reason: str) -> None:
        cmd = CancelPayment.checked(actor=actor, reason=reason)
        if self.status != SCHEDULED:
            msg = f"only a scheduled payment can be cancelled (this payment is {self.status})"
            raise StateError(msg)
        self.trigger_event(self.Cancelled, actor=cmd.actor, reason=cmd.reason, payment_id=self.payment_id,
                           claim_ids=list(self.claim_ids), amount_cents=self.amount_cents)

    def recoup(self, *, actor: str, reason: str, lines: dict[str, list[dict[str, Any]]]) -> None:
        """Take back what ``lines`` names (claim id -> ``[{line_number, paid_cents}]``) of an
        issued payment; several partial recoupments are allowed, never more than is left."""
        cmd = RecoupPayment.checked(actor=actor, reason=reason, lines=lines)
        if self.status not in (ISSUED, RECOUPED):
            msg = f"only an issued payment can be recouped (this payment is {self.status})"
            raise StateError(msg)
        amount = sum(line.paid_cents for claim_lines in cmd.lines.values() for line in claim_lines)
        if amount > self.net_cents:
            msg = "the recoupment exceeds what is left of the payment"
            raise StateError(msg)
        dumped = cmd.model_dump(mode="python")
        self.trigger_event(
            self.Recouped, actor=cmd.actor, reason=cmd.reason, amount_cents=amount, lines=dumped["lines"],
            payment_id=self.payment_id,
        )

    @property
    def net_cents(self) -> int:
        """What the provider keeps of this payment: nothing unless issued, less what was recouped."""
        return self.amount_cents - self.reversed_cents if self.status in (ISSUED, RECOUPED) else 0


@functools.lru_cache(maxsize=65_536)
def payment_stream_id(payment_id: str) -> UUID:
    """The uuid5 of the payment id; for a claim's payment (``<claim id>/<n>``, adjudication's
    `payment_id_for`) of a claim whose id is time-ordered, an id beside the claim's instead, so that
    payments too arrive at the right edge of the indexes on stream id (`ids.ordered_id`)."""
    claim_id, slash, _ = payment_id.partition("/")
    if slash and len(claim_id) == 36 and claim_id[14] == "7":  # a UUIDv7's version digit
        try:
            claim = UUID(claim_id)
        except ValueError:
            pass
        else:
            if claim.version == 7:
                return ordered_id(claim, "payment", payment_id)
    return make_id("payment", payment_id)
