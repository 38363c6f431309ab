"""Every aggregate's events survive the library's mapper and transcoder: saved
through an in-memory (POPO) Application and reloaded, each aggregate is equal
to the one that produced them."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder

from claims_service.domain import codesets
from claims_service.domain.claim import Claim
from claims_service.domain.ids import time_ordered_id
from claims_service.domain.contract import Contract
from claims_service.domain.member import MemberCoverage
from claims_service.domain.payment import Payment
from claims_service.domain.provider import Provider
from claims_service.domain.transcodings import DateAsISO, register_domain_transcodings
from claims_service.domain.visit import Visit

NPI = "1234567893"
ADMIN = "admin:root"
PROVIDER = f"provider:{NPI}"


class InMemoryLedger(Application):
    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_domain_transcodings(transcoder)


def test_date_transcoding_leaves_datetimes_alone() -> None:
    transcoder = JSONTranscoder()
    InMemoryLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).register_transcodings(transcoder)
    moment = datetime(2025, 3, 3, 12, 0, tzinfo=timezone.utc)
    value = {"day": date(2025, 3, 3), "moment": moment, "days": [date(1900, 1, 1)]}
    assert transcoder.decode(transcoder.encode(value)) == value
    assert b'"date_iso"' in transcoder.encode(date(2025, 3, 3))
    assert DateAsISO().decode("2199-12-31") == date(2199, 12, 31)


def build_aggregates(
    terms: dict[str, Any], claim_kwargs: dict[str, Any], decision: dict[str, Any], facts: dict[str, Any]
) -> list[Any]:
    member = MemberCoverage.enrol(
        actor=ADMIN, member_id="M-0001", payer_id="ACME", plan_id="GOLD",
        effective_date=date(2025, 1, 1), terms=terms,
    )
    member.change(actor=ADMIN, effective_on=date(2025, 7, 1), plan_id="SILVER", terms=dict(terms, deductible_cents=0))
    member.authorize(
        actor="payer:ACME", auth_id="PA-1", procedure_code="70553", units=1,
        valid_from=date(2025, 2, 1), valid_to=date(2025, 4, 30),
    )
    member.terminate(actor=ADMIN, termination_date=date(2025, 12, 31))

    provider = Provider.register(actor=ADMIN, npi=NPI, name="Main Street Clinic", taxonomy="207Q00000X")
    provider.verify_credential(
        actor=ADMIN, licence_number="A12345", state="CA", valid_from=date(2024, 1, 1), valid_to=date(2025, 12, 31)
    )
    provider.revoke_credential(actor=ADMIN, licence_number="A12345", revoked_on=date(2025, 6, 1))
    provider.verify_credential(
        actor=ADMIN, licence_number="B777", state="NV", valid_from=date(2024, 1, 1), valid_to=date(2026, 12, 31)
    )
    provider.expire_credential(actor=ADMIN, licence_number="B777", expired_on=date(2026, 6, 1))
    provider.join_network(actor=ADMIN, payer_id="ACME", contract_id="C-1", effective_date=date(2025, 1, 1))
    provider.leave_network(actor=ADMIN, payer_id="ACME", contract_id="C-1", end_date=date(2025, 12, 31))

    contract = Contract.publish(
        actor=ADMIN, contract_id="C-1", payer_id="ACME", version=1,
        effective_date=date(2025, 1, 1), fees={"99213": 9_000, "99213:25": 9_500},
    )
    contract.publish_fee_schedule(actor=ADMIN, version=2, effective_date=date(2025, 7, 1), fees={"99213": 9_200})

    visit = Visit.record(
        actor=PROVIDER, visit_id="V-1", provider_id=NPI, member_id="M-0001", payer_id="ACME",
        date_of_service=date(2025, 3, 3), place_of_service="11", diagnosis_codes=["E119", "I10"],
    )

    claim = Claim.submit(**dict(claim_kwargs, visit_id="V-1"))
    claim.pend(actor="system:adjudicator", decision={"pend": ["high dollar"]}, facts=facts,
               ruleset_version="2025.1", ruleset_hash="ab" * 32)
    claim.resolve_review(actor="payer:ACME", decision=decision, reviewer="nurse-7", note="ok",
                         resolution={"approve": [{"line_number": 1, "allowed_cents": 9_000}], "deny": None}, facts=facts)
    claim.add_attachment(actor=PROVIDER, sha256="ab" * 32, size_bytes=1024, media_type="application/pdf")
    claim.open_dispute(actor="dispute:team-1", dispute_id="D-1", reason="underpaid")
    claim.resolve_dispute(actor="dispute:team-1", dispute_id="D-1", resolution="overturned",
                          decision=dict(decision, outcome="paid in full"), note="fee schedule v1 applied")
    claim.void(actor=PROVIDER, reason="billed in error")

    replacement = Claim.submit(
        **dict(claim_kwargs, idempotency_key="req-0002", frequency_code="7", replaces_claim_id=claim.claim_id)
    )
    replacement.adjudicate(actor="system:adjudicator", decision=decision, facts=facts,
                           ruleset_version="2025.1", ruleset_hash="ab" * 32)
    replacement.correct(actor=PROVIDER, replacement_claim_id=str(time_ordered_id()))

    payment = Payment.schedule(
        actor="payer:ACME", payment_id="PAY-1", payer_id="ACME", provider_id=NPI,
        claim_ids=[replacement.claim_id], amount_cents=10_500,
        lines={replacement.claim_id: [{"line_number": 1, "paid_cents": 9_000}, {"line_number": 2, "paid_cents": 1_500}]},
    )
    payment.issue(actor="payer:ACME", trace_number="EFT-0001", issued_on=date(2025, 4, 1))
    payment.recoup(actor="payer:ACME", reason="claim voided",
                   lines={replacement.claim_id: [{"line_number": 1, "paid_cents": 9_000}]})
    cancelled = Payment.schedule(
        actor="payer:ACME", payment_id="PAY-2", payer_id="ACME", provider_id=NPI,
        claim_ids=[replacement.claim_id], amount_cents=1_500,
        lines={replacement.claim_id: [{"line_number": 2, "paid_cents": 1_500}]},
    )
    cancelled.cancel(actor="payer:ACME", reason="claim replaced")
    legacy = Payment.schedule(
        actor="payer:ACME", payment_id="PAY-3", payer_id="ACME", provider_id=NPI,
        claim_ids=[replacement.claim_id], amount_cents=1_500,
        lines={replacement.claim_id: [{"line_number": 2, "paid_cents": 1_500}]},
    )
    legacy.issue(actor="payer:ACME", trace_number="EFT-0003", issued_on=date(2025, 4, 1))
    # A recoupment as ledgers recorded it before recoupments were itemised by line: still readable.
    legacy.trigger_event(Payment.Reversed, actor="payer:ACME", reason="overpaid", amount_cents=500)
    return [member, provider, contract, visit, claim, replacement, payment, cancelled, legacy]


def test_every_aggregate_round_trips_through_an_application(
    terms: dict[str, Any], claim_kwargs: dict[str, Any], decision: dict[str, Any], facts: dict[str, Any]
) -> None:
    aggregates = build_aggregates(terms, claim_kwargs, decision, facts)
    app = InMemoryLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    event_names = set()
    for aggregate in aggregates:
        event_names.update(type(e).__qualname__ for e in aggregate.pending_events)
        app.save(aggregate)
        assert aggregate.pending_events == []
    # Every event class of every aggregate was exercised.
    declared = {
        f"{cls.__name__}.{name}"
        for cls in (MemberCoverage, Provider, Contract, Visit, Claim, Payment)
        for name, value in vars(cls).items()
        if isinstance(value, type) and name not in ("Event", "Created", "Snapshot")
        and issubclass(value, cls.Event)
    }
    assert len(declared) == 27
    assert declared <= event_names, declared - event_names
    for aggregate in aggregates:
        reloaded = app.repository.get(aggregate.id)
        assert type(reloaded) is type(aggregate)
        assert reloaded == aggregate, (vars(reloaded), vars(aggregate))
        assert reloaded.version == aggregate.version
    # The dates really are dates again, not strings.
    claim = app.repository.get(aggregates[4].id)
    assert type(claim.received_on) is date
    assert type(claim.lines[0]["date_of_service"]) is date
    assert type(claim.facts["coverage"]["effective_date"]) is date
    assert claim.status == "voided"


# --- any valid claim round-trips ------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

icd = st.sampled_from(sorted(codesets.diagnoses().billable))  # valid: billable in the ICD-10-CM release
procedure = st.one_of(
    st.from_regex(r"\A[0-9]{5}\Z"), st.from_regex(r"\A[0-9]{4}[FTU]\Z"), st.from_regex(r"\A[A-V][0-9]{4}\Z")
)
service_day = st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31))


@st.composite
def submissions(draw: st.DrawFn) -> dict[str, Any]:
    diagnoses = draw(st.lists(icd, min_size=1, max_size=12, unique=True))
    received_on = draw(service_day)
    n = draw(st.integers(1, 50))
    lines = [
        {
            "line_number": i + 1,
            "procedure_code": draw(procedure),
            "modifiers": draw(st.lists(st.from_regex(r"\A[0-9A-Z]{2}\Z"), max_size=4, unique=True)),
            "diagnosis_pointers": draw(
                st.lists(st.integers(1, len(diagnoses)), min_size=1, max_size=4, unique=True)
            ),
            "units": draw(st.integers(1, 9_999)),
            "billed_cents": draw(st.integers(0, 10**9)),
            "date_of_service": draw(st.dates(min_value=date(1900, 1, 1), max_value=received_on)),
        }
        for i in range(n)
    ]
    return {
        "actor": PROVIDER,
        "provider_id": NPI,
        "member_id": draw(
            st.text(st.characters(categories=["L", "N", "P", "S"]), min_size=1, max_size=64)
        ),
        "payer_id": "ACME",
        "idempotency_key": draw(st.uuids()).hex,
        "received_on": received_on,
        "diagnosis_codes": diagnoses,
        "place_of_service": draw(st.from_regex(r"\A[0-9]{2}\Z")),
        "lines": lines,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(submissions())
def test_any_valid_claim_round_trips(kwargs: dict[str, Any]) -> None:
    claim = Claim.submit(**kwargs)
    app = InMemoryLedger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.save(claim)
    assert app.repository.get(claim.id) == claim


def test_event_topics_are_pinned() -> None:
    """Topics are stored with every event: a rename must be a deliberate migration."""
    from eventsourcing.utils import get_topic

    topics = {
        get_topic(getattr(cls, name))
        for cls, names in {
            MemberCoverage: ("Enrolled", "Changed", "Terminated", "PriorAuthorized"),
            Provider: ("Registered", "CredentialVerified", "CredentialRevoked", "CredentialExpired",
                       "JoinedNetwork", "LeftNetwork"),
            Contract: ("Published", "FeeSchedulePublished"),
            Visit: ("Recorded",),
            Claim: ("Submitted", "Adjudicated", "Pended", "ReviewResolved", "Corrected", "Voided",
                    "DisputeOpened", "DisputeResolved"),
            Payment: ("Scheduled", "Issued", "Reversed"),
        }.items()
        for name in names
    }
    assert "claims_service.domain.claim:Claim.Submitted" in topics
    assert "claims_service.domain.member:MemberCoverage.Enrolled" in topics
    assert "claims_service.domain.payment:Payment.Reversed" in topics
    assert len(topics) == 24
