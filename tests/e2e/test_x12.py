"""X12 over a real gRPC channel: a clinic's 837 batch (several claims, a dependent patient in
2000C, modifiers, several diagnosis pointers) becomes the expected claims and decisions with a
999 and a 277CA that pyx12 finds clean; the same file again creates nothing; a later file
replaces one claim and voids another by REF*F8; bad files are answered by a TA1, 999 or 277CA
naming the place, write nothing and never fail INTERNAL; the payer's run comes back as an 835 that
balances and pyx12 finds clean."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from claims.v1 import common_pb2, dispute_pb2, payer_pb2, provider_pb2
from claims_service.x12.interchange import amount, cents, decode, read
from claims_service.x12.validation import validate
from tests import world
from tests.e2e.test_claim_flow import set_up, wait_decided

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "x12"
BATCH = (FIXTURES / "837p-batch.x12").read_bytes()
CORRECTIONS = (FIXTURES / "837p-replace-and-void.x12").read_bytes()
# The batch's claims in file order, by CLM01.
PCNS = ("RFC-24001", "RFC-24003", "RFC-24002")
# The corrections file names the office visit and the therapy in REF*F8 by these placeholders:
# `corrections` puts in the claim ids the batch's 277CA gave them, as a billing system would.
F8_VISIT, F8_THERAPY = ("dc58537a-64aa-5fbd-bfed-975a1486f652", "b40a6d4c-2e9b-51b0-8d97-3ccfb67cb9f6")
K = common_pb2


def corrections_naming(visit: str, therapy: str) -> bytes:
    return CORRECTIONS.replace(F8_VISIT.encode(), visit.encode()).replace(F8_THERAPY.encode(), therapy.encode())


def claim_ids(answer: provider_pb2.SubmitX12Response) -> tuple[str, str, str]:
    """The office visit's, the therapy's and the child's claim ids."""
    ids = {r.patient_control_number: r.claim_id for r in answer.claims}
    return ids["RFC-24001"], ids["RFC-24003"], ids["RFC-24002"]


def submit(client, data: bytes) -> provider_pb2.SubmitX12Response:
    return client.provider.SubmitX12(provider_pb2.SubmitX12Request(interchange=data))


def clean(text: bytes) -> None:
    """pyx12 finds no error in a file the service wrote."""
    reports = validate(text.decode("ascii"))
    assert reports and all(r.clean for r in reports), [p for r in reports for p in r.problems()]


def segments(text: bytes, name: str) -> list[list[str]]:
    return [s.elements for s in read(decode(text))[1] if s.id == name]


def head(parties) -> int:
    return parties.service.commands.ledger.head().position


def test_a_clinic_batch_becomes_its_claims_with_a_clean_999_and_277ca_and_a_resend_creates_nothing(parties):
    set_up(parties)
    answer = submit(parties.provider, BATCH)
    assert answer.ta1 == b""  # ISA14 is 0: none asked for
    clean(answer.ack_999)
    clean(answer.ack_277ca)
    assert segments(answer.ack_999, "IK5") == [["IK5", "A"]]
    assert segments(answer.ack_999, "AK9") == [["AK9", "A", "1", "1", "1"]]
    assert [r.patient_control_number for r in answer.claims] == list(PCNS)
    assert all(r.accepted and r.status == "A2:20" and r.receipt.position for r in answer.claims)
    VISIT, THERAPY, CHILD = claim_ids(answer)
    # New claims' ids are UUIDv7, in the order they were submitted.
    assert all(uuid.UUID(c).version == 7 for c in (VISIT, THERAPY, CHILD)) and VISIT < THERAPY < CHILD
    # The 277CA gives each claim our claim id as the payer claim control number (REF*1K).
    assert [s[2] for s in segments(answer.ack_277ca, "REF") if s[1] == "1K"] == [VISIT, THERAPY, CHILD]
    assert [s[1] for s in segments(answer.ack_277ca, "STC")] == ["A1:19:PR", "A1:19:PR", "A2:20", "A2:20", "A2:20"]

    position = max(r.receipt.position for r in answer.claims)
    visit = wait_decided(parties, VISIT, position)
    assert (visit.member_id, visit.payer_id, visit.place_of_service, list(visit.diagnosis_codes)) == (
        world.MEMBER, world.PAYER, "11", ["E119", "I10"])
    assert [(line.line_number, line.procedure_code, list(line.modifiers), list(line.diagnosis_pointers), line.units,
             line.billed_cents, line.date_of_service) for line in visit.lines] == [
        (1, "99214", ["25"], [1, 2], 1, 13_000, "2026-10-15"),
        (2, "80053", [], [1], 1, 4_000, "2026-10-15"),
        (3, "36415", [], [1], 1, 1_500, "2026-10-15"),
    ]
    therapy = wait_decided(parties, THERAPY, position)
    assert [(line.procedure_code, list(line.modifiers), line.units, line.billed_cents) for line in therapy.lines] == [
        ("97110", ["GP"], 3, 9_000)]
    child = wait_decided(parties, CHILD, position)  # the dependent's claim, under the subscriber's member id
    assert (child.member_id, list(child.diagnosis_codes), [list(line.diagnosis_pointers) for line in child.lines]) == (
        world.MEMBER, ["J069", "R509"], [[1, 2]])
    decisions = {pcn: (K.Outcome.Name(c.decision.outcome), c.decision.total_billed_cents,
                       c.decision.total_allowed_cents, c.decision.total_paid_cents)
                 for pcn, c in zip(PCNS, (visit, therapy, child), strict=True)}
    assert decisions == EXPECTED_DECISIONS

    # The same file again: the same claims and receipts, nothing written.
    before = head(parties)
    again = submit(parties.provider, BATCH)
    assert [(r.claim_id, r.receipt.position, r.status) for r in again.claims] == [
        (r.claim_id, r.receipt.position, r.status) for r in answer.claims]
    assert head(parties) == before


