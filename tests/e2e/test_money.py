"""Money as a payer meets it, end to end over a real gRPC channel: a decision that changes before
or after the payer's payment run (a void, a replacement, a review, an overturned dispute), what the
provider's remittance then says, what the payer's stream tells, and that every cent reconciles
(`reconcile` in-process and `claimsctl reconcile` as a command) once the read models caught up.

Amounts are the world's (tests/world.py): 99213 allows 90.00, 99214 130.00, 80053 15.00; an office
visit has a 25.00 copay, then the 50.00 deductible; other services 20 % coinsurance after it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psycopg

from claims.v1 import common_pb2, dispute_pb2, payer_pb2, provider_pb2
from claims_service.domain.payment import Payment
from claims_service.reconcile import reconcile
from projections.events import EVENTS_TABLE
from tests import world
from tests.e2e.test_claim_flow import DAY, claim_request, set_up, wait_decided

ROOT = Path(__file__).resolve().parents[2]
K = common_pb2  # the enums, short


# --- what a payer and a provider do and read --------------------------------------------------


def visit(key: str, *, day: str = DAY, code: str = "99213", billed: int = 12_000) -> provider_pb2.SubmitClaimRequest:
    """A one-line claim for world.MEMBER, as claim_request makes it, on another day."""
    request = claim_request(key, code=code, billed=billed)
    request.lines[0].date_of_service = day
    return request


def remittance(parties, claim_id: str, position: int) -> list[common_pb2.Payment]:
    return list(parties.provider.provider.GetRemittance(
        provider_pb2.GetRemittanceRequest(claim_id=claim_id, min_position=position)).payments)


def accumulators(parties, position: int) -> tuple[int, int]:
    acc = parties.payer.payer.GetMemberAccumulators(payer_pb2.GetMemberAccumulatorsRequest(
        member_id=world.MEMBER, plan_year=2026, min_position=position))
    return acc.deductible_met_cents, acc.oop_met_cents


def accumulators_become(parties, position: int, expected: tuple[int, int], timeout: float = 20.0) -> tuple[int, int]:
    """The accumulators once the adjudicator has taken a void off them (it does so after the
    void's own commit, in ledger order), or as they are at the timeout."""
    deadline = time.monotonic() + timeout
    while (found := accumulators(parties, position)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


class Run(list):
    """What a payment run issued, (payment id, cents) each; `position` is its receipt's (0: none)."""

    position = 0


def run_payments(parties, position: int) -> Run:
    """The payer's payment run, seeing everything up to `position`."""
    issued = parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest(min_position=position, max_payments=1000))
    assert issued.HasField("receipt") == bool(issued.payments)
    assert all(p.trace_number and p.status == K.PAYMENT_STATUS_ISSUED for p in issued.payments)
    run = Run((p.payment_id, p.amount_cents) for p in issued.payments)
    run.position = issued.receipt.position
    return run


def notices_until(parties, position: int, *, after: int = 0, timeout: float = 30) -> list[common_pb2.AdjudicationNotice]:
    """The payer's stream from `after`, read until a heartbeat at or past `position`."""
    stream = parties.payer.payer.SubscribeAdjudications(
        payer_pb2.SubscribeAdjudicationsRequest(after_position=after), timeout=timeout)
    got: list[common_pb2.AdjudicationNotice] = []
    try:
        for item in stream:
            if item.WhichOneof("kind") == "notice":
                got.append(item.notice)
            elif item.heartbeat.position >= position:
                break
    finally:
        stream.cancel()
    positions = [n.position for n in got]
    assert positions == sorted(set(positions)), "notices out of ledger order or repeated"
    return got


def kinds(notices: list[common_pb2.AdjudicationNotice], *claim_ids: str) -> list[tuple[str, int]]:
    """(claim id, kind) of these claims' notices, in the stream's (ledger) order."""
    return [(n.claim_id, n.kind) for n in notices if n.claim_id in claim_ids]


def one(notices: list[common_pb2.AdjudicationNotice], claim_id: str, kind: int) -> common_pb2.AdjudicationNotice:
    [found] = [n for n in notices if n.claim_id == claim_id and n.kind == kind]
    return found


def entries(payment: common_pb2.Payment) -> list[tuple[str, int, bool, str, list[int]]]:
    """A remittance's entries: (claim, cents, recoupment?, reason, each line's paid cents)."""
    return [(c.claim_id, c.amount_cents, c.recoupment, c.reason, [line.paid_cents for line in c.lines])
            for c in payment.claims]


# --- reconciliation ----------------------------------------------------------------------------


def assert_reconciled(database_url: str) -> None:
    """The ledger reconciles to the cent, and the read models caught up with it first."""
    with psycopg.connect(database_url) as conn:
        head = conn.execute(f"SELECT coalesce(max(notification_id), 0) FROM {EVENTS_TABLE}").fetchone()[0]
    report = reconcile(database_url, wait_seconds=30)
    assert report.clean, report.summary()
    assert report.position >= head, f"read models still behind the ledger head {head}: " + report.summary()
    assert report.rows_compared > 0, report.summary()


def claimsctl_reconcile(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLAIMS_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "claims_service.cli", "reconcile", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


# --- the cases ---------------------------------------------------------------------------------


def test_a_claim_voided_before_the_payment_run_is_cancelled_not_paid(parties, database_url):
    set_up(parties)
    provider = parties.provider.provider
    submitted = provider.SubmitClaim(claim_request("void-early"))
    claim_id = submitted.claim_id
    claim = wait_decided(parties, claim_id, submitted.receipt.position)
    # 90.00 allowed - 25.00 copay - 50.00 deductible = 15.00 scheduled
    assert (claim.status, claim.decision.total_paid_cents) == (K.CLAIM_STATUS_ADJUDICATED, 1_500)

    voided = provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=claim_id, reason="wrong patient"))
    # The run sees everything up to the void: nothing of the claim is due any more.
    assert run_payments(parties, voided.receipt.position) == []

    [payment] = remittance(parties, claim_id, voided.receipt.position)
    assert payment.payment_id == f"{claim_id}/0"
    assert payment.status == K.PAYMENT_STATUS_CANCELLED
    assert payment.cancel_reason == "voided: wrong patient"
    assert (payment.trace_number, payment.issued_on, payment.recouped_cents) == ("", "", 0)
    # cancelled: it shows what had been scheduled (15.00), none of it paid
    assert (payment.amount_cents, payment.scheduled_cents) == (1_500, 1_500)
    assert entries(payment) == [(claim_id, 1_500, False, "", [1_500])]
    # The member's deductible and copay are given back (by the adjudicator, next): 0.00 met.
    assert accumulators_become(parties, voided.receipt.position, (0, 0)) == (0, 0)

    notices = notices_until(parties, voided.receipt.position)
    assert kinds(notices, claim_id) == [(claim_id, K.NOTICE_KIND_ADJUDICATED), (claim_id, K.NOTICE_KIND_VOIDED),
                                        (claim_id, K.NOTICE_KIND_PAYMENT_CANCELLED)]
    void_notice = one(notices, claim_id, K.NOTICE_KIND_VOIDED)
    assert (void_notice.status, void_notice.reason) == (K.CLAIM_STATUS_VOIDED, "wrong patient")
    # The receipt names the void's commit's last event (the payment's cancellation), after the void.
    assert void_notice.position < voided.receipt.position
    cancelled = one(notices, claim_id, K.NOTICE_KIND_PAYMENT_CANCELLED)
    assert (cancelled.payment_id, cancelled.amount_cents, cancelled.reason) == (f"{claim_id}/0", 1_500, "voided: wrong patient")
    assert_reconciled(database_url)


