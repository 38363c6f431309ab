"""A decision's money effects, as pure functions: no I/O, no clock, no aggregates.

A claim's money is a function of its current decision. Whenever the decision changes (the
automatic one, a reviewer's, a dispute's) or the claim stops standing (voided, replaced), the
caller loads the claim's payments so far, calls `settle_claim`, and saves what it returns, in the
same commit as the change. That is what keeps these invariants, which `claimsctl reconcile`
checks from the ledger alone:

- per claim and line, issued − recouped + still scheduled = the current decision's paid amount
  (0 for a voided or replaced claim), so the net issued never exceeds it;
- nothing is issued for a claim that no longer stands: its scheduled payments are cancelled in
  the commit that voids or replaces it;
- the member's accumulators hold exactly the current decision's deductible and out-of-pocket
  amounts (the decision itself was capped by the out-of-pocket maximum).

How a difference is settled, line by line:
- more is due than issued and scheduled: a new payment schedules the difference;
- less is due than issued and scheduled: every scheduled payment of the claim is cancelled; what
  is still due beyond the issued amount is scheduled anew, and what was issued beyond it is
  recouped from the issued payments, newest first.

Imports: the standard library and the adjudicator's models only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adjudicator.models import Decision

SCHEDULED = "scheduled"
ISSUED = "issued"
CANCELLED = "cancelled"
RECOUPED = "recouped"


@dataclass(frozen=True)
class PaymentSoFar:
    """One earlier payment of the claim, as much as the effects need to know of it."""

    payment_id: str
    status: str
    paid: Mapping[int, int]
    """claim line number -> cents this payment pays on it."""
    recouped: Mapping[int, int] = field(default_factory=dict)
    """claim line number -> cents taken back from it."""

    def net(self, line_number: int) -> int:
        """What the provider holds of this payment on the line (issued less recouped)."""
        if self.status not in (ISSUED, RECOUPED):
            return 0
        return self.paid.get(line_number, 0) - self.recouped.get(line_number, 0)

    def pending(self, line_number: int) -> int:
        return self.paid.get(line_number, 0) if self.status == SCHEDULED else 0


@dataclass(frozen=True)
class Schedule:
    payment_id: str
    lines: dict[int, int]

    @property
    def amount_cents(self) -> int:
        return sum(self.lines.values())


@dataclass(frozen=True)
class Cancel:
    payment_id: str


@dataclass(frozen=True)
class Recoup:
    payment_id: str
    lines: dict[int, int]

    @property
    def amount_cents(self) -> int:
        return sum(self.lines.values())


PaymentAction = Schedule | Cancel | Recoup


@dataclass(frozen=True)
class PeriodChange:
    """Set the claim's effect on one plan year's benefit period (replacing any earlier one)."""

    plan_year: int
    deductible_cents: int
    oop_cents: int
    benefit_units: dict[str, int]
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class PeriodReversal:
    """Take the claim's effect off one plan year's benefit period (voided or replaced)."""

    plan_year: int


PeriodEffect = PeriodChange | PeriodReversal


@dataclass(frozen=True)
class AccumulatorDelta:
    plan_year: int
    deductible_cents: int
    oop_cents: int


@dataclass(frozen=True)
class Effects:
    periods: list[PeriodEffect]
    payments: list[PaymentAction]
    deltas: list[AccumulatorDelta]


def spread_unitemised(amount_cents: int, paid: Mapping[int, int], recouped: dict[int, int]) -> None:
    """Put a recoupment recorded before recoupments were itemised (a whole amount) on the
    payment's lines, the last lines first, within what each line still holds: adds to `recouped`."""
    for number in sorted(paid, reverse=True):
        take = min(amount_cents, paid[number] - recouped.get(number, 0))
        if take > 0:
            recouped[number] = recouped.get(number, 0) + take
            amount_cents -= take


def payment_id_for(claim_id: str, n: int = 0) -> str:
    """The claim's n-th payment (0, 1, ...): ids are dense, so a claim's payments are found by
    counting up until one is missing."""
    return f"{claim_id}/{n}"


def paid_by_line(decision: Decision | None) -> dict[int, int]:
    """What the decision pays per line; nothing for a claim that no longer stands or is pended."""
    if decision is None or decision.outcome == "PENDED":
        return {}
    return {line.line_number: line.paid_cents for line in decision.lines}


