"""837P intake (005010X222A1): an interchange in, each claim through the ledger's own commands,
the 999 and 277CA out.

The order of things, for one interchange:

1. `interchange.read` finds the delimiters and segments (a file that does not begin with a whole
   ISA is INVALID_ARGUMENT: there is nothing to acknowledge).
2. pyx12 checks it against the guide (`validation.validate`). An envelope in error is answered
   with a TA1 only (X12.5: a rejected interchange is not read further). A functional group that
   is not 837P 005010X222A1, or whose GS/GE is in error, is rejected whole (999 AK9 R). A
   transaction set with an error outside any claim (its envelope, header, billing provider or
   subscriber loops) is rejected whole (IK5 R); errors only inside claims accept it with errors
   (IK5 E), and those claims are rejected in the 277CA (A3:684, "see the 999").
3. Each claim of an accepted transaction set is read (`parse_transaction`) and checked for what
   the guide leaves to the payer (the billing NPI is the caller's, the charges add up, the
   frequency is 1, 7 or 8 with REF*F8 for 7 and 8, one date of service per line, ...), then
   submitted (1), replaces (7, CorrectClaim) or voids (8, VoidClaim) the claim REF*F8 names, as
   the gRPC calls do, with the same validation. A claim refused anywhere gets its 277CA status
   (`STATUS_OF_FIELD`, README "X12") and writes nothing.
4. Idempotent as a whole: each claim's idempotency key derives from the sender (ISA05/ISA06), its
   patient control number (CLM01), frequency and original (`idempotency_key`), so the same file
   again answers with the same claim ids and receipts and creates nothing; a void of a claim
   already voided answers with that claim's last receipt.

Errors that say nothing about the file (the database unavailable, a write that kept conflicting)
are raised, so the whole call fails with their status and may be retried as a whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from claims_service.application import Receipt
from claims_service.commands import Commands
from claims_service.domain.formats import MAX_DIAGNOSES
from claims_service.errors import (
    AlreadyExistsError,
    FieldViolation,
    NotFoundError,
    StateError,
    ValidationError,
)
from claims_service.x12 import acks
from claims_service.x12.interchange import Segment, cents, decode, parse_d8, read
from claims_service.x12.validation import InterchangeReport, TransactionReport, validate

FUNCTIONAL_ID = "HC"
VERSION = "005010X222A1"
VOID_REASON = "voided by an 837 (claim frequency 8)"
CLAIMS_PER_WRITE = 500  # a file's originals go to the ledger in writes of at most this many, in order

# --- the 277CA status of each refusal (README "X12": the table) ------------------------------------

Status = tuple[str, str, str]  # STC01: category, status code, entity ("" for none)

ACCEPTED: Status = ("A2", "20", "")
SYNTAX_ERROR: Status = ("A3", "684", "")  # the 999 names the segment and element
BILLING_NPI: Status = ("A7", "562", "85")
OUT_OF_BALANCE: Status = ("A7", "400", "")
FREQUENCY: Status = ("A7", "535", "")
ORIGINAL_CLAIM: Status = ("A7", "464", "")  # REF*F8: the payer claim control number
ORIGINAL_REPLACED: Status = ("A3", "495", "")  # resend against the replacement's claim number
ORIGINAL_VOIDED: Status = ("A3", "686", "")
ORIGINAL_UNDECIDED: Status = ("A3", "45", "")  # awaiting benefit determination
DUPLICATE: Status = ("A3", "54", "")  # this CLM01 was accepted before with another claim
OTHER: Status = ("A3", "21", "")

# SubmitClaim's and CorrectClaim's field violations (the gRPC field paths), by the first match.
STATUS_OF_FIELD: list[tuple[re.Pattern[str], Status]] = [
    (re.compile(r"diagnosis_codes\[0\]"), ("A7", "254", "")),
    (re.compile(r"diagnosis_codes"), ("A7", "255", "")),
    (re.compile(r"lines\[\d+\]\.procedure_code"), ("A7", "454", "")),
    (re.compile(r"lines\[\d+\]\.modifiers"), ("A7", "453", "")),
    (re.compile(r"lines\[\d+\]\.units"), ("A7", "476", "")),
    (re.compile(r"lines\[\d+\]\.billed_cents"), ("A7", "583", "")),
    (re.compile(r"lines\[\d+\]\.diagnosis_pointers"), ("A7", "477", "")),
    (re.compile(r"lines\[\d+\]\.date_of_service"), ("A7", "187", "")),
    (re.compile(r"lines\[\d+\]"), ("A7", "247", "")),
    (re.compile(r"lines$"), ("A7", "178", "")),
    (re.compile(r"place_of_service"), ("A7", "249", "")),
    (re.compile(r"member_id"), ("A7", "164", "IL")),
    (re.compile(r"payer_id"), ("A7", "153", "PR")),
    (re.compile(r"provider_id"), BILLING_NPI),
    (re.compile(r"claim_id|replaces_claim_id"), ORIGINAL_CLAIM),
    (re.compile(r"frequency_code"), FREQUENCY),
]


def status_of_field(path: str) -> Status:
    for pattern, status in STATUS_OF_FIELD:
        if pattern.match(path):
            return status
    return OTHER


# --- what a claim says ---------------------------------------------------------------------------


@dataclass
class Problem:
    """Why a claim cannot be taken: its 277CA status, and the field and words for the API."""

    status: Status
    field: str
    message: str


@dataclass
class ParsedClaim:
    pcn: str  # CLM01
    position: int  # the CLM segment's, within the transaction set
    end: int = 0  # its last segment's
    frequency: str = ""
    place_of_service: str = ""
    total_cents: int | None = None
    original: str = ""  # REF*F8
    clearinghouse_trace: str = ""  # REF*D9
    billing_npi: str = ""
    billing_name: str = ""
    billing_person: bool = False
    member_id: str = ""
    payer_id: str = ""
    patient_last: str = ""
    patient_first: str = ""
    diagnoses: list[str] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def refuse(self, status: Status, where: str, message: str) -> None:
        self.problems.append(Problem(status, where, message))

    @property
    def billed_cents(self) -> int:
        return self.total_cents if self.total_cents is not None else sum(line["billed_cents"] or 0 for line in self.lines)

    def service_dates(self) -> list[date]:
        return sorted(line["date_of_service"] for line in self.lines if line["date_of_service"] is not None)


@dataclass
class ParsedTransaction:
    control: str  # ST02
    reference: str = ""  # BHT03
    created: str = ""  # BHT04
    submitter: tuple[str, str] = ("", "")  # 1000A name, id
    receiver: tuple[str, str] = ("", "")  # 1000B name, id
    claims: list[ParsedClaim] = field(default_factory=list)


def parse_transaction(segments: Sequence[Segment]) -> ParsedTransaction:
    """The claims of one 837P transaction set (ST through SE), each with what it bills and with
    the problems its reading found. Never raises: whatever pyx12 let through is read as well as
    it can be and refused per claim."""
    transaction = ParsedTransaction(control=segments[0][2] if segments else "")
    level = ""  # "20" billing provider, "22" subscriber, "23" patient
    billing = {"npi": "", "name": "", "person": False}
    subscriber = {"member_id": "", "payer_id": "", "last": "", "first": ""}
    patient: dict[str, str] | None = None
    claim: ParsedClaim | None = None
    line: dict[str, Any] | None = None
    in_subloop = False  # inside a 2310/2320/2330/2420 loop of the claim or line
    header = True
    for seg in segments:
        sid = seg.id
        if claim is not None and sid in ("HL", "SE"):
            claim.end = seg.position - 1
        if sid == "BHT":
            transaction.reference, transaction.created = seg[3], seg[4]
        elif sid == "HL":
            header, level, claim, line, in_subloop = False, seg[3], None, None, False
            if level == "20":
                billing = {"npi": "", "name": "", "person": False}
            elif level == "22":
                subscriber = {"member_id": "", "payer_id": "", "last": "", "first": ""}
                patient = None
            elif level == "23":
                patient = {"last": "", "first": ""}
        elif sid == "NM1" and header:
            if seg[1] == "41":
                transaction.submitter = (seg[3], seg[9])
            elif seg[1] == "40":
                transaction.receiver = (seg[3], seg[9])
        elif sid == "NM1" and claim is None:
            if level == "20" and seg[1] == "85":
                billing = {"npi": seg[9] if seg[8] == "XX" else "", "name": seg[3], "person": seg[2] == "1"}
            elif level == "22" and seg[1] == "IL":
                subscriber.update(member_id=seg[9] if seg[8] == "MI" else "", last=seg[3], first=seg[4])
            elif level == "22" and seg[1] == "PR":
                subscriber["payer_id"] = seg[9] if seg[8] in ("PI", "XV") else ""
            elif level == "23" and seg[1] == "QC" and patient is not None:
                patient.update(last=seg[3], first=seg[4])
        elif sid == "CLM":
            if claim is not None:
                claim.end = seg.position - 1
            who = patient if patient is not None else subscriber
            claim = ParsedClaim(pcn=seg[1], position=seg.position, billing_npi=billing["npi"],
                                billing_name=billing["name"], billing_person=bool(billing["person"]),
                                member_id=subscriber["member_id"], payer_id=subscriber["payer_id"],
                                patient_last=who["last"], patient_first=who["first"])
            line, in_subloop = None, False
            transaction.claims.append(claim)
            _read_clm(claim, seg)
        elif claim is None:
            continue
        elif sid in ("NM1", "SBR"):  # 2310x, 2320 and 2330x loops of the claim; 2420x of a line
            in_subloop = True
        elif sid == "LX":
            line, in_subloop = {"line_number": len(claim.lines) + 1, "procedure_code": "", "modifiers": [],
                                "diagnosis_pointers": [], "units": 0, "billed_cents": None,
                                "date_of_service": None, "position": seg.position}, False
            claim.lines.append(line)
        elif in_subloop:
            continue
        elif line is None:
            if sid == "REF" and seg[1] == "F8":
                claim.original = seg[2]
            elif sid == "REF" and seg[1] == "D9":
                claim.clearinghouse_trace = seg[2]
            elif sid == "HI":
                _read_hi(claim, seg)
        elif sid == "SV1":
            _read_sv1(claim, line, seg)
        elif sid == "DTP" and seg[1] == "472":
            _read_service_date(claim, line, seg)
    if claim is not None and not claim.end:
        claim.end = segments[-1].position if segments else claim.position
    return transaction


def _read_clm(claim: ParsedClaim, seg: Segment) -> None:
    claim.total_cents = cents(seg[2])
    claim.place_of_service = seg.component(5, 1)
    claim.frequency = seg.component(5, 3)
    if claim.total_cents is None or claim.total_cents < 0:
        claim.refuse(("A7", "178", ""), "CLM02", "the total claim charge must be an amount in whole cents")
    if claim.frequency not in ("1", "7", "8"):
        claim.refuse(FREQUENCY, "CLM05-3", "the claim frequency must be 1 (original), 7 (replacement) or 8 (void)")


def _read_hi(claim: ParsedClaim, seg: Segment) -> None:
    for index in range(1, 13):
        parts = seg.components(index)
        if not parts:
            continue
        qualifier, code = parts[0], parts[1] if len(parts) > 1 else ""
        principal = not claim.diagnoses
        if qualifier not in (("ABK",) if principal else ("ABF",)):
            where = "principal" if principal else "other"
            claim.refuse(("A7", "254" if principal else "255", ""), f"HI{index:02d}",
                         f"an ICD-10-CM {where} diagnosis is qualified {'ABK' if principal else 'ABF'}")
        claim.diagnoses.append(code)
    if len(claim.diagnoses) > MAX_DIAGNOSES:
        claim.refuse(("A7", "255", ""), "HI", f"at most {MAX_DIAGNOSES} diagnoses")


def _read_sv1(claim: ParsedClaim, line: dict[str, Any], seg: Segment) -> None:
    where = f"line {line['line_number']}"
    procedure = seg.components(1)
    if not procedure or procedure[0] != "HC":
        claim.refuse(("A7", "454", ""), f"{where} SV101-1", "a procedure is a CPT or HCPCS code (qualifier HC)")
    line["procedure_code"] = procedure[1] if len(procedure) > 1 else ""
    line["modifiers"] = [m for m in procedure[2:6] if m]
    line["billed_cents"] = cents(seg[2])
    if line["billed_cents"] is None or line["billed_cents"] < 0:
        claim.refuse(("A7", "583", ""), f"{where} SV102", "the line charge must be an amount in whole cents")
        line["billed_cents"] = None
    if seg[3] != "UN":
        claim.refuse(("A7", "476", ""), f"{where} SV103", "units are counted in units (UN); minutes are not taken")
    quantity = cents(seg[4])
    if quantity is None or quantity <= 0 or quantity % 100:
        claim.refuse(("A7", "476", ""), f"{where} SV104", "the service unit count must be a whole number of units")
    else:
        line["units"] = quantity // 100
    if seg[5] and seg[5] != claim.place_of_service:
        claim.refuse(("A7", "249", ""), f"{where} SV105", "one place of service per claim: a line may not name another")
    pointers = []
    for pointer in seg.components(7):
        if not pointer.isdigit():
            claim.refuse(("A7", "477", ""), f"{where} SV107", "diagnosis pointers are numbers 1 to 12")
            continue
        pointers.append(int(pointer))
    line["diagnosis_pointers"] = pointers


def _read_service_date(claim: ParsedClaim, line: dict[str, Any], seg: Segment) -> None:
    where = f"line {line['line_number']} DTP03"
    if seg[2] == "D8":
        day = parse_d8(seg[3])
    elif seg[2] == "RD8":
        first, _, last = seg[3].partition("-")
        day = parse_d8(first)
        if day is not None and parse_d8(last) != day:
            claim.refuse(("A7", "187", ""), where, "one date of service per line: bill each day on its own line")
            return
    else:
        day = None
    if day is None:
        claim.refuse(("A7", "187", ""), where, "the date of service must be a date (CCYYMMDD)")
        return
    line["date_of_service"] = day


def check_claim(claim: ParsedClaim, provider_id: str) -> None:
    """What the guide leaves to the payer, added to the claim's problems."""
    if claim.billing_npi != provider_id:
        claim.refuse(BILLING_NPI, "2010AA NM109", "the billing provider's NPI must be the caller's")
    if claim.frequency in ("7", "8") and not claim.original:
        claim.refuse(("A6", "464", ""), "REF*F8", "a replacement or void names the original's payer claim control "
                                                  "number (its claim id) in REF*F8")
    if claim.frequency == "8":
        return
    if not claim.member_id:
        claim.refuse(("A6", "164", "IL"), "2010BA NM109", "the subscriber's member id (MI) is required")
    if not claim.payer_id:
        claim.refuse(("A6", "153", "PR"), "2010BB NM109", "the payer's id (PI) is required")
    if not claim.diagnoses:
        claim.refuse(("A6", "254", ""), "HI", "a principal diagnosis is required")
    if not claim.lines:
        claim.refuse(("A6", "247", ""), "LX", "a claim has at least one service line")
    for line in claim.lines:
        if line["date_of_service"] is None and not any(p.field.startswith(f"line {line['line_number']} DTP")
                                                       for p in claim.problems):
            claim.refuse(("A6", "187", ""), f"line {line['line_number']} DTP*472", "each line needs its date of service")
    if claim.total_cents is not None and all(line["billed_cents"] is not None for line in claim.lines):
        if sum(line["billed_cents"] for line in claim.lines) != claim.total_cents:
            claim.refuse(OUT_OF_BALANCE, "CLM02", "the total claim charge must be the sum of the line charges")