# (outcome, billed, allowed, paid), adjudicated in file order: the office visit meets the 50.00
# deductible after its 25.00 copay, so the therapy pays 80 % of 90.00, the child's visit all but its copay.
EXPECTED_DECISIONS = {
    "RFC-24001": ("OUTCOME_PAID", 18_500, 14_800, 6_940),
    "RFC-24003": ("OUTCOME_PAID", 9_000, 9_000, 7_200),
    "RFC-24002": ("OUTCOME_PAID", 12_000, 9_000, 6_500),
}


PAYER_IDENTITY = payer_pb2.RemittancePayer(name="ACME HEALTH PLAN", tax_id="131234567", address_line="1 PLAN PLAZA",
                                           city="ALBANY", state="NY", postal_code="12207",
                                           contact="edi-support@acme.example")


def run_835(parties, position: int, run_id: str = "") -> payer_pb2.GetRemittance835Response:
    return parties.payer.payer.GetRemittance835(payer_pb2.GetRemittance835Request(
        run_id=run_id, payer=PAYER_IDENTITY, min_position=position))


def test_an_837_batch_is_paid_then_replaced_and_voided_and_each_run_comes_back_as_a_balanced_835(parties):
    from tests.unit.x12.test_remittance import check_balances

    set_up(parties)
    answer = submit(parties.provider, BATCH)
    VISIT, THERAPY, CHILD = claim_ids(answer)
    position = max(r.receipt.position for r in answer.claims)
    decided = [wait_decided(parties, claim_id, position) for claim_id in (VISIT, THERAPY, CHILD)]
    run = parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest(
        min_position=max(c.last_position for c in decided), max_payments=100))
    assert run.run_id and {p.trace_number for p in run.payments} == {f"{run.run_id}-{world.NPI}"}
    first = run_835(parties, run.receipt.position, run.run_id)
    clean(first.interchange)
    assert first.run_id == run.run_id
    [summary] = first.remittances
    assert (summary.provider_id, summary.trace_number, summary.claims, summary.amount_cents) == (
        world.NPI, f"{run.run_id}-{world.NPI}", 3, 6_940 + 7_200 + 6_500)
    bpr02, _, plb = check_balances(first.interchange.decode())
    assert (bpr02, plb) == (summary.amount_cents, 0)
    clps = segments(first.interchange, "CLP")
    # CLP01 is the provider's CLM01, CLP07 the claim id it sends back in REF*F8.
    assert sorted((c[1], c[2], c[7]) for c in clps) == sorted([
        ("RFC-24001", "1", VISIT), ("RFC-24003", "1", THERAPY), ("RFC-24002", "1", CHILD)])
    assert [s[2] for s in segments(first.interchange, "TRN")] == [summary.trace_number]
    assert segments(first.interchange, "N1")[1][1:] == ["PE", "Riverside", "XX", world.NPI]

    # A week later the clinic replaces the visit and voids the therapy: both were paid, so the next
    # run takes the payments back (CLP 22) and pays the replacement.
    corrections = submit(parties.provider, corrections_naming(VISIT, THERAPY))
    clean(corrections.ack_999)
    clean(corrections.ack_277ca)
    replacement, void = corrections.claims
    assert (replacement.accepted, replacement.status, void.accepted, void.claim_id) == (True, "A2:20", True, THERAPY)
    assert [s[2] for s in segments(corrections.ack_277ca, "REF") if s[1] == "1K"] == [replacement.claim_id, THERAPY]
    position = max(c.receipt.position for c in corrections.claims)
    new = wait_decided(parties, replacement.claim_id, position)
    assert [line.procedure_code for line in new.lines] == ["99214", "80053", "36415", "85025", "97140"]
    assert wait_decided(parties, VISIT, position).status == K.CLAIM_STATUS_REPLACED
    assert wait_decided(parties, THERAPY, position).status == K.CLAIM_STATUS_VOIDED
    second_run = parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest(
        min_position=new.last_position, max_payments=100))
    second = run_835(parties, second_run.receipt.position)  # the latest run
    clean(second.interchange)
    assert second.run_id == second_run.run_id != run.run_id
    clps = segments(second.interchange, "CLP")
    assert sorted((c[2], c[7], cents(c[4])) for c in clps) == sorted([
        ("22", VISIT, -6_940), ("22", THERAPY, -7_200), ("1", replacement.claim_id, new.decision.total_paid_cents)])
    # The replacement's denied line (97140 is not covered) is in its CLP too, paying nothing.
    svcs = segments(second.interchange, "SVC")
    assert ["SVC", "HC:97140", "40", "0"] in svcs
    bpr02, clp04, plb = check_balances(second.interchange.decode())
    assert bpr02 == max(0, new.decision.total_paid_cents - 6_940 - 7_200) == second.remittances[0].amount_cents
    assert clp04 - plb == bpr02  # what could not be taken back is carried (PLB FB)

    # Another payer has no runs; a run id of another shape is refused.
    with pytest.raises(grpc.RpcError) as error:
        parties.other_payer.payer.GetRemittance835(payer_pb2.GetRemittance835Request(payer=PAYER_IDENTITY))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        run_835(parties, 0, "TRN0")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_claimsctl_sends_an_837_writes_its_acknowledgements_and_a_runs_835(parties, database_url, tmp_path,
                                                                            monkeypatch, capsys):
    from claims_service.cli.main import main

    set_up(parties)
    monkeypatch.setenv("CLAIMS_GRPC_ADDR", f"127.0.0.1:{parties.service.port}")
    monkeypatch.setenv("CLAIMS_DATABASE_URL", database_url)
    monkeypatch.setenv("CLAIMS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLAIMS_API_KEY", parties.provider.key)
    (tmp_path / "in").mkdir()
    batch = tmp_path / "in" / "claims.837"
    batch.write_bytes(BATCH)
    assert main(["x12", "submit", str(batch), "-o", str(tmp_path / "acks")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["RFC-24001", "RFC-24003", "RFC-24002"]
    VISIT, THERAPY, CHILD = (line.split("claim ", 1)[1].split()[0] for line in lines)
    assert all("accepted A2:20" in line for line in lines)
    position = max(int(line.rsplit("position ", 1)[1]) for line in lines)
    for suffix in ("999", "277ca"):
        written = tmp_path / "acks" / f"claims.837.{suffix}"
        assert written.stat().st_mode & 0o777 == 0o600
        clean(written.read_bytes())
    # Another provider's file: its claims are refused (the NPI is not the caller's), exit 1.
    monkeypatch.setenv("CLAIMS_API_KEY", parties.other_provider.key)
    assert main(["x12", "submit", str(batch)]) == 1
    assert all("rejected A7:562:85" in line for line in capsys.readouterr().out.splitlines())
    assert (tmp_path / "in" / "claims.837.277ca").exists()

    decided = [wait_decided(parties, claim_id, position) for claim_id in (VISIT, THERAPY, CHILD)]
    run = parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest(
        min_position=max(c.last_position for c in decided), max_payments=100))
    parties.payer.payer.GetRemittance835(payer_pb2.GetRemittance835Request(  # the read model has the run
        run_id=run.run_id, payer=PAYER_IDENTITY, min_position=run.receipt.position))
    out = tmp_path / "run.835"
    assert main(["x12", "remittance", "--payer", world.PAYER, "-o", str(out), "--payer-name", "ACME HEALTH PLAN",
                 "--payer-tax-id", "131234567", "--payer-address", "1 PLAN PLAZA", "--payer-city", "ALBANY",
                 "--payer-state", "NY", "--payer-zip", "12207", "--payer-contact", "edi@acme.example"]) == 0
    clean(out.read_bytes())
    assert f"trace {run.run_id}-{world.NPI}\tpaid 206.40\tclaims 3" in capsys.readouterr().out


def test_the_835_after_a_void_and_a_lowering_overturn_reverses_one_payment_and_recovers_part_of_another(parties):
    from tests.e2e.test_money import visit
    from tests.unit.x12.test_remittance import check_balances

    set_up(parties)
    provider, payer, dispute = parties.provider.provider, parties.payer.payer, parties.dispute.dispute
    # An office visit pays 15.00 (copay, then the 50.00 deductible); a 99214 visit the next day
    # pays 105.00 (130.00 allowed less its copay). Both are paid in one run.
    first = provider.SubmitClaim(visit("x12-visit"))
    second = provider.SubmitClaim(visit("x12-second", day="2026-10-16", code="99214", billed=13_000))
    decided = [wait_decided(parties, c.claim_id, second.receipt.position) for c in (first, second)]
    assert [c.decision.total_paid_cents for c in decided] == [1_500, 10_500]
    run = payer.IssuePayments(payer_pb2.IssuePaymentsRequest(min_position=max(c.last_position for c in decided)))
    assert len(run.payments) == 2
    # The first visit is voided (its payment taken back whole); the second visit's dispute is
    # overturned on today's accumulators, the deductible now its own: 55.00, so 50.00 comes back.
    provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=first.claim_id, reason="duplicate"))
    opened = dispute.OpenDispute(dispute_pb2.OpenDisputeRequest(claim_id=second.claim_id, reason="recheck"))
    resolved = dispute.ResolveDispute(dispute_pb2.ResolveDisputeRequest(
        claim_id=second.claim_id, dispute_id=opened.dispute_id, resolution=dispute_pb2.DISPUTE_RESOLUTION_OVERTURNED,
        note="recheck"))
    assert resolved.decision.total_paid_cents == 5_500
    # A third claim, paid in the next run, whose 835 also settles what was taken back.
    third = provider.SubmitClaim(visit("x12-third", day="2026-10-20", code="80053", billed=2_000))
    paid = wait_decided(parties, third.claim_id, max(third.receipt.position, resolved.receipt.position))
    next_run = payer.IssuePayments(payer_pb2.IssuePaymentsRequest(min_position=paid.last_position))
    answer = run_835(parties, next_run.receipt.position, next_run.run_id)
    clean(answer.interchange)
    clps = [(c[2], c[7], cents(c[4])) for c in segments(answer.interchange, "CLP")]
    assert clps == [("22", first.claim_id, -1_500), ("1", third.claim_id, paid.decision.total_paid_cents)]
    [plb] = segments(answer.interchange, "PLB")
    assert plb[3:5] == [f"WO:{second.claim_id}", "50"]
    bpr02, _, _ = check_balances(answer.interchange.decode())
    assert bpr02 == max(0, paid.decision.total_paid_cents - 1_500 - 5_000) == answer.remittances[0].amount_cents
    if bpr02 == 0:  # what this run cannot take back is carried to the provider's next one
        assert plb[5:7] == [f"FB:{next_run.run_id}-{world.NPI}", amount(paid.decision.total_paid_cents - 6_500)]


