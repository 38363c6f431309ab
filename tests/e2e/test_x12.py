"""X12 over a real gRPC channel: a clinic's 837 batch (several claims, a dependent patient in
2000C, modifiers, several diagnosis pointers) becomes the expected claims and decisions with a
999 and a 277CA that pyx12 finds clean; the same file again creates nothing; a later file
replaces one claim and voids another by REF*F8; bad files are answered by a TA1, 999 or 277CA
naming the place, write nothing and never fail INTERNAL; the payer's run comes back as an 835 that
balances and pyx12 finds clean."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from claims.v1 import common_pb2, payer_pb2, provider_pb2
from claims_service.x12.interchange import cents, decode, read
from claims_service.x12.validation import validate
from tests import world
from tests.e2e.test_claim_flow import set_up, wait_decided

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "x12"
BATCH = (FIXTURES / "837p-batch.x12").read_bytes()
CORRECTIONS = (FIXTURES / "837p-replace-and-void.x12").read_bytes()
# The claim ids the batch's claims get: derived from the sender and CLM01, so the corrections
# file can name them in REF*F8 as a billing system would after reading the 277CA.
VISIT, THERAPY, CHILD = ("dc58537a-64aa-5fbd-bfed-975a1486f652", "b40a6d4c-2e9b-51b0-8d97-3ccfb67cb9f6",
                         "551f4179-51b1-5d7a-a65c-d1db6fe9cb9b")
K = common_pb2


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
    results = {r.patient_control_number: r for r in answer.claims}
    assert [r.patient_control_number for r in answer.claims] == ["RFC-24001", "RFC-24003", "RFC-24002"]
    assert all(r.accepted and r.status == "A2:20" and r.receipt.position for r in answer.claims)
    assert (results["RFC-24001"].claim_id, results["RFC-24003"].claim_id, results["RFC-24002"].claim_id) == (
        VISIT, THERAPY, CHILD)
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
    decisions = {c.claim_id: (K.Outcome.Name(c.decision.outcome), c.decision.total_billed_cents,
                              c.decision.total_allowed_cents, c.decision.total_paid_cents)
                 for c in (visit, therapy, child)}
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
    VISIT: ("OUTCOME_PAID", 18_500, 14_800, 6_940),
    THERAPY: ("OUTCOME_PAID", 9_000, 9_000, 7_200),
    CHILD: ("OUTCOME_PAID", 12_000, 9_000, 6_500),
}
