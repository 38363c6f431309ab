"""The engine: runs a rule set's rules in order over one claim and its facts, and totals the lines.

`adjudicate(claim, facts, ruleset)` is pure and deterministic: same claim, facts and rule set, same
`Decision`, always. Which rule set applies (the one in force on the received date) is the caller's
choice; the engine only takes it.

How findings become amounts (findings.py lists the kinds):
- A denied line pays nothing; its adjustments explain the whole billed amount. A denied line is not
  shown to later rules (they only see open lines), so its first denial is its reason.
- A cut takes `units` off the line; the refused units' share of the billed amount still open is
  `open - round_half_up(open * units_left / units)`, so repeated cuts always add up to the cent.
- A line is paid when a rule allowed an amount: paid = allowed - the member's share (PR).
- Pending: if any line is pended, or an open line was never priced, the claim is PENDED. It pays
  nothing yet and moves no accumulators: every line not denied is reported as "pended" with the
  whole billed amount as one OA adjustment (the pend reason, OA-133 by default) and allowed 0, so
  the balance holds; denied lines keep their denial.
Balance on every line: billed = paid + patient responsibility + the other adjustments, and patient
responsibility = the PR adjustments (models.LineResult checks it); claim totals are sums of lines.
Zero-amount price and cost-share adjustments are left out; a zero-amount denial or pend is kept,
because it carries the reason.

Outcome: PENDED if pended; DENIED if every line is denied; PAID if every line is paid and none lost
units; otherwise PARTIALLY_PAID. A claim that went wholly to the member's deductible is PAID with
paid 0: nothing was denied.

Accumulator changes (not for a pended claim): per plan year (the calendar year of the date of
service), the deductible and out-of-pocket amounts of paid lines, and the units of paid lines whose
procedure has a benefit limit in the line's plan; years with no change are left out.

Imports: the standard library and this package's models, codes, findings, money and state only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .codes import require_in_force
from .findings import Finding, Kind, Reason
from .models import AccumulatorChange, Adjustment, ClaimInput, Decision, Facts, LineResult, Outcome
from .money import divide_half_up
from .state import DENIED, OPEN, PENDED, ClaimState, LineState

if TYPE_CHECKING:
    from .ruleset import RuleSet, Step

# A line that no rule priced cannot be paid; when a rule set has no pend rule to say so, the
# engine pends the claim with this reason.
UNPRICED = Reason("OA", "133")

_SHARE_KINDS = (Kind.COPAY, Kind.DEDUCTIBLE, Kind.COINSURANCE)


def adjudicate(claim: ClaimInput, facts: Facts, ruleset: RuleSet) -> Decision:
    """Judge `claim` on `facts` with `ruleset`; see the module docstring for how amounts are formed."""
    return _decide(claim, facts, ruleset, evaluate(claim, facts, ruleset.steps))


def evaluate(claim: ClaimInput, facts: Facts, steps: Iterable[Step]) -> ClaimState:
    """Run `steps` in order and apply their findings: the lines as the last step left them."""
    state = ClaimState(claim, facts)
    for step in steps:
        if not any(line.status is OPEN for line in state.lines):
            break
        for finding in step.rule.check(claim, facts, step.params, state):
            _apply(state.by_number[finding.line_number], finding)
    return state


def _apply(line: LineState, finding: Finding) -> None:
    if line.status is not OPEN:
        return
    kind = finding.kind
    reason = finding.reason
    if kind is Kind.DENY:
        _adjust(line, reason, line.billed_open)
        line.billed_open = 0
        line.units = 0
        line.status = DENIED
    elif kind is Kind.CUT:
        units_left = line.units - min(finding.units, line.units)
        still_open = divide_half_up(line.billed_open * units_left, line.units)
        _adjust(line, reason, line.billed_open - still_open)
        line.billed_open = still_open
        line.units = units_left
        line.was_cut = True
        if units_left == 0:
            line.status = DENIED
    elif kind is Kind.ALLOW:
        allowed = min(finding.amount_cents, line.billed_open)
        if line.billed_open > allowed:
            _adjust(line, reason, line.billed_open - allowed)
        line.billed_open = allowed
        line.allowed = allowed
    elif kind in _SHARE_KINDS:
        amount = min(finding.amount_cents, line.billed_open - line.member_share)
        if amount > 0:
            _adjust(line, reason, amount)
            line.member_share += amount
            if kind is Kind.DEDUCTIBLE:
                line.deductible += amount
    elif kind is Kind.PEND:
        line.status = PENDED
        line.pend_reason = reason


def _adjust(line: LineState, reason: Reason, amount: int) -> None:
    line.adjustments.append((reason.group, reason.carc, amount))
    for remark in reason.remarks:
        if remark not in line.remarks:
            line.remarks.append(remark)


def _decide(claim: ClaimInput, facts: Facts, ruleset: RuleSet, state: ClaimState) -> Decision:
    lines = state.lines
    pend_reason = next((line.pend_reason for line in lines if line.status is PENDED), None)
    if pend_reason is None and any(line.status is OPEN and line.allowed is None for line in lines):
        pend_reason = UNPRICED
    pended = pend_reason is not None

    received_on = facts.received_on
    checked: set[tuple[str, str, tuple[str, ...]]] = set()
    results: list[LineResult] = []
    for line in lines:
        if line.status is DENIED or not pended:
            adjustments = line.adjustments
            remarks = line.remarks
        else:
            adjustments = [(pend_reason.group, pend_reason.carc, line.line.billed_cents)]
            remarks = list(pend_reason.remarks)
        for group, carc, _ in adjustments:
            key = (group, carc, tuple(remarks))
            if key not in checked:
                require_in_force(group, carc, remarks, received_on)
                checked.add(key)
        paid_line = line.status is OPEN and not pended
        allowed = line.allowed if paid_line else 0
        member = line.member_share if paid_line else 0
        results.append(
            LineResult(
                line_number=line.number,
                billed_cents=line.line.billed_cents,
                allowed_cents=allowed,
                paid_cents=allowed - member,
                patient_responsibility_cents=member,
                adjustments=[Adjustment(group=g, carc=c, amount_cents=a) for g, c, a in adjustments],
                remarks=remarks,
                status="paid" if paid_line else ("denied" if line.status is DENIED else "pended"),
            )
        )

    if pended:
        outcome = Outcome.PENDED
    elif all(line.status is DENIED for line in lines):
        outcome = Outcome.DENIED
    elif all(line.status is OPEN and not line.was_cut for line in lines):
        outcome = Outcome.PAID
    else:
        outcome = Outcome.PARTIALLY_PAID

    return Decision(
        claim_id=claim.claim_id,
        outcome=outcome,
        lines=results,
        total_billed_cents=sum(result.billed_cents for result in results),
        total_allowed_cents=sum(result.allowed_cents for result in results),
        total_paid_cents=sum(result.paid_cents for result in results),
        total_patient_responsibility_cents=sum(result.patient_responsibility_cents for result in results),
        accumulator_changes=[] if pended else _accumulator_changes(lines),
        ruleset_version=ruleset.version,
        ruleset_hash=ruleset.content_hash,
    )


def _accumulator_changes(lines: list[LineState]) -> list[AccumulatorChange]:
    years: dict[int, list] = {}
    for line in lines:
        if line.status is not OPEN:
            continue
        entry = years.setdefault(line.plan_year, [0, 0, {}])
        entry[0] += line.deductible
        entry[1] += line.member_share
        terms = line.terms
        if terms is not None and line.procedure in terms.benefit_limits:
            units = entry[2]
            units[line.procedure] = units.get(line.procedure, 0) + line.units
    return [
        AccumulatorChange(plan_year=year, deductible_cents=deductible, oop_cents=oop, benefit_units=units)
        for year, (deductible, oop, units) in sorted(years.items())
        if deductible or oop or units
    ]
