"""A decision's money effects (claims_service/adjudication/effects.py), pure: payments to schedule,
cancel and recoup, the claim's effect on each plan year, and the accumulator deltas.

Amounts are integer cents. Payments are `PaymentSoFar` values, built here by status; decisions are
real `adjudicator.models.Decision` values with balanced lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from adjudicator.models import AccumulatorChange, Adjustment, Decision, LineResult
from claims_service.adjudication.effects import (
    CANCELLED,
    ISSUED,
    RECOUPED,
    SCHEDULED,
    AccumulatorDelta,
    Cancel,
    Effects,
    PaymentSoFar,
    PeriodChange,
    PeriodReversal,
    Recoup,
    Schedule,
    accumulator_deltas,
    paid_by_line,
    payment_actions,
    payment_id_for,
    period_effects,
    settle_claim,
)

CLAIM = "CLM-1"
NPI = "1234567893"
HASH = "0" * 64


# --- builders --------------------------------------------------------------------------------


def scheduled(n: int, **paid: int) -> PaymentSoFar:
    """The claim's n-th payment, still scheduled; `paid` as l1=..., l2=... (line number -> cents)."""
    return PaymentSoFar(payment_id_for(CLAIM, n), SCHEDULED, _lines(paid))


def issued(n: int, recouped: Mapping[str, int] | None = None, **paid: int) -> PaymentSoFar:
    return PaymentSoFar(payment_id_for(CLAIM, n), ISSUED, _lines(paid), _lines(recouped or {}))


def cancelled(n: int, **paid: int) -> PaymentSoFar:
    return PaymentSoFar(payment_id_for(CLAIM, n), CANCELLED, _lines(paid))


def _lines(by_name: Mapping[str, int]) -> dict[int, int]:
    return {int(name.removeprefix("l")): cents for name, cents in by_name.items()}


def result(number: int, billed: int, paid: int | None = None, status: str = "paid") -> LineResult:
    """A balanced line: a paid line pays `paid` (the rest CO-45), a denied one CO-96, a pended one OA-133."""
    if status == "paid":
        paid = billed if paid is None else paid
        adjustments = [Adjustment(group="CO", carc="45", amount_cents=billed - paid)] if billed > paid else []
        return LineResult(
            line_number=number,
            billed_cents=billed,
            allowed_cents=paid,
            paid_cents=paid,
            patient_responsibility_cents=0,
            adjustments=adjustments,
            remarks=[],
            status="paid",
        )
    group, carc = ("CO", "96") if status == "denied" else ("OA", "133")
    return LineResult(
        line_number=number,
        billed_cents=billed,
        allowed_cents=0,
        paid_cents=0,
        patient_responsibility_cents=0,
        adjustments=[Adjustment(group=group, carc=carc, amount_cents=billed)],
        remarks=["N130"] if status == "denied" else [],
        status=status,
    )


def decision(*lines: LineResult, outcome: str | None = None, changes: tuple[AccumulatorChange, ...] = ()) -> Decision:
    if outcome is None:
        statuses = {line.status for line in lines}
        outcome = (
            "PENDED" if "pended" in statuses
            else "DENIED" if statuses == {"denied"}
            else "PAID" if statuses == {"paid"}
            else "PARTIALLY_PAID"
        )
    return Decision(
        claim_id=CLAIM,
        outcome=outcome,
        lines=list(lines),
        total_billed_cents=sum(line.billed_cents for line in lines),
        total_allowed_cents=sum(line.allowed_cents for line in lines),
        total_paid_cents=sum(line.paid_cents for line in lines),
        total_patient_responsibility_cents=sum(line.patient_responsibility_cents for line in lines),
        accumulator_changes=list(changes),
        ruleset_version="2026.1",
        ruleset_hash=HASH,
    )


def change(year: int, deductible: int = 0, oop: int = 0, **units: int) -> AccumulatorChange:
    return AccumulatorChange(plan_year=year, deductible_cents=deductible, oop_cents=oop, benefit_units=units)