def test_a_claim_replaced_before_the_payment_run_pays_only_the_replacement(parties, database_url):
    set_up(parties)
    provider = parties.provider.provider
    submitted = provider.SubmitClaim(claim_request("orig"))
    original_id = submitted.claim_id
    original = wait_decided(parties, original_id, submitted.receipt.position)
    # 90.00 allowed - 25.00 copay - 50.00 deductible = 15.00 scheduled
    assert original.decision.total_paid_cents == 1_500

    corrected = provider.CorrectClaim(provider_pb2.CorrectClaimRequest(
        claim_id=original_id, idempotency_key="repl", member_id=world.MEMBER, payer_id=world.PAYER,
        diagnosis_codes=["E119"], place_of_service="11",
        lines=[common_pb2.ServiceLine(line_number=1, procedure_code="99214", units=1, billed_cents=15_000,
                                      diagnosis_pointers=[1], date_of_service=DAY)]))
    replacement_id = corrected.claim_id
    replacement = wait_decided(parties, replacement_id, corrected.receipt.position)
    assert (replacement.frequency_code, replacement.replaces_claim_id) == ("7", original_id)
    # 130.00 allowed - 25.00 copay - 50.00 deductible (the original's was given back) = 55.00
    assert replacement.decision.total_paid_cents == 5_500

    # The run (after the replacement's decision) pays the replacement only.
    run = run_payments(parties, replacement.last_position)
    assert run == [(f"{replacement_id}/0", 5_500)]
    [cancelled] = remittance(parties, original_id, run.position)
    assert (cancelled.payment_id, cancelled.status, cancelled.cancel_reason, cancelled.trace_number) == (
        f"{original_id}/0", K.PAYMENT_STATUS_CANCELLED, f"replaced by {replacement_id}", "")
    assert (cancelled.amount_cents, cancelled.scheduled_cents) == (1_500, 1_500)
    [paid] = remittance(parties, replacement_id, run.position)
    assert (paid.status, paid.amount_cents) == (K.PAYMENT_STATUS_ISSUED, 5_500)
    # 25.00 copay + 50.00 deductible met, by the replacement alone
    assert accumulators(parties, replacement.last_position) == (5_000, 7_500)

    notices = notices_until(parties, run.position)
    assert kinds(notices, original_id, replacement_id) == [
        (original_id, K.NOTICE_KIND_ADJUDICATED), (original_id, K.NOTICE_KIND_REPLACED),
        (original_id, K.NOTICE_KIND_PAYMENT_CANCELLED), (replacement_id, K.NOTICE_KIND_ADJUDICATED)]
    replaced = one(notices, original_id, K.NOTICE_KIND_REPLACED)
    assert (replaced.status, replaced.replaced_by_claim_id) == (K.CLAIM_STATUS_REPLACED, replacement_id)
    cancel_notice = one(notices, original_id, K.NOTICE_KIND_PAYMENT_CANCELLED)
    assert (cancel_notice.payment_id, cancel_notice.amount_cents, cancel_notice.reason) == (
        f"{original_id}/0", 1_500, f"replaced by {replacement_id}")
    assert one(notices, replacement_id, K.NOTICE_KIND_ADJUDICATED).decision.total_paid_cents == 5_500
    assert_reconciled(database_url)


