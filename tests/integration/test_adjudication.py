"""The adjudicator following a real ledger: decisions recorded with their facts and rule set,
accumulators moved exactly once, voids and replacements reversing them."""

from __future__ import annotations

import threading
from datetime import date
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import OperationalError

import adjudicator
from claims_service.adjudication import TRACKING_NAME, AdjudicationFollower
from claims_service.adjudication.facts import claim_input_of
from claims_service.commands import Commands
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.payment import Payment
from claims_service.adjudication.bundles import export_claim_bundle as export_bundle
from claims_service.adjudication.bundles import verify_claim_bundle as verify_bundle
from claims_service.ledger.checkpointer import Checkpointer
from claims_service.ledger.verify import verify_ledger
from tests import world

PROVIDER = "provider:" + world.NPI


def drain(follower: AdjudicationFollower) -> None:
    while follower.process_available():
        pass


def period(service: Commands, year: int = 2026) -> BenefitPeriod:
    return service.ledger.repository.get(BenefitPeriod.create_id(world.PAYER, world.MEMBER, year))


def test_a_clean_claim_is_adjudicated_with_its_facts_and_rule_set(service):
    submitted = service.submit_claim(actor=PROVIDER, **world.claim_body("k1"))
    drain(AdjudicationFollower(service.ledger))
    claim = service.own_claim(submitted.claim_id)
    assert claim.status == "adjudicated"
    decision = claim.decision
    # 120.00 billed; fee schedule 90.00 (CO-45 30.00); office-visit copay 25.00 (PR-3), then the
    # 50.00 deductible (PR-1); no coinsurance on office visits: 15.00 paid.
    assert (decision["total_billed_cents"], decision["total_allowed_cents"], decision["total_paid_cents"],
            decision["total_patient_responsibility_cents"]) == (12_000, 9_000, 1_500, 7_500)
    adjustments = {(a["group"], a["carc"]): a["amount_cents"] for a in decision["lines"][0]["adjustments"]}
    assert adjustments == {("CO", "45"): 3_000, ("PR", "3"): 2_500, ("PR", "1"): 5_000}
    assert claim.ruleset_version == "2026.1"
    assert claim.ruleset_hash == adjudicator.get_ruleset("2026.1").content_hash
    replayed = adjudicator.adjudicate(
        claim_input_of(claim),
        adjudicator.Facts.model_validate(claim.facts),
        adjudicator.get_ruleset(claim.ruleset_version),
    )
    assert replayed.model_dump(mode="json") == decision
    payment = service.ledger.repository.get(Payment.create_id(f"{submitted.claim_id}/0"))
    assert payment.amount_cents == 1_500 and payment.status == "scheduled"
    assert verify_ledger(service.ledger.database_url).intact


def test_the_deductible_moves_once_and_a_void_takes_it_back(service):
    lab = world.claim_body("lab", lines=[world.line(1, "80053", 20_000)], diagnosis_codes=["E119"])
    submitted = service.submit_claim(actor=PROVIDER, **lab)
    follower = AdjudicationFollower(service.ledger)
    drain(follower)
    drain(follower)  # nothing new: nothing moves twice
    assert period(service).deductible_met_cents == 1_500
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=submitted.claim_id, reason="billed in error")
    drain(follower)
    assert period(service).deductible_met_cents == 0


def test_a_duplicate_is_denied_until_the_original_is_voided(service):
    follower = AdjudicationFollower(service.ledger)
    first = service.submit_claim(actor=PROVIDER, **world.claim_body("a"))
    second = service.submit_claim(actor=PROVIDER, **world.claim_body("b"))
    drain(follower)
    duplicate = service.own_claim(second.claim_id).decision
    assert duplicate["outcome"] == "DENIED"
    assert duplicate["lines"][0]["adjustments"][0]["group"] == "OA" and duplicate["lines"][0]["adjustments"][0]["carc"] == "18"
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=first.claim_id, reason="wrong member")
    third = service.submit_claim(actor=PROVIDER, **world.claim_body("c"))
    drain(follower)
    assert service.own_claim(third.claim_id).decision["outcome"] == "PAID"