def claim_line(number: int, dos: date, code: str = "99213", modifiers: tuple[str, ...] = (), units: int = 1) -> dict:
    return {
        "line_number": number,
        "procedure_code": code,
        "modifiers": modifiers,
        "units": units,
        "billed_cents": 15_000,
        "date_of_service": dos,
    }


def standing(line: dict) -> dict:
    """How a standing claim line appears in a PeriodChange."""
    return {
        "provider_id": NPI,
        "date_of_service": line["date_of_service"],
        "procedure_code": line["procedure_code"],
        "modifiers": list(line["modifiers"]),
        "units": line["units"],
    }


# --- payment ids and what a decision pays ----------------------------------------------------


def test_payment_ids_are_the_claim_id_and_a_dense_counter():
    assert payment_id_for(CLAIM) == "CLM-1/0"
    assert payment_id_for(CLAIM, 3) == "CLM-1/3"


def test_a_decision_pays_its_lines_paid_amounts():
    paid = decision(result(1, 15_000, 9_000), result(2, 2_000, status="denied"), outcome="PARTIALLY_PAID")
    assert paid_by_line(paid) == {1: 9_000, 2: 0}


def test_a_pended_or_voided_claim_pays_nothing():
    assert paid_by_line(decision(result(1, 15_000, status="pended"))) == {}
    assert paid_by_line(None) == {}


def test_a_payment_holds_what_was_issued_less_what_was_recouped():
    payment = issued(0, recouped={"l1": 2_000}, l1=9_000, l2=1_000)
    assert (payment.net(1), payment.net(2), payment.net(3)) == (7_000, 1_000, 0)
    assert payment.pending(1) == 0
    fully_recouped = PaymentSoFar("CLM-1/0", RECOUPED, {1: 9_000}, {1: 9_000})
    assert fully_recouped.net(1) == 0


def test_a_scheduled_payment_is_pending_and_holds_nothing_yet():
    payment = scheduled(0, l1=9_000)
    assert (payment.net(1), payment.pending(1), payment.pending(2)) == (0, 9_000, 0)
    assert (cancelled(0, l1=9_000).net(1), cancelled(0, l1=9_000).pending(1)) == (0, 0)


# --- 1. the first decision -------------------------------------------------------------------


def test_a_first_decision_schedules_one_payment_with_the_amount_of_each_line():
    actions = payment_actions(CLAIM, {1: 9_000, 2: 1_200}, [])
    assert actions == [Schedule("CLM-1/0", {1: 9_000, 2: 1_200})]
    assert actions[0].amount_cents == 10_200


def test_a_first_decision_paying_nothing_schedules_nothing():
    assert payment_actions(CLAIM, {1: 0, 2: 0}, []) == []


def test_a_first_decision_leaves_lines_paying_nothing_out_of_the_payment():
    assert payment_actions(CLAIM, {1: 9_000, 2: 0}, []) == [Schedule("CLM-1/0", {1: 9_000})]


def test_a_pended_first_decision_schedules_nothing():
    pended = decision(result(1, 15_000, status="pended"), result(2, 2_000, status="pended"))
    assert payment_actions(CLAIM, paid_by_line(pended), []) == []


# --- 2. a void (nothing due any more) --------------------------------------------------------


def test_a_void_cancels_every_scheduled_payment():
    payments = [scheduled(0, l1=9_000), scheduled(1, l1=1_000, l2=500)]
    assert payment_actions(CLAIM, {}, payments) == [Cancel("CLM-1/0"), Cancel("CLM-1/1")]


def test_a_void_recoups_everything_issued_line_by_line():
    payments = [issued(0, l1=9_000, l2=1_200)]
    assert payment_actions(CLAIM, {}, payments) == [Recoup("CLM-1/0", {1: 9_000, 2: 1_200})]


def test_a_void_cancels_the_scheduled_payment_and_recoups_the_issued_one():
    payments = [issued(0, l1=9_000), scheduled(1, l1=1_000, l2=500)]
    actions = payment_actions(CLAIM, {}, payments)
    assert sorted(actions, key=repr) == sorted([Cancel("CLM-1/1"), Recoup("CLM-1/0", {1: 9_000})], key=repr)


