"""835 remittance advice (005010X221A1) of a payment run, from the payments read model.

A payment run is one IssuePayments call; every payment it issues to one provider carries the same
trace number (`domain.payment.run_trace_number`): one EFT, one 835 transaction set (one BPR/TRN
per payee). A transaction set holds:

- a CLP per claim the run pays (status 1, processed as primary; CLP07 the claim id, the payer
  claim control number a billing system sends back in REF*F8; CLP01 the claim's CLM01, or the
  idempotency key of a claim sent over gRPC), an SVC per line with its CAS and remark codes (LQ*HE),
  the lines the payment pays and the decision's lines that pay nothing (denied, all the member's);
  a payment that pays the rest of a line paid before (a decision raised by a dispute) shows the
  earlier payment as OA-B13 ("previously paid"), so the line still balances;
- a reversal (CLP02 22: every amount of the original CLP negated) for each earlier payment taken
  back whole since the provider's previous run (a void, a replacement);
- a CLP paying nothing (status 4 when denied, 1 when the member owes it all) per claim decided so
  since the payer's previous run and still standing so at this one (after a reversal of the same
  claim it is the correction: a decision lowered to nothing); a provider the run pays nothing but
  has such claims gets a transaction set of its own (BPR02 0, no PLB: the money waits for the
  run that pays it);
- provider-level adjustments (PLB): WO (overpayment recovery, the claim id as reference) for a
  recoupment of part of a payment (a decision lowered), FB (forward balance) for what a previous
  run could not take back, and FB negative for what this one cannot (BPR02 is never negative:
  BPR01 H, BPR04 NON, 0).

Balancing, as the guide requires and the tests check: each SVC03 = SVC02 - its CAS; each CLP04 =
CLP03 - its CAS = the sum of its SVC03; BPR02 = sum of CLP04 - sum of PLB amounts; and BPR02 is
what the run paid the provider less what was taken back since its previous run (and carried).
Amounts are integer cents until they are written (`interchange.amount`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from claims_service.domain.formats import is_npi, is_us_state
from claims_service.domain.payment import run_trace_number
from claims_service.domain.provider import Provider
from claims_service.errors import FieldViolation, NotFoundError, ValidationError
from claims_service.ledger.chain import EVENTS_TABLE
from claims_service.ledger.payloads import decode_state
from claims_service.x12.interchange import Envelope, Group, Transaction, amount, clean, control_number, d8, write
from claims_service.x12.intake import patient_control_number
from projections.payments import (
    IssuedRun,
    PaidClaim,
    Payment,
    PaymentsModel,
    Recoupment,
    issued_history,
    latest_run,
    payments_by_id,
    run_payments,
    run_span,
    unpaid_claims_between,
    unpaid_decided_lines,
)
from projections.reading import Hub, Source, connection, fetch, wait_for_position
from projections.store import fast_json

VERSION = "005010X221A1"
CLAIM_FILING = "ZZ"  # CLP06: the ledger does not record the plan type (PPO, HMO ...)
PROCESSED, DENIED = "1", "4"  # CLP02: processed as primary (the only payer), denied
PLB_PER_SEGMENT = 6
ERASED_PATIENT = "ERASED"  # NM103 of a claim whose member was erased: the patient's name is gone

_TAX_ID = re.compile(r"[0-9]{9}")
_ZIP = re.compile(r"[0-9]{5}([0-9]{4})?")


@dataclass(frozen=True)
class RemittancePayer:
    """The payer as its 835s name it; the ledger keeps no payer names or addresses."""

    payer_id: str
    name: str
    tax_id: str
    address_line: str
    city: str
    state: str
    postal_code: str
    contact: str

    def checked(self) -> RemittancePayer:
        found = [FieldViolation(f"payer.{name}", "is required") for name in
                 ("name", "tax_id", "address_line", "city", "state", "postal_code", "contact") if not getattr(self, name).strip()]
        if self.tax_id and not _TAX_ID.fullmatch(self.tax_id):
            found.append(FieldViolation("payer.tax_id", "must be the nine digits of the payer's federal tax id"))
        if self.state and not is_us_state(self.state):
            found.append(FieldViolation("payer.state", "must be a two-letter US state code"))
        if self.postal_code and not _ZIP.fullmatch(self.postal_code):
            found.append(FieldViolation("payer.postal_code", "must be a ZIP code of five or nine digits"))
        if found:
            raise ValidationError(found)
        return self


@dataclass
class ProviderRemittance:
    """What one provider's 835 of a run says, before it is written."""

    provider_id: str
    provider_name: str
    trace_number: str
    issued_on: date
    paid: list[PaidClaim]  # entry 0 of each payment of the run
    reversals: list[PaidClaim]  # entry 0 of each payment taken back whole since the previous run
    recovered: list[tuple[str, int]]  # (claim id, cents) taken back in part since the previous run
    unpaid: list[PaidClaim] = field(default_factory=list)  # claims decided since the previous run to pay nothing
    carried_in: int = 0  # cents the previous run could not take back
    carried_from: str = ""  # that run's trace number
    unpaid_lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # claim -> decided lines paying 0
    references: dict[str, str] = field(default_factory=dict)  # claim id -> CLP01


