"""Reconciliation: every cent explained, from the ledger alone (`claimsctl reconcile`).

Reads every money event of the ledger once, in position order, and checks what a payer's auditor
checks every night:

1. Per claim and line: issued − recouped + still scheduled = the current decision's paid amount,
   and nothing at all for a claim that is voided, replaced or not decided; no payment is issued
   after the claim was voided or replaced, nor recouped beyond what it paid.
2. Per member and plan year: the accumulators (deductible and out-of-pocket met) equal the sum of
   the current decisions' accumulator changes over the claims that stand, and stay within the
   plan's deductible and out-of-pocket maximum.
3. The read models agree with the ledger: each claim's status and paid total (``claim_status``),
   each payment's status, amount and recoupments (``payments``), each benefit period's
   accumulators (``member_accumulators``).
4. Each claim has one request row (``claim_requests``, migration 0027), under the request id of
   its own submission (its provider and idempotency key), and no row names a claim the ledger
   does not have: the rows are not hash-linked, and a retried submission is answered by them.

Member data is sealed under each member's own key (``claims_service.keys``), and nothing here
needs it but the member a claim, a benefit period or a coverage belongs to and the coverage's dates:
those few events are opened with the member keys read in the same snapshot. A member whose key
was destroyed (erased) is counted under their pseudonymous key id (``erased:<key id>``), their money
still reconciled (amounts, claim and payment ids and plan terms are never sealed), their plan
limits checked against the largest of their plan's terms (the coverage dates are gone), and their
streams, which the read models purged, left out of the read-model comparison. Without the
key-encryption keys every sealed member is counted that way.

The ledger is read, in one snapshot, up to its head. Two things move at their own pace and are
allowed for: the read models (each row is compared only if neither it nor the ledger's record of
it changed after the lowest position the three read models have reached; the rest are skipped and
counted), and the adjudicator, which takes a voided or replaced claim off the accumulators after
the void's own commit (a claim it has not reached yet still counts on the accumulators and is
counted as in flight; one it has passed must be off them). Nothing here writes.
"""

from __future__ import annotations

import gc
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import psycopg
from eventsourcing.utils import get_topic
from psycopg.rows import dict_row, tuple_row

from claims_service.adjudication.effects import PaymentSoFar, spread_unitemised
from claims_service.adjudication.partitions import NAME as ADJUDICATOR
from claims_service.adjudication.partitions import done_for_every_member, position_for_member
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.erasure import MemberErasure
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment
from claims_service.keys.kek import KeyEncryptionKeyError
from claims_service.keys.store import BatchKeys, fresh_keys
from claims_service.ledger.chain import EVENTS_TABLE
from claims_service.ledger.payloads import SEALED, MemberKeys, open_payload, sealed_key_id

READ_MODELS = ("claim_status", "payments", "benefits")
CHUNK = 20_000

T = {name: get_topic(cls) for name, cls in {
    "submitted": Claim.Submitted, "adjudicated": Claim.Adjudicated, "pended": Claim.Pended,
    "reviewed": Claim.ReviewResolved, "disputed": Claim.DisputeResolved, "voided": Claim.Voided,
    "corrected": Claim.Corrected, "scheduled": Payment.Scheduled, "issued": Payment.Issued,
    "cancelled": Payment.Cancelled, "recouped": Payment.Recouped, "reversed": Payment.Reversed,
    "applied": BenefitPeriod.ClaimApplied, "period_reversed": BenefitPeriod.ClaimReversed,
    "opened": BenefitPeriod.Opened, "enrolled": MemberCoverage.Enrolled, "changed": MemberCoverage.Changed,
    "erased": MemberErasure.Recorded,
}.items()}
KIND = {topic: name for name, topic in T.items()}
# The events whose sealed member data is read here: whose member it is, and the coverage's dates.
OPENED = frozenset({"submitted", "opened", "enrolled", "changed"})


