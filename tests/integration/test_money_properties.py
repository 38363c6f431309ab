"""Money that reconciles, whatever the order of events: a stateful property test.

A hypothesis state machine drives the real commands and the real adjudicator on one ledger. Each
example enrols 2-3 fresh members of one payer (one with a small out-of-pocket maximum) and
interleaves, in random orders: submitting claims (office visits, labs, therapy above the 2026.1
unit limit, high-dollar claims that pend), running the adjudicator, corrections (replacements),
voids, reviews of pended claims (approved with any allowed amount, or denied), disputes opened and
resolved (upheld, or overturned under the in-force rule set, 2026.1 or 2026.2, so that money goes
both up and down) and payment runs. The adjudicator runs when a rule runs it (a submission may
run it at once), so commands also meet claims not yet decided, and the invariants hold then too.

After every step, with the read models caught up, it holds:

1. nothing voided or replaced is paid: none of its payments is scheduled or keeps any money;
2. per claim, net issued + still scheduled = the current decision's paid total (0 for a claim
   voided, replaced, pended or not yet decided), and net issued never exceeds it;
3. each member's accumulators (deductible, out-of-pocket, benefit units) equal the sum of the
   accumulator changes of the current decisions of the member's claims, within the plan's
   deductible, out-of-pocket maximum and benefit limits (a void or replacement counts until the
   adjudicator, which moves accumulators in ledger order, has taken it off);
4. each remittance a provider sees totals the sum of its entries, which is what it paid less what
   was recouped (the scheduled amount for a cancelled payment), as the ledger says;
5. `reconcile` finds every cent explained.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

import psycopg
from eventsourcing.application import AggregateNotFoundError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from adjudicator.models import Decision
from adjudicator.review import lines_to_review
from claims_service.adjudication import AdjudicationFollower
from claims_service.api.converters import payment_pb
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.payment import Payment
from claims_service.errors import AlreadyExistsError, StateError, ValidationError
from claims_service.reconcile import reconcile
from projections.payments import payments_for_claim, scheduled_payments_due
from tests import world
from tests.integration.projections.helpers import drain

PROVIDER = "provider:" + world.NPI
PAYER = "payer:" + world.PAYER
DISPUTES = "dispute:team"
YEAR = 2026
REFUSED = (StateError, AlreadyExistsError, ValidationError)  # a command the claim's state refuses: a no-op

SMALL_OOP = {**world.TERMS, "oop_max_cents": 20_000}
COINSURANCE_ONLY = {**world.TERMS, "oop_max_cents": 50_000,
                    "cost_share": {"default": {"copay_cents": 0, "coinsurance_bp": 3000}}}
PLANS = {"small-oop": SMALL_OOP, "gold": world.TERMS, "coinsurance": COINSURANCE_ONLY}

# Claim shapes the fee schedule prices: (diagnosis, [(procedure, billed cents, units)]).
# 2026.1 cuts 97110 above 4 units a day, 2026.2 allows 6: an overturn under 2026.2 pays more.
SHAPES: dict[str, tuple[str, list[tuple[str, int, int]]]] = {
    "visit-99213": ("E119", [("99213", 12_000, 1)]),
    "lab": ("E119", [("80053", 2_000, 1), ("36415", 500, 1)]),
    "therapy-6": ("M5450", [("97110", 24_000, 6)]),
    "visit-99214": ("E119", [("99214", 15_000, 1)]),
    "therapy-5": ("M5450", [("97110", 20_000, 5)]),
    "high-dollar": ("E119", [("99214", 1_200_000, 1)]),  # above review_threshold_cents: pends
}

shapes = st.sampled_from(list(SHAPES))
rulesets = st.sampled_from(["2026.2", None, "2026.1"])  # None: the one in force (2026.1)
# Few dates (the 15th, January to October), so that a member's claims meet as duplicates too.
days = st.integers(1, 10).map(lambda month: date(YEAR, month, 15))


@dataclass
class Env:
    """What every example shares: one ledger, its commands, the adjudicator, a read connection."""

    database_url: str
    service: Commands
    follower: AdjudicationFollower
    conn: psycopg.Connection[Any]
    ids: itertools.count[int]

    def settle(self) -> None:
        while self.follower.process_available():
            pass

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids)}"


def claim_payments(service: Commands, claim_id: str) -> list[Payment]:
    """Every payment of the claim (ids `<claim_id>/<n>`, dense from 0)."""
    payments = []
    while True:
        try:
            payments.append(service.ledger.repository.get(Payment.create_id(f"{claim_id}/{len(payments)}")))
        except AggregateNotFoundError:
            return payments


def expected_paid(claim: Claim) -> int:
    """The current decision's paid total: nothing unless the claim stands decided."""
    return claim.decision["total_paid_cents"] if claim.status == "adjudicated" else 0