def test_a_claim_voided_after_the_payment_run_is_recouped_on_the_remittance(parties, database_url):
    set_up(parties)
    provider = parties.provider.provider
    submitted = provider.SubmitClaim(claim_request("void-late"))
    claim_id = submitted.claim_id
    claim = wait_decided(parties, claim_id, submitted.receipt.position)
    # 90.00 allowed - 25.00 copay - 50.00 deductible = 15.00 issued
    assert run_payments(parties, claim.last_position) == [(f"{claim_id}/0", 1_500)]

    voided = provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=claim_id, reason="billed in error"))
    [payment] = remittance(parties, claim_id, voided.receipt.position)
    assert payment.status == K.PAYMENT_STATUS_RECOUPED and payment.trace_number and payment.issued_on
    # 15.00 paid, then 15.00 taken back: the remittance nets 0.00
    assert entries(payment) == [(claim_id, 1_500, False, "", [1_500]),
                                (claim_id, -1_500, True, "voided: billed in error", [-1_500])]
    assert payment.amount_cents == sum(c.amount_cents for c in payment.claims) == 0
    assert (payment.scheduled_cents, payment.recouped_cents, payment.cancel_reason) == (1_500, 1_500, "")
    assert accumulators_become(parties, voided.receipt.position, (0, 0)) == (0, 0)

    notices = notices_until(parties, voided.receipt.position)
    assert kinds(notices, claim_id) == [(claim_id, K.NOTICE_KIND_ADJUDICATED), (claim_id, K.NOTICE_KIND_VOIDED),
                                        (claim_id, K.NOTICE_KIND_PAYMENT_RECOUPED)]
    assert one(notices, claim_id, K.NOTICE_KIND_VOIDED).reason == "billed in error"
    recouped = one(notices, claim_id, K.NOTICE_KIND_PAYMENT_RECOUPED)
    assert (recouped.payment_id, recouped.amount_cents, recouped.reason) == (f"{claim_id}/0", 1_500, "voided: billed in error")
    assert_reconciled(database_url)