@dataclass(frozen=True)
class Summary:
    provider_id: str
    trace_number: str
    amount_cents: int
    claims: int
    provider_adjustment_cents: int


# --- writing ------------------------------------------------------------------------------------------


def _cas(out: list[str], adjustments: Sequence[tuple[str, str, int]]) -> None:
    """CAS segments: one per group (repeated past six reasons), reasons in first-seen order,
    amounts of one (group, reason) added up, zero amounts left out."""
    by_group: dict[str, dict[str, int]] = {}
    for group, carc, cents in adjustments:
        reasons = by_group.setdefault(group, {})
        reasons[carc] = reasons.get(carc, 0) + cents
    for group, reasons in by_group.items():
        items = [f"{carc}*{amount(cents)}" for carc, cents in reasons.items() if cents]
        for first in range(0, len(items), 6):
            out.append(f"CAS*{group}*" + "**".join(items[first:first + 6]))


def _line_adjustments(line: dict[str, Any], sign: int) -> list[tuple[str, str, int]]:
    adjustments = line.get("adjustments") or []
    found = [(a["group"], a["carc"], sign * a["amount_cents"]) for a in adjustments]
    # Paid before (a supplemental payment pays what a raised decision adds): OA-B13.
    earlier = sign * ((line.get("billed_cents") or 0) - sum(a["amount_cents"] for a in adjustments)
                      - (line.get("paid_cents") or 0))
    if earlier:
        found.append(("OA", "B13", earlier))
    return found


def _claim_payment(out: list[str], entry: PaidClaim, reference: str, *, reversal: bool,
                   unpaid: Sequence[dict[str, Any]] = (), status: str = PROCESSED) -> int:
    """One CLP loop, as segment texts (this is the 835's hot path); returns its CLP04 in cents.
    CLP02 is 22 for a reversal, else ``status``: 1 (processed as primary) or 4 (denied)."""
    sign = -1 if reversal else 1
    lines = [*entry.lines, *unpaid] if unpaid else entry.lines
    if not entry.member_id and not any(line.get("procedure_code") for line in lines):
        return _erased_claim_payment(out, entry, reference, reversal=reversal)
    charge = sign * sum(line.get("billed_cents") or 0 for line in lines)
    paid = sign * sum(line.get("paid_cents") or 0 for line in lines)
    member = sign * sum(a["amount_cents"] for line in lines for a in line.get("adjustments") or [] if a["group"] == "PR")
    out.append(f"CLP*{clean(reference, 38) or entry.claim_id[:38]}*{'22' if reversal else status}*{amount(charge)}*"
               f"{amount(paid)}*{amount(member) if member else ''}*{CLAIM_FILING}*{entry.claim_id}**"
               f"{entry.frequency_code or '1'}")
    out.append(f"NM1*QC*1******MI*{clean(entry.member_id, 80) or 'UNKNOWN'}")
    for line in lines:
        procedure = ":".join(["HC", line.get("procedure_code") or "", *(line.get("modifiers") or [])[:4]])
        units = line.get("units") or 1
        out.append(f"SVC*{procedure}*{amount(sign * (line.get('billed_cents') or 0))}*"
                   f"{amount(sign * (line.get('paid_cents') or 0))}" + (f"**{units}" if units != 1 else ""))
        day = line.get("date_of_service")
        if day:
            out.append(f"DTM*472*{str(day).replace('-', '')}")
        _cas(out, _line_adjustments(line, sign))
        if not reversal:
            if line.get("allowed_cents") is not None:
                out.append(f"AMT*B6*{amount(line['allowed_cents'])}")
            for remark in line.get("remarks") or []:
                out.append(f"LQ*HE*{remark}")
    return paid