def test_a_void_ignores_cancelled_payments():
    payments = [cancelled(0, l1=9_000), issued(1, l1=5_000), cancelled(2, l1=4_000)]
    assert payment_actions(CLAIM, {}, payments) == [Recoup("CLM-1/1", {1: 5_000})]


def test_a_void_with_only_cancelled_payments_does_nothing():
    assert payment_actions(CLAIM, {}, [cancelled(0, l1=9_000)]) == []


def test_a_void_recoups_only_what_is_left_of_a_partly_recouped_payment():
    payments = [issued(0, recouped={"l1": 3_000}, l1=9_000, l2=1_200)]
    assert payment_actions(CLAIM, {}, payments) == [Recoup("CLM-1/0", {1: 6_000, 2: 1_200})]


def test_a_void_takes_nothing_from_a_fully_recouped_payment():
    payments = [PaymentSoFar("CLM-1/0", RECOUPED, {1: 9_000}, {1: 9_000}), issued(1, l1=4_000)]
    assert payment_actions(CLAIM, {}, payments) == [Recoup("CLM-1/1", {1: 4_000})]


# --- 3. a raise (more due than held and scheduled) -------------------------------------------


def test_a_raise_keeps_the_scheduled_payment_and_schedules_only_the_difference():
    payments = [scheduled(0, l1=9_000)]
    assert payment_actions(CLAIM, {1: 12_000}, payments) == [Schedule("CLM-1/1", {1: 3_000})]


def test_a_raise_over_issued_and_scheduled_payments_schedules_the_difference_under_the_next_id():
    payments = [cancelled(0, l1=1_000), issued(1, l1=5_000), scheduled(2, l1=2_000, l2=1_000)]
    actions = payment_actions(CLAIM, {1: 9_000, 2: 1_000, 3: 700}, payments)
    assert actions == [Schedule("CLM-1/3", {1: 2_000, 3: 700})]


# --- 4. a lower amount -----------------------------------------------------------------------


def test_lowering_while_only_scheduled_cancels_and_schedules_the_lower_amount_anew():
    payments = [scheduled(0, l1=9_000, l2=1_200)]
    actions = payment_actions(CLAIM, {1: 7_000, 2: 1_200}, payments)
    assert actions == [Cancel("CLM-1/0"), Schedule("CLM-1/1", {1: 7_000, 2: 1_200})]


def test_lowering_to_nothing_while_only_scheduled_cancels_only():
    payments = [scheduled(0, l1=9_000)]
    assert payment_actions(CLAIM, {1: 0}, payments) == [Cancel("CLM-1/0")]


def test_lowering_below_what_was_issued_recoups_the_excess():
    payments = [issued(0, l1=9_000, l2=1_200)]
    assert payment_actions(CLAIM, {1: 6_000, 2: 1_200}, payments) == [Recoup("CLM-1/0", {1: 3_000})]


def test_lowering_recoups_from_the_newest_issued_payment_first_across_several():
    # 1. Line 1 was issued 5_000 then 3_000 then 2_000 (10_000); now 4_000 is due: recoup 6_000,
    #    2_000 from the newest, 3_000 from the middle one, 1_000 from the oldest.
    payments = [issued(0, l1=5_000), issued(1, l1=3_000), issued(2, l1=2_000)]
    actions = payment_actions(CLAIM, {1: 4_000}, payments)
    assert actions == [
        Recoup("CLM-1/2", {1: 2_000}),
        Recoup("CLM-1/1", {1: 3_000}),
        Recoup("CLM-1/0", {1: 1_000}),
    ]
    assert sum(action.amount_cents for action in actions) == 6_000


def test_lowering_skips_what_a_newer_payment_no_longer_holds():
    # 2. The newest payment was already recouped in full on line 1: the recoupment goes to the older one.
    payments = [issued(0, l1=5_000), issued(1, recouped={"l1": 3_000}, l1=3_000, l2=1_000)]
    actions = payment_actions(CLAIM, {1: 4_000, 2: 1_000}, payments)
    assert actions == [Recoup("CLM-1/0", {1: 1_000})]


