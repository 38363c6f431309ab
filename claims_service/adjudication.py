"""The adjudicator: follows the ledger in order and decides every submitted claim.

It reads notifications after its tracked position, in batches; for each `Claim.Submitted` it
gathers the facts from the ledger's aggregates, runs the rule set in force on the claim's received
date (`adjudicator`, pure), and records `Claim.Adjudicated` or `Claim.Pended` with the facts, the
rule-set version and hash, together with the benefit-period (accumulator) changes and any payment
it schedules. A whole batch commits in ONE transaction with the new tracking position, so a kill
at any moment leaves every claim decided exactly once, and throughput is not capped by the commit
rate. Voids and replacements take the earlier claim's effects off the accumulators in the same way.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, PersistenceError, Tracking
from eventsourcing.utils import get_topic

import adjudicator
from adjudicator.models import (
    Adjustment,
    ClaimInput,
    Decision,
    Facts,
    LineResult,
    Outcome,
)
from claims_service.application import Ledger
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.contract import Contract
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment
from claims_service.domain.provider import Provider
from claims_service.domain.rulesets import RuleSetSchedule
from claims_service.errors import ConflictError
from claims_service.notifications import wait_for_notification

log = logging.getLogger(__name__)

ACTOR = "system:adjudicator"
TRACKING_NAME = "adjudicator"
# Used when no deployment is in force on a claim's received date (a fresh ledger, or a claim
# received before the first deployment): the first released rule set.
DEFAULT_RULESET = "2026.1"
LINGER_SECONDS = 0.02

SUBMITTED = get_topic(Claim.Submitted)
VOIDED = get_topic(Claim.Voided)
REVIEW_RESOLVED = get_topic(Claim.ReviewResolved)
DISPUTE_RESOLVED = get_topic(Claim.DisputeResolved)


class AggregateCache:
    """The aggregates the adjudicator read or wrote, kept between batches (least recently used
    dropped first), so that a member's benefit period, a provider or a contract is not rebuilt
    from all of its events for every claim.

    It stays true to the ledger because the adjudicator reads every notification in order: before
    a batch is worked, ``forget_changed`` drops every aggregate that an event of the batch has moved
    past the cached version (another writer's change; the adjudicator's own events carry versions
    it already has). An absent aggregate is cached as None and dropped by any event of it. After a
    batch that did not commit, the cache holds changes the ledger never got: ``clear`` it.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[UUID, Any] = OrderedDict()

    def __contains__(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, aggregate_id: UUID) -> Any | None:
        self._items.move_to_end(aggregate_id)
        return self._items[aggregate_id]

    def put(self, aggregate_id: UUID, aggregate: Any | None) -> None:
        self._items[aggregate_id] = aggregate
        self._items.move_to_end(aggregate_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def forget_changed(self, notifications: Sequence[Header]) -> None:
        for notification in notifications:
            if notification.originator_id in self._items:
                cached = self._items[notification.originator_id]
                if cached is None or cached.version < notification.originator_version:
                    del self._items[notification.originator_id]

    def aggregates(self) -> list[Any]:
        return list(self._items.values())

    def discard(self, aggregate_id: UUID) -> None:
        self._items.pop(aggregate_id, None)

    def clear(self) -> None:
        self._items.clear()


class UnitOfWork:
    """The aggregates one batch reads and changes; everything it changed is saved together."""

    # Claims and payments are read once or twice in their lives (decided, perhaps voided later),
    # and a claim with its recorded facts is large: they leave the cache with their batch, as do
    # answers of "absent". Members, providers, contracts and benefit periods stay.
    TRANSIENT = (Claim, Payment, type(None))

    def __init__(self, ledger: Ledger, cache: AggregateCache | None = None) -> None:
        self.ledger = ledger
        self.cache = cache if cache is not None else AggregateCache()
        self.changed: dict[UUID, Any] = {}
        self.transient: set[UUID] = set()

    def get(self, aggregate_id: UUID) -> Any | None:
        if aggregate_id not in self.cache:
            try:
                self.keep(aggregate_id, self.ledger.repository.get(aggregate_id))
            except AggregateNotFoundError:
                self.keep(aggregate_id, None)
        return self.cache.get(aggregate_id)

    def prefetch(self, aggregate_ids: list[UUID]) -> None:
        """Load the aggregates a batch will read in one query instead of one each."""
        wanted = [i for i in dict.fromkeys(aggregate_ids) if i not in self.cache]
        found = self.ledger.load_many(wanted)
        for aggregate_id in wanted:
            self.keep(aggregate_id, found.get(aggregate_id))

    def add(self, aggregate: Any) -> Any:
        self.keep(aggregate.id, aggregate)
        self.changed[aggregate.id] = aggregate
        return aggregate

    def forget_transient(self) -> None:
        """Drop this batch's claims, payments and absences from the cache (the batch is done)."""
        for aggregate_id in self.transient:
            self.cache.discard(aggregate_id)

    def keep(self, aggregate_id: UUID, aggregate: Any | None) -> None:
        """Put an aggregate (None: known to be absent) in the cache for this batch."""
        self.cache.put(aggregate_id, aggregate)
        if isinstance(aggregate, self.TRANSIENT):
            self.transient.add(aggregate_id)

    def changing(self, aggregate: Any) -> Any:
        self.changed[aggregate.id] = aggregate
        return aggregate


class Header(NamedTuple):
    """A notification without its payload: all the loop needs (payloads come from the aggregates)."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str


def plan_year(day: date) -> int:
    return day.year


class AdjudicationFollower:
    def __init__(self, ledger: Ledger, *, batch_size: int = 500, cache_size: int = 50_000) -> None:
        self.ledger = ledger
        self.batch_size = batch_size
        self.cache = AggregateCache(cache_size)
        self._careful_until = 0  # the last position of a batch that failed
        self._position: int | None = None  # as committed by this follower

    # --- the loop --------------------------------------------------------------------

    def position(self) -> int:
        return self.ledger.recorder.max_tracking_id(TRACKING_NAME) or 0  # type: ignore[attr-defined]

    def process_available(self) -> int:
        """Process one batch after the tracked position; return how many notifications it covered."""
        for attempt in range(5):
            # The position this follower committed last, or the recorded one after anything failed
            # (the tracking row refuses a batch that another adjudicator took: a conflict).
            position = self._position if self._position is not None else self.position()
            self._position = None
            # After a batch failed, its notifications one at a time, to find the one that fails.
            notifications = self._read(position, 1 if position < self._careful_until else self.batch_size)
            if not notifications:
                self._position = position
                return 0
            try:
                self._process(notifications)
                self._position = notifications[-1].id
                return len(notifications)
            except ConflictError:
                # Someone changed an aggregate we read (a provider voiding a claim, say) between our
                # read and our write: nothing of ours was written; read again and redo the batch.
                log.info("adjudication batch conflicted (attempt %d); retrying", attempt + 1)
            except (PersistenceError, psycopg.Error):
                raise  # the database: the supervisor restarts us, and we go on where we stopped
            except Exception as error:
                if len(notifications) > 1:
                    self._careful_until = notifications[-1].id
                    log.error("the adjudication batch after position %d failed (%s); going through it one "
                              "notification at a time", position, type(error).__name__)
                    continue
                self._set_aside(notifications[0], error)
                self._position = notifications[0].id
                return 1
        raise ConflictError("adjudication batch kept conflicting")

    def _set_aside(self, notification: Header, error: Exception) -> None:
        """A submitted claim that cannot be adjudicated (a defect outside the rule set, or data it
        trips on) is pended for manual review, like a claim the rule set cannot decide, so that it
        does not stall every claim after it. Anything else that fails (a void, a resolution) is
        raised: stopping is better than accumulators or payments that are silently wrong."""
        if notification.topic != SUBMITTED:
            raise error
        self.cache.clear()
        work = UnitOfWork(self.ledger, self.cache)
        claim = work.get(notification.originator_id)
        tracking = Tracking(TRACKING_NAME, notification.id)
        if claim is None or claim.status != "submitted":
            self.ledger.recorder.insert_tracking(tracking)  # type: ignore[attr-defined]
            return
        ruleset = adjudicator.get_ruleset(self._ruleset_version(work, claim.received_on))
        log.error("claim %s could not be adjudicated (%s); pending it for manual review",
                  claim.claim_id, type(error).__name__, exc_info=error)
        claim.pend(actor=ACTOR, decision=manual_review(claim, ruleset).model_dump(mode="json"), facts={},
                   ruleset_version=ruleset.version, ruleset_hash=ruleset.content_hash)
        self.ledger.record(claim, tracking=tracking)

    def _read(self, after: int, limit: int) -> list[Header]:
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT notification_id, originator_id, originator_version, topic FROM ledger_events"
                " WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
                (after, limit),
                prepare=True,
            )
            return [Header(r["notification_id"], r["originator_id"], r["originator_version"], r["topic"])
                    for r in curs.fetchall()]

    def run(self, stop: threading.Event, *, idle_wait: float = 1.0) -> None:
        """Follow the ledger until `stop` is set, waking on the events table's NOTIFY."""
        with psycopg.connect(self.ledger.database_url, autocommit=True) as conn:
            conn.execute("LISTEN ledger_events")
            while not stop.is_set():
                if self.process_available():
                    continue
                if wait_for_notification(conn, idle_wait):
                    # Let concurrent submissions gather: one batch of many claims costs far less
                    # than many batches of one, for a few milliseconds of latency.
                    stop.wait(LINGER_SECONDS)

    # --- one batch ----------------------------------------------------------------------

    def _process(self, notifications: list[Header]) -> None:
        self.cache.forget_changed(notifications)
        try:
            self._decide_batch(notifications)
        except BaseException:
            self.cache.clear()  # it may hold changes of a batch that did not commit
            raise

    def _decide_batch(self, notifications: list[Header]) -> None:
        work = UnitOfWork(self.ledger, self.cache)
        self._prefetch(work, notifications)
        for notification in notifications:
            if notification.topic == SUBMITTED:
                self._adjudicate(work, notification.originator_id)
            elif notification.topic == VOIDED:
                claim = work.get(notification.originator_id)
                self._reverse(work, claim, reason="voided")
            elif notification.topic in (REVIEW_RESOLVED, DISPUTE_RESOLVED):
                self._apply_resolution(work, notification)
        tracking = Tracking(TRACKING_NAME, notifications[-1].id)
        if work.changed:
            self.ledger.record(*work.changed.values(), tracking=tracking)
        else:
            try:
                self.ledger.recorder.insert_tracking(tracking)  # type: ignore[attr-defined]
            except IntegrityError:
                raise ConflictError("another adjudicator advanced past this batch") from None
        work.forget_transient()

    def _prefetch(self, work: UnitOfWork, notifications: list[Header]) -> None:
        """Everything the batch's claims will need, in two queries (claims and what they name, then
        the contracts their providers name)."""
        claim_ids = [n.originator_id for n in notifications if n.topic in (SUBMITTED, VOIDED, REVIEW_RESOLVED, DISPUTE_RESOLVED)]
        if not claim_ids:
            return
        work.prefetch(claim_ids + [RuleSetSchedule.create_id()])
        related: list[UUID] = []
        for claim_id in claim_ids:
            claim = work.get(claim_id)
            if not isinstance(claim, Claim):
                continue
            related.append(MemberCoverage.create_id(claim.payer_id, claim.member_id))
            related.append(Provider.create_id(claim.provider_id))
            payment_id = Payment.create_id(payment_id_for(claim.claim_id))
            if claim.status == "submitted" and payment_id not in work.cache:
                # Never decided, so never paid: payments follow decisions (the query would find nothing).
                work.keep(payment_id, None)
            related.append(payment_id)
            if claim.replaces_claim_id:
                related.append(UUID(claim.replaces_claim_id))
            for year in {plan_year(line["date_of_service"]) for line in claim.lines}:
                related.append(BenefitPeriod.create_id(claim.payer_id, claim.member_id, year))
        work.prefetch(related)
        contracts = []
        for claim_id in claim_ids:
            claim = work.get(claim_id)
            provider = work.get(Provider.create_id(claim.provider_id)) if isinstance(claim, Claim) else None
            if provider is not None:
                contracts += [Contract.create_id(n["contract_id"]) for n in provider.networks if n["payer_id"] == claim.payer_id]
        work.prefetch(contracts)

    def _adjudicate(self, work: UnitOfWork, claim_id: UUID) -> None:
        claim = work.get(claim_id)
        if claim is None or claim.status != "submitted":
            return  # already decided (a replay of a batch that committed) or gone
        if claim.replaces_claim_id:
            original = work.get(UUID(claim.replaces_claim_id))
            if original is not None:
                self._reverse(work, original, reason=f"replaced by {claim.claim_id}")
        version = self._ruleset_version(work, claim.received_on)
        ruleset = adjudicator.get_ruleset(version)
        facts = self._gather_facts(work, claim)
        try:
            decision = adjudicator.adjudicate(claim_input_of(claim), facts, ruleset)
        except Exception as error:  # a claim the rule set cannot decide must not stall every claim after it
            log.error("rule set %s could not decide claim %s (%s); pending it for manual review",
                      ruleset.version, claim.claim_id, type(error).__name__, exc_info=error)
            decision = manual_review(claim, ruleset)
        decision_data = decision.model_dump(mode="json")
        facts_data = facts.model_dump(mode="json")
        record = claim.pend if decision.outcome == Outcome.PENDED else claim.adjudicate
        record(
            actor=ACTOR,
            decision=decision_data,
            facts=facts_data,
            ruleset_version=ruleset.version,
            ruleset_hash=ruleset.content_hash,
        )
        work.changing(claim)
        self._apply_to_periods(work, claim, decision)
        if decision.outcome != Outcome.PENDED and decision.total_paid_cents > 0:
            self._schedule_payment(work, claim, decision)

    # --- facts ------------------------------------------------------------------------

    def _ruleset_version(self, work: UnitOfWork, received_on: date) -> str:
        schedule = work.get(RuleSetSchedule.create_id())
        version = schedule.version_on(received_on) if schedule is not None else None
        return version or DEFAULT_RULESET

    def _gather_facts(self, work: UnitOfWork, claim: Claim) -> Facts:
        """What the rules will look at, and no more: the facts are recorded with the decision.

        Trimmed exactly, never approximately: earlier lines only on this claim's dates of service
        (a duplicate is same-day by definition; benefit limits count from the accumulators),
        prices and authorisations only for this claim's procedures.
        """
        codes = {line["procedure_code"] for line in claim.lines}
        days = {line["date_of_service"] for line in claim.lines}
        member = work.get(MemberCoverage.create_id(claim.payer_id, claim.member_id))
        coverages = []
        prior_auths: list[dict[str, Any]] = []
        if member is not None:
            coverages = coverage_periods(member)
            prior_auths = [dict(a) for a in member.prior_auths.values() if a["procedure_code"] in codes]
        years = sorted({plan_year(line["date_of_service"]) for line in claim.lines})
        accumulators = []
        earlier: list[dict[str, Any]] = []
        excluding = {claim.claim_id} | ({claim.replaces_claim_id} if claim.replaces_claim_id else set())
        for year in years:
            period = work.get(BenefitPeriod.create_id(claim.payer_id, claim.member_id, year))
            if period is not None:
                accumulators.append(period.accumulators())
                earlier += [line for line in period.earlier_lines(excluding=excluding) if line["date_of_service"] in days]
        if prior_auths:
            self._count_authorised_units(work, claim, prior_auths, excluding)
        provider = work.get(Provider.create_id(claim.provider_id))
        provider_facts = None
        fee_schedule = None
        if provider is not None:
            provider_facts = {
                "npi": provider.npi,
                "credentials": [
                    {k: c[k] for k in ("licence_number", "state", "valid_from", "valid_to", "revoked_on")}
                    for c in provider.credentials
                ],
                "networks": [
                    {k: n[k] for k in ("payer_id", "contract_id", "effective_date", "end_date")}
                    for n in provider.networks
                ],
            }
            first_day = min(line["date_of_service"] for line in claim.lines)
            for contract_id in provider.contract_ids_on(claim.payer_id, first_day):
                contract = work.get(Contract.create_id(contract_id))
                schedule = contract.fee_schedule_on(first_day) if contract is not None else None
                if schedule is not None:
                    # Only the prices of this claim's procedures: the decision cannot depend on the
                    # others, and a full schedule in every recorded decision would swamp the ledger.
                    fees = {key: cents for key, cents in schedule["fees"].items() if key.split(":")[0] in codes}
                    fee_schedule = {"contract_id": contract_id, **schedule, "fees": fees}
                    break
        return Facts.model_validate(
            {
                "received_on": claim.received_on,
                "member_known": member is not None,
                "coverages": coverages,
                "accumulators": accumulators,
                "provider": provider_facts,
                "fee_schedule": fee_schedule,
                "prior_authorizations": [
                    {k: a[k] for k in ("auth_id", "procedure_code", "units", "valid_from", "valid_to", "units_used")}
                    for a in prior_auths
                ],
                "earlier_claim_lines": [
                    {k: line[k] for k in ("claim_id", "provider_id", "date_of_service", "procedure_code", "modifiers", "units", "voided")}
                    for line in earlier
                ],
            }
        )

    def _count_authorised_units(self, work: UnitOfWork, claim: Claim, auths: list[dict[str, Any]],
                                excluding: set[str]) -> None:
        """Set each authorisation's `units_used`: the units of the member's earlier services that
        it covered (same procedure, in its window, not voided or denied), earliest authorisation
        first — the same order in which the rule spends them."""
        for auth in auths:
            auth["units_used"] = 0
        years = {y for a in auths for y in range(a["valid_from"].year, a["valid_to"].year + 1)}
        lines = []
        for year in sorted(years):
            period = work.get(BenefitPeriod.create_id(claim.payer_id, claim.member_id, year))
            if period is not None:
                lines += [line for line in period.earlier_lines(excluding=excluding) if not line["voided"]]
        ordered = sorted(auths, key=lambda a: (a["valid_from"], a["auth_id"]))
        for line in sorted(lines, key=lambda line: line["date_of_service"]):
            units = line["units"]
            for auth in ordered:
                if units and auth["procedure_code"] == line["procedure_code"] \
                        and auth["valid_from"] <= line["date_of_service"] <= auth["valid_to"]:
                    taken = min(units, auth["units"] - auth["units_used"])
                    auth["units_used"] += taken
                    units -= taken

    # --- effects ----------------------------------------------------------------------

    def _period(self, work: UnitOfWork, claim: Claim, year: int) -> BenefitPeriod:
        period = work.get(BenefitPeriod.create_id(claim.payer_id, claim.member_id, year))
        if period is None:
            period = work.add(BenefitPeriod.open(payer_id=claim.payer_id, member_id=claim.member_id, plan_year=year))
        return period

    def _apply_to_periods(self, work: UnitOfWork, claim: Claim, decision: Decision) -> None:
        changes = {c.plan_year: c for c in decision.accumulator_changes}
        # Only services that stand (paid or pended) count against later claims as duplicates: a
        # denied line may be billed again once its problem is fixed.
        denied = {r.line_number for r in decision.lines if r.status == "denied"}
        lines_by_year: dict[int, list[dict[str, Any]]] = {
            plan_year(line["date_of_service"]): [] for line in claim.lines
        }
        for line in claim.lines:
            if line["line_number"] in denied:
                continue
            lines_by_year.setdefault(plan_year(line["date_of_service"]), []).append(
                {
                    "provider_id": claim.provider_id,
                    "date_of_service": line["date_of_service"],
                    "procedure_code": line["procedure_code"],
                    "modifiers": list(line["modifiers"]),
                    "units": line["units"],
                }
            )
        for year, lines in sorted(lines_by_year.items()):
            change = changes.get(year)
            period = work.changing(self._period(work, claim, year))
            period.apply_claim(
                actor=ACTOR,
                claim_id=claim.claim_id,
                deductible_cents=change.deductible_cents if change else 0,
                oop_cents=change.oop_cents if change else 0,
                benefit_units=dict(change.benefit_units) if change else {},
                lines=lines,
            )

    def _reverse(self, work: UnitOfWork, claim: Claim | None, *, reason: str) -> None:
        if claim is None:
            return
        years = {plan_year(line["date_of_service"]) for line in claim.lines}
        for year in sorted(years):
            period = work.get(BenefitPeriod.create_id(claim.payer_id, claim.member_id, year))
            if period is not None and period.reverse_claim(actor=ACTOR, claim_id=claim.claim_id, reason=reason):
                work.changing(period)
        payment = work.get(Payment.create_id(payment_id_for(claim.claim_id)))
        if payment is not None and payment.status == "issued" and payment.reversed_cents < payment.amount_cents:
            payment.reverse(actor=ACTOR, reason=reason, amount_cents=payment.amount_cents - payment.reversed_cents)
            work.changing(payment)

    def _apply_resolution(self, work: UnitOfWork, notification: Header) -> None:
        """A review or dispute that settled a decision: move the accumulators and pay the difference."""
        claim = work.get(notification.originator_id)
        if claim is None or claim.decision is None:
            return
        decision = Decision.model_validate(claim.decision)
        self._apply_to_periods(work, claim, decision)
        if decision.total_paid_cents > 0:
            self._schedule_payment(work, claim, decision)

    def _schedule_payment(self, work: UnitOfWork, claim: Claim, decision: Decision) -> None:
        """One payment per claim decision; a later decision pays only the difference."""
        paid_before = 0
        payments = []
        while True:
            existing = work.get(Payment.create_id(payment_id_for(claim.claim_id, len(payments))))
            if existing is None:
                break
            payments.append(existing)
            paid_before += existing.amount_cents - existing.reversed_cents
        n = len(payments)
        due = decision.total_paid_cents - paid_before
        if due < 0:
            # Overpaid by a decision that was later lowered: recover from issued payments, newest
            # first. (A payment still only scheduled is recovered when it is issued and disputed.)
            for payment in reversed(payments):
                remaining = payment.amount_cents - payment.reversed_cents
                if due >= 0 or payment.status != "issued" or remaining <= 0:
                    continue
                take = min(remaining, -due)
                payment.reverse(actor=ACTOR, reason="decision lowered", amount_cents=take)
                work.changing(payment)
                due += take
            return
        if due == 0:
            return
        work.add(
            Payment.schedule(
                actor=ACTOR,
                payment_id=payment_id_for(claim.claim_id, n),
                payer_id=claim.payer_id,
                provider_id=claim.provider_id,
                claim_ids=[claim.claim_id],
                amount_cents=due,
                lines={claim.claim_id: payment_lines(claim.claim_id, decision, payments, due)},
            )
        )


def payment_lines(claim_id: str, decision: Decision, earlier: list[Payment], due: int) -> list[dict[str, int]]:
    """What this payment pays per line: the decision's paid amount less what earlier payments paid
    on that line, so that the lines add up to `due` exactly (a payment's invariant).

    Earlier payments' reversals are not itemised by line; when they make the per-line differences
    disagree with `due`, the difference is taken from (or added to) the lines in order.
    """
    before: dict[int, int] = {}
    for payment in earlier:
        for line in payment.lines.get(claim_id, []):
            before[line["line_number"]] = before.get(line["line_number"], 0) + line["paid_cents"]
    lines = [{"line_number": line.line_number, "paid_cents": max(0, line.paid_cents - before.get(line.line_number, 0))}
             for line in decision.lines]
    excess = sum(line["paid_cents"] for line in lines) - due
    for line in reversed(lines) if excess > 0 else lines[:1]:
        if excess > 0:
            take = min(excess, line["paid_cents"])
            line["paid_cents"] -= take
            excess -= take
        else:
            line["paid_cents"] -= excess  # excess <= 0: add the shortfall to the first line
            excess = 0
    return [line for line in lines if line["paid_cents"]] or [{"line_number": decision.lines[0].line_number, "paid_cents": due}]


def manual_review(claim: Claim, ruleset: adjudicator.RuleSet) -> Decision:
    """Every line held for review (OA-133, nothing paid, no accumulators moved): what a payer's
    reviewer sees when the rule set itself failed on a claim."""
    lines = [
        LineResult(line_number=line["line_number"], billed_cents=line["billed_cents"], allowed_cents=0, paid_cents=0,
                   patient_responsibility_cents=0, remarks=[], status="pended",
                   adjustments=[Adjustment(group="OA", carc="133", amount_cents=line["billed_cents"])] if line["billed_cents"] else [])
        for line in claim.lines
    ]
    billed = sum(line.billed_cents for line in lines)
    return Decision(claim_id=claim.claim_id, outcome=Outcome.PENDED, lines=lines, total_billed_cents=billed,
                    total_allowed_cents=0, total_paid_cents=0, total_patient_responsibility_cents=0,
                    accumulator_changes=[], ruleset_version=ruleset.version, ruleset_hash=ruleset.content_hash)


def payment_id_for(claim_id: str, n: int = 0) -> str:
    return f"{claim_id}/{n}"


def claim_input_of(claim: Claim) -> ClaimInput:
    return claim_input_from(vars(claim))


def claim_input_from(fields: dict[str, Any]) -> ClaimInput:
    """The engine's view of a claim, from a Claim's state or its `Claim.Submitted` payload."""
    return ClaimInput.model_validate(
        {
            "claim_id": fields["claim_id"],
            "member_id": fields["member_id"],
            "provider_id": fields["provider_id"],
            "payer_id": fields["payer_id"],
            "frequency_code": fields["frequency_code"],
            "diagnosis_codes": list(fields["diagnosis_codes"]),
            "lines": [dict(line) for line in fields["lines"]],
            "place_of_service": fields["place_of_service"],
            "original_claim_id": fields.get("replaces_claim_id"),
        }
    )


def coverage_periods(member: MemberCoverage) -> list[dict[str, Any]]:
    """The member's coverage as periods, one per plan segment, inside the coverage dates."""
    periods = []
    segments = sorted(member.segments, key=lambda s: s["effective_on"])
    for i, segment in enumerate(segments):
        start = max(segment["effective_on"], member.effective_date)
        end = member.termination_date
        if i + 1 < len(segments):
            next_start = segments[i + 1]["effective_on"] - timedelta(days=1)
            end = next_start if end is None else min(end, next_start)
        if end is not None and end < start:
            continue
        periods.append(
            {
                "member_id": member.member_id,
                "payer_id": member.payer_id,
                "plan_id": segment["plan_id"],
                "effective_date": start,
                "termination_date": end,
                "terms": segment["terms"],
            }
        )
    return periods
