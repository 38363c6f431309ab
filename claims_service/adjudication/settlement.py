"""Load, call, save: turns a claim's decision change into aggregate changes through the pure
money effects (effects.py). Used alike by the adjudicator and by the commands, each saving what it
returns in the commit that it belongs to:

- a decision (automatic, a review, a dispute): its payments and its accumulators, in the
  decision's commit;
- a void or a replacement: its payments in the command's commit (so that no payment of it is
  issued afterwards), its accumulators by the adjudicator, in order, before it decides any later
  claim of the member. The adjudicator is the one writer of a member's benefit periods on the busy
  path: a void writing them too would collide with the adjudicator's batches of the member's other
  claims and make whole batches start over (measured with `make bench`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from adjudicator.models import Decision
from claims_service.adjudication import effects
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.payment import Payment

Load = Callable[[UUID], Any]
"""Aggregate id -> the aggregate, or None when there is none."""


PREFETCHED_PAYMENTS = 4  # a claim's first payments, read in one query (most claims have one, or none)


def prefetching_payments(load: Load, load_many: Callable[[list[UUID]], dict[UUID, Any]], claim_id: str) -> Load:
    """`load`, but the claim's first payments read at once with `load_many` (which must refuse an
    erased record as `load` does): `claim_payments` then counts them up without a statement each,
    the first missing one included."""
    ids = [Payment.create_id(effects.payment_id_for(claim_id, n)) for n in range(PREFETCHED_PAYMENTS)]
    found = load_many(ids)
    prefetched = {i: found.get(i) for i in ids}
    return lambda aggregate_id: prefetched[aggregate_id] if aggregate_id in prefetched else load(aggregate_id)


def claim_payments(load: Load, claim_id: str) -> list[Payment]:
    """Every payment of the claim, oldest first (their ids are dense: see effects.payment_id_for)."""
    payments = []
    while (payment := load(Payment.create_id(effects.payment_id_for(claim_id, len(payments))))) is not None:
        payments.append(payment)
    return payments


def payment_so_far(payment: Payment, claim_id: str) -> effects.PaymentSoFar:
    recouped: dict[int, int] = {}
    for reversal in payment.reversals:
        for line in reversal["lines"].get(claim_id, []):
            recouped[line["line_number"]] = recouped.get(line["line_number"], 0) + line["paid_cents"]
    paid = {line["line_number"]: line["paid_cents"] for line in payment.lines.get(claim_id, [])}
    effects.spread_unitemised(sum(r["amount_cents"] for r in payment.reversals if not r["lines"]), paid, recouped)
    return effects.PaymentSoFar(payment.payment_id, payment.status, paid, recouped)


def current_decision(claim: Claim) -> Decision | None:
    """The decision whose money stands: none for a claim that was voided or replaced."""
    if claim.decision is None or claim.status in ("voided", "replaced"):
        return None
    return Decision.model_validate(claim.decision)


def settle(load: Load, claim: Claim, *, before: Decision | None, after: Decision | None,
           actor: str, reason: str, payments_only: bool = False, accumulators_only: bool = False) -> list[Any]:
    """Apply `after` (the claim's decision from now on; None once it no longer stands) to the
    member's benefit periods and the claim's payments (or only one of them); return every
    aggregate changed."""
    payments = [] if accumulators_only else claim_payments(load, claim.claim_id)
    result = effects.settle_claim(
        claim_id=claim.claim_id,
        claim_lines=claim.lines,
        provider_id=claim.provider_id,
        before=before,
        after=after,
        payments=[payment_so_far(p, claim.claim_id) for p in payments],
    )
    changed: dict[UUID, Any] = {}
    for change in [] if payments_only else result.periods:
        period_id = BenefitPeriod.create_id(claim.payer_id, claim.member_id, change.plan_year)
        period = load(period_id)
        if isinstance(change, effects.PeriodReversal):
            if period is not None and period.reverse_claim(actor=actor, claim_id=claim.claim_id, reason=reason):
                changed[period.id] = period
            continue
        if period is None:
            period = BenefitPeriod.open(payer_id=claim.payer_id, member_id=claim.member_id, plan_year=change.plan_year)
        period.apply_claim(actor=actor, claim_id=claim.claim_id, deductible_cents=change.deductible_cents,
                           oop_cents=change.oop_cents, benefit_units=change.benefit_units, lines=change.lines)
        changed[period.id] = period
    by_id = {p.payment_id: p for p in payments}
    for action in [] if accumulators_only else result.payments:
        if isinstance(action, effects.Schedule):
            payment = Payment.schedule(
                actor=actor,
                payment_id=action.payment_id,
                payer_id=claim.payer_id,
                provider_id=claim.provider_id,
                claim_ids=[claim.claim_id],
                amount_cents=action.amount_cents,
                lines={claim.claim_id: _lines(action.lines)},
            )
        elif isinstance(action, effects.Cancel):
            payment = by_id[action.payment_id]
            payment.cancel(actor=actor, reason=reason)
        else:
            payment = by_id[action.payment_id]
            payment.recoup(actor=actor, reason=reason, lines={claim.claim_id: _lines(action.lines)})
        changed[payment.id] = payment
    return list(changed.values())


def _lines(cents_by_line: dict[int, int]) -> list[dict[str, int]]:
    return [{"line_number": n, "paid_cents": cents} for n, cents in sorted(cents_by_line.items())]
