"""837P intake without a database: the fixture files read as their claims; bad files are answered
by a TA1, 999 or 277CA naming the place, with nothing taken; every 999 and 277CA written
validates with pyx12. The command layer is a stand-in that validates as the real one does
(SubmitClaim.checked) and records what it was asked to do."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from claims_service.application import Receipt
from claims_service.commands import ClaimReceipt
from claims_service.domain.claim import Claim
from claims_service.domain.values import SubmitClaim
from claims_service.errors import ClaimNotFoundError, StateError, ValidationError
from claims_service.x12.interchange import decode, read
from claims_service.x12.intake import idempotency_key, parse_transaction, patient_control_number, submit_interchange
from claims_service.x12.validation import validate
from tests import world

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "x12"
BATCH = (FIXTURES / "837p-batch.x12").read_text()
CORRECTIONS = (FIXTURES / "837p-replace-and-void.x12").read_text()
NOW = datetime(2026, 11, 20, 10, 30, tzinfo=timezone.utc)


class Ledger:
    """What intake asks of `Commands`, validated as `Commands` validates, recorded."""

    def __init__(self) -> None:
        self.claims: dict[str, dict[str, Any]] = {}
        self.status: dict[str, str] = {}
        self.replaced_by: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    def _submit(self, actor: str, **fields: Any) -> ClaimReceipt:
        request = SubmitClaim.checked(actor=actor, received_on=date(2026, 11, 20), **fields)
        # Ids as a claim submitted before migration 0027 has them (its request id): the test files'
        # REF*F8 name them.
        claim_id = str(Claim.request_id_of(request.provider_id, request.idempotency_key))
        self.claims.setdefault(claim_id, request.body())
        self.status.setdefault(claim_id, "adjudicated")
        return ClaimReceipt(claim_id, Receipt(len(self.calls), b"\0" * 32, len(self.calls)))

    def submit_claims(self, *, actor: str, claims: list[dict[str, Any]]) -> list[Any]:
        answers: list[Any] = []
        for fields in claims:
            self.calls.append(("submit", fields["idempotency_key"]))
            try:
                answers.append(self._submit(actor, **fields))
            except ValidationError as error:
                answers.append(error)
        return answers

    def correct_claim(self, *, actor: str, original_claim_id: str, **fields: Any) -> ClaimReceipt:
        self.calls.append(("correct", original_claim_id))
        self._original(original_claim_id)
        replacement = str(Claim.request_id_of(fields["provider_id"], fields["idempotency_key"]))
        if self.replaced_by.get(original_claim_id) == replacement:  # a retry: the first receipt
            return self._submit(actor, frequency_code="7", replaces_claim_id=original_claim_id, **fields)
        if self.status[original_claim_id] != "adjudicated":
            raise StateError(f"a {self.status[original_claim_id]} claim cannot be corrected")
        done = self._submit(actor, frequency_code="7", replaces_claim_id=original_claim_id, **fields)
        self.status[original_claim_id], self.replaced_by[original_claim_id] = "replaced", done.claim_id
        return done

    def void_claim(self, *, actor: str, provider_id: str, claim_id: str, reason: str) -> Receipt:
        self.calls.append(("void", claim_id))
        self._original(claim_id)
        if self.status[claim_id] != "adjudicated":
            raise StateError(f"a {self.status[claim_id]} claim cannot be voided")
        self.status[claim_id] = "voided"
        return Receipt(99, b"\1" * 32, 99)

    def _original(self, claim_id: str) -> None:
        try:
            uuid.UUID(claim_id)
        except ValueError:
            raise ValidationError.single("claim_id", "must be a claim id (UUID)") from None
        if claim_id not in self.claims:
            raise ClaimNotFoundError("claim_id: no such claim")

    def own_claim(self, claim_id: str, provider_id: str | None = None) -> Any:
        self._original(claim_id)
        return type("C", (), {"status": self.status[claim_id], "id": uuid.UUID(claim_id), "version": 3})()

    def receipt_of(self, stream_id: Any, version: int) -> Receipt:
        return Receipt(98, b"\2" * 32, 98)


def take(text: str, ledger: Ledger | None = None, provider: str = world.NPI):  # type: ignore[no-untyped-def]
    ledger = ledger if ledger is not None else Ledger()
    result = submit_interchange(ledger, actor=f"provider:{provider}", provider_id=provider, data=text.encode(),  # type: ignore[arg-type]
                                now=lambda: NOW)
    for written in (result.ack_999, result.ack_277ca):
        if written:
            reports = validate(written)
            assert all(r.clean for r in reports), [p for r in reports for p in r.problems()]
    return result, ledger


def segments(text: str, name: str) -> list[list[str]]:
    return [s.elements for s in read(text)[1] if s.id == name] if text else []


def replace_segment(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def with_se_count(text: str) -> str:
    """The transaction set's SE01 recounted after an edit that added or removed segments."""
    lines = text.splitlines()
    st = next(i for i, line in enumerate(lines) if line.startswith("ST*"))
    se = next(i for i, line in enumerate(lines) if line.startswith("SE*"))
    lines[se] = f"SE*{se - st + 1}*0001~"
    return "\n".join(lines) + "\n"


