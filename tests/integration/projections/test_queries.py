"""The read models over a real flow: a provider's claims, a payer's worklist and notices, a
member's accumulators and explanations of benefits, payments and the dispute timeline."""

from __future__ import annotations

import base64
import json

import psycopg
import pytest

from claims_service.adjudication import AdjudicationFollower
from claims_service.domain.benefits import BenefitPeriod
from claims_service.errors import ClaimNotFoundError, MemberNotFoundError, PaymentNotFoundError, ValidationError
from projections.benefits import explanation_of_benefits, member_accumulators, member_eobs
from projections.claims import adjudication_notices, claim_changes, get_claim, list_claims, payer_worklist
from projections.payments import get_payment, list_payments, payment_by_trace, payments_for_claim, scheduled_payments_due
from projections.timeline import claim_timeline
from tests import world
from tests.integration.projections.helpers import assert_equals_from_scratch, drain

PROVIDER = "provider:" + world.NPI
PAYER = "payer:" + world.PAYER


@pytest.fixture
def flow(service, database_url):
    """1. A clean claim, a high-dollar claim (pended, then approved by a reviewer), a lab claim
    (voided), a dispute (upheld) and a payment issued; projections caught up."""
    follower = AdjudicationFollower(service.ledger)

    def settle() -> None:
        while follower.process_available():
            pass

    clean = service.submit_claim(actor=PROVIDER, **world.claim_body("clean"))
    big = service.submit_claim(actor=PROVIDER, **world.claim_body("big", lines=[world.line(1, "99214", 1_200_000)]))
    lab = service.submit_claim(actor=PROVIDER, **world.claim_body("lab", lines=[world.line(1, "80053", 20_000, day=world.date(2026, 10, 20))]))
    settle()
    service.resolve_pended_claim(actor=PAYER, payer_id=world.PAYER, claim_id=big.claim_id, note="records seen",
                                 approve=[{"line_number": 1, "allowed_cents": 13_000}])
    settle()
    service.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=lab.claim_id, reason="billed in error")
    dispute_id, _ = service.open_dispute(actor=PROVIDER, claim_id=clean.claim_id, reason="copay applied twice")
    service.resolve_dispute(actor="dispute:team", claim_id=clean.claim_id, dispute_id=dispute_id,
                            resolution="upheld", note="copay is right")
    settle()
    service.issue_payments(actor=PAYER, payer_id=world.PAYER, payment_ids=[f"{clean.claim_id}/0"])
    settle()
    drain(database_url)
    conn = psycopg.connect(database_url, autocommit=True)
    yield service, conn, {"clean": clean.claim_id, "big": big.claim_id, "lab": lab.claim_id, "dispute": dispute_id}
    conn.close()


def test_claim_status_and_its_visibility(flow):
    service, conn, ids = flow
    # 2. Each claim's current state, for its provider and its payer only.
    clean = get_claim(conn, ids["clean"], provider_id=world.NPI)
    assert (clean.status, clean.outcome, clean.total_paid_cents) == ("adjudicated", "PAID", 1_500)
    assert clean.ruleset_version == "2026.1" and len(clean.ruleset_hash) == 64
    assert clean.disputes[0]["resolution"] == "upheld" and clean.open_dispute_id is None
    big = get_claim(conn, ids["big"], payer_id=world.PAYER)
    # Allowed 130.00 by the reviewer; the plan's office-visit copay 25.00 (the deductible went to
    # the clean claim): 105.00 paid, as the engine would have.
    assert (big.status, big.total_paid_cents, big.review["note"]) == ("adjudicated", 10_500, "records seen")
    lab = get_claim(conn, ids["lab"])
    assert (lab.status, lab.void_reason) == ("voided", "billed in error")
    assert lab.first_date_of_service.isoformat() == "2026-10-20"
    for kwargs in ({"provider_id": world.OTHER_NPI}, {"payer_id": "PAYER-OTHER"}):
        with pytest.raises(ClaimNotFoundError):
            get_claim(conn, ids["clean"], **kwargs)
    with pytest.raises(ValidationError):
        get_claim(conn, "not-a-uuid")
    with pytest.raises(ValidationError, match="member_id"):
        list_claims(conn, world.NPI, member_id="a\x00b")
    with pytest.raises(ValidationError, match="trace_number"):
        payment_by_trace(conn, "\x00")


