"""Money that reconciles, through the commands and the adjudicator on a real ledger: every case a
payer meets when decisions change before or after its payment run. Each ends with a clean
`reconcile` (ledger and read models)."""

from __future__ import annotations

from datetime import date

import pytest

from claims_service.adjudication import AdjudicationFollower
from claims_service.commands import Commands
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.payment import Payment
from claims_service.errors import StateError, ValidationError
from claims_service.reconcile import reconcile
from tests import world
from tests.integration.projections.helpers import drain

PROVIDER = "provider:" + world.NPI
PAYER = "payer:" + world.PAYER
LAB = {"diagnosis_codes": ["E119"]}


@pytest.fixture
def settle(service):
    follower = AdjudicationFollower(service.ledger)

    def run() -> None:
        while follower.process_available():
            pass

    return run


def payment(service: Commands, claim_id: str, n: int = 0) -> Payment:
    return service.ledger.repository.get(Payment.create_id(f"{claim_id}/{n}"))


def payment_run(service: Commands, *claim_ids: str) -> list[Payment]:
    """The payer's run over every payment of these claims that is still scheduled."""
    ids = []
    for claim_id in claim_ids:
        n = 0
        while True:
            try:
                found = payment(service, claim_id, n)
            except Exception:
                break
            if found.status == "scheduled":
                ids.append(found.payment_id)
            n += 1
    issued, _ = service.issue_payments(actor=PAYER, payer_id=world.PAYER, payment_ids=ids)
    return issued


def assert_reconciles(service: Commands, *, in_flight: int = 0) -> None:
    """Reconcile clean, with the adjudicator caught up (or, given `in_flight`, left where it is)."""
    if not in_flight:
        follower = AdjudicationFollower(service.ledger)
        while follower.process_available():
            pass
    drain(service.ledger.database_url)
    report = reconcile(service.ledger.database_url, wait_seconds=0)
    assert report.clean, report.summary()
    assert report.rows_compared > 0
    assert report.in_flight == in_flight


def oop_met(service: Commands, member: str = world.MEMBER) -> tuple[int, int]:
    period = service.ledger.repository.get(BenefitPeriod.create_id(world.PAYER, member, 2026))
    return period.deductible_met_cents, period.oop_met_cents


def test_a_claim_voided_before_the_payment_run_is_never_paid(service, settle):
    # 1. Decided and scheduled (15.00), then voided before the payer's run.
    claim = service.submit_claim(actor=PROVIDER, **world.claim_body("void-early"))
    settle()
    assert payment(service, claim.claim_id).status == "scheduled"
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=claim.claim_id, reason="wrong patient")
    # 2. The void cancelled the payment in its own commit: the run finds nothing to issue.
    cancelled = payment(service, claim.claim_id)
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "voided: wrong patient")
    assert service.issue_payments(actor=PAYER, payer_id=world.PAYER, payment_ids=[cancelled.payment_id]) == ([], None)
    # 3. Until the adjudicator takes it off the accumulators, reconcile counts it as in flight.
    assert_reconciles(service, in_flight=1)
    settle()
    assert oop_met(service) == (0, 0)
    assert_reconciles(service)


def test_a_claim_voided_after_the_payment_run_is_recouped(service, settle):
    claim = service.submit_claim(actor=PROVIDER, **world.claim_body("void-late"))
    settle()
    [issued] = payment_run(service, claim.claim_id)
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=claim.claim_id, reason="billed in error")
    taken = payment(service, claim.claim_id)
    assert (taken.status, taken.reversed_cents, taken.net_cents) == ("recouped", 1_500, 0)
    assert taken.reversals[0]["lines"] == {claim.claim_id: [{"line_number": 1, "paid_cents": 1_500}]}
    assert_reconciles(service)


def test_a_void_of_a_claim_changed_since_it_was_read_is_worked_out_again_on_the_fresh_claim(service, settle, monkeypatch):
    """The void changes the claim as the command read it first; when another write changed the
    claim meanwhile (here an attachment), the save conflicts, and the void is worked out again on
    the claim read afresh, its scheduled payment cancelled with it in the same commit."""
    claim = service.submit_claim(actor=PROVIDER, **world.claim_body("void-stale"))
    settle()
    stale = service.own_claim(claim.claim_id, world.NPI)
    fresh = service.ledger.repository.get(stale.id)
    fresh.add_attachment(actor=PROVIDER, sha256="ab" * 32, size_bytes=10, media_type="application/pdf")
    service.ledger.record(fresh)
    monkeypatch.setattr(service, "own_claim", lambda claim_id, provider_id=None: stale)
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=claim.claim_id, reason="wrong patient")
    voided = service.ledger.repository.get(stale.id)
    assert (voided.status, voided.version, len(voided.attachments)) == ("voided", fresh.version + 1, 1)
    assert payment(service, claim.claim_id).status == "cancelled"
    settle()
    assert oop_met(service) == (0, 0)
    assert_reconciles(service)