def test_a_replacement_reverses_the_original_before_it_is_judged(service):
    follower = AdjudicationFollower(service.ledger)
    original = service.submit_claim(actor=PROVIDER, **world.claim_body("orig", lines=[world.line(1, "80053", 20_000)]))
    drain(follower)
    assert period(service).deductible_met_cents == 1_500
    body = world.claim_body("fix", lines=[world.line(1, "80053", 20_000), world.line(2, "85025", 2_000)])
    body.pop("idempotency_key")
    replacement = service.correct_claim(actor=PROVIDER, original_claim_id=original.claim_id, idempotency_key="fix", **body)
    drain(follower)
    assert service.own_claim(original.claim_id).status == "replaced"
    assert service.own_claim(replacement.claim_id).status == "adjudicated"
    assert period(service).deductible_met_cents == 2_500  # 15.00 + 10.00, the original's 15.00 not counted twice


def test_concurrent_claims_for_one_member_share_one_deductible(service):
    keys = [f"c{i}" for i in range(12)]
    errors: list[BaseException] = []

    def submit(key: str) -> None:
        try:
            service.submit_claim(actor=PROVIDER, **world.claim_body(key, lines=[world.line(1, "97110", 10_000, day=date(2026, 10, 1 + keys.index(key)))], diagnosis_codes=["M5450"]))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    followers = [AdjudicationFollower(service.ledger) for _ in range(2)]
    runners = [threading.Thread(target=drain, args=(f,)) for f in followers]
    for thread in threads:
        thread.join()
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    drain(followers[0])
    assert not errors
    # 12 × 30.00 allowed against a 50.00 deductible: met exactly once, never more.
    assert period(service).deductible_met_cents == 5_000
    assert service.ledger.recorder.max_tracking_id(TRACKING_NAME) > 0


def test_every_decision_in_a_large_random_history_replays_identically(service):
    """Random claims (clean, duplicates, non-covered, high-dollar, multi-line, two plan years),
    voids and replacements, adjudicated from the ledger; then every recorded decision is re-run
    from its recorded facts and rule set: 100 % identical, to the cent."""
    import random

    rng = random.Random(20261128)
    follower = AdjudicationFollower(service.ledger)
    codes = [("99213", 12_000, ["E119"]), ("80053", 2_500, ["E119"]), ("85025", 1_500, ["E119"]),
             ("97110", 9_000, ["M5450"]), ("97140", 4_000, ["M5450"]), ("93000", 3_000, ["I10"]),
             ("99214", 1_600_000, ["E119"])]
    submitted: list[str] = []
    for n in range(160):
        lines, diagnoses = [], []
        for number in range(1, rng.randint(1, 4) + 1):
            code, billed, dx = rng.choice(codes)
            day = date(rng.choice((2025, 2026)), rng.randint(1, 10), rng.randint(1, 28)) if n % 7 == 0 else date(2026, rng.randint(1, 10), rng.randint(1, 28))
            if dx[0] not in diagnoses:
                diagnoses.append(dx[0])
            units = rng.randint(1, 5) if code == "97110" else 1
            line = world.line(number, code, billed * units, units=units, day=day)
            line["diagnosis_pointers"] = [diagnoses.index(dx[0]) + 1]
            lines.append(line)
        body = world.claim_body(f"h{n}", lines=lines, diagnosis_codes=diagnoses)
        submitted.append(service.submit_claim(actor=PROVIDER, **body).claim_id)
        if n % 20 == 19:
            drain(follower)
            decided = [c for c in submitted if service.own_claim(c).status == "adjudicated"]
            for claim_id in rng.sample(decided, min(2, len(decided))):
                if rng.random() < 0.5:
                    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=claim_id, reason="random void")
                else:
                    fix = world.claim_body(f"fix-{claim_id}", lines=[world.line(1, "99213", 11_000)])
                    fix.pop("idempotency_key")
                    service.correct_claim(actor=PROVIDER, original_claim_id=claim_id, idempotency_key=f"fix-{claim_id}", **fix)
    drain(follower)
    with service.ledger.datastore.transaction(commit=False) as curs:
        curs.execute("SELECT DISTINCT originator_id FROM ledger_events WHERE topic LIKE '%%Claim.Adjudicated' OR topic LIKE '%%Claim.Pended'")
        decided_ids = [str(row["originator_id"]) for row in curs.fetchall()]
    assert len(decided_ids) > 150
    outcomes = set()
    for claim_id in decided_ids:
        replay = service.replay(claim_id)
        assert replay.identical, (claim_id, replay.differences)
        outcomes.add(replay.recorded["outcome"])
    assert {"PAID", "DENIED", "PENDED"} <= outcomes