def test_a_pended_claim_says_why_and_is_paid_the_engines_cost_share_once_resolved(parties, database_url):
    set_up(parties)
    provider, payer = parties.provider.provider, parties.payer.payer
    # 15,000.00 billed: above the plan's 10,000.00 review threshold
    submitted = provider.SubmitClaim(claim_request("big", code="99214", billed=1_500_000))
    claim_id = submitted.claim_id
    claim = wait_decided(parties, claim_id, submitted.receipt.position)
    assert claim.status == K.CLAIM_STATUS_PENDED
    assert [r.remark_code for r in claim.pend_reasons] == ["N10"] and claim.pend_reasons[0].description
    worklist = payer.ListPendedClaims(payer_pb2.ListPendedClaimsRequest(min_position=claim.last_position))
    assert [c.claim_id for c in worklist.claims] == [claim_id]
    assert [(r.remark_code, r.description) for r in worklist.claims[0].pend_reasons] == [
        (r.remark_code, r.description) for r in claim.pend_reasons]
    # Nothing is due while it waits.
    assert run_payments(parties, claim.last_position) == []

    resolved = payer.ResolvePendedClaim(payer_pb2.ResolvePendedClaimRequest(
        claim_id=claim_id, note="reviewed",
        approve=payer_pb2.PendedClaimApproval(lines=[payer_pb2.PendedLineApproval(line_number=1, allowed_cents=13_000)])))
    # 130.00 allowed - 25.00 copay - 50.00 deductible = 55.00 paid; the member owes 75.00
    assert (resolved.decision.total_paid_cents, resolved.decision.total_patient_responsibility_cents) == (5_500, 7_500)
    assert resolved.decision.outcome == K.OUTCOME_PAID

    # The payment scheduled with the review is in the run that waits for the review's receipt.
    run = run_payments(parties, resolved.receipt.position)
    assert run == [(f"{claim_id}/0", 5_500)]
    [payment] = remittance(parties, claim_id, run.position)
    assert (payment.status, payment.amount_cents) == (K.PAYMENT_STATUS_ISSUED, 5_500)
    [line] = payment.claims[0].lines
    assert (line.billed_cents, line.allowed_cents, line.paid_cents, line.patient_responsibility_cents) == (
        1_500_000, 13_000, 5_500, 7_500)
    assert list(payer.ListPendedClaims(payer_pb2.ListPendedClaimsRequest(min_position=resolved.receipt.position)).claims) == []
    after = provider.GetClaim(provider_pb2.GetClaimRequest(claim_id=claim_id, min_position=resolved.receipt.position)).claim
    assert (after.status, after.decision.total_paid_cents) == (K.CLAIM_STATUS_ADJUDICATED, 5_500)
    assert accumulators(parties, resolved.receipt.position) == (5_000, 7_500)  # 50.00 deductible, 25.00 + 50.00 out of pocket

    notices = notices_until(parties, resolved.receipt.position)
    assert kinds(notices, claim_id) == [(claim_id, K.NOTICE_KIND_PENDED), (claim_id, K.NOTICE_KIND_REVIEW_RESOLVED)]
    assert [r.remark_code for r in one(notices, claim_id, K.NOTICE_KIND_PENDED).pend_reasons] == ["N10"]
    assert one(notices, claim_id, K.NOTICE_KIND_REVIEW_RESOLVED).decision.total_paid_cents == 5_500
    assert_reconciled(database_url)


