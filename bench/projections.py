"""The read side's benchmarks (``make bench --only projections``): rebuild rate from position 0,
and projection lag under load, over a synthetic history.

``measure_rebuild(database_url, events=200_000) -> dict`` tops the ledger up to ``events`` events
with ``generate_history`` and times ``rebuild`` of each projection (events per second from
position 0; each projection reads the whole ledger). ``measure_lag(database_url, seconds=6.0,
rate=200.0) -> dict`` submits claims at a steady rate with every projection running and reports
p50 / p99 milliseconds from each write's commit to each read model. ``make bench`` calls
``measure_rebuild`` on a fresh database; the tests make their histories with ``generate_history``.

The history is made of real domain aggregates recorded in large batches with ``LedgerApplication.record``
(the adjudicator would take minutes for 200,000 events): members enrolled with plans, claims
submitted, adjudicated (paid, partly paid, denied) or pended and resolved by review, benefit
periods moved, payments scheduled, issued, cancelled and recouped, voids, corrections and
disputes — every event type the projections read, in realistic proportions and sizes. The money
follows the service's own rules (``claims_service.adjudication.settlement``), so ``claimsctl
reconcile`` is clean over the history too.
"""

from __future__ import annotations

import bisect
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from adjudicator.models import Decision
from claims_service.adjudication import AdjudicationFollower
from claims_service.adjudication.settlement import settle
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.domain.access import EmergencyAccess, MemberAccess
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.consent import Consent
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment
from claims_service.domain.visit import Visit
from projections import catalog
from projections.events import ledger_head
from projections.rebuild import rebuild
from projections.runner import ProjectionSupervisor
from projections.store import PROGRESS_CHANNEL

log = logging.getLogger(__name__)

ACTOR = "system:bench"
RULESET_VERSION = "2026.1"
RULESET_HASH = "bfa4082fe169aa6076daafb0f228e3cea326a321429e91140446bf3527425a16"
PROCEDURES = {"99213": 9_000, "99214": 13_000, "80053": 1_500, "36415": 300, "85025": 1_000, "93000": 2_000, "97110": 3_000}
TERMS: dict[str, Any] = {
    "deductible_cents": 50_000,
    "oop_max_cents": 300_000,
    "cost_share": {"default": {"copay_cents": 0, "coinsurance_bp": 2000}, "office_visit": {"copay_cents": 2_500, "coinsurance_bp": 0}},
    "timely_filing_days": 365,
    "in_network_only": True,
    "review_threshold_cents": 1_000_000,
    "non_covered_procedures": ["97140"],
    "benefit_limits": {"97110": 20},
    "prior_auth_required": ["73721"],
}
NPIS = ["1234567893", "1245319599", "1003000126", "1003000134", "1003000142", "1003000159", "1003000167", "1003000175"]


def _valid_npi(npi: str) -> bool:
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(npi[9])