# --- the fixtures ----------------------------------------------------------------------------------


def test_the_batch_reads_as_its_three_claims():
    transaction = parse_transaction([s for s in read(decode(BATCH.encode()))[1] if s.position])
    assert (transaction.reference, transaction.submitter, transaction.receiver) == (
        "RFC-B-4721", ("RIVERSIDE FAMILY CLINIC", "RIVERSIDECLIN"), ("ACME HEALTH PLAN", "PAYERACME"))
    visit, therapy, child = transaction.claims
    assert (visit.pcn, visit.frequency, visit.member_id, visit.payer_id, visit.billing_npi, visit.diagnoses,
            visit.total_cents, visit.clearinghouse_trace) == (
        "RFC-24001", "1", world.MEMBER, world.PAYER, world.NPI, ["E119", "I10"], 18_500, "CH88112301")
    assert [(line["procedure_code"], line["modifiers"], line["diagnosis_pointers"], line["units"], line["billed_cents"],
             line["date_of_service"]) for line in visit.lines] == [
        ("99214", ["25"], [1, 2], 1, 13_000, date(2026, 10, 15)),
        ("80053", [], [1], 1, 4_000, date(2026, 10, 15)),
        ("36415", [], [1], 1, 1_500, date(2026, 10, 15)),
    ]
    assert [(line["procedure_code"], line["modifiers"], line["units"]) for line in therapy.lines] == [("97110", ["GP"], 3)]
    # The dependent in 2000C: her name for the 277CA, the subscriber's member id for the ledger.
    assert (child.patient_first, child.member_id, child.diagnoses) == ("LILY", world.MEMBER, ["J069", "R509"])
    assert not any(c.problems for c in transaction.claims)


def test_the_batch_is_submitted_in_file_order_under_keys_from_the_sender_and_clm01():
    result, ledger = take(BATCH)
    keys = [key for kind, key in ledger.calls]
    assert [patient_control_number(key) for key in keys] == ["RFC-24001", "RFC-24003", "RFC-24002"]
    assert all(re.fullmatch(r"x12\.1\.[0-9a-f]{12}\.RFC-2400[123]", key) for key in keys)
    assert [c.status for c in result.claims] == [("A2", "20", "")] * 3
    assert segments(result.ack_999, "IK5") == [["IK5", "A"]]
    assert [s[1] for s in segments(result.ack_277ca, "STC")] == ["A1:19:PR", "A1:19:PR", "A2:20", "A2:20", "A2:20"]
    assert [s[1:] for s in segments(result.ack_277ca, "QTY")] == [["90", "3"], ["QA", "3"]]
    assert segments(result.ack_277ca, "NM1")[-1][3:5] == ["HARTLEY", "LILY"]


