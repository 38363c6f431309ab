"""The 835 of a provider's run, as pure functions: random runs of claims with adjustments,
supplemental payments, reversals, recoupments and carried balances always balance as the guide
requires (each SVC and CLP, and BPR02 against the CLPs and PLBs), BPR02 is what the run pays less
what is taken back (never below 0), and pyx12 finds no error in the file."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from claims_service.x12.interchange import cents, read
from claims_service.x12.remittance import ProviderRemittance, RemittancePayer, interchange_835, window
from claims_service.x12.validation import validate
from projections.payments import IssuedRun, PaidClaim, Recoupment
from tests import world

PAYER = RemittancePayer(payer_id=world.PAYER, name="ACME HEALTH PLAN", tax_id="131234567", address_line="1 PLAN PLAZA",
                        city="ALBANY", state="NY", postal_code="12207", contact="https://acme.example/edi")
GROUPS = ("CO", "PR", "OA", "PI")
CARCS = ("45", "1", "2", "3", "96", "151", "253")


@st.composite
def lines(draw: Any, *, paid_in_full: bool) -> list[dict[str, Any]]:
    found = []
    for number in range(1, draw(st.integers(1, 4)) + 1):
        billed = draw(st.integers(1, 500_000))
        adjustments = []
        left = billed
        for _ in range(draw(st.integers(0, 4))):
            cut = draw(st.integers(0, left))
            adjustments.append({"group": draw(st.sampled_from(GROUPS)), "carc": draw(st.sampled_from(CARCS)),
                                "amount_cents": cut})
            left -= cut
        earlier = 0 if paid_in_full else draw(st.integers(0, left))  # paid by an earlier payment
        found.append({"line_number": number, "procedure_code": draw(st.sampled_from(["99213", "80053", "97110", "J1100"])),
                      "modifiers": draw(st.lists(st.sampled_from(["25", "59", "GP"]), max_size=2, unique=True)),
                      "units": draw(st.integers(1, 12)), "date_of_service": "2026-10-15", "billed_cents": billed,
                      "allowed_cents": billed - sum(a["amount_cents"] for a in adjustments if a["group"] != "PR"),
                      "paid_cents": left - earlier, "patient_responsibility_cents": 0, "adjustments": adjustments,
                      "remarks": draw(st.lists(st.sampled_from(["N130", "M15", "N362"]), max_size=2, unique=True))})
    return found


@st.composite
def entries(draw: Any, *, paid_in_full: bool = False) -> PaidClaim:
    claim_lines = draw(lines(paid_in_full=paid_in_full))
    return PaidClaim(claim_id=str(uuid.UUID(int=draw(st.integers(0, 2**64)))), member_id=world.MEMBER,
                     frequency_code=draw(st.sampled_from(["1", "7"])), outcome="PAID",
                     billed_cents=sum(line["billed_cents"] for line in claim_lines),
                     paid_cents=sum(line["paid_cents"] for line in claim_lines), patient_responsibility_cents=None,
                     lines=claim_lines)


@st.composite
def unpaid_entries(draw: Any) -> PaidClaim:
    """A claim decided to pay nothing: each line's adjustments take all it billed (denied: CO-96;
    all the member's: PR deductible and coinsurance)."""
    denied = draw(st.booleans())
    claim_lines = []
    for number in range(1, draw(st.integers(1, 3)) + 1):
        billed = draw(st.integers(1, 500_000))
        member = 0 if denied else draw(st.integers(0, billed))
        adjustments = [{"group": "CO", "carc": "96" if denied else "45", "amount_cents": billed - member},
                       {"group": "PR", "carc": "1", "amount_cents": member}]
        claim_lines.append({"line_number": number, "procedure_code": "97140", "modifiers": [], "units": 1,
                            "date_of_service": "2026-10-15", "billed_cents": billed,
                            "allowed_cents": None if denied else member, "paid_cents": 0,
                            "patient_responsibility_cents": member, "adjustments": adjustments,
                            "remarks": ["N130"] if denied else []})
    return PaidClaim(claim_id=str(uuid.UUID(int=draw(st.integers(0, 2**64)))), member_id=world.MEMBER,
                     frequency_code="1", outcome="DENIED" if denied else "PAID",
                     billed_cents=sum(line["billed_cents"] for line in claim_lines), paid_cents=0,
                     patient_responsibility_cents=sum(line["patient_responsibility_cents"] for line in claim_lines),
                     lines=claim_lines)


@st.composite
def remittances(draw: Any) -> ProviderRemittance:
    return ProviderRemittance(
        provider_id=world.NPI, provider_name="RIVERSIDE FAMILY CLINIC", trace_number="R20261120103000123456A1B-1234567893",
        issued_on=date(2026, 11, 20), paid=draw(st.lists(entries(), max_size=5)),
        reversals=draw(st.lists(entries(paid_in_full=True), max_size=3)),
        recovered=draw(st.lists(st.tuples(st.just(str(uuid.uuid4())), st.integers(1, 100_000)), max_size=3)),
        unpaid=draw(st.lists(unpaid_entries(), max_size=3)),
        carried_in=draw(st.sampled_from([0, 0, 1_000, 250_000])), carried_from="R20261101090000000000FFF-1234567893",
        references={}, unpaid_lines={})


def by_id(text: str) -> list[list[str]]:
    return [s.elements for s in read(text)[1] if s.position]