def _erased_claim_payment(out: list[str], entry: PaidClaim, reference: str, *, reversal: bool) -> int:
    """The CLP loop of a claim whose member was erased: what the payment's own events keep (the
    money), so that the run still adds up; no patient, no service line. Its charge is stated as
    what was paid (the claim's charges went with the member's data), so it balances without CAS."""
    sign = -1 if reversal else 1
    paid = sign * (sum(line.get("paid_cents") or 0 for line in entry.lines) if entry.lines else entry.paid_cents)
    out.append(f"CLP*{clean(reference, 38) or entry.claim_id[:38]}*{'22' if reversal else '1'}*{amount(paid)}*"
               f"{amount(paid)}**{CLAIM_FILING}*{entry.claim_id}**{entry.frequency_code or '1'}")
    out.append(f"NM1*QC*1*{ERASED_PATIENT}")
    return paid


def _plb(t: Transaction, provider_id: str, fiscal_end: date, adjustments: Sequence[tuple[str, str, int]]) -> None:
    for start in range(0, len(adjustments), PLB_PER_SEGMENT):
        elements: list[Any] = ["PLB", provider_id, d8(fiscal_end)]
        for reason, reference, cents in adjustments[start:start + PLB_PER_SEGMENT]:
            elements += [[reason, clean(reference, 50)], amount(cents)]
        t.add(*elements)


def transaction_835(remit: ProviderRemittance, payer: RemittancePayer) -> tuple[Transaction, Summary]:
    """One provider's 835 transaction set, balanced by construction."""
    body: list[str] = []
    clps = 0
    total = 0
    for entry in remit.reversals:  # reversals first, then what this run pays (the guide's order)
        total += _claim_payment(body, entry, remit.references.get(entry.claim_id, ""), reversal=True,
                                unpaid=remit.unpaid_lines.get(entry.claim_id, ()))
        clps += 1
    for entry in remit.paid:
        total += _claim_payment(body, entry, remit.references.get(entry.claim_id, ""), reversal=False,
                                unpaid=remit.unpaid_lines.get(entry.claim_id, ()))
        clps += 1
    for entry in remit.unpaid:  # decided to pay nothing: CLP04 0, balanced by the lines' own CAS
        _claim_payment(body, entry, remit.references.get(entry.claim_id, ""), reversal=False,
                       status=DENIED if entry.outcome == "DENIED" else PROCESSED)
        clps += 1
    plb = [("WO", claim_id, cents) for claim_id, cents in remit.recovered if cents]
    if remit.carried_in:
        plb.append(("FB", remit.carried_from or remit.trace_number, remit.carried_in))
    net = total - sum(cents for _, _, cents in plb)
    if net < 0:  # more taken back than paid: carried to the provider's next run
        plb.append(("FB", remit.trace_number, net))
        net = 0
    t = Transaction("835", None)
    t.add("BPR", "I" if net else "H", amount(net), "C", "CHK" if net else "NON", *[""] * 11, d8(remit.issued_on))
    t.add("TRN", "1", remit.trace_number, "1" + payer.tax_id)
    t.add("N1", "PR", clean(payer.name, 60))
    t.add("N3", clean(payer.address_line, 55))
    t.add("N4", clean(payer.city, 30), payer.state, payer.postal_code)
    t.add("REF", "2U", clean(payer.payer_id, 50))
    t.add("PER", "BL", "", *_contact(payer.contact))
    t.add("N1", "PE", clean(remit.provider_name, 60) or remit.provider_id, "XX", remit.provider_id)
    if clps:
        t.add("LX", "1")
    t.segments += body
    if plb:
        _plb(t, remit.provider_id, date(remit.issued_on.year, 12, 31), plb)
    return t, Summary(remit.provider_id, remit.trace_number, net, clps, sum(cents for _, _, cents in plb))


def _contact(contact: str) -> tuple[str, str]:
    value = contact.strip()
    if "@" in value:
        return "EM", clean(value, 256)
    if value.lower().startswith(("http://", "https://")):
        return "UR", clean(value, 256)
    return "TE", re.sub(r"[^0-9]", "", value)[:256] or clean(value, 256)


