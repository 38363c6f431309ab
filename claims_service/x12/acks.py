"""The acknowledgements of an 837 interchange: the TA1 (the envelope), the 999 (005010X231A1:
each functional group and transaction set, accepted, accepted with errors or rejected, with an
IK3 per segment and an IK4 per element in error) and the 277CA (005010X214: each claim accepted
into adjudication or rejected, with its claim status category and code).

The 999 names places, never values: IK404 (a copy of the bad data) is left out, as the service
never echoes what it was sent (it may be PHI). The TA1 travels in an interchange of its own, right
after its ISA as X12.5 orders it (pyx12's control map puts it after the groups and wants a group,
so a TA1 interchange is not one pyx12 validates).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from claims_service.x12.interchange import Envelope, Group, Transaction, amount, clean, control_number, d8, write
from claims_service.x12.validation import GroupReport, InterchangeReport

if TYPE_CHECKING:  # intake imports this module
    from claims_service.x12.intake import ClaimOutcome, TransactionOutcome

ACK_VERSION = "005010X231A1"
# The codes the 999 guide allows in AK101 (a group's functional identifier) and AK201 (a
# transaction set's identifier): a received GS01 or ST01 outside them is echoed as a stand-in, or
# the 999 itself would not validate (pyx12 then does not even recognise the AK1).
AK1_FUNCTIONAL_IDS = frozenset({"BE", "HB", "HC", "HI", "HN", "HP", "HR", "HS", "RA"})
AK2_TRANSACTION_SETS = frozenset({"270", "271", "276", "277", "278", "820", "834", "835", "837"})
CLAIM_ACK_VERSION = "005010X214"


def _envelope(report: InterchangeReport, kind: str, when: datetime) -> Envelope:
    """Back to the sender, from the receiver it addressed."""
    sender = report.receiver if report.receiver[1] else ("ZZ", "CLAIMSLEDGER")
    return Envelope(sender=sender, receiver=report.sender, when=when, usage=report.usage if report.usage in ("P", "T") else "P",
                    control=control_number(kind, *report.sender, report.control))


def ta1(report: InterchangeReport, when: datetime, code: str) -> str:
    """An interchange holding only the TA1: accepted ("A", 000) or rejected ("R") with the first
    envelope error pyx12 found (e.g. 021 for IEA01, 023 for a file cut short)."""
    note = report.errors[0] if code == "R" and report.errors else "000"
    envelope = _envelope(report, "TA1", when)
    envelope.ta1 = (report.control.zfill(9)[-9:] if report.control.isdigit() else "000000000",
                    report.date if len(report.date) == 6 else when.strftime("%y%m%d"),
                    report.time if len(report.time) == 4 else when.strftime("%H%M"), code, note)
    return write(envelope, [])


def ack_999(report: InterchangeReport, outcomes: Sequence[TransactionOutcome], when: datetime) -> str:
    """One 999 transaction set per functional group of the interchange."""
    envelope = _envelope(report, "999", when)
    group = Group("FA", clean(envelope.sender[1], 15), clean(envelope.receiver[1], 15) or "UNKNOWN", ACK_VERSION,
                  envelope.control)
    by_report = {id(o.report): o for o in outcomes}
    for g in report.groups:
        group.transactions.append(_group_ack(g, [by_report[id(t)] for t in g.transactions if id(t) in by_report]))
    return write(envelope, [group])


def _echo(value: str, pattern: str, default: str) -> str:
    """A value of the received file as the 999 may carry it (its own type and length), else a
    stand-in: a mangled file must still get a valid acknowledgement."""
    return value if re.fullmatch(pattern, value or "") else default


def _echo_code(value: str, allowed: frozenset[str], default: str) -> str:
    """A coded value of the received file if the 999 allows it there, else a stand-in."""
    return value if value in allowed else default


def _group_ack(g: GroupReport, outcomes: list[TransactionOutcome]) -> Transaction:
    t = Transaction("999", ACK_VERSION)
    t.add("AK1", _echo_code(g.functional_id, AK1_FUNCTIONAL_IDS, "HC"), _echo(g.control, r"[0-9]{1,9}", "0"),
          _echo(g.version, r"[0-9A-Z]{1,12}", "005010X222A1"))
    for outcome in outcomes:
        report = outcome.report
        if outcome.ack == "R" and not report.errors and not report.segments:
            continue  # sound itself, rejected with its group: AK9 says why
        t.add("AK2", _echo_code(report.code, AK2_TRANSACTION_SETS, "837"), _echo(report.control, r"[0-9A-Za-z]{4,9}", "0000"),
              _echo(report.version or g.version, r"[0-9A-Z]{1,35}", "005010X222A1"))
        for seg in report.segments:
            for code in seg.codes:
                t.add("IK3", _echo(seg.segment_id, r"[A-Z][A-Z0-9]{1,2}", "ZZZ"), str(seg.position), "", code)
                if code == "8":
                    for e in seg.elements:
                        where = [str(e.position), str(e.component or ""), str(e.repeat or "")]
                        t.add("IK4", where, e.reference or "", e.code)
        t.add("IK5", outcome.ack, *(report.errors[:5] if outcome.ack != "A" else []))
    accepted = sum(1 for o in outcomes if o.ack in ("A", "E"))
    if g.errors or not g.checked:
        code, notes = "R", (g.errors or ["2"])[:5]
    elif accepted == len(outcomes) >= g.received:  # a set not even recognised as one is not accepted
        code, notes = ("E" if any(o.ack == "E" for o in outcomes) else "A"), []
    else:
        code, notes = ("P" if accepted else "R"), []
    if g.errors or not g.checked:
        accepted = 0
    t.add("AK9", code, str(g.declared), str(g.received), str(accepted), *notes)
    return t


def ack_277ca(report: InterchangeReport, outcomes: Sequence[TransactionOutcome], when: datetime) -> str:
    """One 277CA per 837 transaction set the 999 accepted (with or without errors); "" when it
    accepted none."""
    taken = [o for o in outcomes if o.parsed is not None]
    if not taken:
        return ""
    envelope = _envelope(report, "277", when)
    group = Group("HN", clean(envelope.sender[1], 15), clean(envelope.receiver[1], 15) or "UNKNOWN",
                  CLAIM_ACK_VERSION, envelope.control)
    for number, outcome in enumerate(taken, start=1):
        group.transactions.append(_claim_ack(outcome, when, f"{envelope.control}{number:04d}"))
    return write(envelope, [group])


def _stc(status: tuple[str, str, str]) -> list[str]:
    category, code, entity = status
    return [category, code, entity]


def _claim_ack(outcome: TransactionOutcome, when: datetime, reference: str) -> Transaction:
    parsed = outcome.parsed
    assert parsed is not None
    claims = outcome.claims
    today = d8(when.date())
    t = Transaction("277", CLAIM_ACK_VERSION)
    t.add("BHT", "0085", "08", reference, today, when.strftime("%H%M"), "TH")
    source_name, source_id = parsed.receiver
    t.add("HL", "1", "", "20", "1")
    t.add("NM1", "PR", "2", clean(source_name, 60) or "PAYER", "", "", "", "", "46", clean(source_id, 80) or "PAYER")
    t.add("TRN", "1", reference)
    t.add("DTP", "050", "D8", today)
    t.add("DTP", "009", "D8", today)
    t.add("HL", "2", "1", "21", "1")
    submitter_name, submitter_id = parsed.submitter
    t.add("NM1", "41", "2", clean(submitter_name, 60) or "SUBMITTER", "", "", "", "", "46",
          clean(submitter_id, 80) or "SUBMITTER")
    t.add("TRN", "2", clean(parsed.reference, 50) or parsed.control or "0")
    t.add("STC", ["A1", "19", "PR"], today, "WQ", amount(sum(c.claim.billed_cents for c in claims)))
    _counts(t, claims, ("90", "AA"))
    hl = 2
    providers: dict[str, list[ClaimOutcome]] = {}
    for claim in claims:
        providers.setdefault(claim.claim.billing_npi, []).append(claim)
    for npi, provider_claims in providers.items():
        hl += 1
        provider_hl = hl
        first = provider_claims[0].claim
        t.add("HL", str(provider_hl), "2", "19", "1")
        if first.billing_person:
            t.add("NM1", "85", "1", clean(first.billing_name, 60) or "PROVIDER", "", "", "", "", "XX", npi or "0000000000")
        else:
            t.add("NM1", "85", "2", clean(first.billing_name, 60) or "PROVIDER", "", "", "", "", "XX", npi or "0000000000")
        t.add("TRN", "1", "0")
        t.add("STC", ["A1", "19", "PR"], "", "WQ", amount(sum(c.claim.billed_cents for c in provider_claims)))
        _counts(t, provider_claims, ("QA", "QC"))
        for claim_outcome in provider_claims:
            hl += 1
            _claim_status(t, claim_outcome, hl, provider_hl, today)
    return t


def _counts(t: Transaction, claims: Sequence[ClaimOutcome], qualifiers: tuple[str, str]) -> None:
    accepted = [c for c in claims if c.accepted]
    rejected = [c for c in claims if not c.accepted]
    if accepted:
        t.add("QTY", qualifiers[0], str(len(accepted)))
    if rejected:
        t.add("QTY", qualifiers[1], str(len(rejected)))
    if accepted:
        t.add("AMT", "YU", amount(sum(c.claim.billed_cents for c in accepted)))
    if rejected:
        t.add("AMT", "YY", amount(sum(c.claim.billed_cents for c in rejected)))


def _claim_status(t: Transaction, outcome: ClaimOutcome, hl: int, parent: int, today: str) -> None:
    claim = outcome.claim
    t.add("HL", str(hl), str(parent), "PT")
    t.add("NM1", "QC", "1", clean(claim.patient_last, 60) or "UNKNOWN", clean(claim.patient_first, 35), "", "", "",
          "MI", clean(claim.member_id, 80) or "UNKNOWN")
    t.add("TRN", "2", clean(claim.pcn, 50) or "0")
    t.add("STC", _stc(outcome.status), today, "WQ" if outcome.accepted else "U", amount(claim.billed_cents))
    if outcome.accepted and outcome.claim_id:
        t.add("REF", "1K", outcome.claim_id)
    if claim.clearinghouse_trace:
        t.add("REF", "D9", clean(claim.clearinghouse_trace, 50))
    days = claim.service_dates()
    if days and days[0] == days[-1]:
        t.add("DTP", "472", "D8", d8(days[0]))
    elif days:
        t.add("DTP", "472", "RD8", f"{d8(days[0])}-{d8(days[-1])}")
    else:
        t.add("DTP", "472", "D8", today)
