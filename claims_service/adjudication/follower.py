"""The adjudicator: follows the ledger in order and decides every submitted claim.

It reads notifications after its tracked position, in batches; for each `Claim.Submitted` it
gathers the facts from the ledger's aggregates (facts.py), runs the rule set in force on the claim's
received date (`adjudicator`, pure), and records `Claim.Adjudicated` or `Claim.Pended` with the
facts, the rule-set version and hash, together with the decision's money effects (effects.py:
accumulators, the payment it schedules). A whole batch commits in ONE transaction with the new
tracking position, so a kill at any moment leaves every claim decided exactly once, and throughput
is not capped by the commit rate.

Voids and replacements: their payments are settled in the command's commit; the adjudicator takes
them off the member's accumulators when it reaches them (a replaced claim before it decides the
replacement), being the one writer of benefit periods on the busy path (settlement.py says why).
Reviews and disputes settle all of their money in their own commits.

Partitions (``CLAIMS_ADJUDICATOR_PARTITIONS``, partitions.py): one follower per partition, each in
a process of its own, reads every notification and decides the claims of its share of the members,
with a position of its own.

Observed: each batch's time and notifications (metrics, follower "adjudicator", or
"adjudicator.<index>/<count>" for a partition); a submission that
carries a trace context gets an ``adjudicator.adjudicate`` span in its trace, from the batch's start
to its commit, and the events of its decision carry that span's context on (traces).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent, Tracking
from eventsourcing.persistence import OperationalError as StoreOperationalError
from eventsourcing.utils import get_topic

import adjudicator
from adjudicator.models import Adjustment, Decision, LineResult, Outcome
from adjudicator.review import RULESET_FAILED
from claims_service.adjudication.effects import payment_id_for
from claims_service.adjudication.facts import claim_input_of, gather_facts, plan_year, ruleset_version_on
from claims_service.adjudication.partitions import NAME, Partition, start_position
from claims_service.adjudication.settlement import settle
from claims_service.adjudication.unit_of_work import AggregateCache, Header, UnitOfWork
from claims_service.application import LedgerApplication
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.contract import Contract
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment
from claims_service.domain.provider import Provider
from claims_service.domain.rulesets import RuleSetSchedule
from claims_service.errors import ConflictError
from claims_service.ledger.following import wait_for_notification
from claims_service.observability import metrics, tracing

log = logging.getLogger(__name__)

ACTOR = "system:adjudicator"
TRACKING_NAME = NAME  # the single adjudicator's (a partition's: Partition.tracking_name)
LINGER_SECONDS = 0.02

SUBMITTED = get_topic(Claim.Submitted)
ENDED = frozenset({get_topic(Claim.Voided), get_topic(Claim.Corrected)})
ACTED_ON = [SUBMITTED, *sorted(ENDED)]


class AdjudicationFollower:
    def __init__(self, ledger: LedgerApplication, *, partition: Partition = Partition(), batch_size: int = 500,
                 cache_size: int = 50_000) -> None:
        self.ledger = ledger
        self.partition = partition
        self.tracking_name = partition.tracking_name
        self.batch_size = batch_size
        self.cache = AggregateCache(cache_size)
        self._careful_until = 0  # the last position of a batch that failed
        self._position: int | None = None  # as committed by this follower
        self._members: OrderedDict[UUID, str] = OrderedDict()  # claim -> member, when partitioned
        recorded = metrics.get()
        self._batch_seconds = recorded.follower_batch.labels(self.tracking_name)
        self._events = recorded.follower_events.labels(self.tracking_name)

    # --- the loop --------------------------------------------------------------------

    def position(self) -> int:
        """Where this follower goes on from: its recorded position, or (a partition that has none,
        or a set of partitions that went further) where every member is surely done."""
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT application_name, notification_id FROM ledger_tracking"
                         " WHERE application_name = %s OR application_name LIKE %s", (NAME, NAME + ".%"))
            recorded = {row["application_name"]: row["notification_id"] for row in curs.fetchall()}
        return start_position(recorded, self.partition)

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
        trips on) is pended for manual review (N463), like a claim the rule set cannot decide, so
        that it does not stall every claim after it. Its money moves when a reviewer decides it."""
        if notification.topic != SUBMITTED:
            raise error
        self.cache.clear()
        work = UnitOfWork(self.ledger, self.cache)
        claim = work.get(notification.originator_id)
        tracking = Tracking(self.tracking_name, notification.id)
        if claim is None or claim.status != "submitted":
            self.ledger.recorder.insert_tracking(tracking)  # type: ignore[attr-defined]
            return
        ruleset = adjudicator.get_ruleset(ruleset_version_on(work.get(RuleSetSchedule.create_id()), claim.received_on))
        log.error("claim %s could not be adjudicated (%s); pending it for manual review",
                  claim.claim_id, type(error).__name__, exc_info=error)
        claim.pend(actor=ACTOR, decision=manual_review(claim, ruleset).model_dump(mode="json"), facts={},
                   ruleset_version=ruleset.version, ruleset_hash=ruleset.content_hash,
                   pend_reasons=[RULESET_FAILED])
        self.ledger.record(claim, tracking=tracking)

    def _read(self, after: int, limit: int) -> list[Header]:
        if self.partition.count > 1:
            return self._read_with_members(after, limit)
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT notification_id, originator_id, originator_version, topic, metadata->>'traceparent' AS traceparent"
                " FROM ledger_events WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
                (after, limit),
                prepare=True,
            )
            return [Header(r["notification_id"], r["originator_id"], r["originator_version"], r["topic"], r["traceparent"])
                    for r in curs.fetchall()]

    def _read_with_members(self, after: int, limit: int) -> list[Header]:
        """The headers, each claim event's with its claim's member, from the claim's first event."""
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic,"
                " e.metadata->>'traceparent' AS traceparent, s.topic AS first_topic, s.state AS first_state"
                " FROM ledger_events e LEFT JOIN ledger_events s ON e.topic = ANY(%s)"
                "  AND s.originator_id = e.originator_id AND s.originator_version = 1"
                " WHERE e.notification_id > %s ORDER BY e.notification_id LIMIT %s",
                (ACTED_ON, after, limit),
                prepare=True,
                binary=True,  # the claims' first payloads as they are, without hex text
            )
            return [Header(r["notification_id"], r["originator_id"], r["originator_version"], r["topic"], r["traceparent"],
                           None if r["first_state"] is None
                           else self._member_of(r["originator_id"], r["first_topic"], r["first_state"]))
                    for r in curs.fetchall()]

    def _member_of(self, claim_id: UUID, topic: str, state: bytes) -> str:
        """A claim's member, from its first event as the ledger reads it (opened, whatever seals it)."""
        member = self._members.get(claim_id)
        if member is None:
            event = self.ledger.mapper.to_domain_event(StoredEvent(claim_id, 1, topic, bytes(state)))
            found = getattr(event, "member_id", None)
            member = found if isinstance(found, str) else ""
            self._members[claim_id] = member
            if len(self._members) > self.cache.capacity:
                self._members.popitem(last=False)
        return member

    def _mine(self, notification: Header) -> bool:
        """Whether this follower acts on the notification: a claim event of one of its members."""
        if notification.topic != SUBMITTED and notification.topic not in ENDED:
            return False
        return self.partition.count == 1 or self.partition.owns(notification.member_id or "")

    def run(self, stop: threading.Event, *, idle_wait: float = 1.0) -> None:
        """Follow the ledger until `stop` is set, waking on the events table's NOTIFY."""
        try:
            with psycopg.connect(self.ledger.database_url, autocommit=True) as conn:
                conn.execute("LISTEN ledger_events")
                while not stop.is_set():
                    if covered := self.process_available():
                        if covered < self.batch_size:
                            # Under a steady load a batch is followed at once by a batch of the one
                            # or two claims that came meanwhile; each commit takes the events
                            # table's lock that every submission waits for. Lingering after a
                            # partial batch takes it at most 1/LINGER_SECONDS times a second:
                            # make bench measured half as many submits over 20 ms, for about
                            # 20 ms more to a notice (README, "Scale").
                            stop.wait(LINGER_SECONDS)
                        continue
                    if wait_for_notification(conn, idle_wait, stop):
                        # Let concurrent submissions gather: one batch of many claims costs far
                        # less than many batches of one, for a few milliseconds of latency.
                        stop.wait(LINGER_SECONDS)
        except (psycopg.OperationalError, StoreOperationalError):
            # The supervisor restarts the follower; a restarted database left the pool dead.
            self.ledger.drop_dead_connections()
            raise

    # --- one batch ----------------------------------------------------------------------

    def _process(self, notifications: list[Header]) -> None:
        self.cache.forget_changed(notifications)
        try:
            self._decide_batch(notifications)
        except BaseException:
            self.cache.clear()  # it may hold changes of a batch that did not commit
            raise

    def _decide_batch(self, notifications: list[Header]) -> None:
        started = time.perf_counter()
        traced = _TracedClaims(time.time_ns()) if tracing.enabled() else None
        try:
            work = UnitOfWork(self.ledger, self.cache)
            self._prefetch(work, notifications)
            for notification in notifications:
                if not self._mine(notification):
                    continue
                if notification.topic == SUBMITTED:
                    claim = self._adjudicate(work, notification.originator_id)
                    if traced is not None and notification.traceparent and claim is not None:
                        traced.decided(notification.traceparent, claim)
                elif notification.topic in ENDED:
                    self._take_off_accumulators(work, work.get(notification.originator_id))
            tracking = Tracking(self.tracking_name, notifications[-1].id)
            if work.changed:
                self.ledger.record(*work.changed.values(), tracking=tracking,
                                   metadata=traced.metadata if traced is not None else None)
            else:
                try:
                    self.ledger.recorder.insert_tracking(tracking)  # type: ignore[attr-defined]
                except IntegrityError:
                    raise ConflictError("another adjudicator advanced past this batch") from None
        except BaseException as error:
            if traced is not None:
                traced.end(error)
            raise
        if traced is not None:
            traced.end(None)
        work.forget_transient()
        self._batch_seconds.observe(time.perf_counter() - started)
        self._events.inc(len(notifications))

    def _prefetch(self, work: UnitOfWork, notifications: list[Header]) -> None:
        """Everything the batch's claims will need, in two queries (claims and what they name, then
        the contracts their providers name)."""
        claim_ids = [n.originator_id for n in notifications if self._mine(n)]
        if not claim_ids:
            return
        work.prefetch(claim_ids + [RuleSetSchedule.create_id()])
        related: list[UUID] = []
        for claim_id in claim_ids:
            claim = work.get(claim_id)
            if not isinstance(claim, Claim):
                continue
            years = {plan_year(line["date_of_service"]) for line in claim.lines}
            related += [BenefitPeriod.create_id(claim.payer_id, claim.member_id, year) for year in years]
            if claim.status != "submitted":
                continue  # voided or replaced: only its benefit periods are touched
            related.append(MemberCoverage.create_id(claim.payer_id, claim.member_id))
            related.append(Provider.create_id(claim.provider_id))
            payment_id = Payment.create_id(payment_id_for(claim.claim_id))
            if payment_id not in work.cache:
                # Never decided, so never paid: payments follow decisions (the query would find nothing).
                work.keep(payment_id, None)
            related.append(payment_id)
            if claim.replaces_claim_id:
                related.append(UUID(claim.replaces_claim_id))
        work.prefetch(related)
        contracts = []
        for claim_id in claim_ids:
            claim = work.get(claim_id)
            deciding = isinstance(claim, Claim) and claim.status == "submitted"
            provider = work.get(Provider.create_id(claim.provider_id)) if deciding else None
            if provider is not None:
                contracts += [Contract.create_id(n["contract_id"]) for n in provider.networks if n["payer_id"] == claim.payer_id]
        work.prefetch(contracts)

    def _take_off_accumulators(self, work: UnitOfWork, claim: Claim | None) -> None:
        """A voided or replaced claim's effect comes off the member's benefit periods (once: a
        period that no longer holds it is left alone)."""
        if claim is None:
            return
        for aggregate in settle(work.get, claim, before=None, after=None, actor=ACTOR,
                                reason=f"{claim.status} claim", accumulators_only=True):
            work.add(aggregate)

    def _adjudicate(self, work: UnitOfWork, claim_id: UUID) -> Claim | None:
        """Decide the claim; return it (None when there was nothing to decide)."""
        claim = work.get(claim_id)
        if claim is None or claim.status != "submitted":
            return None  # already decided (a replay of a batch that committed) or gone
        if claim.replaces_claim_id:
            # The original's Corrected event follows this submission in the same commit: its
            # accumulators come off first, so that the replacement is judged without them.
            self._take_off_accumulators(work, work.get(UUID(claim.replaces_claim_id)))
        ruleset = adjudicator.get_ruleset(ruleset_version_on(work.get(RuleSetSchedule.create_id()), claim.received_on))
        facts = gather_facts(work.get, claim)
        try:
            decision = adjudicator.adjudicate(claim_input_of(claim), facts, ruleset)
        except Exception as error:  # a claim the rule set cannot decide must not stall every claim after it
            log.error("rule set %s could not decide claim %s (%s); pending it for manual review",
                      ruleset.version, claim.claim_id, type(error).__name__, exc_info=error)
            decision = manual_review(claim, ruleset)
            reasons = [RULESET_FAILED]
        else:
            reasons = adjudicator.pend_reasons(claim_input_of(claim), facts, ruleset) if decision.outcome == Outcome.PENDED else []
        decision_data = decision.model_dump(mode="json")
        facts_data = facts.model_dump(mode="json")
        if decision.outcome == Outcome.PENDED:
            claim.pend(actor=ACTOR, decision=decision_data, facts=facts_data, ruleset_version=ruleset.version,
                       ruleset_hash=ruleset.content_hash, pend_reasons=reasons)
        else:
            claim.adjudicate(actor=ACTOR, decision=decision_data, facts=facts_data, ruleset_version=ruleset.version,
                             ruleset_hash=ruleset.content_hash)
        work.changing(claim)
        for aggregate in settle(work.get, claim, before=None, after=decision, actor=ACTOR, reason="adjudicated"):
            work.add(aggregate)
        return claim


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


class _TracedClaims:
    """The traced claims of one batch: an ``adjudicator.adjudicate`` span each, continuing the
    trace its submission carried, from the batch's start to its commit; the decision's events
    (the claim's and its payment's) carry that span's context on."""

    def __init__(self, started_ns: int) -> None:
        self.started_ns = started_ns
        self.spans: list[object] = []
        self.metadata: dict[UUID, str] = {}

    def decided(self, traceparent: str, claim: Claim) -> None:
        span = tracing.start_span("adjudicator.adjudicate", traceparent, start_time=self.started_ns, attributes={
            "claims.outcome": str(claim.decision.get("outcome", "")) if claim.decision else "",
            "claims.ruleset_version": claim.ruleset_version or ""})
        self.spans.append(span)
        own = tracing.traceparent_of(span)
        if own is not None:
            context = tracing.metadata_json(own)
            self.metadata[claim.id] = context
            self.metadata[Payment.create_id(payment_id_for(claim.claim_id))] = context

    def end(self, error: BaseException | None) -> None:
        for span in self.spans:
            if error is not None:
                span.record_exception(error)  # type: ignore[attr-defined]
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, type(error).__name__))  # type: ignore[attr-defined]
            span.end()  # type: ignore[attr-defined]
        self.spans = []