def test_lowering_below_issued_cancels_the_scheduled_payment_and_recoups_the_rest():
    # 3. Issued 9_000, scheduled 1_000 more; now 6_000 is due: cancel the 1_000, recoup 3_000.
    payments = [issued(0, l1=9_000), scheduled(1, l1=1_000)]
    actions = payment_actions(CLAIM, {1: 6_000}, payments)
    assert actions == [Cancel("CLM-1/1"), Recoup("CLM-1/0", {1: 3_000})]


def test_lowering_one_line_cancels_every_scheduled_payment_and_reschedules_what_is_still_due():
    # 4. Line 2 goes down; line 1's scheduled amount is cancelled with it and scheduled again.
    payments = [issued(0, l1=5_000), scheduled(1, l1=4_000, l2=1_000)]
    actions = payment_actions(CLAIM, {1: 9_000, 2: 500}, payments)
    assert actions == [Cancel("CLM-1/1"), Schedule("CLM-1/2", {1: 4_000, 2: 500})]


def test_mixed_lines_schedule_for_the_line_going_up_and_recoup_for_the_line_going_down():
    payments = [issued(0, l1=9_000, l2=1_200)]
    actions = payment_actions(CLAIM, {1: 11_000, 2: 800}, payments)
    assert actions == [Recoup("CLM-1/0", {2: 400}), Schedule("CLM-1/1", {1: 2_000})]


def test_a_line_the_new_decision_no_longer_names_is_due_nothing():
    payments = [issued(0, l1=9_000, l2=1_200)]
    assert payment_actions(CLAIM, {1: 9_000}, payments) == [Recoup("CLM-1/0", {2: 1_200})]


# --- 5. nothing changes ----------------------------------------------------------------------


def test_an_equal_amount_does_nothing():
    payments = [issued(0, l1=5_000), scheduled(1, l1=4_000, l2=1_200), cancelled(2, l1=700)]
    assert payment_actions(CLAIM, {1: 9_000, 2: 1_200}, payments) == []


def test_an_equal_amount_after_a_partial_recoupment_does_nothing():
    payments = [issued(0, recouped={"l1": 3_000}, l1=9_000)]
    assert payment_actions(CLAIM, {1: 6_000}, payments) == []


# --- 6. property: applying the actions always leaves exactly what is due ---------------------


def _apply(payments: list[PaymentSoFar], actions) -> list[PaymentSoFar]:
    by_id = {payment.payment_id: n for n, payment in enumerate(payments)}
    out = list(payments)
    for action in actions:
        if isinstance(action, Schedule):
            assert action.payment_id not in by_id, "a payment id is used twice"
            assert action.payment_id == payment_id_for(CLAIM, len(out)), "payment ids are dense"
            assert all(cents > 0 for cents in action.lines.values())
            by_id[action.payment_id] = len(out)
            out.append(PaymentSoFar(action.payment_id, SCHEDULED, dict(action.lines)))
        elif isinstance(action, Cancel):
            n = by_id[action.payment_id]
            assert out[n].status == SCHEDULED, "only a scheduled payment can be cancelled"
            out[n] = replace(out[n], status=CANCELLED)
        else:
            n = by_id[action.payment_id]
            payment = out[n]
            assert payment.status in (ISSUED, RECOUPED), "only an issued payment can be recouped"
            recouped = dict(payment.recouped)
            for line, cents in action.lines.items():
                assert 0 < cents <= payment.net(line), "a recoupment takes at most what the payment holds"
                recouped[line] = recouped.get(line, 0) + cents
            out[n] = replace(payment, recouped=recouped)
    return out


_due = st.one_of(
    st.just({}),
    st.dictionaries(st.integers(1, 4), st.integers(0, 20_000), max_size=4),
)
_step = st.tuples(_due, st.lists(st.integers(0, 10), max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, min_size=1, max_size=8))
def test_applying_the_actions_leaves_exactly_what_is_due_per_line(steps):
    payments: list[PaymentSoFar] = []
    for due, issue_picks in steps:
        payments = _apply(payments, payment_actions(CLAIM, due, payments))
        lines = set(due) | {n for p in payments for n in (*p.paid, *p.recouped)}
        for n in lines:
            net = [p.net(n) for p in payments]
            assert sum(net) + sum(p.pending(n) for p in payments) == due.get(n, 0), (n, due, payments)
            assert all(cents >= 0 for cents in net), (n, payments)
        if not any(due.values()):
            assert not any(p.status == SCHEDULED for p in payments)
        # Issue some of the scheduled payments before the next decision.
        waiting = [n for n, p in enumerate(payments) if p.status == SCHEDULED]
        for pick in issue_picks:
            if waiting:
                n = waiting.pop(pick % len(waiting))
                payments[n] = replace(payments[n], status=ISSUED)