def test_a_replacement_and_a_void_name_their_originals_by_ref_f8():
    _, ledger = take(BATCH)
    result, _ = take(CORRECTIONS, ledger)
    replacement, void = result.claims
    visit, therapy = ("dc58537a-64aa-5fbd-bfed-975a1486f652", "b40a6d4c-2e9b-51b0-8d97-3ccfb67cb9f6")
    assert ledger.calls[-2:] == [("correct", visit), ("void", therapy)]
    assert replacement.accepted and replacement.claim_id not in (visit, "") and void.claim_id == therapy
    assert (ledger.status[visit], ledger.status[therapy]) == ("replaced", "voided")
    assert ledger.claims[replacement.claim_id]["frequency_code"] == "7"
    assert [line["procedure_code"] for line in ledger.claims[replacement.claim_id]["lines"]] == [
        "99214", "80053", "36415", "85025", "97140"]
    # Sent again: the replacement is the same claim, the void answers with the void's receipt.
    again, _ = take(CORRECTIONS, ledger)
    assert [(c.accepted, c.claim_id) for c in again.claims] == [(True, replacement.claim_id), (True, therapy)]


def test_replacing_a_replaced_claim_or_a_claim_nobody_sent_is_a_277ca_rejection():
    _, ledger = take(BATCH)
    take(CORRECTIONS, ledger)
    other = replace_segment(CORRECTIONS, "CLM*RFC-24001*240***11:B:7", "CLM*RFC-24001-B*240***11:B:7")
    result, _ = take(other, ledger)
    assert [c.status for c in result.claims] == [("A3", "495", ""), ("A2", "20", "")]
    unknown = replace_segment(CORRECTIONS, "REF*F8*dc58537a-64aa-5fbd-bfed-975a1486f652",
                              "REF*F8*00000000-0000-4000-8000-000000000000")
    result, _ = take(unknown, Ledger())
    assert result.claims[0].status == ("A7", "464", "") and result.claims[0].field == "REF*F8"
    malformed = replace_segment(CORRECTIONS, "REF*F8*dc58537a-64aa-5fbd-bfed-975a1486f652", "REF*F8*CLAIM-1")
    assert take(malformed, Ledger())[0].claims[0].status == ("A7", "464", "")


# --- bad files ------------------------------------------------------------------------------------


def test_a_file_cut_short_is_answered_by_a_ta1_and_takes_nothing():
    result, ledger = take(BATCH[: BATCH.index("CLM*RFC-24003")])
    assert segments(result.ta1, "TA1")[0][4:] == ["R", "023"]  # improper end of file
    assert (result.ack_999, result.ack_277ca, result.claims, ledger.calls) == ("", "", [], [])


def test_a_wrong_iea01_is_a_ta1_rejection():
    result, ledger = take(replace_segment(BATCH, "IEA*1*000004721", "IEA*2*000004721"))
    assert segments(result.ta1, "TA1")[0][4:] == ["R", "021"] and ledger.calls == []


def test_a_wrong_ge01_rejects_the_group_in_the_999():
    result, ledger = take(replace_segment(BATCH, "GE*1*4721", "GE*2*4721"))
    assert segments(result.ack_999, "AK9") == [["AK9", "R", "2", "1", "0", "5"]]
    assert (result.ack_277ca, ledger.calls) == ("", [])


def test_a_wrong_se01_rejects_the_transaction_set_in_the_999():
    count = re.search(r"SE\*(\d+)\*0001", BATCH)
    assert count is not None
    result, ledger = take(replace_segment(BATCH, count.group(0), f"SE*{int(count.group(1)) + 1}*0001"))
    assert segments(result.ack_999, "IK5") == [["IK5", "R", "4"]]
    assert segments(result.ack_999, "AK9") == [["AK9", "R", "1", "1", "0"]]
    assert (result.ack_277ca, ledger.calls) == ("", [])