def test_a_lowering_overturn_after_the_payment_run_recoups_the_difference(parties, database_url):
    set_up(parties)
    provider, dispute = parties.provider.provider, parties.dispute.dispute
    # 1. An office visit takes the deductible; a lab panel the next day pays 20 % coinsurance.
    first = provider.SubmitClaim(visit("visit"))
    visit_id = first.claim_id
    decided = wait_decided(parties, visit_id, first.receipt.position)
    assert decided.decision.total_paid_cents == 1_500  # 90.00 - 25.00 copay - 50.00 deductible
    second = provider.SubmitClaim(visit("lab", day="2026-10-16", code="80053", billed=2_000))
    lab_id = second.claim_id
    lab = wait_decided(parties, lab_id, second.receipt.position)
    assert lab.decision.total_paid_cents == 1_200  # 15.00 allowed, deductible met: 80 % = 12.00
    assert sorted(run_payments(parties, lab.last_position)) == sorted([(f"{visit_id}/0", 1_500), (f"{lab_id}/0", 1_200)])

    # 2. The visit is voided (its deductible is free again); the lab claim's dispute is
    # overturned and decided again on today's accumulators: all 15.00 to the deductible.
    provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=visit_id, reason="duplicate"))
    opened = dispute.OpenDispute(dispute_pb2.OpenDisputeRequest(claim_id=lab_id, reason="recheck"))
    resolved = dispute.ResolveDispute(dispute_pb2.ResolveDisputeRequest(
        claim_id=lab_id, dispute_id=opened.dispute_id, resolution=dispute_pb2.DISPUTE_RESOLUTION_OVERTURNED, note="recheck"))
    assert resolved.decision.total_paid_cents == 0  # 15.00 allowed, all of it deductible
    assert resolved.decision.total_patient_responsibility_cents == 1_500
    last = resolved.receipt.position

    # 3. Both issued payments are recouped in full on the remittances.
    [lab_payment] = remittance(parties, lab_id, last)
    reason = f"dispute {opened.dispute_id} overturned"
    assert lab_payment.status == K.PAYMENT_STATUS_RECOUPED
    assert entries(lab_payment) == [(lab_id, 1_200, False, "", [1_200]), (lab_id, -1_200, True, reason, [-1_200])]
    assert lab_payment.amount_cents == sum(c.amount_cents for c in lab_payment.claims) == 0  # 12.00 - 12.00
    assert (lab_payment.scheduled_cents, lab_payment.recouped_cents) == (1_200, 1_200)
    [visit_payment] = remittance(parties, visit_id, last)
    assert visit_payment.status == K.PAYMENT_STATUS_RECOUPED
    assert entries(visit_payment)[1] == (visit_id, -1_500, True, "voided: duplicate", [-1_500])
    assert run_payments(parties, last) == []  # nothing new is due
    # The lab's 15.00 to the deductible, nothing else, once the adjudicator has taken the void off
    # (after the void's commit, so possibly after `last`: read at `last` alone, this raced it).
    assert accumulators_become(parties, last, (1_500, 1_500)) == (1_500, 1_500)

    notices = notices_until(parties, last)
    assert kinds(notices, visit_id, lab_id) == [
        (visit_id, K.NOTICE_KIND_ADJUDICATED), (lab_id, K.NOTICE_KIND_ADJUDICATED),
        (visit_id, K.NOTICE_KIND_VOIDED), (visit_id, K.NOTICE_KIND_PAYMENT_RECOUPED),
        (lab_id, K.NOTICE_KIND_DISPUTE_RESOLVED), (lab_id, K.NOTICE_KIND_PAYMENT_RECOUPED)]
    assert one(notices, lab_id, K.NOTICE_KIND_DISPUTE_RESOLVED).decision.total_paid_cents == 0
    recouped = one(notices, lab_id, K.NOTICE_KIND_PAYMENT_RECOUPED)
    assert (recouped.payment_id, recouped.amount_cents, recouped.reason) == (f"{lab_id}/0", 1_200, reason)
    assert one(notices, visit_id, K.NOTICE_KIND_PAYMENT_RECOUPED).amount_cents == 1_500
    assert_reconciled(database_url)