def idempotency_key(sender: tuple[str, str], claim: ParsedClaim) -> str:
    """``x12.<frequency>.<12 hex of the sender and the original>.<CLM01>`` (at most 57 characters):
    the same claim from the same sender is the same key, whatever the file around it."""
    tag = hashlib.sha256("\x1f".join([sender[0], sender[1], claim.original]).encode()).hexdigest()[:12]
    return f"x12.{claim.frequency}.{tag}.{claim.pcn}"


def patient_control_number(idempotency_key: str) -> str | None:
    """CLM01 of a claim submitted by an 837 (None for any other key)."""
    parts = idempotency_key.split(".", 3)
    if len(parts) == 4 and parts[0] == "x12" and parts[1] in ("1", "7"):
        return parts[3]
    return None


# --- processing -------------------------------------------------------------------------------------


@dataclass
class ClaimOutcome:
    claim: ParsedClaim
    status: Status
    claim_id: str = ""
    receipt: Receipt | None = None
    field: str = ""
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.status[0] in ("A1", "A2")


@dataclass
class TransactionOutcome:
    report: TransactionReport
    ack: str  # IK501: A, E or R
    parsed: ParsedTransaction | None = None
    claims: list[ClaimOutcome] = field(default_factory=list)


@dataclass
class IntakeResult:
    """What SubmitX12 answers: the acknowledgements (bytes, "" when not sent) and every claim's
    outcome in file order."""

    ta1: str
    ack_999: str
    ack_277ca: str
    claims: list[ClaimOutcome]