def payment_actions(claim_id: str, due: Mapping[int, int], payments: Sequence[PaymentSoFar]) -> list[PaymentAction]:
    """The payments to schedule, cancel and recoup so that, per line, issued − recouped +
    scheduled equals `due` (line number -> cents; a line not named is due nothing)."""
    lines = sorted(set(due) | {n for p in payments for n in (*p.paid, *p.recouped)})
    held = {n: sum(p.net(n) for p in payments) for n in lines}
    pending = {n: sum(p.pending(n) for p in payments) for n in lines}
    actions: list[PaymentAction] = []
    if any(held[n] + pending[n] > due.get(n, 0) for n in lines):
        actions += [Cancel(p.payment_id) for p in payments if p.status == SCHEDULED]
        pending = dict.fromkeys(lines, 0)
    to_schedule = {n: due.get(n, 0) - held[n] - pending[n] for n in lines}
    to_schedule = {n: cents for n, cents in to_schedule.items() if cents > 0}
    to_recoup = {n: held[n] - due.get(n, 0) for n in lines if held[n] > due.get(n, 0)}
    if to_recoup:
        actions += _recoupments(to_recoup, payments)
    if to_schedule:
        actions.append(Schedule(payment_id_for(claim_id, len(payments)), to_schedule))
    return actions


def _recoupments(to_recoup: dict[int, int], payments: Sequence[PaymentSoFar]) -> list[Recoup]:
    """Take `to_recoup` (line -> cents) back from the issued payments, newest first."""
    left = dict(to_recoup)
    actions = []
    for payment in reversed(payments):
        taken = {}
        for n, cents in left.items():
            take = min(cents, payment.net(n))
            if take > 0:
                taken[n] = take
        for n, take in taken.items():
            left[n] -= take
        if taken:
            actions.append(Recoup(payment.payment_id, taken))
    if any(left.values()):  # the held amounts came from these payments: cannot happen
        raise ValueError(f"cannot recoup {left} from the claim's payments")
    return actions


def period_effects(claim_lines: Sequence[Mapping[str, Any]], provider_id: str, decision: Decision | None) -> list[PeriodEffect]:
    """The claim's effect on each plan year it touches (the calendar year of a line's date of
    service): its decision's accumulator changes and the lines that stand (paid or pended; a
    denied line may be billed again), or a reversal when the claim no longer stands."""
    years = sorted({line["date_of_service"].year for line in claim_lines})
    if decision is None:
        return [PeriodReversal(year) for year in years]
    changes = {c.plan_year: c for c in decision.accumulator_changes}
    denied = {r.line_number for r in decision.lines if r.status == "denied"}
    lines_by_year: dict[int, list[dict[str, Any]]] = {year: [] for year in years}
    for line in claim_lines:
        if line["line_number"] in denied:
            continue
        lines_by_year[line["date_of_service"].year].append(
            {
                "provider_id": provider_id,
                "date_of_service": line["date_of_service"],
                "procedure_code": line["procedure_code"],
                "modifiers": list(line["modifiers"]),
                "units": line["units"],
            }
        )
    effects: list[PeriodEffect] = []
    for year in years:
        change = changes.get(year)
        effects.append(
            PeriodChange(
                plan_year=year,
                deductible_cents=change.deductible_cents if change else 0,
                oop_cents=change.oop_cents if change else 0,
                benefit_units=dict(change.benefit_units) if change else {},
                lines=lines_by_year[year],
            )
        )
    return effects


def accumulator_deltas(before: Decision | None, after: Decision | None) -> list[AccumulatorDelta]:
    """How far the decision change moves the member's deductible and out-of-pocket, per plan year."""
    totals: dict[int, list[int]] = {}
    for sign, decision in ((-1, before), (1, after)):
        if decision is None:
            continue
        for change in decision.accumulator_changes:
            entry = totals.setdefault(change.plan_year, [0, 0])
            entry[0] += sign * change.deductible_cents
            entry[1] += sign * change.oop_cents
    return [AccumulatorDelta(year, d, o) for year, (d, o) in sorted(totals.items()) if d or o]


def settle_claim(
    *,
    claim_id: str,
    claim_lines: Sequence[Mapping[str, Any]],
    provider_id: str,
    before: Decision | None,
    after: Decision | None,
    payments: Sequence[PaymentSoFar],
) -> Effects:
    """Everything a decision change does to money: `before` is the decision in force until now
    (None if there was none), `after` the one in force from now on (None once the claim is voided
    or replaced), `payments` every payment of the claim so far, in order."""
    return Effects(
        periods=period_effects(claim_lines, provider_id, after),
        payments=payment_actions(claim_id, paid_by_line(after), payments),
        deltas=accumulator_deltas(before, after),
    )