def test_a_providers_claims_page_newest_first_with_filters(flow):
    _, conn, ids = flow
    seen, token = [], None
    while True:
        page = list_claims(conn, world.NPI, page_size=1, page_token=token)
        seen += [c.claim_id for c in page.claims]
        token = page.next_page_token
        if not token:
            break
    assert seen == [ids["lab"], ids["big"], ids["clean"]]
    assert [c.claim_id for c in list_claims(conn, world.NPI, status="voided").claims] == [ids["lab"]]
    # Each claim is listed under its status now, never under one it had (big was pended first).
    assert list_claims(conn, world.NPI, status="pended").claims == []
    assert list_claims(conn, world.NPI, status="submitted").claims == []
    by_status, token = [], None
    while True:
        page = list_claims(conn, world.NPI, status="adjudicated", page_size=1, page_token=token)
        by_status += [(c.claim_id, c.status) for c in page.claims]
        if not (token := page.next_page_token):
            break
    assert by_status == [(ids["big"], "adjudicated"), (ids["clean"], "adjudicated")]
    member = get_claim(conn, ids["big"]).member_id
    assert [c.claim_id for c in list_claims(conn, world.NPI, status="adjudicated", member_id=member).claims] == [
        c.claim_id for c in list_claims(conn, world.NPI, member_id=member).claims if c.status == "adjudicated"]
    assert list_claims(conn, world.OTHER_NPI, status="adjudicated").claims == []
    assert list_claims(conn, world.NPI, member_id="nobody").claims == []
    assert list_claims(conn, world.OTHER_NPI).claims == []
    token = list_claims(conn, world.NPI, page_size=1).next_page_token
    with pytest.raises(ValidationError, match="page_token"):
        list_claims(conn, world.NPI, status="voided", page_token=token)
    with pytest.raises(ValidationError, match="status"):
        list_claims(conn, world.NPI, status="lost")
    changes = claim_changes(conn, world.NPI, 0)
    assert [c.claim_id for c in changes][-1] == ids["clean"]  # changed last (its dispute)
    assert [c.last_position for c in changes] == sorted(c.last_position for c in changes)


@pytest.mark.parametrize("key", ["abc", [], [None], ["abc"], [1.5], [-1], [True], [1, 2], {"k": 1}, [10**400]])
def test_a_forged_page_token_is_invalid_argument_whatever_its_key(flow, key):
    _, conn, _ = flow
    token = list_claims(conn, world.NPI, page_size=1).next_page_token
    data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    data["k"] = key
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    with pytest.raises(ValidationError, match="page_token"):
        list_claims(conn, world.NPI, page_size=1, page_token=forged)
    eobs = member_eobs(conn, world.PAYER, world.MEMBER, page_size=1).next_page_token
    data = json.loads(base64.urlsafe_b64decode(eobs + "=" * (-len(eobs) % 4)))
    data["k"] = key if key != [1, 2] else ["not a date", 2]
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    with pytest.raises(ValidationError, match="page_token"):
        member_eobs(conn, world.PAYER, world.MEMBER, page_size=1, page_token=forged)


def test_claim_changes_come_in_ledger_order(flow):
    _, conn, ids = flow
    changes = claim_changes(conn, world.NPI, 0)
    assert [c.claim_id for c in changes][-1] == ids["clean"]  # changed last (its dispute)
    assert [c.last_position for c in changes] == sorted(c.last_position for c in changes)


def test_the_payers_worklist_and_notices(flow):
    _, conn, ids = flow
    assert payer_worklist(conn, world.PAYER).items == []  # the pended claim was resolved
    notices = adjudication_notices(conn, world.PAYER, 0)
    assert [(n.claim_id, n.kind) for n in notices] == [
        (ids["clean"], "adjudicated"),
        (ids["big"], "pended"),
        (ids["lab"], "adjudicated"),
        (ids["big"], "review_resolved"),
        (ids["lab"], "voided"),
        (ids["lab"], "payment_cancelled"),
        (ids["clean"], "dispute_resolved"),
    ]
    assert notices[1].status == "pended" and notices[1].decision["outcome"] == "PENDED"
    assert notices[1].pend_reasons == ["N10"]  # over the plan's review threshold
    assert (notices[4].reason, notices[5].amount_cents, notices[5].payment_id) == (
        "billed in error", 1_200, f"{ids['lab']}/0")
    assert notices[-1].resolution == "upheld" and notices[-1].dispute_id == ids["dispute"]


def test_pended_claims_wait_on_the_worklist_oldest_first(service, database_url):
    follower = AdjudicationFollower(service.ledger)
    pended = [service.submit_claim(actor=PROVIDER, **world.claim_body(f"big{i}", lines=[world.line(1, "99214", 1_100_000, day=world.date(2026, 10, 10 + i))])).claim_id
              for i in range(3)]
    while follower.process_available():
        pass
    drain(database_url, ("claim_status",))
    with psycopg.connect(database_url, autocommit=True) as conn:
        first = payer_worklist(conn, world.PAYER, page_size=2)
        rest = payer_worklist(conn, world.PAYER, page_size=2, page_token=first.next_page_token)
        assert [i.claim_id for i in first.items + rest.items] == pended
        assert rest.next_page_token == ""
        assert first.items[0].reasons[0]["adjustments"][0]["group"] == "OA"
        assert payer_worklist(conn, "PAYER-OTHER").items == []