def test_an_overturned_dispute_pays_only_the_difference_line_by_line(service):
    follower = AdjudicationFollower(service.ledger)
    body = world.claim_body("therapy", lines=[world.line(1, "97110", 18_000, units=6)], diagnosis_codes=["M5450"])
    submitted = service.submit_claim(actor=PROVIDER, **body)
    drain(follower)
    first = service.own_claim(submitted.claim_id).decision
    assert first["lines"][0]["adjustments"][0]["carc"] == "151"  # two units over the daily limit of 4
    dispute_id, _ = service.open_dispute(actor="dispute:team", claim_id=submitted.claim_id, reason="six were needed")
    _, decision = service.resolve_dispute(actor="dispute:team", claim_id=submitted.claim_id, dispute_id=dispute_id,
                                          resolution="overturned", note="2026.2 allows six", ruleset_version="2026.2")
    drain(follower)
    second = service.ledger.repository.get(Payment.create_id(f"{submitted.claim_id}/1"))
    difference = decision["total_paid_cents"] - first["total_paid_cents"]
    assert difference > 0 and second.amount_cents == difference
    assert sum(line["paid_cents"] for line in second.lines[submitted.claim_id]) == difference
    assert service.ledger.recorder.max_tracking_id(TRACKING_NAME) == service.ledger.head().position  # not stuck


def test_a_claim_the_rule_set_cannot_decide_is_pended_and_does_not_stall_the_others(service, monkeypatch):
    import claims_service.adjudication.follower as adjudication

    real = adjudicator.adjudicate

    def failing_on_one(claim, facts, ruleset):
        if claim.lines[0].billed_cents == 13_131:
            raise RuntimeError("a rule-set defect")
        return real(claim, facts, ruleset)

    monkeypatch.setattr(adjudication.adjudicator, "adjudicate", failing_on_one)
    bad = service.submit_claim(actor=PROVIDER, **world.claim_body("bad", lines=[world.line(1, "99213", 13_131)]))
    good = service.submit_claim(actor=PROVIDER, **world.claim_body("good", lines=[world.line(1, "80053", 2_000)]))
    drain(AdjudicationFollower(service.ledger))
    stuck = service.own_claim(bad.claim_id)
    assert stuck.status == "pended"
    assert stuck.decision["lines"][0]["adjustments"] == [{"group": "OA", "carc": "133", "amount_cents": 13_131}]
    assert service.own_claim(good.claim_id).status == "adjudicated"
    replay = service.replay(bad.claim_id)
    assert not replay.identical and "cannot decide" in replay.differences[0]


def test_authorised_units_are_spent_across_claims(service):
    service.authorize_prior(actor="admin:test", payer_id=world.PAYER, member_id=world.MEMBER, auth_id="PA-1",
                            procedure_code="73721", units=2, valid_from=date(2026, 3, 1), valid_to=date(2026, 6, 30))
    follower = AdjudicationFollower(service.ledger)
    scan = {"diagnosis_codes": ["M1711"]}
    first = service.submit_claim(actor=PROVIDER, **world.claim_body("scan-1", lines=[world.line(1, "73721", 50_000, day=date(2026, 3, 10))], **scan))
    second = service.submit_claim(actor=PROVIDER, **world.claim_body("scan-2", lines=[world.line(1, "73721", 50_000, day=date(2026, 4, 10))], **scan))
    third = service.submit_claim(actor=PROVIDER, **world.claim_body("scan-3", lines=[world.line(1, "73721", 50_000, day=date(2026, 5, 10))], **scan))
    drain(follower)
    carcs = [[a["carc"] for a in service.own_claim(c.claim_id).decision["lines"][0]["adjustments"]] for c in (first, second, third)]
    assert "198" not in carcs[0] and "198" not in carcs[1]
    assert "198" in carcs[2]  # the authorisation's two units were spent by the first two scans
    facts = service.own_claim(third.claim_id).facts
    assert facts["prior_authorizations"][0]["units_used"] == 2