class MoneyMachine(RuleBasedStateMachine):
    env: ClassVar[Env]

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, dict[str, Any]] = {}  # member id -> plan terms
        self.claims: list[str] = []  # every claim of this example (replacements too), oldest first
        self.member_of: dict[str, str] = {}
        self.status: dict[str, str] = {}  # as of the last invariant check
        self.open_disputes: dict[str, str] = {}  # claim id -> open dispute id
        self.scheduled: set[str] = set()  # claims with a scheduled payment, as of the last check

    # --- set-up ---------------------------------------------------------------------------

    @initialize(plans=st.lists(st.sampled_from(sorted(PLANS)), min_size=1, max_size=2))
    def enrol_members(self, plans: list[str]) -> None:
        for plan in ["small-oop", *plans]:
            member_id = self.env.fresh("M-PROP")  # never world.MEMBER
            self.env.service.enroll_member(actor=world.ADMIN, member_id=member_id, payer_id=world.PAYER,
                                           plan_id=plan, effective_date=date(YEAR, 1, 1), terms=PLANS[plan])
            self.members[member_id] = PLANS[plan]

    # --- helpers ----------------------------------------------------------------------------

    def body(self, member_id: str, shape: str, day: date) -> dict[str, Any]:
        diagnosis, lines = SHAPES[shape]
        return world.claim_body(
            self.env.fresh("key"), member_id=member_id, diagnosis_codes=[diagnosis],
            lines=[world.line(n, code, billed, units=units, day=day) for n, (code, billed, units) in enumerate(lines, 1)],
        )

    def with_status(self, *statuses: str) -> list[str]:
        return [c for c in self.claims if self.status.get(c) in statuses]

    def decided_undisputed(self) -> list[str]:
        return [c for c in self.with_status("adjudicated") if c not in self.open_disputes]

    def track(self, claim_id: str, member_id: str) -> None:
        self.claims.append(claim_id)
        self.member_of[claim_id] = member_id
        self.status[claim_id] = "submitted"

    # --- rules ------------------------------------------------------------------------------

    @rule(data=st.data(), shape=shapes, day=days, settle=st.booleans())
    def submit(self, data: st.DataObject, shape: str, day: date, settle: bool) -> None:
        member_id = data.draw(st.sampled_from(list(self.members)), label="member")
        receipt = self.env.service.submit_claim(actor=PROVIDER, **self.body(member_id, shape, day))
        self.track(receipt.claim_id, member_id)
        if settle:
            self.env.settle()

    @precondition(lambda self: self.with_status("submitted"))
    @rule()
    def run_adjudicator(self) -> None:
        self.env.settle()

    @precondition(lambda self: self.with_status("adjudicated"))
    @rule(data=st.data(), shape=shapes, day=days, settle=st.booleans())
    def correct(self, data: st.DataObject, shape: str, day: date, settle: bool) -> None:
        original = data.draw(st.sampled_from(self.with_status("adjudicated")), label="original")
        member_id = self.member_of[original]
        try:
            receipt = self.env.service.correct_claim(actor=PROVIDER, original_claim_id=original,
                                                     **self.body(member_id, shape, day))
        except REFUSED:
            return
        self.track(receipt.claim_id, member_id)
        if settle:
            self.env.settle()

    @precondition(lambda self: self.with_status("adjudicated"))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        claim_id = data.draw(st.sampled_from(self.with_status("adjudicated")), label="claim")  # disputed ones refuse
        try:
            self.env.service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=claim_id, reason="billed in error")
        except REFUSED:
            pass

    @precondition(lambda self: self.with_status("pended"))
    @rule(data=st.data(), approve=st.booleans())
    def review(self, data: st.DataObject, approve: bool) -> None:
        claim_id = data.draw(st.sampled_from(self.with_status("pended")), label="claim")
        claim = self.env.service.own_claim(claim_id)
        billed = {line["line_number"]: line["billed_cents"] for line in claim.lines}
        try:
            if approve:
                allowed = [{"line_number": n, "allowed_cents": data.draw(st.integers(0, billed[n]), label=f"allowed line {n}")}
                           for n in lines_to_review(Decision.model_validate(claim.decision))]
                self.env.service.resolve_pended_claim(actor=PAYER, payer_id=world.PAYER, claim_id=claim_id,
                                                      note="records seen", approve=allowed)
            else:
                self.env.service.resolve_pended_claim(actor=PAYER, payer_id=world.PAYER, claim_id=claim_id,
                                                      note="not medically necessary", deny=("CO", "B7"))
        except REFUSED:
            pass

    @precondition(lambda self: self.decided_undisputed())
    @rule(data=st.data(), resolve_now=st.booleans(), overturn=st.booleans(), ruleset=rulesets)
    def open_dispute(self, data: st.DataObject, resolve_now: bool, overturn: bool, ruleset: str | None) -> None:
        """Open a dispute, and resolve it at once or leave it open (the claim is then locked)."""
        claim_id = data.draw(st.sampled_from(self.decided_undisputed()), label="claim")
        try:
            dispute_id, _ = self.env.service.open_dispute(actor=PROVIDER, claim_id=claim_id, reason="please recheck")
        except REFUSED:
            return
        self.open_disputes[claim_id] = dispute_id
        if resolve_now:
            self.resolve(claim_id, overturn, ruleset)

    @precondition(lambda self: self.open_disputes)
    @rule(data=st.data(), overturn=st.booleans(), ruleset=rulesets)
    def resolve_dispute(self, data: st.DataObject, overturn: bool, ruleset: str | None) -> None:
        self.resolve(data.draw(st.sampled_from(list(self.open_disputes)), label="claim"), overturn, ruleset)

    def resolve(self, claim_id: str, overturn: bool, ruleset: str | None) -> None:
        try:
            self.env.service.resolve_dispute(
                actor=DISPUTES, claim_id=claim_id, dispute_id=self.open_disputes[claim_id],
                resolution="overturned" if overturn else "upheld", note="looked again",
                ruleset_version=ruleset if overturn else None)
        except REFUSED:
            return  # e.g. the rule set pends the claim on its facts: the dispute stays open
        del self.open_disputes[claim_id]

    @precondition(lambda self: self.scheduled)
    @rule()
    def payment_run(self) -> None:
        """The payer issues every payment that is due, as its read model lists them (caught up)."""
        due = [p.payment_id for p in scheduled_payments_due(self.env.conn, world.PAYER)]
        self.env.service.issue_payments(actor=PAYER, payer_id=world.PAYER, payment_ids=due)
        left = [p.payment_id for c in self.claims for p in claim_payments(self.env.service, c) if p.status == "scheduled"]
        assert not left, f"the payment run left {left} scheduled"

    # --- the invariants ---------------------------------------------------------------------

    @invariant()
    def money_is_explained(self) -> None:
        service = self.env.service
        drain(self.env.database_url)  # the read models catch up (the adjudicator runs only as a rule)
        claims = {c: service.own_claim(c) for c in self.claims}
        self.status = {c: claim.status for c, claim in claims.items()}
        self.scheduled = set()
        for claim_id, claim in claims.items():
            payments = claim_payments(service, claim_id)
            if any(p.status == "scheduled" for p in payments):
                self.scheduled.add(claim_id)
            self.holds_for_payments(claim, payments)
            self.holds_for_remittances(claim_id, payments)
        for member_id, terms in self.members.items():
            self.holds_for_accumulators(member_id, terms, [c for c in claims.values() if c.member_id == member_id])
        report = reconcile(self.env.database_url, wait_seconds=0)
        assert report.clean, report.summary()

    def holds_for_payments(self, claim: Claim, payments: list[Payment]) -> None:
        shown = [(p.payment_id, p.status, p.amount_cents, p.reversed_cents) for p in payments]
        if claim.status in ("voided", "replaced"):  # 1.
            assert all(p.net_cents == 0 and p.status != "scheduled" for p in payments), \
                f"{claim.status} claim {claim.claim_id} still has money: {shown}"
        issued = sum(p.net_cents for p in payments)
        scheduled = sum(p.amount_cents for p in payments if p.status == "scheduled")
        due = expected_paid(claim)
        assert issued + scheduled == due, (  # 2.
            f"claim {claim.claim_id} ({claim.status}): issued {issued} + scheduled {scheduled} != due {due}; {shown}")
        assert issued <= due, f"claim {claim.claim_id} ({claim.status}): issued {issued} > due {due}; {shown}"

    def holds_for_remittances(self, claim_id: str, payments: list[Payment]) -> None:
        ledger = {p.payment_id: p for p in payments}
        read = payments_for_claim(self.env.conn, claim_id)
        assert sorted(p.payment_id for p in read) == sorted(ledger), (claim_id, [p.payment_id for p in read], list(ledger))
        for p in read:  # 4.
            pb = payment_pb(p)
            entries = sum(c.amount_cents for c in pb.claims)
            expected = p.amount_cents if p.status == "cancelled" else p.amount_cents - p.reversed_cents
            assert pb.amount_cents == entries == expected, (p.payment_id, p.status, pb.amount_cents, entries, expected)
            truth = ledger[p.payment_id]
            assert (p.status, p.amount_cents, p.reversed_cents) == (truth.status, truth.amount_cents, truth.reversed_cents)

    def holds_for_accumulators(self, member_id: str, terms: dict[str, Any], claims: list[Claim]) -> None:
        try:
            period = self.env.service.ledger.repository.get(BenefitPeriod.create_id(world.PAYER, member_id, YEAR))
        except AggregateNotFoundError:
            period = None
        deductible = oop = 0
        units: dict[str, int] = {}
        pending = [0, 0, {}]  # voids and replacements the adjudicator has yet to take off
        for claim in claims:  # 3.
            if claim.status == "adjudicated":
                for change in claim.decision["accumulator_changes"]:
                    if change["plan_year"] == YEAR:
                        deductible += change["deductible_cents"]
                        oop += change["oop_cents"]
                        for code, used in change["benefit_units"].items():
                            units[code] = units.get(code, 0) + used
            elif claim.status in ("voided", "replaced") and period is not None:
                record = period.claims.get(claim.claim_id)
                if record is not None and not record["reversed"]:
                    pending[0] += record["deductible_cents"]
                    pending[1] += record["oop_cents"]
                    for code, used in record["benefit_units"].items():
                        pending[2][code] = pending[2].get(code, 0) + used
        if period is None:
            met = (0, 0, {})
        else:
            met = (period.deductible_met_cents - pending[0], period.oop_met_cents - pending[1],
                   {k: v - pending[2].get(k, 0) for k, v in period.benefit_units.items() if v - pending[2].get(k, 0)})
        assert met == (deductible, oop, units), \
            f"member {member_id}: accumulators {met} != decisions {(deductible, oop, units)}"
        assert met[0] <= terms["deductible_cents"] and met[1] <= terms["oop_max_cents"], \
            f"member {member_id}: accumulators {met} beyond the plan's {terms['deductible_cents'], terms['oop_max_cents']}"
        assert all(used <= terms["benefit_limits"].get(code, used) for code, used in units.items()), \
            f"member {member_id}: benefit units {units} beyond the plan's {terms['benefit_limits']}"


def test_money_reconciles_whatever_the_order_of_events(database_url: str) -> None:
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    world.set_up(service)
    conn = psycopg.connect(database_url, autocommit=True)
    MoneyMachine.env = Env(database_url, service, AdjudicationFollower(ledger), conn, itertools.count(1))
    try:
        run_state_machine_as_test(MoneyMachine, settings=settings(
            max_examples=12, stateful_step_count=25, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
    finally:
        conn.close()
        service.close()
        ledger.close()