class _History:
    """Builds the aggregates; ``flush`` records everything pending in one transaction."""

    def __init__(self, ledger: Any, rng: random.Random, *, payers: int, members: int, start: int = 0) -> None:
        self.ledger = ledger
        self.rng = rng
        self.payers = [f"PAYER-{i:02d}" for i in range(payers)]
        # Members (and so their coverage and benefit periods) are new on every run: a second run
        # over the same ledger tops it up instead of colliding with the first one's aggregates.
        self.members = [(self.payers[i % payers], f"M-{start:x}-{i:06d}") for i in range(members)]
        self.npis = [n for n in NPIS if _valid_npi(n)]
        self.pending: dict[Any, Any] = {}
        self.money: dict[Any, Any] = {}  # payments and benefit periods by id, for settle's loads
        self.decided: list[Any] = []  # claims that may be voided, corrected or disputed
        self.enrolled: set[tuple[str, str]] = set()
        self.consents: dict[tuple[str, str], Any] = {}  # (member, NPI) -> Consent
        self.written = 0
        self.n = 0

    def touch(self, aggregate: Any) -> Any:
        self.pending[aggregate.id] = aggregate
        return aggregate

    def pending_events(self) -> int:
        return sum(len(a.pending_events) for a in self.pending.values())

    def flush(self) -> int:
        if not self.pending:
            return 0
        recordings = self.ledger.record(*self.pending.values())
        self.pending.clear()
        self.written += len(recordings)
        return len(recordings)

    # --- one step: a new claim's life, or something happening to an earlier one ------------

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.04 and self.decided:
            self.void()
        elif roll < 0.06 and self.decided:
            self.correct()
        elif roll < 0.12 and self.decided:
            self.dispute()
        elif roll < 0.13 and self.decided:
            self.consent()
        elif roll < 0.14 and self.decided:
            self.emergency()
        else:
            self.new_claim()

    def enrol(self, payer: str, member: str) -> None:
        if (payer, member) in self.enrolled:
            return
        self.enrolled.add((payer, member))
        self.touch(MemberCoverage.enrol(actor=ACTOR, member_id=member, payer_id=payer, plan_id="GOLD",
                                             effective_date=date(2026, 1, 1), terms=TERMS))

    def new_claim(self, replaces: Any = None) -> Any:
        rng = self.rng
        self.n += 1
        if replaces is None:
            payer, member = rng.choice(self.members)
            npi = rng.choice(self.npis)
        else:
            payer, member, npi = replaces.payer_id, replaces.member_id, replaces.provider_id
        self.enrol(payer, member)
        day = date(2026, 1, 1) + timedelta(days=rng.randrange(300))
        if replaces is None and rng.random() < 0.05:  # a visit the payer hears of before the claim
            self.touch(Visit.record(actor=f"provider:{npi}", visit_id=f"V-{self.n}", provider_id=npi, member_id=member,
                                    payer_id=payer, date_of_service=day, place_of_service=rng.choice(("11", "23")),
                                    diagnosis_codes=["E119"]))
        codes = rng.sample(sorted(PROCEDURES), rng.choice((1, 1, 2, 3)))
        lines = [
            {"line_number": i + 1, "procedure_code": code, "modifiers": [], "diagnosis_pointers": [1],
             "units": 1, "billed_cents": PROCEDURES[code] + rng.randrange(500, 9_000), "date_of_service": day}
            for i, code in enumerate(codes)
        ]
        claim = Claim.submit(
            actor=f"provider:{npi}", provider_id=npi, member_id=member, payer_id=payer,
            idempotency_key=f"bench-{self.n}", received_on=day + timedelta(days=rng.randrange(1, 20)),
            diagnosis_codes=["E119"], place_of_service="11", lines=lines,
            frequency_code="7" if replaces is not None else "1",
            replaces_claim_id=replaces.claim_id if replaces is not None else None,
        )
        self.touch(claim)
        if replaces is not None:
            before = self.current(replaces)
            replaces.correct(actor=f"provider:{npi}", replacement_claim_id=claim.claim_id)
            self.touch(replaces)
            self.settle(replaces, before, None)
        decision, facts = self.decision(claim, deny=rng.random() < 0.1)
        if rng.random() < 0.08:
            claim.pend(actor="system:adjudicator", decision=self.pended(decision), facts=facts,
                       ruleset_version=RULESET_VERSION, ruleset_hash=RULESET_HASH, pend_reasons=["N10"])
            self.settle(claim, None, claim.decision)
            if rng.random() < 0.7:
                resolution = {"approve": [{"line_number": line["line_number"], "allowed_cents": line["allowed_cents"]}
                                          for line in decision["lines"]], "deny": None}
                claim.resolve_review(actor="payer:reviewer", decision=decision, reviewer="reviewer-1", note="documents checked",
                                     resolution=resolution, facts=facts)
                self.settle(claim, None, decision)
                self.decided.append(claim)
        else:
            claim.adjudicate(actor="system:adjudicator", decision=decision, facts=facts,
                             ruleset_version=RULESET_VERSION, ruleset_hash=RULESET_HASH)
            self.settle(claim, None, decision)
            self.decided.append(claim)
        if rng.random() < 0.3:  # the provider reads it (GetClaim): one access record
            self.accessed(claim.member_id, f"provider:{npi}", "claims.v1.ProviderService/GetClaim",
                          [f"claim:{claim.claim_id}"], "provider")
        return claim

    # --- members' data read, consent, emergency access ---------------------------------------

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128))

    def accessed(self, member: str, actor: str, method: str, resources: list[str], grant: str) -> None:
        self.touch(MemberAccess.record(access_id=self.uuid(), actor=actor, key_id="benchkey0001", member_id=member,
                                       method=method, resources=resources, grant=grant))

    def consent(self) -> None:
        """A member grants another provider their history (which it reads), or revokes a grant."""
        claim = self.rng.choice(self.decided)
        npi = self.rng.choice([n for n in self.npis if n != claim.provider_id])
        consent = self.consents.get((claim.member_id, npi))
        if consent is not None and consent.grant is not None and not consent.grant["revoked"] and self.rng.random() < 0.5:
            consent.revoke(actor=f"member:{claim.member_id}", reason="no longer needed")
            self.touch(consent)
            return
        if consent is None:
            consent = self.consents[(claim.member_id, npi)] = Consent.open(member_id=claim.member_id, provider_id=npi)
        now = datetime(2026, 6, 1, tzinfo=UTC)
        grant_id = str(self.uuid())
        consent.give(actor=f"member:{claim.member_id}", grant_id=grant_id, scope="claim_history", now=now,
                     expires_at=now + timedelta(days=self.rng.randrange(1, 300)))
        self.touch(consent)
        self.accessed(claim.member_id, f"provider:{npi}", "claims.v1.ProviderService/GetMemberHistory",
                      [f"claim:{claim.claim_id}"], f"consent:{grant_id}")

    def emergency(self) -> None:
        """Another provider reads a member's history declaring an emergency."""
        claim = self.rng.choice(self.decided)
        npi = self.rng.choice([n for n in self.npis if n != claim.provider_id])
        declared = self.touch(EmergencyAccess.declare(
            access_id=self.uuid(), actor=f"provider:{npi}", key_id="benchkey0001", provider_id=npi,
            member_id=claim.member_id, reason="unconscious on arrival", payer_ids=[claim.payer_id]))
        self.accessed(claim.member_id, f"provider:{npi}", "claims.v1.ProviderService/GetMemberHistory",
                      [f"claim:{claim.claim_id}"], declared.grant)

    @staticmethod
    def pended(decision: dict[str, Any]) -> dict[str, Any]:
        """What the engine records for a pended claim: nothing paid, every line held (OA-133)."""
        lines = [{**line, "allowed_cents": 0, "paid_cents": 0, "patient_responsibility_cents": 0, "remarks": [], "status": "pended",
                  "adjustments": [{"group": "OA", "carc": "133", "amount_cents": line["billed_cents"]}]} for line in decision["lines"]]
        return {**decision, "outcome": "PENDED", "lines": lines, "total_allowed_cents": 0, "total_paid_cents": 0,
                "total_patient_responsibility_cents": 0, "accumulator_changes": []}

    def current(self, claim: Any) -> dict[str, Any] | None:
        return claim.decision if claim.status == "adjudicated" else None

    def settle(self, claim: Any, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        """The claim's money, as the service moves it: accumulators, then payments scheduled,
        cancelled or recouped; most new payments are issued at once (a payer's payment run)."""
        changed = settle(self.money.get, claim, before=Decision.model_validate(before) if before else None,
                         after=Decision.model_validate(after) if after else None, actor="system:adjudicator",
                         reason="bench")
        for aggregate in changed:
            self.money[aggregate.id] = self.touch(aggregate)
            if isinstance(aggregate, Payment) and aggregate.version == 1 and self.rng.random() < 0.7:
                aggregate.issue(actor="payer:treasury", trace_number=f"TRN{self.n:09d}", issued_on=claim.received_on + timedelta(days=14))

    def decision(self, claim: Any, *, deny: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        period = self.money.get(BenefitPeriod.create_id(claim.payer_id, claim.member_id, 2026))
        oop_left = TERMS["oop_max_cents"] - (period.oop_met_cents if period is not None else 0)
        lines = []
        for line in claim.lines:
            billed = line["billed_cents"]
            allowed = 0 if deny else min(billed, PROCEDURES[line["procedure_code"]])
            member = min(allowed // 5, max(0, oop_left))  # coinsurance, capped by the out-of-pocket maximum
            oop_left -= member
            paid = allowed - member
            adjustments = []
            if billed - allowed:
                adjustments.append({"group": "CO", "carc": "96" if deny else "45", "amount_cents": billed - allowed})
            if member:
                adjustments.append({"group": "PR", "carc": "2", "amount_cents": member})
            lines.append({"line_number": line["line_number"], "billed_cents": billed, "allowed_cents": allowed, "paid_cents": paid,
                          "patient_responsibility_cents": member, "adjustments": adjustments,
                          "remarks": ["N130"] if deny else [], "status": "denied" if deny else "paid"})
        totals = {key: sum(line[key[6:]] for line in lines) for key in
                  ("total_billed_cents", "total_allowed_cents", "total_paid_cents", "total_patient_responsibility_cents")}
        decision = {
            "claim_id": claim.claim_id,
            "outcome": "DENIED" if deny else "PAID",
            "lines": lines,
            **totals,
            "accumulator_changes": [{"plan_year": 2026, "deductible_cents": 0,
                                     "oop_cents": totals["total_patient_responsibility_cents"], "benefit_units": {}}],
            "ruleset_version": RULESET_VERSION,
            "ruleset_hash": RULESET_HASH,
        }
        facts = {
            "received_on": claim.received_on.isoformat(),
            "member_known": True,
            "coverages": [{"member_id": claim.member_id, "payer_id": claim.payer_id, "plan_id": "GOLD",
                           "effective_date": "2026-01-01", "termination_date": None, "terms": TERMS}],
            "accumulators": [{"plan_year": 2026, "deductible_met_cents": 0, "oop_met_cents": 0, "benefit_units": {}}],
            "provider": {"npi": claim.provider_id, "credentials": [{"licence_number": "MD-55012", "state": "NY",
                         "valid_from": "2020-01-01", "valid_to": "2028-12-31", "revoked_on": None}],
                         "networks": [{"payer_id": claim.payer_id, "contract_id": "C-1", "effective_date": "2026-01-01", "end_date": None}]},
            "fee_schedule": {"contract_id": "C-1", "version": 1, "effective_date": "2026-01-01", "fees": PROCEDURES},
            "prior_authorizations": [],
            "earlier_claim_lines": [],
        }
        return decision, facts

    def _take_decided(self) -> Any:
        claim = self.decided.pop(self.rng.randrange(len(self.decided)))
        if claim.id in self.pending:
            # Changed in this flush already: its events would be recorded before its payments'
            # (one aggregate after another), out of the order in which they happened.
            self.decided.append(claim)
            return None
        return claim if claim.status == "adjudicated" and claim.open_dispute_id is None else None

    def void(self) -> None:
        claim = self._take_decided()
        if claim is not None:
            before = self.current(claim)
            claim.void(actor=f"provider:{claim.provider_id}", reason="billed in error")
            self.touch(claim)
            self.settle(claim, before, None)

    def correct(self) -> None:
        claim = self._take_decided()
        if claim is not None:
            self.new_claim(replaces=claim)

    def dispute(self) -> None:
        claim = self._take_decided()
        if claim is None:
            return
        dispute_id = f"D-{self.n}"
        claim.open_dispute(actor=f"provider:{claim.provider_id}", dispute_id=dispute_id, reason="underpaid")
        overturn = self.rng.random() < 0.5
        if not overturn:
            claim.resolve_dispute(actor="dispute:team", dispute_id=dispute_id, resolution="upheld", decision=None, note="reviewed")
        else:
            # Overturned to a denial: what was scheduled is cancelled, what was issued recouped.
            before = claim.decision
            after, facts = self.decision(claim, deny=True)
            claim.resolve_dispute(actor="dispute:team", dispute_id=dispute_id, resolution="overturned", decision=after,
                                  note="reviewed", facts=facts)
            self.settle(claim, before, after)
        self.touch(claim)
        self.decided.append(claim)


def generate_history(
    database_url: str,
    events: int,
    *,
    seed: int = 1,
    payers: int = 3,
    members: int | None = None,
    batch_events: int = 2_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Append synthetic claim histories until ``events`` new events are recorded; return how many."""
    ledger = LedgerApplication(database_url, pool_size=1)
    try:
        with psycopg.connect(database_url) as conn:
            start = ledger_head(conn)
        history = _History(ledger, random.Random(seed), payers=payers, members=members or max(50, events // 40), start=start)
        history.n = start  # distinct idempotency keys when topping up
        while history.written < events:
            history.step()
            if history.pending_events() >= batch_events:
                history.flush()
                if progress is not None:
                    progress(history.written)
        history.flush()
        return history.written
    finally:
        ledger.close()


def measure_rebuild(
    database_url: str,
    events: int = 200_000,
    *,
    names: tuple[str, ...] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Rebuild each projection from position 0 over a ledger of at least ``events`` events.

    Returns ``{"events": N, "generate_seconds": s, "projections": {name: {"seconds", "events_per_s"}},
    "all_events_per_s": N * projections / total seconds, "min_events_per_s": slowest projection}``.
    """
    with psycopg.connect(database_url) as conn:
        head = ledger_head(conn)
    generated_in = 0.0
    if head < events:
        started = time.perf_counter()
        generate_history(database_url, events - head)
        generated_in = time.perf_counter() - started
    with psycopg.connect(database_url) as conn:
        conn.execute("ANALYZE")
        head = ledger_head(conn)
    results: dict[str, Any] = {}
    total = 0.0
    for name in names or catalog.NAMES:
        if progress is not None:
            progress(name)
        report = rebuild(database_url, name)
        total += report.seconds
        results[name] = {"seconds": round(report.seconds, 2), "events_per_s": round(report.events_per_second)}
    count = len(results)
    return {
        "events": head,
        "generate_seconds": round(generated_in, 1),
        "projections": results,
        "all_events_per_s": round(head * count / total) if total else 0,
        "min_events_per_s": min(r["events_per_s"] for r in results.values()),
    }


# --- lag under load ----------------------------------------------------------------------------

FEES = {"99213": 9_000, "99214": 13_000, "80053": 1_500, "85025": 1_000, "93000": 2_000}
BENCH_NPI = "1234567893"


def _set_up_world(service: Any, members: int) -> list[str]:
    admin = "admin:bench"
    ids = [f"LAG-{i:04d}" for i in range(members)]
    for member in ids:
        service.enroll_member(actor=admin, member_id=member, payer_id="PAYER-LAG", plan_id="GOLD",
                              effective_date=date(2026, 1, 1), terms=TERMS)
    service.register_provider(actor=admin, npi=BENCH_NPI, name="Bench Clinic", taxonomy="207Q00000X")
    service.record_credential(actor=admin, npi=BENCH_NPI, licence_number="MD-1", state="NY",
                              valid_from=date(2020, 1, 1), valid_to=date(2030, 12, 31))
    service.publish_fee_schedule(actor=admin, contract_id="LAG-2026", payer_id="PAYER-LAG", version=1,
                                 effective_date=date(2026, 1, 1), fees=FEES)
    service.join_network(actor=admin, npi=BENCH_NPI, payer_id="PAYER-LAG", contract_id="LAG-2026",
                         effective_date=date(2026, 1, 1))
    service.deploy_ruleset(actor=admin, version=RULESET_VERSION, effective_date=date(2026, 1, 1))
    return ids


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def measure_lag(
    database_url: str,
    *,
    seconds: float = 6.0,
    rate: float = 200.0,
    clients: int = 8,
    members: int = 100,
) -> dict[str, Any]:
    """Projection lag under a submission load: ``rate`` claims/s from ``clients`` threads through
    ``Commands`` (group commit), the adjudicator following, every projection supervised.

    Lag of a write = time from its acknowledgement (just after its commit) to the NOTIFY of the
    projection batch that covers its position. Returns ``{"claims", "claims_per_s",
    "projections": {name: {"p50_ms", "p99_ms"}}, "all_p50_ms", "all_p99_ms"}`` ("all": the slowest
    read model for each write).
    """
    ledger = LedgerApplication(database_url, pool_size=4)
    service = Commands(ledger, today=lambda: datetime.now(UTC).date())
    stop = threading.Event()
    progress: dict[str, list[tuple[int, float]]] = {name: [] for name in catalog.NAMES}
    writes: list[tuple[int, float]] = []
    ready = threading.Event()

    def listen() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"LISTEN {PROGRESS_CHANNEL}")
            ready.set()
            while not stop.is_set():
                for notify in conn.notifies(timeout=0.2):
                    name, _, position = notify.payload.rpartition(" ")
                    if name in progress:
                        progress[name].append((int(position), time.perf_counter()))

    try:
        member_ids = _set_up_world(service, members)
        supervisor = ProjectionSupervisor(database_url)
        follower = AdjudicationFollower(ledger)
        threads = [threading.Thread(target=listen, daemon=True), threading.Thread(target=follower.run, args=(stop,), daemon=True)]
        for thread in threads:
            thread.start()
        ready.wait(5)
        supervisor.start()
        with psycopg.connect(database_url) as conn:
            setup_head = ledger_head(conn)
        deadline = time.perf_counter() + 30
        while any(not p or p[-1][0] < setup_head for p in progress.values()) and time.perf_counter() < deadline:
            time.sleep(0.05)
        interval = clients / rate
        end = time.perf_counter() + seconds
        counter = iter(range(10**9))
        lock = threading.Lock()

        def client(k: int) -> None:
            rng = random.Random(k)
            next_at = time.perf_counter() + rng.random() * interval
            while next_at < end:
                time.sleep(max(0.0, next_at - time.perf_counter()))
                with lock:
                    n = next(counter)
                day = date(2026, 1, 1) + timedelta(days=n % 300)
                receipt = service.submit_claim(
                    actor=f"provider:{BENCH_NPI}", provider_id=BENCH_NPI, member_id=member_ids[n % len(member_ids)],
                    payer_id="PAYER-LAG", idempotency_key=f"lag-{n}", diagnosis_codes=["E119"], place_of_service="11",
                    lines=[{"line_number": 1, "procedure_code": "99213", "modifiers": [], "diagnosis_pointers": [1],
                            "units": 1, "billed_cents": 12_000, "date_of_service": day}],
                )
                writes.append((receipt.receipt.position, time.perf_counter()))
                next_at += interval

        workers = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        last = max(position for position, _ in writes)
        deadline = time.perf_counter() + 30
        while any(not p or p[-1][0] < last for p in progress.values()) and time.perf_counter() < deadline:
            time.sleep(0.05)
        supervisor.stop()
    finally:
        stop.set()
        service.close()
        ledger.close()

    lags: dict[str, list[float]] = {}
    for name, seen in progress.items():
        positions = [p for p, _ in seen]
        for position, acked in writes:
            i = bisect.bisect_left(positions, position)
            if i < len(seen):
                lags.setdefault(name, []).append(max(0.0, seen[i][1] - acked) * 1000)
    slowest = [max(values) for values in zip(*lags.values(), strict=False)] if lags else []
    return {
        "claims": len(writes),
        "claims_per_s": round(len(writes) / seconds),
        "projections": {name: {"p50_ms": round(_percentile(v, 0.5), 1), "p99_ms": round(_percentile(v, 0.99), 1)}
                        for name, v in lags.items()},
        "all_p50_ms": round(_percentile(slowest, 0.5), 1),
        "all_p99_ms": round(_percentile(slowest, 0.99), 1),
    }