def test_accumulators_and_explanations_of_benefits(flow):
    service, conn, ids = flow
    period = service.ledger.repository.get(BenefitPeriod.create_id(world.PAYER, world.MEMBER, 2026))
    acc = member_accumulators(conn, world.PAYER, world.MEMBER, 2026)
    assert (acc.deductible_met_cents, acc.oop_met_cents) == (period.deductible_met_cents, period.oop_met_cents)
    assert (acc.plan_id, acc.deductible_cents, acc.oop_max_cents) == (world.PLAN, 5_000, 300_000)
    assert acc.deductible_remaining_cents == 5_000 - acc.deductible_met_cents
    with pytest.raises(MemberNotFoundError):
        member_accumulators(conn, world.PAYER, "M-NOBODY", 2026)
    eob = explanation_of_benefits(conn, ids["clean"], member_id=world.MEMBER)
    [line] = eob.lines
    assert (line["billed_cents"], line["allowed_cents"], line["paid_cents"], line["you_owe_cents"]) == (12_000, 9_000, 1_500, 7_500)
    assert explanation_of_benefits(conn, ids["lab"]).claim_status == "voided"
    with pytest.raises(ClaimNotFoundError):
        explanation_of_benefits(conn, ids["clean"], member_id="M-OTHER")
    eobs = member_eobs(conn, world.PAYER, world.MEMBER, plan_year=2026, page_size=2)
    more = member_eobs(conn, world.PAYER, world.MEMBER, plan_year=2026, page_token=eobs.next_page_token)
    assert {e.claim_id for e in eobs.eobs + more.eobs} == {ids["clean"], ids["big"], ids["lab"]}
    assert member_eobs(conn, world.PAYER, world.MEMBER, plan_year=2025).eobs == []


def test_payments_and_remittances(flow):
    _, conn, ids = flow
    [issued] = payments_for_claim(conn, ids["clean"], provider_id=world.NPI)
    assert (issued.status, issued.amount_cents) == ("issued", 1_500)
    assert issued.trace_number and issued.issued_on is not None
    [paid] = issued.claims
    adjustments = {(a["group"], a["carc"]): a["amount_cents"] for a in paid.lines[0]["adjustments"]}
    assert adjustments == {("CO", "45"): 3_000, ("PR", "3"): 2_500, ("PR", "1"): 5_000}
    assert paid.lines[0]["procedure_code"] == "99213" and paid.billed_cents == 12_000 and paid.paid_cents == 1_500
    assert payment_by_trace(conn, issued.trace_number, payer_id=world.PAYER) == [issued]
    assert get_payment(conn, issued.payment_id) == issued
    with pytest.raises(PaymentNotFoundError):
        get_payment(conn, issued.payment_id, provider_id=world.OTHER_NPI)
    with pytest.raises(ValidationError, match="limit"):
        scheduled_payments_due(conn, world.PAYER, limit=-1)
    assert len(scheduled_payments_due(conn, world.PAYER, limit=1)) == 1
    due = scheduled_payments_due(conn, world.PAYER, limit=0)
    # The lab claim was voided before any payment run: its payment was cancelled, never due.
    assert {p.claim_ids[0] for p in due} == {ids["big"]}
    [cancelled] = payments_for_claim(conn, ids["lab"], payer_id=world.PAYER)
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "voided: billed in error")
    assert scheduled_payments_due(conn, world.PAYER, provider_id=world.OTHER_NPI) == []
    everything = list_payments(conn, world.NPI)
    assert [p.scheduled_position for p in everything.payments] == sorted((p.scheduled_position for p in everything.payments), reverse=True)
    assert [p.payment_id for p in list_payments(conn, world.NPI, status="issued").payments] == [issued.payment_id]


def test_the_dispute_timeline_is_the_ledger_as_stored(flow):
    _, conn, ids = flow
    timeline = claim_timeline(conn, ids["clean"])
    assert [e.event_type for e in timeline] == [
        "Claim.Submitted", "Claim.Adjudicated", "Payment.Scheduled", "Claim.DisputeOpened", "Claim.DisputeResolved", "Payment.Issued",
    ]
    rows = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT notification_id, originator_id, originator_version, state, hash, prev_hash, stream_prev_hash"
            " FROM ledger_events WHERE notification_id = ANY(%s)",
            ([e.position for e in timeline],),
        )
    }
    for entry in timeline:
        stream, version, state, digest, prev, stream_prev = rows[entry.position]
        assert (entry.stream_id, entry.stream_version) == (stream, version)
        assert (entry.hash, entry.prev_hash, entry.stream_prev_hash) == (digest, prev, stream_prev)
        assert entry.payload_encoding == "json" and entry.payload.encode() == bytes(state)
        assert entry.recorded_at is not None
        json.loads(entry.payload)
    assert claim_timeline(conn, ids["clean"], after_position=timeline[2].position, limit=2) == timeline[3:5]


def test_every_read_model_equals_a_rebuild_from_scratch(flow, database_url):
    assert_equals_from_scratch(database_url)