def test_a_payment_run_at_a_decisions_position_sees_the_payment_of_that_decision(parties, database_url):
    """The payer follows its stream and runs payments at each decision's position (or at the
    position GetClaim reports): the payment scheduled in the decision's commit is in the run, every
    time, however quickly the payer acts."""
    set_up(parties)
    seen: queue.Queue[common_pb2.AdjudicationNotice] = queue.Queue()
    stream = parties.payer.payer.SubscribeAdjudications(payer_pb2.SubscribeAdjudicationsRequest(), timeout=120)

    def listen() -> None:
        try:
            for item in stream:
                if item.WhichOneof("kind") == "notice":
                    seen.put(item.notice)
        except grpc.RpcError:
            pass

    threading.Thread(target=listen, daemon=True).start()
    try:
        for n in range(12):
            submitted = parties.provider.provider.SubmitClaim(visit(f"run-{n}", day=f"2026-09-{n + 1:02d}"))
            if n % 2 == 0:  # from the stream's notice
                notice = seen.get(timeout=20)
                assert (notice.claim_id, notice.kind) == (submitted.claim_id, K.NOTICE_KIND_ADJUDICATED)
                position = notice.position
            else:  # from the claim as GetClaim reads it
                position = wait_decided(parties, submitted.claim_id, submitted.receipt.position).last_position
                assert seen.get(timeout=20).claim_id == submitted.claim_id
            # the first visit: 90.00 - 25.00 copay - 50.00 deductible = 15.00; then 90.00 - 25.00 = 65.00
            expected = 1_500 if n == 0 else 6_500
            assert run_payments(parties, position) == [(f"{submitted.claim_id}/0", expected)], f"claim {n}"
    finally:
        stream.cancel()
    assert_reconciled(database_url)


def test_claimsctl_reconcile_is_clean_and_names_a_payment_written_behind_the_services_back(parties, database_url):
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(claim_request("tampered"))
    claim_id = submitted.claim_id
    claim = wait_decided(parties, claim_id, submitted.receipt.position)
    assert run_payments(parties, claim.last_position) == [(f"{claim_id}/0", 1_500)]  # 90.00 - 25.00 - 50.00

    clean = claimsctl_reconcile(database_url)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert '"clean": true' in clean.stdout
    report = json.loads(clean.stdout)
    assert report["claims"] == 1 and report["issued_cents"] == 1_500 and report["differences"] == []

    # A second payment of 9.99 for the claim, written behind the service's back.
    extra = Payment.schedule(actor="payer:rogue", payment_id=f"{claim_id}/1", payer_id=world.PAYER,
                             provider_id=world.NPI, claim_ids=[claim_id], amount_cents=999,
                             lines={claim_id: [{"line_number": 1, "paid_cents": 999}]})
    parties.service.ledger.save(extra)
    dirty = claimsctl_reconcile(database_url)
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert claim_id in dirty.stdout
    report = json.loads(dirty.stdout)
    assert report["clean"] is False
    # issued 15.00 + scheduled 9.99 != the 15.00 the decision pays
    assert report["differences"][0]["subject"] == claim_id and "scheduled 9.99" in report["differences"][0]["detail"]