def test_claims_decided_to_pay_nothing_are_told_once_in_the_next_runs_835_even_to_a_provider_it_pays_nothing(parties):
    from tests.e2e.test_money import visit
    from tests.unit.x12.test_remittance import check_balances

    set_up(parties)
    provider, payer = parties.provider.provider, parties.payer.payer
    # A panel the member owes in full (the deductible), a service the plan does not cover (CO-96),
    # then a visit that pays: only the last has a payment, yet the run's 835 tells all three.
    owed = provider.SubmitClaim(visit("x12-owed", code="80053", billed=2_000))
    denied = provider.SubmitClaim(visit("x12-denied", day="2026-10-16", code="97140", billed=4_000))
    paid = provider.SubmitClaim(visit("x12-paid", day="2026-10-17", code="99214", billed=13_000))
    # Another clinic, out of the plan's network: its claim is denied, and the run pays it nothing.
    elsewhere = parties.other_provider.provider.SubmitClaim(visit("x12-out-of-network", day="2026-10-18"))
    decided = [wait_decided(parties, c.claim_id, max(paid.receipt.position, elsewhere.receipt.position))
               for c in (owed, denied, paid)]
    assert [(K.Outcome.Name(c.decision.outcome), c.decision.total_paid_cents > 0) for c in decided] == [
        ("OUTCOME_PAID", False), ("OUTCOME_DENIED", False), ("OUTCOME_PAID", True)]
    out_of_network = wait_decided(parties, elsewhere.claim_id, elsewhere.receipt.position, client=parties.other_provider)
    assert out_of_network.decision.outcome == K.OUTCOME_DENIED
    run = payer.IssuePayments(payer_pb2.IssuePaymentsRequest(
        min_position=max(c.last_position for c in (*decided, out_of_network))))
    assert [[c.claim_id for c in p.claims] for p in run.payments] == [[paid.claim_id]]
    answer = run_835(parties, run.receipt.position, run.run_id)
    first = answer.interchange
    clean(answer.interchange)
    # Two transaction sets: the clinic the run pays, and the one it tells of its denial only.
    assert [(r.provider_id, r.trace_number, r.claims, r.amount_cents) for r in answer.remittances] == [
        (world.NPI, f"{run.run_id}-{world.NPI}", 3, decided[2].decision.total_paid_cents),
        (world.OTHER_NPI, f"{run.run_id}-{world.OTHER_NPI}", 1, 0)]
    assert [s[1:5] for s in segments(answer.interchange, "BPR")][1] == ["H", "0", "C", "NON"]
    assert [(c[2], c[7]) for c in segments(answer.interchange, "CLP")][-1] == ("4", elsewhere.claim_id)
    clps = [(c[1], c[2], cents(c[3]), cents(c[4]), cents(c[5]) if c[5] else 0, c[7])
            for c in segments(answer.interchange, "CLP")][:3]
    owed_decision, denied_decision, paid_decision = (c.decision for c in decided)
    assert clps == [
        ("x12-paid", "1", 13_000, paid_decision.total_paid_cents, paid_decision.total_patient_responsibility_cents,
         paid.claim_id),
        ("x12-owed", "1", 2_000, 0, owed_decision.total_patient_responsibility_cents, owed.claim_id),
        ("x12-denied", "4", 4_000, 0, 0, denied.claim_id),
    ]
    assert ["SVC", "HC:97140", "40", "0"] in segments(answer.interchange, "SVC")
    assert ["CAS", "CO", "96", "40"] in segments(answer.interchange, "CAS")
    for remit in answer.remittances:  # each provider's own 835 balances
        own = parties.payer.payer.GetRemittance835(payer_pb2.GetRemittance835Request(
            run_id=run.run_id, provider_id=remit.provider_id, payer=PAYER_IDENTITY))
        clean(own.interchange)
        assert list(own.remittances) == [remit]
        bpr02, clp04, plb = check_balances(own.interchange.decode())
        assert bpr02 == clp04 == remit.amount_cents and plb == 0

    # The next run tells what was decided since: a new denial, not the two before; and a claim
    # denied, then voided before the run, is in neither.
    again = provider.SubmitClaim(visit("x12-denied-again", day="2026-10-20", code="97140", billed=4_000))
    withdrawn = provider.SubmitClaim(visit("x12-withdrawn", day="2026-10-21", code="97140", billed=4_000))
    wait_decided(parties, withdrawn.claim_id, withdrawn.receipt.position)
    void = provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=withdrawn.claim_id, reason="billed in error"))
    later = provider.SubmitClaim(visit("x12-paid-later", day="2026-10-22", code="99213", billed=12_000))
    paid_later = wait_decided(parties, later.claim_id, max(later.receipt.position, void.receipt.position))
    next_run = payer.IssuePayments(payer_pb2.IssuePaymentsRequest(min_position=paid_later.last_position))
    answer = run_835(parties, next_run.receipt.position, next_run.run_id)
    clean(answer.interchange)
    assert [(c[2], c[7]) for c in segments(answer.interchange, "CLP")] == [
        ("1", later.claim_id), ("4", again.claim_id)]
    check_balances(answer.interchange.decode())
    # The first run's 835 is the same when written again.
    after = run_835(parties, next_run.receipt.position, run.run_id).interchange
    assert after.split(b"~\nST*", 1)[1] == first.split(b"~\nST*", 1)[1]  # the envelope bears the time of writing