@dataclass
class ClaimMoney:
    payer_id: str
    member_id: str
    first_position: int
    last_position: int = 0
    status: str = "submitted"
    decision: dict[str, Any] | None = None
    ended_at: int | None = None  # position of the void or replacement
    payments: list[str] = field(default_factory=list)
    request_id: str | None = None  # of its submission; None when its idempotency key is sealed away


@dataclass
class PaymentMoney:
    payment_id: str
    claim_ids: list[str]
    amount_cents: int
    lines: dict[str, dict[int, int]]
    first_position: int
    last_position: int
    status: str = "scheduled"
    recouped: dict[str, dict[int, int]] = field(default_factory=dict)
    recouped_cents: int = 0


@dataclass
class PeriodMoney:
    payer_id: str
    member_id: str
    plan_year: int
    first_position: int
    last_position: int
    deductible_met_cents: int = 0
    oop_met_cents: int = 0
    claims: dict[str, tuple[int, int, bool]] = field(default_factory=dict)  # claim -> (deductible, oop, reversed)


@dataclass(frozen=True)
class Difference:
    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}: {self.detail}"


@dataclass
class Report:
    position: int = 0
    events: int = 0
    seconds: float = 0.0
    claims: int = 0
    payments: int = 0
    periods: int = 0
    scheduled_cents: int = 0
    issued_cents: int = 0
    cancelled_cents: int = 0
    recouped_cents: int = 0
    rows_compared: int = 0
    rows_skipped: int = 0
    in_flight: int = 0
    """Voided or replaced claims the adjudicator has yet to take off the accumulators."""
    erased_members: int = 0
    """Members whose data was erased (counted by their key id; their streams not compared)."""
    sealed_unopened: bool = False
    """Sealed member data could not be opened here (no key-encryption keys)."""
    differences: list[Difference] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        money = (f"scheduled {cents(self.scheduled_cents)}, issued {cents(self.issued_cents)}, "
                 f"cancelled {cents(self.cancelled_cents)}, recouped {cents(self.recouped_cents)}")
        head = (f"reconciled the ledger up to position {self.position}: {self.events} events in {self.seconds:.2f} s "
                f"({self.events_per_second:,.0f} events/s); {self.claims} claims, {self.payments} payments, "
                f"{self.periods} benefit periods; {money}; {self.rows_compared} read-model rows compared"
                f" ({self.rows_skipped} changed after the read models' position, skipped; {self.in_flight} voids"
                " or replacements not yet off the accumulators)")
        if self.erased_members:
            head += f"; {self.erased_members} erased member(s) reconciled by key id"
        if self.sealed_unopened:
            head += "; member data not opened here (no key-encryption keys): members counted by key id"
        if self.clean:
            return head + "\nclean: every cent is explained"
        return head + f"\n{len(self.differences)} difference(s); the first: {self.differences[0]}"

    def as_json(self) -> dict[str, Any]:
        return {
            "clean": self.clean, "position": self.position, "events": self.events, "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_second), "claims": self.claims, "payments": self.payments,
            "benefit_periods": self.periods, "scheduled_cents": self.scheduled_cents, "issued_cents": self.issued_cents,
            "cancelled_cents": self.cancelled_cents, "recouped_cents": self.recouped_cents,
            "rows_compared": self.rows_compared, "rows_skipped": self.rows_skipped, "in_flight": self.in_flight,
            "erased_members": self.erased_members, "sealed_unopened": self.sealed_unopened,
            "differences": [{"kind": d.kind, "subject": d.subject, "detail": d.detail} for d in self.differences],
        }


def cents(amount: int) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100}.{abs(amount) % 100:02d}"


# Where the fields reconciliation reads end in a payload, by event kind: what follows is cut off
# before parsing (a decision's recorded facts, a benefit period's claim lines, a claim's lines).
CUT_AT = {
    **dict.fromkeys(("adjudicated", "pended", "reviewed", "disputed"), (b',"facts":', "decision")),
    "applied": (b',"lines":', "oop_cents"),
    "submitted": (b',"visit_id":', "payer_id"),
}
# A field wanted from the part cut off: the claim's idempotency key, declared after its lines.
TAIL_FROM = {"submitted": b',"idempotency_key":'}


