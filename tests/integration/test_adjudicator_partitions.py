"""The adjudicator as partitions (CLAIMS_ADJUDICATOR_PARTITIONS) on a real ledger: each partition
decides its members' claims, in ledger order, once; voids and replacements come off the right
member's accumulators once; the money reconciles; and the partition count can change under a
running ledger without a claim decided twice or left undecided."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import date

import psycopg
import pytest

from claims_service.adjudication import AdjudicationFollower
from claims_service.adjudication.partitions import Partition, member_partition, partitions
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.domain.benefits import BenefitPeriod
from claims_service.reconcile import reconcile
from tests import world

PROVIDER = "provider:" + world.NPI
# Two members in each of two partitions.
MEMBERS = [m for p in (0, 1) for m in [f"M-{n}" for n in range(100) if member_partition(f"M-{n}", 2) == p][:2]]
DECIDED = ("%Claim.Adjudicated", "%Claim.Pended")


@pytest.fixture
def service(database_url: str):
    ledger = LedgerApplication(database_url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    world.set_up(service)
    for member in MEMBERS:
        service.enroll_member(actor=world.ADMIN, member_id=member, payer_id=world.PAYER, plan_id=world.PLAN,
                              effective_date=date(2026, 1, 1), terms=world.TERMS)
    yield service
    service.close()
    ledger.close()


@pytest.fixture
def ledgers(database_url: str):
    """A ledger application per follower, as each partition has in its own process."""
    made: list[LedgerApplication] = []
    yield lambda: made.append(LedgerApplication(database_url, pool_size=2)) or made[-1]
    for ledger in made:
        ledger.close()


def drain(follower: AdjudicationFollower) -> None:
    while follower.process_available():
        pass


def lab_claim(service: Commands, member: str, n: int) -> str:
    # 80053: 15.00 allowed against the 50.00 deductible, so each claim's facts show the ones before it.
    body = world.claim_body(f"{member}-{n}", member_id=member,
                            lines=[world.line(1, "80053", 20_000, day=date(2026, 3, 1 + n))])
    return service.submit_claim(actor=PROVIDER, **body).claim_id


def decisions_per_claim(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT originator_id::text, count(*) FROM ledger_events WHERE topic LIKE ANY(%s)"
                            " GROUP BY originator_id", (list(DECIDED),)).fetchall()
    return dict(rows)


def deductible(service: Commands, member: str) -> int:
    return service.ledger.repository.get(BenefitPeriod.create_id(world.PAYER, member, 2026)).deductible_met_cents


def test_each_partition_decides_its_members_claims_in_ledger_order_exactly_once(service, ledgers, database_url):
    claims: dict[str, list[str]] = defaultdict(list)
    for n in range(3):
        for member in MEMBERS:
            claims[member].append(lab_claim(service, member, n))
    first, second = (AdjudicationFollower(ledgers(), partition=p) for p in partitions(2))
    # 1. Partition 0 alone decides its members' claims and leaves the others' alone.
    drain(first)
    decided = decisions_per_claim(database_url)
    for member, ids in claims.items():
        assert all((claim_id in decided) == (member_partition(member, 2) == 0) for claim_id in ids), member
    # 2. Partition 1 then decides the rest; both again (concurrently) decide nothing twice.
    drain(second)
    runners = [threading.Thread(target=drain, args=(f,)) for f in (first, second)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    assert decisions_per_claim(database_url) == {c: 1 for ids in claims.values() for c in ids}
    # 3. Each member's claims were decided in ledger order: each saw the deductible of those before it.
    for member, ids in claims.items():
        seen = [service.own_claim(c).facts["accumulators"] for c in ids]
        assert [s[0]["deductible_met_cents"] if s else 0 for s in seen] == [0, 1_500, 3_000], member
        assert deductible(service, member) == 4_500
    # 4. A void and a replacement come off their members' accumulators once, by their partitions.
    voided, replaced = MEMBERS[0], MEMBERS[3]
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=claims[voided][0], reason="billed in error")
    body = world.claim_body("fix", member_id=replaced, lines=[world.line(1, "85025", 2_000, day=date(2026, 4, 1))])
    body.pop("idempotency_key")
    service.correct_claim(actor=PROVIDER, original_claim_id=claims[replaced][2], idempotency_key="fix", **body)
    for follower in (second, first, second, first):
        drain(follower)
    assert deductible(service, voided) == 3_000
    assert deductible(service, replaced) == 3_000 + 1_000
    assert deductible(service, MEMBERS[1]) == deductible(service, MEMBERS[2]) == 4_500
    report = reconcile(database_url, wait_seconds=0)
    assert [d for d in report.differences if d.kind == "accumulators"] == [] and report.in_flight == 0, report.summary()


def test_the_partition_count_changes_under_a_running_ledger(service, ledgers, database_url):
    single = AdjudicationFollower(ledgers())
    ids = [lab_claim(service, member, 0) for member in MEMBERS]
    drain(single)
    # Two partitions start where the single adjudicator stopped: nothing before it again.
    ids += [lab_claim(service, member, 1) for member in MEMBERS]
    pair = [AdjudicationFollower(ledgers(), partition=p) for p in partitions(2)]
    assert [f.position() for f in pair] == [single.position()] * 2
    drain(pair[1])  # only one of them gets going ...
    ids += [lab_claim(service, member, 2) for member in MEMBERS]
    # ... when the count goes back to one: it starts where both had surely done every member,
    again = AdjudicationFollower(ledgers())
    assert again.position() == single.position() < pair[1].position()
    drain(again)
    drain(pair[0])  # and a straggler of the pair finds those decided: nothing twice.
    assert decisions_per_claim(database_url) == {c: 1 for c in ids}
    for member in MEMBERS:
        assert deductible(service, member) == 4_500
    # The single adjudicator's row moved past the pair's: a pair started now would begin there.
    assert AdjudicationFollower(ledgers(), partition=Partition(0, 2)).position() >= again.position()