def test_a_payment_run_at_the_last_notice_sees_its_payment_when_a_commit_outgrows_a_projection_batch(
        parties, database_url):
    """The same, when one adjudication commit holds more events than a projection batch (1,000):
    400 claims decided together. The worker processes are paused while they are submitted, and paused
    again the moment the read models have moved, so that the payer acts exactly then: a read model
    never stops inside a commit (its batch takes the rest of the commit along), so its stream has
    notified it of decisions up to a commit's end, and the run at the last notice's position holds
    every one of their payments."""
    set_up(parties)
    pids = [parties.service.workers.pid_of(role) for role in ("adjudicator", "projections")]
    assert None not in pids

    def signal_workers(sig: signal.Signals) -> None:
        for pid in pids:
            os.kill(pid, sig)

    def payments_position(conn: psycopg.Connection) -> int:
        return conn.execute("SELECT notification_id FROM ledger_tracking"
                            " WHERE application_name = 'projection.payments'").fetchone()[0]

    with psycopg.connect(database_url, autocommit=True) as conn:
        head = conn.execute(f"SELECT max(notification_id) FROM {EVENTS_TABLE}").fetchone()[0]
        deadline = time.monotonic() + 20
        while payments_position(conn) < head and time.monotonic() < deadline:
            time.sleep(0.02)
        signal_workers(signal.SIGSTOP)
        try:
            days = [f"2026-{month:02d}-{day:02d}" for month in range(2, 12) for day in range(1, 29)]  # 280 days
            requests = [visit(f"burst-{n}", day=days[n % len(days)], code=("99213", "99214")[n // len(days)])
                        for n in range(400)]
            with ThreadPoolExecutor(8) as pool:
                submitted = list(pool.map(parties.provider.provider.SubmitClaim, requests))
            last_submitted = max(s.receipt.position for s in submitted)
            signal_workers(signal.SIGCONT)
            deadline = time.monotonic() + 30
            while payments_position(conn) <= last_submitted and time.monotonic() < deadline:
                pass  # no sleep: pause the workers right after the read models' first batch of decisions
            signal_workers(signal.SIGSTOP)
            reached = payments_position(conn)
            ledger_head = conn.execute(f"SELECT max(notification_id) FROM {EVENTS_TABLE}").fetchone()[0]
            assert reached > last_submitted
            # The read model's position ends a commit: the next event (if any) is another transaction's.
            assert conn.execute(f"SELECT count(*) FROM {EVENTS_TABLE} a JOIN {EVENTS_TABLE} b ON b.notification_id ="
                                f" (SELECT min(notification_id) FROM {EVENTS_TABLE} WHERE notification_id > a.notification_id)"
                                " WHERE a.notification_id = %s AND a.xmin = b.xmin", (reached,)).fetchone()[0] == 0

            notices = notices_until(parties, reached)
            decided = [n for n in notices if n.kind == K.NOTICE_KIND_ADJUDICATED and n.decision.total_paid_cents > 0]
            assert decided
            issued = parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest(
                min_position=decided[-1].position, max_payments=1000))
            paid = {c.claim_id for p in issued.payments for c in p.claims}
            unpaid = [(n.claim_id, n.position) for n in decided if n.claim_id not in paid]
            assert unpaid == [], (
                f"the run at position {decided[-1].position} (the last notice) left out the payments of "
                f"{len(unpaid)} of the {len(decided)} decisions notified, scheduled in their decisions' commit: "
                f"(claim, decision position) {unpaid[:3]}")
        finally:
            signal_workers(signal.SIGCONT)
    run_payments(parties, ledger_head)  # the rest of the 400
    assert_reconciled(database_url)