def check_balances(text: str) -> tuple[int, int, int]:
    """Every balance the guide asks for; returns (BPR02, sum of CLP04, sum of PLB) in cents."""
    segments = by_id(text)
    bpr02 = cents(next(s for s in segments if s[0] == "BPR")[2])
    assert bpr02 is not None and bpr02 >= 0
    clps, plb = [], 0
    claim = line = None
    for s in segments:
        if s[0] == "CLP":
            claim = {"charge": cents(s[3]), "paid": cents(s[4]), "cas": 0, "svc_paid": 0, "svc_charge": 0}
            clps.append(claim)
            line = None
        elif s[0] == "SVC":
            line = {"charge": cents(s[2]), "paid": cents(s[3]), "cas": 0}
            claim["svc_paid"] += line["paid"]
            claim["svc_charge"] += line["charge"]
            claim.setdefault("lines", []).append(line)
        elif s[0] == "CAS":
            total = sum(cents(s[i]) for i in range(3, len(s), 3) if s[i])
            (line if line is not None else claim)["cas"] += total
        elif s[0] == "PLB":
            plb += sum(cents(s[i]) for i in range(4, len(s), 2) if s[i])
    for claim in clps:
        lines_cas = sum(line["cas"] for line in claim.get("lines", []))
        assert claim["charge"] - claim["cas"] - lines_cas == claim["paid"]
        if "lines" in claim:  # service lines are situational (an erased member's claim has none)
            assert claim["svc_paid"] == claim["paid"] and claim["svc_charge"] == claim["charge"]
        for line in claim.get("lines", []):
            assert line["charge"] - line["cas"] == line["paid"]
    assert bpr02 == sum(c["paid"] for c in clps) - plb
    return bpr02, sum(c["paid"] for c in clps), plb


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(remittances())
def test_every_835_balances_pays_what_the_run_nets_and_validates(remit):
    text, [summary] = interchange_835(PAYER, [remit], datetime(2026, 11, 20, 10, 30), "R20261120103000123456A1B")
    bpr02, _, plb = check_balances(text)
    paid = sum(e.paid_cents for e in remit.paid)
    taken = sum(e.paid_cents for e in remit.reversals) + sum(c for _, c in remit.recovered) + remit.carried_in
    assert bpr02 == max(0, paid - taken) == summary.amount_cents
    assert summary.provider_adjustment_cents == plb
    assert summary.claims == len(remit.paid) + len(remit.reversals) + len(remit.unpaid)
    statuses = [s[2] for s in by_id(text) if s[0] == "CLP"]
    assert statuses == (["22"] * len(remit.reversals) + ["1"] * len(remit.paid)
                        + ["4" if e.outcome == "DENIED" else "1" for e in remit.unpaid])
    bpr = next(s for s in by_id(text) if s[0] == "BPR")
    assert bpr[1] == ("I" if bpr02 else "H") and bpr[4] == ("CHK" if bpr02 else "NON")
    [report] = validate(text)
    assert report.clean, report.problems()


def test_a_reversal_mirrors_the_original_payment_negated():
    original = PaidClaim(claim_id=str(uuid.uuid4()), member_id=world.MEMBER, frequency_code="1", outcome="PAID",
                         billed_cents=12_000, paid_cents=1_500, patient_responsibility_cents=7_500,
                         lines=[{"line_number": 1, "procedure_code": "99213", "modifiers": [], "units": 1,
                                 "date_of_service": "2026-10-15", "billed_cents": 12_000, "allowed_cents": 9_000,
                                 "paid_cents": 1_500, "adjustments": [
                                     {"group": "CO", "carc": "45", "amount_cents": 3_000},
                                     {"group": "PR", "carc": "1", "amount_cents": 5_000},
                                     {"group": "PR", "carc": "3", "amount_cents": 2_500}], "remarks": []}])
    remit = ProviderRemittance(provider_id=world.NPI, provider_name="RIVERSIDE", trace_number="R20261120103000123456A1B-1234567893",
                               issued_on=date(2026, 11, 20), paid=[], reversals=[original], recovered=[],
                               references={original.claim_id: "RFC-24001"})
    text, [summary] = interchange_835(PAYER, [remit], datetime(2026, 11, 20), "R20261120103000123456A1B")
    segments = by_id(text)
    assert next(s for s in segments if s[0] == "CLP")[:8] == ["CLP", "RFC-24001", "22", "-120", "-15", "-75", "ZZ",
                                                               original.claim_id]
    assert [s for s in segments if s[0] == "CAS"] == [["CAS", "CO", "45", "-30"], ["CAS", "PR", "1", "-50", "", "3", "-25"]]
    # Nothing paid, 15.00 taken back: nothing goes out, the 15.00 is carried forward.
    assert next(s for s in segments if s[0] == "PLB")[3:] == ["FB:R20261120103000123456A1B-1234567893", "-15"]
    assert summary.amount_cents == 0 and check_balances(text)[0] == 0


def test_a_runs_window_holds_the_recoupments_since_the_providers_previous_run_and_what_it_carried():
    runs = [IssuedRun("R1-1", 10, 5_000), IssuedRun("R2-1", 30, 1_000), IssuedRun("R3-1", 50, 9_000)]
    recoupments = [
        Recoupment("a/0", 1, 5_000, 25),  # paid in run 1, taken back before run 2
        Recoupment("b/0", 1, 1_000, 45),  # run 2 pays 10.00 and owes 50.00: 40.00 carried into run 3
    ]
    first = window(runs, recoupments, "R1-1")
    assert (first.start, first.end, first.recoupments, first.carried_in) == (0, 10, [], 0)
    second = window(runs, recoupments, "R2-1")
    assert (second.start, second.end, second.recoupments, second.carried_in) == (10, 30, [("a/0", 1, 5_000)], 0)
    third = window(runs, recoupments, "R3-1")
    assert (third.recoupments, third.carried_in, third.carried_from) == ([("b/0", 1, 1_000)], 4_000, "R2-1")