def test_a_long_running_follower_sees_what_others_changed_between_its_batches(service):
    """The follower keeps aggregates between batches; another writer's change must still count."""
    follower = AdjudicationFollower(service.ledger)
    first = service.submit_claim(actor=PROVIDER, **world.claim_body("before", lines=[world.line(1, "99213", 12_000, day=date(2026, 9, 1))]))
    drain(follower)  # the member, provider, period and payment are now held by the follower
    payment_id = f"{first.claim_id}/0"
    service.issue_payments(actor="payer:" + world.PAYER, payer_id=world.PAYER, payment_ids=[payment_id])
    service.terminate_coverage(actor=world.ADMIN, payer_id=world.PAYER, member_id=world.MEMBER, termination_date=date(2026, 9, 30))
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=first.claim_id, reason="billed in error")
    after = service.submit_claim(actor=PROVIDER, **world.claim_body("after", lines=[world.line(1, "80053", 2_000, day=date(2026, 10, 15))],
                                                                    diagnosis_codes=["E119"]))
    drain(follower)
    # The payment issued by the payer (not the scheduled one the follower wrote) is reversed ...
    payment = service.ledger.repository.get(Payment.create_id(payment_id))
    assert payment.status == "recouped" and payment.reversed_cents == payment.amount_cents == 1_500
    # ... and the terminated coverage denies a service after its end.
    decision = service.own_claim(after.claim_id).decision
    assert decision["total_paid_cents"] == 0
    assert "27" in [a["carc"] for a in decision["lines"][0]["adjustments"]]
    # What it keeps between batches is reference data and benefit periods, not claims or payments.
    held = follower.cache.aggregates()
    assert held and not any(a is None or isinstance(a, (Claim, Payment)) for a in held)


def test_a_batch_that_fails_to_commit_leaves_nothing_of_itself_in_the_follower(service, monkeypatch):
    follower = AdjudicationFollower(service.ledger)
    drain(follower)
    service.submit_claim(actor=PROVIDER, **world.claim_body("lab", lines=[world.line(1, "80053", 20_000)], diagnosis_codes=["E119"]))
    real_record = service.ledger.record

    def failing_once(*aggregates, **kwargs):
        monkeypatch.setattr(service.ledger, "record", real_record)
        raise OperationalError("the database went away mid-commit")

    monkeypatch.setattr(service.ledger, "record", failing_once)
    with pytest.raises(OperationalError):
        follower.process_available()
    drain(follower)
    # Applied once: the failed attempt's change to the benefit period was not kept.
    assert period(service).deductible_met_cents == 1_500
    assert len(period(service).earlier_lines(excluding=set())) == 1


def test_a_claim_that_trips_the_follower_itself_is_pended_and_the_others_go_on(service, monkeypatch):
    """A defect outside the rule set (here: applying a claim to the accumulators) must neither stall
    the claims after it nor leave half of its effects behind."""
    import claims_service.adjudication.follower as follower_module

    real = follower_module.settle

    def failing_on_one(load, claim, **kwargs):
        if claim.lines[0]["billed_cents"] == 13_131:
            raise KeyError("a defect in the follower")
        return real(load, claim, **kwargs)

    monkeypatch.setattr(follower_module, "settle", failing_on_one)
    lab = {"diagnosis_codes": ["E119"]}
    before = service.submit_claim(actor=PROVIDER, **world.claim_body("before", lines=[world.line(1, "80053", 2_000)], **lab))
    bad = service.submit_claim(actor=PROVIDER, **world.claim_body("bad", lines=[world.line(1, "80053", 13_131)], **lab))
    after = service.submit_claim(actor=PROVIDER, **world.claim_body("after", lines=[world.line(1, "80053", 2_000, day=date(2026, 10, 16))], **lab))
    follower = AdjudicationFollower(service.ledger)
    drain(follower)
    stuck = service.own_claim(bad.claim_id)
    assert stuck.status == "pended" and stuck.facts == {}
    assert stuck.decision["lines"][0]["adjustments"] == [{"group": "OA", "carc": "133", "amount_cents": 13_131}]
    assert [service.own_claim(c.claim_id).status for c in (before, after)] == ["adjudicated", "adjudicated"]
    # Only the two good claims moved the deductible (15.00 allowed each).
    assert period(service).deductible_met_cents == 3_000
    assert {line["claim_id"] for line in period(service).earlier_lines(excluding=set())} == {before.claim_id, after.claim_id}
    assert "cannot decide" in service.replay(bad.claim_id).differences[0]
    assert verify_ledger(service.ledger.database_url).intact
    # Its bundle verifies offline, and says why its decision cannot be replayed.
    signer = Checkpointer(service.ledger.database_url, Ed25519PrivateKey.generate(), origin="claims.test/log")
    signer.checkpoint_now()
    report = verify_bundle(export_bundle(service.ledger.database_url, UUID(bad.claim_id), signer), signer.verifier_key)
    assert report.ok and "pended for manual review" in report.replay