# --- 7. plan-year periods --------------------------------------------------------------------


DEC_30 = date(2025, 12, 30)
JAN_2 = date(2026, 1, 2)


def test_a_claim_that_no_longer_stands_reverses_each_plan_year_it_touches():
    lines = [claim_line(1, JAN_2), claim_line(2, DEC_30), claim_line(3, date(2026, 2, 1))]
    assert period_effects(lines, NPI, None) == [PeriodReversal(2025), PeriodReversal(2026)]


def test_a_decision_sets_each_year_to_its_accumulator_change_and_its_standing_lines():
    lines = [claim_line(1, DEC_30, modifiers=("25",)), claim_line(2, JAN_2, "97110", units=3)]
    paid = decision(
        result(1, 15_000, 9_000),
        result(2, 12_000, 9_000),
        changes=(change(2025, oop=1_500), change(2026, deductible=2_000, oop=2_500, **{"97110": 3})),
    )
    assert period_effects(lines, NPI, paid) == [
        PeriodChange(2025, 0, 1_500, {}, [standing(lines[0])]),
        PeriodChange(2026, 2_000, 2_500, {"97110": 3}, [standing(lines[1])]),
    ]
    assert period_effects(lines, NPI, paid)[0].lines[0]["modifiers"] == ["25"]


def test_denied_lines_are_left_out_of_the_period():
    lines = [claim_line(1, JAN_2), claim_line(2, JAN_2, "80053")]
    partly = decision(result(1, 15_000, 9_000), result(2, 1_500, status="denied"), changes=(change(2026, oop=500),))
    assert period_effects(lines, NPI, partly) == [PeriodChange(2026, 0, 500, {}, [standing(lines[0])])]


def test_a_year_whose_lines_are_all_denied_still_gets_an_empty_period_change():
    lines = [claim_line(1, DEC_30), claim_line(2, JAN_2)]
    partly = decision(result(1, 15_000, status="denied"), result(2, 15_000, 9_000))
    assert period_effects(lines, NPI, partly) == [
        PeriodChange(2025, 0, 0, {}, []),
        PeriodChange(2026, 0, 0, {}, [standing(lines[1])]),
    ]


def test_a_year_without_accumulator_change_still_counts_its_lines_for_duplicates():
    lines = [claim_line(1, DEC_30), claim_line(2, JAN_2)]
    paid = decision(result(1, 15_000, 9_000), result(2, 15_000, 9_000), changes=(change(2026, deductible=9_000, oop=9_000),))
    assert period_effects(lines, NPI, paid) == [
        PeriodChange(2025, 0, 0, {}, [standing(lines[0])]),
        PeriodChange(2026, 9_000, 9_000, {}, [standing(lines[1])]),
    ]


def test_a_pended_decision_keeps_its_lines_standing_with_no_accumulator_change():
    lines = [claim_line(1, JAN_2)]
    pended = decision(result(1, 15_000, status="pended"))
    assert period_effects(lines, NPI, pended) == [PeriodChange(2026, 0, 0, {}, [standing(lines[0])])]


def test_a_period_change_copies_the_benefit_units_rather_than_sharing_them():
    lines = [claim_line(1, JAN_2, "97110", units=2)]
    paid = decision(result(1, 6_000), changes=(change(2026, **{"97110": 2}),))
    effect = period_effects(lines, NPI, paid)[0]
    effect.benefit_units["97110"] = 99
    assert paid.accumulator_changes[0].benefit_units == {"97110": 2}


# --- 8. accumulator deltas -------------------------------------------------------------------