def submit_interchange(commands: Commands, *, actor: str, provider_id: str, data: bytes,
                       now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> IntakeResult:
    """Take an 837P interchange from `provider_id` (the caller): see the module's docstring."""
    if not data:
        raise ValidationError.single("interchange", "is required (the 837 as bytes, ISA to IEA)")
    text = decode(data)
    _delimiters, segments = read(text)
    if sum(1 for s in segments if s.id == "ISA") > 1:
        raise ValidationError.single("interchange", "send one interchange (one ISA ... IEA) per call")
    [report] = validate(text) or [None]
    if report is None:
        raise ValidationError.single("interchange", "is not an X12 interchange: it has no ISA segment")
    when = now()
    _check_versions(report, segments)
    if report.errors:
        return IntakeResult(ta1=acks.ta1(report, when, "R"), ack_999="", ack_277ca="", claims=[])
    transactions = _transactions(report, segments)
    outcomes: list[TransactionOutcome] = []
    for group, group_transactions in transactions:
        for t_report, t_segments in group_transactions:
            outcome = _decide(t_report, t_segments, group_rejected=not group.checked or bool(group.errors))
            outcomes.append(outcome)
    claims = [c for o in outcomes if o.parsed is not None for c in o.parsed.claims]
    # A claim a segment error falls in is refused as such (the 999 names the error); the others
    # are checked for what the guide leaves to the payer.
    in_error = {id(c) for o in outcomes if o.parsed is not None for c in o.parsed.claims
                if any(c.position <= s.position <= c.end for s in o.report.segments)}
    for claim in claims:
        if id(claim) not in in_error:
            check_claim(claim, provider_id)
    results = _take_claims(commands, actor=actor, provider_id=provider_id, sender=report.sender, claims=claims,
                           syntax_errors=in_error)
    by_claim = {id(r.claim): r for r in results}
    for outcome in outcomes:
        if outcome.parsed is not None:
            outcome.claims = [by_claim[id(c)] for c in outcome.parsed.claims]
    ta1 = acks.ta1(report, when, "A") if report.ack_requested == "1" else ""
    return IntakeResult(ta1=ta1, ack_999=acks.ack_999(report, outcomes, when),
                        ack_277ca=acks.ack_277ca(report, outcomes, when),
                        claims=[r for o in outcomes for r in o.claims])


def _check_versions(report: InterchangeReport, segments: Sequence[Segment]) -> None:
    """Only 837P of 005010X222A1 is taken: another interchange version is refused at the envelope
    (TA1 017), another group (an 837I, a 270) as not supported (AK9 1 or 2), another transaction
    set version as not supported (IK5 1)."""
    isa = next((s for s in segments if s.id == "ISA"), None)
    if isa is not None and isa[12] != "00501":
        report.errors = list(dict.fromkeys([*report.errors, "017"]))
    for group in report.groups:
        if group.functional_id != FUNCTIONAL_ID:
            group.errors = sorted(set(group.errors) | {"1"})
        elif group.version != VERSION:
            group.errors = sorted(set(group.errors) | {"2"})
        for transaction in group.transactions:
            if transaction.code != "837" or transaction.version not in ("", VERSION):
                transaction.errors = sorted(set(transaction.errors) | {"1"})


def _transactions(report: InterchangeReport, segments: Sequence[Segment]) -> list[tuple[Any, list[tuple[TransactionReport, list[Segment]]]]]:
    """Each group's transaction reports with their segments (ST..SE), matched in order."""
    by_group: list[list[list[Segment]]] = []
    current: list[Segment] | None = None
    for seg in segments:
        if seg.id == "GS":
            by_group.append([])
        elif seg.id == "ST" and by_group:
            current = [seg]
            by_group[-1].append(current)
        elif current is not None:
            current.append(seg)
            if seg.id == "SE":
                current = None
    result = []
    for index, group in enumerate(report.groups):
        sets = by_group[index] if index < len(by_group) else []
        result.append((group, list(zip(group.transactions, sets, strict=False)) if group.checked else []))
    return result


def _decide(report: TransactionReport, segments: list[Segment], *, group_rejected: bool) -> TransactionOutcome:
    if group_rejected or report.errors:
        if not report.errors:
            report.errors = ["5"] if report.segments else []
        return TransactionOutcome(report, "R")
    parsed = parse_transaction(segments)
    if not report.segments:
        return TransactionOutcome(report, "A", parsed)
    inside = all(any(c.position <= s.position <= c.end for c in parsed.claims) for s in report.segments)
    if not inside:
        report.errors = ["5"]
        return TransactionOutcome(report, "R")
    report.errors = ["5"]
    return TransactionOutcome(report, "E", parsed)


def _take_claims(commands: Commands, *, actor: str, provider_id: str, sender: tuple[str, str],
                 claims: list[ParsedClaim], syntax_errors: set[int]) -> list[ClaimOutcome]:
    """The originals in writes of up to CLAIMS_PER_WRITE, in file order (they are adjudicated in
    that order), then the replacements and voids one by one in file order (one may name a claim
    the same file sent)."""
    results: dict[int, ClaimOutcome] = {}
    originals, changes = [], []
    for claim in claims:
        if id(claim) in syntax_errors:
            results[id(claim)] = ClaimOutcome(claim, SYNTAX_ERROR, field=f"CLM at {claim.position}",
                                              message="the 999 names this claim's syntax errors")
        elif claim.problems:
            first = claim.problems[0]
            results[id(claim)] = ClaimOutcome(claim, first.status, field=first.field, message=first.message)
        elif claim.frequency == "1":
            originals.append(claim)
        else:
            changes.append(claim)
    answers: list[Any] = []
    for first in range(0, len(originals), CLAIMS_PER_WRITE):
        chunk = originals[first:first + CLAIMS_PER_WRITE]
        answers += commands.submit_claims(actor=actor, claims=[_fields(provider_id, sender, c) for c in chunk])
    if originals:
        for claim, answer in zip(originals, answers, strict=True):
            if isinstance(answer, Exception):
                results[id(claim)] = _refusal(commands, claim, provider_id, answer)
            else:
                results[id(claim)] = ClaimOutcome(claim, ACCEPTED, claim_id=answer.claim_id, receipt=answer.receipt)
    for claim in changes:
        results[id(claim)] = _take(commands, actor=actor, provider_id=provider_id, sender=sender, claim=claim)
    return [results[id(c)] for c in claims]


def _fields(provider_id: str, sender: tuple[str, str], claim: ParsedClaim) -> dict[str, Any]:
    """SubmitClaim's (and CorrectClaim's) fields of the claim."""
    return {
        "provider_id": provider_id, "member_id": claim.member_id, "payer_id": claim.payer_id,
        "diagnosis_codes": list(claim.diagnoses), "place_of_service": claim.place_of_service,
        "lines": [{k: v for k, v in line.items() if k != "position"} for line in claim.lines],
        "idempotency_key": idempotency_key(sender, claim),
    }


def _take(commands: Commands, *, actor: str, provider_id: str, sender: tuple[str, str],
          claim: ParsedClaim) -> ClaimOutcome:
    """A replacement (7) or a void (8)."""
    try:
        if claim.frequency == "8":
            receipt = _void(commands, actor=actor, provider_id=provider_id, claim_id=claim.original)
            return ClaimOutcome(claim, ACCEPTED, claim_id=claim.original, receipt=receipt)
        done = commands.correct_claim(actor=actor, original_claim_id=claim.original,
                                      **_fields(provider_id, sender, claim))
        return ClaimOutcome(claim, ACCEPTED, claim_id=done.claim_id, receipt=done.receipt)
    except (ValidationError, AlreadyExistsError, NotFoundError, StateError) as error:
        return _refusal(commands, claim, provider_id, error)


def _refusal(commands: Commands, claim: ParsedClaim, provider_id: str, error: Exception) -> ClaimOutcome:
    """The 277CA status of a command's refusal; anything else is no refusal and is raised."""
    if isinstance(error, ValidationError):
        first: FieldViolation = error.violations[0]
        if first.field == "claim_id":  # CorrectClaim's and VoidClaim's name for REF*F8
            return ClaimOutcome(claim, ORIGINAL_CLAIM, field="REF*F8",
                                message="the payer claim control number must be a claim id (a lower-case UUID)")
        return ClaimOutcome(claim, status_of_field(first.field), field=first.field, message=first.description)
    if isinstance(error, AlreadyExistsError):
        return ClaimOutcome(claim, DUPLICATE, field="CLM01",
                            message="this patient control number was taken before with another claim: "
                                    "send a replacement (frequency 7) to change it")
    if isinstance(error, NotFoundError):
        return ClaimOutcome(claim, ORIGINAL_CLAIM, field="REF*F8",
                            message="no claim of this provider has this payer claim control number")
    if isinstance(error, StateError):
        return _state_refusal(commands, claim, provider_id)
    raise error


def _void(commands: Commands, *, actor: str, provider_id: str, claim_id: str) -> Receipt:
    """VoidClaim, idempotent: a claim already voided answers with its last receipt."""
    try:
        return commands.void_claim(actor=actor, provider_id=provider_id, claim_id=claim_id, reason=VOID_REASON)
    except StateError:
        original = commands.own_claim(claim_id, provider_id)
        if original.status != "voided":
            raise
        return commands.receipt_of(original.id, original.version)


def _state_refusal(commands: Commands, claim: ParsedClaim, provider_id: str) -> ClaimOutcome:
    original = commands.own_claim(claim.original, provider_id)
    status = {"replaced": ORIGINAL_REPLACED, "voided": ORIGINAL_VOIDED}.get(original.status, ORIGINAL_UNDECIDED)
    message = {
        "replaced": "the original was replaced already: name its replacement's claim number in REF*F8",
        "voided": "the original is voided",
    }.get(original.status, "the original has no decision yet: replace or void it once it is decided")
    return ClaimOutcome(claim, status, field="REF*F8", message=message)