def interchange_835(payer: RemittancePayer, remittances: Sequence[ProviderRemittance], when: datetime,
                    run_id: str) -> tuple[str, list[Summary]]:
    """One interchange to the providers of the run: one HP group, one 835 per provider. (Each
    provider's own 835 is the same with `remittances` of that provider only.)"""
    control = control_number("835", payer.payer_id, run_id, *(r.provider_id for r in remittances))
    receiver = remittances[0].provider_id if len(remittances) == 1 else "PROVIDERS"
    envelope = Envelope(("ZZ", clean(payer.payer_id, 15)), ("ZZ", receiver), control, when)
    group = Group("HP", clean(payer.payer_id, 15), receiver, VERSION, control)
    summaries = []
    for remit in remittances:
        transaction, summary = transaction_835(remit, payer)
        group.transactions.append(transaction)
        summaries.append(summary)
    return write(envelope, [group]), summaries


# --- reading what it says -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """What one run's 835 owes beside the run's own payments: the recoupments since the
    provider's previous run, and the balance carried from it."""

    start: int  # exclusive: the previous run's last issue position (0 for the first)
    end: int  # inclusive: this run's
    recoupments: list[tuple[str, int, int]]  # (payment id, entry number, cents)
    carried_in: int
    carried_from: str


def window(runs: Sequence[IssuedRun], recoupments: Sequence[Recoupment], trace_number: str) -> Window:
    """The provider's runs in issue order, each netting its payments against the recoupments since
    the run before and what that one could not take back (never below 0): this run's share."""
    carried, carried_from, start = 0, "", 0
    for run in sorted(runs, key=lambda r: r.end):
        taken = [(r.payment_id, r.entry, r.cents) for r in recoupments if start < r.position <= run.end]
        if run.trace_number == trace_number:
            return Window(start, run.end, taken, carried, carried_from)
        balance = carried + sum(cents for _, _, cents in taken) - run.paid_cents
        carried, carried_from, start = max(0, balance), run.trace_number, run.end
    raise NotFoundError("run_id: no such payment run")


def remittances_of_run(source: Source, payer_id: str, run_id: str | None, *, provider_id: str | None = None,
                       min_position: int | None = None, timeout: float | None = None,
                       hub: Hub | None = None) -> tuple[str, list[ProviderRemittance]]:
    """The run's id and what each of its providers' 835s says (NOT_FOUND when the payer has no
    such run, or no run yet): every provider the run pays, and every provider with claims decided
    since the payer's previous run to pay nothing (a transaction set of its own, paying 0)."""
    waits = {"min_position": min_position, "timeout": timeout, "hub": hub}
    run = run_id or latest_run(source, payer_id, **waits)
    if run is None:
        raise NotFoundError("run_id: this payer has issued no payments yet")
    payments = run_payments(source, payer_id, run, provider_id=provider_id, **waits)
    span = run_span(source, payer_id, run)
    if span is None:
        raise NotFoundError("run_id: no such payment run")
    unpaid = unpaid_claims_between(source, payer_id, span.start, span.end, provider_id=provider_id)
    by_trace: dict[str, list[Payment]] = defaultdict(list)
    for payment in payments:
        by_trace[payment.trace_number or ""].append(payment)
    remittances = []
    for trace, paid in by_trace.items():
        npi = paid[0].provider_id
        end = max(p.issued_position or 0 for p in paid)
        money = window(*issued_history(source, payer_id, npi, until=end), trace)
        taken = {pid for pid, _, _ in money.recoupments}
        earlier = {p.payment_id: p for p in payments_by_id(source, sorted(taken))}
        reversals, recovered = [], []
        for pid, n, _cents in money.recoupments:
            original = {c.claim_id: c for c in earlier[pid].claims if c.entry == 0}
            for entry in (c for c in earlier[pid].claims if c.entry == n):
                whole = original.get(entry.claim_id)
                if n == 1 and whole is not None and entry.lines and entry.paid_cents == -whole.paid_cents:
                    reversals.append(whole)
                else:
                    recovered.append((entry.claim_id, -entry.paid_cents))
        entries = [c for p in paid for c in p.claims if c.entry == 0]
        remittances.append(ProviderRemittance(
            provider_id=npi, provider_name="", trace_number=trace, issued_on=paid[0].issued_on or span.issued_on,
            paid=entries, reversals=reversals, recovered=recovered, unpaid=unpaid.pop(npi, []),
            carried_in=money.carried_in, carried_from=money.carried_from,
            unpaid_lines=_unpaid_lines(source, [*entries, *reversals])))
    # Providers the run pays nothing but owes word of their claims decided to pay nothing; the
    # money between their runs stays with the runs that pay them (`window`).
    for npi, claims in sorted(unpaid.items()):
        remittances.append(ProviderRemittance(
            provider_id=npi, provider_name="", trace_number=run_trace_number(run, npi), issued_on=span.issued_on,
            paid=[], reversals=[], recovered=[], unpaid=claims))
    if not remittances:  # the run pays others only, and has nothing to tell this provider
        raise NotFoundError("run_id: no such payment run")
    claim_ids = sorted({c.claim_id for r in remittances for c in (*r.paid, *r.reversals, *r.unpaid)})
    references = claim_references(source, claim_ids)
    names = provider_names(source, sorted({r.provider_id for r in remittances}))
    for remit in remittances:
        remit.references = references
        remit.provider_name = names.get(remit.provider_id, "")
    return run, remittances