def test_another_version_is_not_supported():
    result, ledger = take(BATCH.replace("005010X222A1", "004010X098A1"))
    assert segments(result.ack_999, "AK9") == [["AK9", "R", "1", "1", "0", "2"]]
    assert ledger.calls == []


def test_an_unknown_qualifier_outside_a_claim_rejects_the_transaction_naming_segment_and_element():
    result, ledger = take(replace_segment(BATCH, "NM1*85*2*RIVERSIDE FAMILY CLINIC*****XX", "NM1*85*2*RIVERSIDE FAMILY CLINIC*****ZZ"))
    assert segments(result.ack_999, "IK3") == [["IK3", "NM1", "8", "", "8"]]  # NM1 at position 8 of the set
    assert segments(result.ack_999, "IK4") == [["IK4", "8", "66", "7"]]  # NM108, data element 66, invalid code
    assert segments(result.ack_999, "IK5") == [["IK5", "R", "5"]]
    assert (result.ack_277ca, ledger.calls) == ("", [])


def test_an_unknown_qualifier_inside_a_claim_accepts_the_others_with_errors():
    # A diagnosis qualifier pyx12 does not know: the HI matches no HI of the guide (IK3 1), and
    # the claim then misses its required one (IK3 3, at the next segment, still the claim's).
    result, _ = take(replace_segment(BATCH, "HI*ABK:M5450", "HI*XYZ:M5450"))
    assert segments(result.ack_999, "IK3") == [["IK3", "HI", "35", "", "1"], ["IK3", "HI", "36", "", "3"]]
    assert [c.status[:2] for c in result.claims] == [("A2", "20"), ("A3", "684"), ("A2", "20")]

    bad = replace_segment(BATCH, "SV1*HC:97110:GP*90*UN*3", "SV1*HC:97110:GP*90*XX*3")
    result, ledger = take(bad)
    assert segments(result.ack_999, "IK3") == [["IK3", "SV1", "37", "", "8"]]
    assert segments(result.ack_999, "IK4") == [["IK4", "3", "355", "7"]]  # SV103, data element 355, invalid code
    assert segments(result.ack_999, "IK5") == [["IK5", "E", "5"]]
    assert segments(result.ack_999, "AK9") == [["AK9", "E", "1", "1", "1"]]
    assert [(c.claim.pcn, c.status) for c in result.claims] == [
        ("RFC-24001", ("A2", "20", "")), ("RFC-24003", ("A3", "684", "")), ("RFC-24002", ("A2", "20", ""))]
    assert [patient_control_number(key) for _, key in ledger.calls] == ["RFC-24001", "RFC-24002"]


def test_a_billing_npi_that_is_not_the_callers_rejects_every_claim_in_the_277ca():
    result, ledger = take(BATCH, provider=world.OTHER_NPI)
    assert [s[1] for s in segments(result.ack_277ca, "STC")][2:] == ["A7:562:85"] * 3
    assert all(s[3] == "U" for s in segments(result.ack_277ca, "STC")[2:])
    assert segments(result.ack_999, "IK5") == [["IK5", "A"]] and ledger.calls == []