def test_a_replaced_claim_is_paid_once_the_replacement_in_its_place(service, settle):
    # 1. The original (15.00) is replaced before the payer's run; the replacement bills 99214.
    original = service.submit_claim(actor=PROVIDER, **world.claim_body("orig"))
    settle()
    replacement = service.correct_claim(actor=PROVIDER, original_claim_id=original.claim_id,
                                        **world.claim_body("repl", lines=[world.line(1, "99214", 15_000)]))
    settle()
    # 2. The original's payment is cancelled with the replacement; only the replacement is due:
    # 130.00 allowed, 25.00 copay, the 50.00 deductible (the original's was given back): 55.00.
    assert payment(service, original.claim_id).status == "cancelled"
    issued = payment_run(service, original.claim_id, replacement.claim_id)
    assert [(p.payment_id, p.amount_cents) for p in issued] == [(f"{replacement.claim_id}/0", 5_500)]
    assert oop_met(service) == (5_000, 7_500)
    assert_reconciles(service)


def test_a_lowering_overturn_while_scheduled_cancels_and_pays_the_lower_amount(service, settle):
    # 1. An office visit takes the deductible; a lab claim after it pays 12.00 (20 % coinsurance).
    visit = service.submit_claim(actor=PROVIDER, **world.claim_body("visit"))
    settle()
    lab = service.submit_claim(actor=PROVIDER, **world.claim_body("lab", lines=[world.line(1, "80053", 2_000, day=date(2026, 10, 16))], **LAB))
    settle()
    assert payment(service, lab.claim_id).amount_cents == 1_200
    # 2. The visit is voided (the deductible is free again) and the lab claim's dispute is
    # overturned: decided again on today's accumulators, the lab claim goes to the deductible.
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=visit.claim_id, reason="duplicate")
    dispute_id, _ = service.open_dispute(actor=PROVIDER, claim_id=lab.claim_id, reason="recheck")
    _, decision = service.resolve_dispute(actor="dispute:team", claim_id=lab.claim_id, dispute_id=dispute_id,
                                          resolution="overturned", note="recheck")
    assert decision["total_paid_cents"] == 0 and decision["accumulator_changes"][0]["deductible_cents"] == 1_500
    # 3. A decision lowered to 0 still settles: the scheduled 12.00 is cancelled, nothing is due.
    assert payment(service, lab.claim_id).status == "cancelled"
    assert payment_run(service, lab.claim_id) == []
    settle()  # the adjudicator takes the voided visit off the accumulators
    assert oop_met(service) == (1_500, 1_500)
    assert_reconciles(service)


def test_a_lowering_overturn_after_the_payment_run_recoups_the_difference(service, settle):
    visit = service.submit_claim(actor=PROVIDER, **world.claim_body("visit"))
    settle()
    lab = service.submit_claim(actor=PROVIDER, **world.claim_body("lab", lines=[world.line(1, "80053", 2_000, day=date(2026, 10, 16))], **LAB))
    settle()
    payment_run(service, visit.claim_id, lab.claim_id)
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=visit.claim_id, reason="duplicate")
    dispute_id, _ = service.open_dispute(actor=PROVIDER, claim_id=lab.claim_id, reason="recheck")
    service.resolve_dispute(actor="dispute:team", claim_id=lab.claim_id, dispute_id=dispute_id,
                            resolution="overturned", note="recheck")
    taken = payment(service, lab.claim_id)
    assert (taken.status, taken.amount_cents, taken.reversed_cents) == ("recouped", 1_200, 1_200)
    assert_reconciles(service)


def test_a_raising_overturn_pays_only_the_difference(service, settle):
    # 1. Six units of 97110 under 2026.1 are cut to four (MUE); 2026.2 allows six.
    therapy = world.claim_body("therapy", lines=[world.line(1, "97110", 24_000, units=6)], diagnosis_codes=["M5450"])
    claim = service.submit_claim(actor=PROVIDER, **therapy)
    settle()
    first = payment(service, claim.claim_id)
    payment_run(service, claim.claim_id)
    # 2. Overturned under 2026.2: the first payment stands, a second pays the difference.
    dispute_id, _ = service.open_dispute(actor=PROVIDER, claim_id=claim.claim_id, reason="six units were given")
    _, decision = service.resolve_dispute(actor="dispute:team", claim_id=claim.claim_id, dispute_id=dispute_id,
                                          resolution="overturned", note="2026.2", ruleset_version="2026.2")
    second = payment(service, claim.claim_id, 1)
    assert payment(service, claim.claim_id).status == "issued"
    assert second.status == "scheduled"
    assert first.amount_cents + second.amount_cents == decision["total_paid_cents"]
    assert_reconciles(service)