def _unpaid_lines(source: Source, entries: Sequence[PaidClaim]) -> dict[str, list[dict[str, Any]]]:
    """Per claim, the lines of its decision that pay nothing (denied, all the member's) and that
    the payment therefore leaves out, each balanced by its own adjustments."""
    decided = unpaid_decided_lines(source, [e.claim_id for e in entries])
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        paid_here = {line["line_number"] for line in entry.lines}
        extra = [line for line in decided.get(entry.claim_id, []) if line["line_number"] not in paid_here]
        if extra:
            found[entry.claim_id] = extra
    return found


def _first_payloads(source: Source, stream_ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
    """The first event of each stream, decoded (opened first when the ledger encrypts)."""
    if not stream_ids:
        return {}
    rows = fetch(source, f"SELECT originator_id, state FROM {EVENTS_TABLE}"  # noqa: S608 - a constant name
                         " WHERE originator_id = ANY(%s) AND originator_version = 1", (list(stream_ids),))
    return {row["originator_id"]: decode_state(bytes(row["state"])) for row in rows}


def claim_references(source: Source, claim_ids: Sequence[str]) -> dict[str, str]:
    """CLP01 of each claim: its CLM01 when it came in an 837, else its idempotency key when that
    fits (38 characters), else its claim id."""
    payloads = _first_payloads(source, [UUID(c) for c in claim_ids])
    found = {}
    for claim_id in claim_ids:
        key = (payloads.get(UUID(claim_id)) or {}).get("idempotency_key") or ""
        reference = patient_control_number(key) or (key if len(key) <= 38 else "")
        found[claim_id] = reference or claim_id
    return found


def provider_names(source: Source, npis: Sequence[str]) -> dict[str, str]:
    """The name each provider was registered with (N102 of the payee)."""
    payloads = _first_payloads(source, [Provider.create_id(npi) for npi in npis])
    return {npi: (payloads.get(Provider.create_id(npi)) or {}).get("name", "") for npi in npis}


def remittance_835(source: Source, payer: RemittancePayer, *, run_id: str | None = None, provider_id: str | None = None,
                   now: Callable[[], datetime], min_position: int | None = None, timeout: float | None = None,
                   hub: Hub | None = None) -> tuple[str, str, list[Summary]]:
    """(interchange, run id, a summary per provider): the 835 of the payer's run. A position
    beyond the ledger's head is OUT_OF_RANGE before anything else is looked at, as for every read."""
    wait_for_position(source, PaymentsModel.name, min_position, timeout=timeout, hub=hub)
    payer = payer.checked()
    if provider_id and not is_npi(provider_id):
        raise ValidationError.single("provider_id", "must be a valid NPI (10 digits, check digit) or empty")
    with connection(source) as conn:  # one connection for every read, its JSON read by orjson
        run, remittances = remittances_of_run(fast_json(conn), payer.payer_id, run_id, provider_id=provider_id)
    text, summaries = interchange_835(payer, remittances, now(), run)
    return text, run, summaries