def test_a_first_decision_adds_its_accumulator_changes():
    paid = decision(result(1, 15_000), changes=(change(2026, deductible=2_000, oop=3_000),))
    assert accumulator_deltas(None, paid) == [AccumulatorDelta(2026, 2_000, 3_000)]


def test_a_void_takes_the_accumulator_changes_back():
    paid = decision(result(1, 15_000), changes=(change(2025, oop=500), change(2026, deductible=2_000, oop=3_000)))
    assert accumulator_deltas(paid, None) == [AccumulatorDelta(2025, 0, -500), AccumulatorDelta(2026, -2_000, -3_000)]


def test_a_new_decision_moves_the_accumulators_by_the_difference_per_year_dropping_unchanged_years():
    before = decision(result(1, 15_000), changes=(change(2025, oop=500), change(2026, deductible=2_000, oop=3_000)))
    after = decision(
        result(1, 15_000),
        changes=(change(2025, oop=500, **{"97110": 1}), change(2026, deductible=1_000, oop=3_500), change(2027, oop=100)),
    )
    assert accumulator_deltas(before, after) == [AccumulatorDelta(2026, -1_000, 500), AccumulatorDelta(2027, 0, 100)]


def test_no_decision_before_or_after_moves_nothing():
    assert accumulator_deltas(None, None) == []
    same = decision(result(1, 15_000), changes=(change(2026, deductible=2_000, oop=3_000),))
    assert accumulator_deltas(same, same) == []


# --- 9. settling a claim ---------------------------------------------------------------------


def test_settling_a_first_decision_schedules_its_payment_sets_its_periods_and_adds_its_accumulators():
    lines = [claim_line(1, JAN_2), claim_line(2, JAN_2, "80053")]
    paid = decision(result(1, 15_000, 9_000), result(2, 1_500, 1_200), changes=(change(2026, deductible=300, oop=300),))
    effects = settle_claim(claim_id=CLAIM, claim_lines=lines, provider_id=NPI, before=None, after=paid, payments=[])
    assert effects == Effects(
        periods=[PeriodChange(2026, 300, 300, {}, [standing(lines[0]), standing(lines[1])])],
        payments=[Schedule("CLM-1/0", {1: 9_000, 2: 1_200})],
        deltas=[AccumulatorDelta(2026, 300, 300)],
    )


def test_settling_a_void_reverses_the_periods_cancels_recoups_and_takes_the_accumulators_back():
    lines = [claim_line(1, JAN_2), claim_line(2, JAN_2, "80053")]
    paid = decision(result(1, 15_000, 9_000), result(2, 1_500, 1_200), changes=(change(2026, oop=300),))
    payments = [issued(0, l1=9_000), scheduled(1, l2=1_200)]
    effects = settle_claim(claim_id=CLAIM, claim_lines=lines, provider_id=NPI, before=paid, after=None, payments=payments)
    assert effects.periods == [PeriodReversal(2026)]
    assert effects.payments == [Cancel("CLM-1/1"), Recoup("CLM-1/0", {1: 9_000})]
    assert effects.deltas == [AccumulatorDelta(2026, 0, -300)]


def test_settling_a_pend_schedules_nothing_and_moves_no_accumulators():
    lines = [claim_line(1, JAN_2)]
    pended = decision(result(1, 15_000, status="pended"))
    effects = settle_claim(claim_id=CLAIM, claim_lines=lines, provider_id=NPI, before=None, after=pended, payments=[])
    assert effects == Effects(periods=[PeriodChange(2026, 0, 0, {}, [standing(lines[0])])], payments=[], deltas=[])


def test_settling_a_reviewers_decision_after_a_pend_schedules_its_payment():
    lines = [claim_line(1, JAN_2, "99215")]
    pended = decision(result(1, 30_000, status="pended"))
    reviewed = decision(result(1, 30_000, 20_000), changes=(change(2026, oop=5_000),))
    effects = settle_claim(claim_id=CLAIM, claim_lines=lines, provider_id=NPI, before=pended, after=reviewed, payments=[])
    assert effects.payments == [Schedule("CLM-1/0", {1: 20_000})]
    assert effects.deltas == [AccumulatorDelta(2026, 0, 5_000)]