def test_a_review_approval_is_capped_by_the_out_of_pocket_maximum(service, settle):
    # 1. A member with a small plan: 50.00 deductible, 20 % coinsurance, at most 155.00 out of pocket.
    terms = {**world.TERMS, "oop_max_cents": 15_500, "cost_share": {"default": {"copay_cents": 0, "coinsurance_bp": 2000}}}
    service.enroll_member(actor=world.ADMIN, member_id="M-SMALL", payer_id=world.PAYER, plan_id="ACME-BRONZE",
                          effective_date=date(2026, 1, 1), terms=terms)
    big = service.submit_claim(actor=PROVIDER, **world.claim_body("big", member_id="M-SMALL", lines=[world.line(1, "99214", 1_200_000)]))
    settle()
    assert service.own_claim(big.claim_id).pend_reasons == ["N10"]
    # 2. The reviewer allows 2,000.00: 50.00 deductible, then 20 % would be 390.00, capped: the
    # member owes 155.00 in all, 1,845.00 is paid, and the deductible gets its share.
    _, decision = service.resolve_pended_claim(actor=PAYER, payer_id=world.PAYER, claim_id=big.claim_id, note="ok",
                                               approve=[{"line_number": 1, "allowed_cents": 200_000}])
    assert (decision["total_paid_cents"], decision["total_patient_responsibility_cents"]) == (184_500, 15_500)
    assert decision["accumulator_changes"] == [{"plan_year": 2026, "deductible_cents": 5_000, "oop_cents": 15_500, "benefit_units": {}}]
    assert decision["outcome"] == "PAID"
    assert oop_met(service, "M-SMALL") == (5_000, 15_500)
    assert payment(service, big.claim_id).amount_cents == 184_500
    # 3. The review is recorded with its facts and resolution, and replays to the same decision.
    import adjudicator
    from claims_service.adjudication.facts import claim_input_of

    claim = service.own_claim(big.claim_id)
    replayed = adjudicator.review(claim_input_of(claim), adjudicator.Facts.model_validate(claim.review["facts"]),
                                  adjudicator.get_ruleset(claim.ruleset_version),
                                  adjudicator.Resolution.from_json(claim.review["resolution"]))
    assert replayed.model_dump(mode="json") == decision
    assert_reconciles(service)


def test_a_review_denial_uses_the_reviewers_code_and_moves_nothing(service, settle):
    big = service.submit_claim(actor=PROVIDER, **world.claim_body("big", lines=[world.line(1, "99214", 1_200_000)]))
    settle()
    with pytest.raises(ValidationError, match="remark"):
        service.resolve_pended_claim(actor=PAYER, payer_id=world.PAYER, claim_id=big.claim_id, note="no",
                                     deny=("CO", "16"))
    _, decision = service.resolve_pended_claim(actor=PAYER, payer_id=world.PAYER, claim_id=big.claim_id, note="no",
                                               deny=("CO", "B7"))
    assert decision["outcome"] == "DENIED" and decision["lines"][0]["adjustments"] == [
        {"group": "CO", "carc": "B7", "amount_cents": 1_200_000}]
    with pytest.raises(StateError):
        service.resolve_pended_claim(actor=PAYER, payer_id=world.PAYER, claim_id=big.claim_id, note="again",
                                     deny=("CO", "B7"))
    assert_reconciles(service)


def test_reconcile_names_a_payment_that_does_not_match_its_decision(service, settle, database_url):
    claim = service.submit_claim(actor=PROVIDER, **world.claim_body("tampered"))
    settle()
    # A second payment written behind the service's back (as a buggy or hostile writer would).
    extra = Payment.schedule(actor="payer:rogue", payment_id=f"{claim.claim_id}/1", payer_id=world.PAYER,
                             provider_id=world.NPI, claim_ids=[claim.claim_id], amount_cents=999,
                             lines={claim.claim_id: [{"line_number": 1, "paid_cents": 999}]})
    service.ledger.save(extra)
    drain(database_url)
    report = reconcile(database_url, wait_seconds=0)
    assert not report.clean
    assert report.differences[0].subject == claim.claim_id and "scheduled 24.99" in report.differences[0].detail