@pytest.mark.parametrize(("old", "new", "status", "field"), [
    ("HI*ABK:J069*ABF:R509", "HI*ABK:J069*ABF:Q9999X", ("A7", "255", ""), "diagnosis_codes[1]"),
    ("HI*ABK:J069*ABF:R509", "HI*ABK:E11*ABF:R509", ("A7", "254", ""), "diagnosis_codes[0]"),
    ("SV1*HC:99213*120*UN*1***1:2", "SV1*HC:99213*120*UN*1***1:3", ("A7", "477", ""), "lines[0].diagnosis_pointers[1]"),
    ("SV1*HC:99213*120*UN*1***1:2", "SV1*HC:9921*120*UN*1***1:2", ("A7", "454", ""), "lines[0].procedure_code"),
    ("SV1*HC:99213*120*UN*1***1:2", "SV1*HC:99213*120*UN*1.5***1:2", ("A7", "476", ""), "line 1 SV104"),
    ("CLM*RFC-24002*120***", "CLM*RFC-24002*125***", ("A7", "400", ""), "CLM02"),
    ("DTP*472*D8*20261016", "DTP*472*D8*20271016", ("A7", "187", ""), "lines[0].date_of_service"),
    ("DTP*472*D8*20261016", "DTP*472*RD8*20261016-20261018", ("A7", "187", ""), "line 1 DTP03"),
    ("NM1*IL*1*HARTLEY*ANNA*M***MI*M-1001\nNM1*PR", "NM1*IL*1*HARTLEY*ANNA*M***MI*" + "M" * 70 + "\nNM1*PR",
     ("A7", "164", "IL"), "member_id"),
])
def test_a_claim_the_service_would_refuse_is_a_277ca_rejection_naming_it_and_the_others_go_on(old, new, status, field):
    result, ledger = take(replace_segment(BATCH, old.replace("\n", "~\n"), new.replace("\n", "~\n")))
    child = result.claims[-1]
    assert (child.claim.pcn, child.status, child.field) == ("RFC-24002", status, field)
    assert child.message and "Q9999X" not in child.message and "M" * 70 not in child.message
    assert [c.accepted for c in result.claims] == [True, True, False]
    assert len(ledger.claims) == 2  # the refused claim wrote nothing
    assert segments(result.ack_277ca, "STC")[-1][1] == ":".join(p for p in status if p)


def test_a_pcn_taken_before_for_another_claim_is_a_duplicate():
    _, ledger = take(BATCH)
    changed = replace_segment(BATCH, "SV1*HC:99213*120*UN*1***1:2", "SV1*HC:99213*120*UN*1***1")

    def refuse(*, actor: str, claims: list[dict[str, Any]]) -> list[Any]:
        from claims_service.errors import DuplicateRequestError
        return [DuplicateRequestError("this idempotency key was already used with a different request")] * len(claims)

    ledger.submit_claims = refuse  # type: ignore[method-assign]
    result, _ = take(changed, ledger)
    assert {c.status for c in result.claims} == {("A3", "54", "")}


def test_keys_fit_the_identifier_limit_and_tell_frequencies_and_originals_apart():
    from claims_service.x12.intake import ParsedClaim

    long = ParsedClaim(pcn="P" * 38, position=1, frequency="7", original=str(uuid.uuid4()))
    key = idempotency_key(("ZZ", "S" * 15), long)
    assert len(key) <= 64 and patient_control_number(key) == "P" * 38
    other = ParsedClaim(pcn="P" * 38, position=1, frequency="7", original=str(uuid.uuid4()))
    assert idempotency_key(("ZZ", "S" * 15), other) != key
    assert idempotency_key(("ZZ", "OTHER"), long) != key


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(BATCH) - 1), st.integers(0, 12),
                          st.text(alphabet="*:~^\n0123456789ABCDEFHIKLMNPRSTUVXZ-.", max_size=6)), min_size=1, max_size=4))
@example(edits=[(182, 12, "~T")])  # a TA1 inside the transaction: its elements' ids ("I12") are no IK402
@example(edits=[(111, 0, "T*")])  # GS01 "HT": no functional identifier a 999's AK1 may carry
@example(edits=[(175, 3, "899")])  # ST01 "899": a set not recognised, so not accepted (AK9)
def test_a_mangled_file_is_answered_or_refused_as_no_interchange_but_never_crashes(edits):
    text = BATCH
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    try:
        result, _ = take(text)
    except ValidationError as error:  # only: not an interchange at all
        assert error.fields == ["interchange"]
        return
    assert result.ta1 or result.ack_999
    for ak9 in (line.split("*") for line in result.ack_999.split("~") if line.strip().startswith("AK9*")):
        if ak9[1] in ("A", "E"):  # a group accepted has every set it received accepted
            assert ak9[4] == ak9[3], ak9