def payload(state: bytes, kind: str, keys: MemberKeys | None = None) -> dict[str, Any]:
    """The stored payload, parsed; dates and timestamps stay as the transcoder's markers (only the
    members' dates are read here: see `marked_date`), which skips the projections' marker pass.

    Most of a decision's payload is its recorded facts, most of a claim's its lines, and nothing
    here reads them: they are cut off before parsing (`CUT_AT`). The ledger's transcoder writes an
    event's fields in the order its class declares them (the decision before the facts; payer and
    member before the visit and the lines), and a quote inside a JSON string is always escaped, so
    the first such key is the top-level one; what follows it is dropped and the object closed.

    A member-sealed payload is read as its plain fields, opened (`OPENED`) only where the member
    or the coverage's dates are needed (an erased one then has ``"_erased_": true`` and its key
    id as ``_key_``)."""
    key_id = sealed_key_id(state)
    if key_id is not None:
        if kind in OPENED:
            found: dict[str, Any] = orjson.loads(open_payload(state, keys=keys))
        else:
            found = orjson.loads(state)
            found.pop(SEALED, None)
        found["_key_"] = key_id
        return found
    if state[:1] != b"{":
        return _parsed(open_payload(state), kind)
    try:
        return _parsed(state, kind)
    except orjson.JSONDecodeError:  # not JSON after all: a sealed payload whose nonce began with "{"
        return _parsed(open_payload(state), kind)


def _parsed(raw: bytes, kind: str) -> dict[str, Any]:
    """A payload's JSON parsed, cut short where its kind allows (`CUT_AT`), with the fields from
    `TAIL_FROM`'s key on added back."""
    if kind in CUT_AT:
        key, needed = CUT_AT[kind]
        cut = raw.find(key)
        if cut > 0:
            try:
                head = orjson.loads(raw[:cut] + b"}")
                tail = raw.rfind(TAIL_FROM[kind], cut) if kind in TAIL_FROM else -1
                if tail > 0:  # the object's rest from that key on; the payload's own brace closes it
                    head.update(orjson.loads(b"{" + raw[tail + 1:]))
            except orjson.JSONDecodeError:
                head = {}
            if needed in head:
                return head  # else not laid out as expected: parse it whole
    parsed: dict[str, Any] = orjson.loads(raw)
    return parsed


def marked_date(value: Any) -> date:
    """A date as the ledger's transcoder stores it: {"_type_": "date_iso", "_data_": "YYYY-MM-DD"};
    a date that was erased with its member as the earliest date (in force from the start)."""
    if value is None:
        return date.min
    return date.fromisoformat(value["_data_"] if isinstance(value, dict) else value)


def member_of(p: dict[str, Any]) -> str:
    """Whose a claim, benefit period or coverage is: the member id, or, once erased (or when the
    member keys are not at hand), ``erased:<the member's key id>``."""
    member = p.get("member_id")
    return member if isinstance(member, str) else f"erased:{p.get('_key_')}"


def chunk_keys(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], report: Report) -> MemberKeys | None:
    """The member keys the chunk's opened events need, read in the reconciliation's snapshot (none
    without the key-encryption keys: those members are then counted by key id)."""
    wanted = {key for _, _, topic, state in rows if KIND[topic] in OPENED and (key := sealed_key_id(state)) is not None}
    if not wanted:
        return None
    try:
        return fresh_keys(conn, wanted)
    except KeyEncryptionKeyError:
        report.sealed_unopened = True
        return BatchKeys(dict.fromkeys(wanted))


def tracked_positions(conn: psycopg.Connection[Any]) -> tuple[int, dict[str, int]]:
    """(the lowest position the compared read models have reached, the adjudicator's positions by
    tracking name: one, or one per partition, see adjudication/partitions.py)."""
    names = [f"projection.{name}" for name in READ_MODELS]
    rows = conn.execute("SELECT application_name, notification_id FROM ledger_tracking"
                        " WHERE application_name = ANY(%s) OR application_name = %s OR application_name LIKE %s",
                        (names, ADJUDICATOR, ADJUDICATOR + ".%")).fetchall()
    found = {row[0]: int(row[1]) for row in rows}
    return min(found.get(name, 0) for name in names), {k: v for k, v in found.items() if k not in names}


def reconcile(database_url: str, *, wait_seconds: float = 30.0) -> Report:
    """Reconcile the ledger and its read models (see the module docstring)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        head = int(conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()[0])
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            read_models_at, adjudicators = tracked_positions(conn)
            if min(read_models_at, done_for_every_member(adjudicators)) >= head:
                break
            time.sleep(0.05)
    started = time.perf_counter()
    # Hundreds of thousands of small, acyclic dicts: the collector would walk them again and again
    # for nothing (close to half of the time over the bench's 200,000 events, measured).
    collecting = gc.isenabled()
    gc.disable()
    try:
        report = _reconcile(database_url)
    finally:
        if collecting:
            gc.enable()
    report.seconds = time.perf_counter() - started
    return report


def _reconcile(database_url: str) -> Report:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        read_models_at, adjudicators = tracked_positions(conn)
        position = int(conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()[0])
        ledger = LedgerMoney()
        report = Report(position=position)
        # In chunks of positions over the binary protocol (payloads arrive as bytes, not hex text);
        # stream ids as text (the keys used throughout); an issue's payload is not needed.
        query = (f"SELECT notification_id, originator_id::text, topic, CASE WHEN topic = %s THEN NULL ELSE state END"
                 f" FROM {EVENTS_TABLE} WHERE notification_id > %s AND notification_id <= %s AND topic = ANY(%s)"
                 " ORDER BY notification_id LIMIT %s")
        after = 0
        with conn.cursor(binary=True, row_factory=tuple_row) as cur:
            while True:
                rows = cur.execute(query, (T["issued"], after, position, list(KIND), CHUNK)).fetchall()
                keys = chunk_keys(conn, rows, report)
                for row in rows:
                    ledger.apply(*row, keys=keys)
                if len(rows) < CHUNK:
                    break
                after = rows[-1][0]
        report.events = ledger.events
        ledger.check(report, adjudicators)
        compare_read_models(conn, ledger, read_models_at, report)
        compare_claim_requests(conn, ledger, report)
    return report


class LedgerMoney:
    """Claims, payments, benefit periods and plans as the money events leave them."""

    def __init__(self) -> None:
        self.events = 0
        self.claims: dict[str, ClaimMoney] = {}
        self.payments: dict[str, PaymentMoney] = {}
        self.payment_streams: dict[Any, str] = {}
        self.periods: dict[Any, PeriodMoney] = {}
        self.plans: dict[tuple[str, str], list[tuple[date, dict[str, Any]]]] = {}  # plan terms from each date
        self.members: dict[Any, tuple[str, str]] = {}  # MemberCoverage stream -> (payer, member)
        self.issued_after_end: list[Difference] = []
        self.totals = {"scheduled": 0, "issued": 0, "cancelled": 0, "recouped": 0}
        self.erased_streams: set[str] = set()  # the streams erasures purged from the read models
        self.erased_members: set[str] = set()
        # "erased:<key id>" -> the member id, learnt from a stream that began before member keys
        # (its first event names the member) and went on under the member's key.
        self.aliases: dict[str, str] = {}

    def apply(self, position: int, stream: str, topic: str, state: bytes | None, keys: MemberKeys | None = None) -> None:
        self.events += 1
        kind = KIND[topic]
        p = payload(state, kind, keys) if state is not None else {}
        if kind in OPENED and not isinstance(p.get("member_id"), str):
            self.erased_members.add(member_of(p))
        elif "_key_" in p and kind not in OPENED:
            owner = self._owner(stream)
            if owner is not None and not owner.startswith("erased:"):
                self.aliases[f"erased:{p['_key_']}"] = owner
        if kind == "submitted":
            key = p.get("idempotency_key")
            self.claims[stream] = ClaimMoney(p["payer_id"], member_of(p), position, position, request_id=(
                str(Claim.request_id_of(p["provider_id"], key)) if isinstance(key, str) else None))
        elif kind == "erased":
            self.erased_streams.update(p["streams"])
        elif kind in ("adjudicated", "pended", "reviewed", "disputed", "voided", "corrected"):
            claim = self.claims[stream]
            claim.last_position = position
            if p.get("decision") is not None:
                claim.decision = p["decision"]
            if kind in ("adjudicated", "reviewed"):
                claim.status = "adjudicated"
            elif kind == "pended":
                claim.status = "pended"
            elif kind in ("voided", "corrected"):
                claim.status = "voided" if kind == "voided" else "replaced"
                claim.ended_at = position
        elif kind == "scheduled":
            payment = PaymentMoney(p["payment_id"], list(p["claim_ids"]), p["amount_cents"],
                                   {c: {line["line_number"]: line["paid_cents"] for line in lines} for c, lines in p["lines"].items()},
                                   position, position)
            self.payments[payment.payment_id] = payment
            self.payment_streams[stream] = payment.payment_id
            for claim_id in payment.claim_ids:
                self.claims[claim_id].payments.append(payment.payment_id)
            self.totals["scheduled"] += payment.amount_cents
        elif kind in ("issued", "cancelled", "recouped", "reversed"):
            payment = self.payments[self.payment_streams[stream]]
            payment.last_position = position
            self._payment_event(position, kind, payment, p)
        elif kind == "opened":
            self.periods[stream] = PeriodMoney(p["payer_id"], member_of(p), p["plan_year"], position, position)
        elif kind == "applied":
            period = self.periods[stream]
            period.last_position = position
            previous = period.claims.get(p["claim_id"])
            if previous is not None and not previous[2]:
                period.deductible_met_cents -= previous[0]
                period.oop_met_cents -= previous[1]
            period.deductible_met_cents += p["deductible_cents"]
            period.oop_met_cents += p["oop_cents"]
            period.claims[p["claim_id"]] = (p["deductible_cents"], p["oop_cents"], False)
        elif kind == "period_reversed":
            period = self.periods[stream]
            period.last_position = position
            deductible, oop, _ = period.claims[p["claim_id"]]
            period.deductible_met_cents -= deductible
            period.oop_met_cents -= oop
            period.claims[p["claim_id"]] = (deductible, oop, True)
        elif kind == "enrolled":
            key = self.members[stream] = (p["payer_id"], member_of(p))
            self.plans[key] = [(marked_date(p.get("effective_date")), p["terms"])]
        elif kind == "changed" and p.get("terms") is not None:
            key = self.members[stream]
            on = marked_date(p.get("effective_on"))
            # An erased change's date is gone: its terms join the others (the largest is checked).
            self.plans[key] = [s for s in self.plans[key] if s[0] < on or on == date.min] + [(on, p["terms"])]

    def _owner(self, stream: str) -> str | None:
        claim = self.claims.get(stream)
        if claim is not None:
            return claim.member_id
        period = self.periods.get(stream)
        if period is not None:
            return period.member_id
        member = self.members.get(stream)
        return member[1] if member is not None else None

    def _resolve_aliases(self) -> None:
        """Count a member whose key is gone under their member id where an older stream of theirs names it."""
        if not self.aliases:
            return
        for claim in self.claims.values():
            claim.member_id = self.aliases.get(claim.member_id, claim.member_id)
        for period in self.periods.values():
            period.member_id = self.aliases.get(period.member_id, period.member_id)
        plans: dict[tuple[str, str], list[tuple[date, dict[str, Any]]]] = {}
        for (payer, member), segments in self.plans.items():
            plans.setdefault((payer, self.aliases.get(member, member)), []).extend(segments)
        self.plans = {key: sorted(segments, key=lambda s: s[0]) for key, segments in plans.items()}
        self.erased_members -= set(self.aliases)

    def _payment_event(self, position: int, kind: str, payment: PaymentMoney, p: dict[str, Any]) -> None:
        if kind == "issued":
            payment.status = "issued"
            self.totals["issued"] += payment.amount_cents
            for claim_id in payment.claim_ids:
                claim = self.claims[claim_id]
                if claim.ended_at is not None and claim.ended_at < position:
                    self.issued_after_end.append(Difference(
                        "payment", payment.payment_id,
                        f"issued at position {position}, after its claim {claim_id} was {claim.status} at {claim.ended_at}"))
        elif kind == "cancelled":
            payment.status = "cancelled"
            self.totals["cancelled"] += payment.amount_cents
        else:
            payment.status = "recouped"
            payment.recouped_cents += p["amount_cents"]
            self.totals["recouped"] += p["amount_cents"]
            taken = p.get("lines") or {}
            if not taken:  # recorded before recoupments were itemised
                claim_id = payment.claim_ids[0]
                spread_unitemised(p["amount_cents"], payment.lines[claim_id], payment.recouped.setdefault(claim_id, {}))
                return
            for claim_id, lines in taken.items():
                recouped = payment.recouped.setdefault(claim_id, {})
                for line in lines:
                    recouped[line["line_number"]] = recouped.get(line["line_number"], 0) + line["paid_cents"]

    # --- the checks ----------------------------------------------------------------------

    def check(self, report: Report, adjudicators: dict[str, int]) -> None:
        self._resolve_aliases()
        report.claims, report.payments, report.periods = len(self.claims), len(self.payments), len(self.periods)
        report.erased_members = len({m for m in self.erased_members if m.startswith("erased:")})
        report.scheduled_cents = self.totals["scheduled"]
        report.issued_cents = self.totals["issued"]
        report.cancelled_cents = self.totals["cancelled"]
        report.recouped_cents = self.totals["recouped"]
        found = report.differences
        found += self.issued_after_end
        for claim_id, claim in self.claims.items():
            found += self._check_claim(claim_id, claim)
        expected: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
        for claim in self.claims.values():
            if claim.status == "adjudicated" and claim.decision is not None:
                for change in claim.decision.get("accumulator_changes", []):
                    entry = expected[(claim.payer_id, claim.member_id, change["plan_year"])]
                    entry[0] += change["deductible_cents"]
                    entry[1] += change["oop_cents"]
        # A void or replacement the adjudicator has not reached still counts where it stands (and
        # is not held against the plan's limits).
        in_flight: dict[tuple[str, str, int], list[int]] = defaultdict(lambda: [0, 0])
        for period in self.periods.values():
            key = (period.payer_id, period.member_id, period.plan_year)
            # The adjudicator (its partition of the member) that takes the member's voids off; an
            # erased member's id is gone, so the position every partition has surely reached.
            adjudicator_at = (done_for_every_member(adjudicators) if period.member_id.startswith("erased:")
                              else position_for_member(adjudicators, period.member_id))
            for claim_id, (deductible, oop, reversed_) in period.claims.items():
                claim = self.claims.get(claim_id)
                if reversed_ or claim is None or claim.ended_at is None or claim.ended_at <= adjudicator_at:
                    continue
                for totals in (expected[key], in_flight[key]):
                    totals[0] += deductible
                    totals[1] += oop
                report.in_flight += 1
        for period in self.periods.values():
            key = (period.payer_id, period.member_id, period.plan_year)
            subject = f"{period.payer_id}/{period.member_id}/{period.plan_year}"
            want = expected.pop(key, [0, 0])
            if [period.deductible_met_cents, period.oop_met_cents] != want:
                found.append(Difference("accumulators", subject,
                                        f"deductible {cents(period.deductible_met_cents)} and out-of-pocket "
                                        f"{cents(period.oop_met_cents)} met; the current decisions say "
                                        f"{cents(want[0])} and {cents(want[1])}"))
            deductible, oop_max = self._plan_limits(period.payer_id, period.member_id, period.plan_year)
            pending = in_flight.get(key, [0, 0])
            if oop_max is not None and period.oop_met_cents - pending[1] > oop_max:
                found.append(Difference("accumulators", subject, f"out-of-pocket met {cents(period.oop_met_cents)} "
                                        f"exceeds the plan's maximum {cents(oop_max)}"))
            if deductible is not None and period.deductible_met_cents - pending[0] > deductible:
                found.append(Difference("accumulators", subject, f"deductible met {cents(period.deductible_met_cents)} "
                                        f"exceeds the plan's deductible {cents(deductible)}"))
        for (payer, member, year), want in expected.items():
            if want != [0, 0]:
                found.append(Difference("accumulators", f"{payer}/{member}/{year}",
                                        f"decisions move {cents(want[0])} deductible and {cents(want[1])} out-of-pocket, "
                                        "but the member has no benefit period for the year"))

    def _check_claim(self, claim_id: str, claim: ClaimMoney) -> list[Difference]:
        due: dict[int, int] = {}
        if claim.status == "adjudicated" and claim.decision is not None:
            due = {line["line_number"]: line["paid_cents"] for line in claim.decision["lines"]}
        held: dict[int, int] = defaultdict(int)
        pending: dict[int, int] = defaultdict(int)
        found = []
        for payment_id in claim.payments:
            payment = self.payments[payment_id]
            so_far = PaymentSoFar(payment_id, payment.status, payment.lines.get(claim_id, {}),
                                  payment.recouped.get(claim_id, {}))
            for number in so_far.paid:
                pending[number] += so_far.pending(number)
                held[number] += so_far.net(number)
                if so_far.recouped.get(number, 0) > so_far.paid[number]:
                    found.append(Difference("payment", payment_id, f"line {number} recouped beyond what it paid"))
        for number in sorted(set(due) | set(held) | set(pending)):
            owed = due.get(number, 0)
            if held[number] > owed:
                found.append(Difference("claim", claim_id, f"line {number}: net issued {cents(held[number])} exceeds "
                                        f"the {claim.status} claim's paid amount {cents(owed)}"))
            elif held[number] + pending[number] != owed:
                found.append(Difference("claim", claim_id, f"line {number}: issued {cents(held[number])} + scheduled "
                                        f"{cents(pending[number])} != the {claim.status} claim's paid amount {cents(owed)}"))
        return found

    def _plan_limits(self, payer: str, member: str, year: int) -> tuple[int | None, int | None]:
        """The largest deductible and out-of-pocket maximum of the plans in force during the year."""
        segments = self.plans.get((payer, member), [])
        in_year = [terms for i, (start, terms) in enumerate(segments)
                   if start <= date(year, 12, 31)
                   and (i + 1 == len(segments) or segments[i + 1][0] > date(year, 1, 1) or segments[i + 1][0] == date.min)]
        if not in_year:
            return None, None
        return max(t["deductible_cents"] for t in in_year), max(t["oop_max_cents"] for t in in_year)


def compare_read_models(conn: psycopg.Connection[Any], ledger: LedgerMoney, position: int, report: Report) -> None:
    """Each read-model row against the ledger, where both stood still since `position` (the lowest
    the read models have reached): a row, or a ledger record, that changed after it is skipped."""

    def claim_status(row: dict[str, Any]) -> tuple[int, Any, str]:
        claim = ledger.claims.get(row["claim_id"])
        if claim is None:
            return 0, None, "a claim the ledger does not have"
        return claim.last_position, (claim.status, (claim.decision or {}).get("total_paid_cents")), "(status, paid)"

    def payments(row: dict[str, Any]) -> tuple[int, Any, str]:
        payment = ledger.payments.get(row["payment_id"])
        if payment is None:
            return 0, None, "a payment the ledger does not have"
        return payment.last_position, (payment.status, payment.amount_cents, payment.recouped_cents), \
            "(status, amount, recouped)"

    def member_accumulators(row: dict[str, Any]) -> tuple[int, Any, str]:
        period = ledger.periods.get(str(row["stream_id"]))
        if period is None:
            return 0, None, "a benefit period the ledger does not have"
        return period.last_position, (period.deductible_met_cents, period.oop_met_cents), "(deductible, out-of-pocket met)"

    checks = (
        ("claim_status", "claim_id", ("status", "total_paid_cents"), claim_status),
        ("payments", "payment_id", ("status", "amount_cents", "reversed_cents"), payments),
        ("member_accumulators", "stream_id", ("deductible_met_cents", "oop_met_cents"), member_accumulators),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        for table, key, compared, ledger_side in checks:
            extra = ", payer_id, member_id, plan_year" if table == "member_accumulators" else ""
            cur.execute(f"SELECT {key}, {', '.join(compared)}{extra}, last_position FROM {table}")
            for row in cur:
                changed_at, want, what = ledger_side(row)
                subject = (f"{row['payer_id']}/{row['member_id']}/{row['plan_year']}" if extra else str(row[key]))
                if want is None:
                    report.differences.append(Difference(f"read model {table}", subject, what))
                    continue
                if row["last_position"] > position or changed_at > position:
                    report.rows_skipped += 1
                    continue
                report.rows_compared += 1
                got = tuple(row[column] for column in compared)
                if got != want:
                    report.differences.append(Difference(f"read model {table}", subject,
                                                         f"says {what} {got}; the ledger says {want}"))
    # Every record the ledger had by the position is in the read models.
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM claim_status), (SELECT count(*) FROM payments), (SELECT count(*) FROM member_accumulators)"
    ).fetchone()
    # ... but for the streams an erasure purged from them.
    erased = ledger.erased_streams
    by_then = (
        sum(1 for s, c in ledger.claims.items() if c.first_position <= position and s not in erased),
        sum(1 for p in ledger.payments.values() if p.first_position <= position),
        sum(1 for s, p in ledger.periods.items() if p.first_position <= position and s not in erased),
    )
    for name, have, want in zip(("claim_status", "payments", "member_accumulators"), counts, by_then, strict=True):
        if have < want:
            report.differences.append(Difference(f"read model {name}", "rows", f"{have} rows; the ledger had {want} by "
                                                 f"position {position}"))


def compare_claim_requests(conn: psycopg.Connection[Any], ledger: LedgerMoney, report: Report) -> None:
    """Each claim's row in ``claim_requests`` (its request id -> its id), read in the ledger's
    snapshot: a row is written in the same transaction as its claim's first event, so every claim
    has exactly one, under its own submission's request id (a claim from before migration 0027 has
    its id as request id, which is the same uuid5), and every row names a claim of the ledger. A
    row changed behind the ledger's back would answer a retried submission with another claim (the
    service refuses that: ``Commands._claim_of_request``) or leave a claim without its row."""
    found = report.differences
    rows_of: Counter[str] = Counter()
    with conn.cursor(row_factory=tuple_row) as cur:
        for request_id, claim_id in cur.execute("SELECT request_id::text, claim_id::text FROM claim_requests"):
            claim = ledger.claims.get(claim_id)
            if claim is None:
                found.append(Difference("claim request", request_id, f"names claim {claim_id}, which the ledger does not have"))
                continue
            rows_of[claim_id] += 1
            if claim.request_id is not None and request_id != claim.request_id:
                found.append(Difference("claim request", claim_id, f"recorded under request {request_id}; its submission's "
                                        f"provider and idempotency key make {claim.request_id}"))
    for claim_id in ledger.claims:
        rows = rows_of[claim_id]
        if rows != 1:
            found.append(Difference("claim request", claim_id, "no request row" if rows == 0 else f"{rows} request rows"))
