"""Read model "payments": payments (scheduled, issued, cancelled, recouped) and, per paid claim,
the lines with their CAS adjustments as decided when the payment was scheduled — what an X12 835
remittance needs — followed by each recoupment as an entry of its own with negative amounts, so
that a remittance's total is always the sum of its entries.

Tables (migrations/0007_payments.sql, 0013_money_lifecycle.sql, 0021_remittance_decisions.sql):
``payments``, ``payment_claims`` (append-only: entry 0 is what the payment pays on a claim, entry n
its n-th recoupment), ``remittance_claims`` (this projection's own copy of each claim's submitted
lines and decision in force, so it never reads another projection's tables),
``remittance_decisions`` (append-only: every decision, pend, void and replacement of a claim, with
the lines of those that pay nothing, which no payment carries to an 835).

Here: its writer (``PaymentsModel``), its rows (``Payment`` with its ``PaidClaim`` entries,
``PaymentPage``) and its queries (``get_payment``, ``payment_by_trace``, ``payments_for_claim``,
``list_payments``, ``scheduled_payments_due``; for the 835 ``latest_run``, ``run_payments``,
``issued_history``, ``payments_by_id``, ``unpaid_decided_lines``, ``run_span``, ``unpaid_claims_between``; waiting, checks and pages as ``reading`` describes).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from claims_service.domain.payment import RUN_ID, run_of_trace, run_trace_number
from claims_service.errors import PaymentNotFoundError, ValidationError
from projections.events import Notification, Topics
from projections.reading import (
    Hub,
    Pager,
    Source,
    Where,
    checked,
    fetch,
    from_row,
    one_of,
    row_limit,
    rows,
    valid_claim_id,
    wait_for_position,
)
from projections.store import AppendTable, Batch, ReadModel, Table

log = logging.getLogger(__name__)

CLAIM_TOPICS = Topics.CLAIM_STATE_CHANGES
PAYMENT_TOPICS = frozenset(
    {Topics.PAYMENT_SCHEDULED, Topics.PAYMENT_ISSUED, Topics.PAYMENT_CANCELLED, Topics.PAYMENT_RECOUPED, Topics.PAYMENT_REVERSED}
)
RECOUPMENTS = frozenset({Topics.PAYMENT_RECOUPED, Topics.PAYMENT_REVERSED})


class PaymentsModel(ReadModel):
    name = "payments"
    tables = ("payments", "payment_claims", "remittance_claims", "remittance_decisions")
    # A payment outlives its member's erasure: the money was paid, and a run's 835 must still say
    # so. Their claims' entries keep what the payment's own events say (each line's money) and
    # lose what came from the claim (the member, procedures, dates, charges, adjustments).
    kept_on_erasure = ("payment_claims",)

    def scrub(self, cur: Any, relation: str, streams: Sequence[str]) -> int:
        with cur.connection.cursor(row_factory=tuple_row) as read:
            rows = read.execute(sql.SQL("SELECT payment_id, claim_id, entry, lines, scheduled_position FROM {}"
                                        " WHERE claim_id = ANY(%s)").format(sql.Identifier(relation)),
                                (list(streams),)).fetchall()
        updates = []
        for payment_id, claim_id, entry, lines, position in rows:
            money = [{"line_number": line["line_number"], "paid_cents": line["paid_cents"]} for line in lines]
            kept = self._claim_entry({"payment_id": payment_id, "payer_id": "", "provider_id": ""}, claim_id, {},
                                     remittance_lines({}, money), position)
            updates.append((kept["member_id"], kept["frequency_code"], kept["outcome"], kept["billed_cents"],
                            kept["patient_responsibility_cents"], Jsonb(kept["lines"]), payment_id, claim_id, entry))
        if updates:
            cur.executemany(sql.SQL(
                "UPDATE {} SET member_id = %s, frequency_code = %s, outcome = %s, billed_cents = %s,"
                " patient_responsibility_cents = %s, lines = %s WHERE payment_id = %s AND claim_id = %s AND entry = %s"
            ).format(sql.Identifier(relation)), updates)
        return len(updates)
    topics = CLAIM_TOPICS | PAYMENT_TOPICS

    def apply(self, batch: Batch, notifications: Sequence[Notification]) -> None:
        mine = [n for n in notifications if n.topic in self.topics]
        if not mine:
            return
        payments = batch.table("payments", ("stream_id",))
        paid_claims = batch.append_table("payment_claims")
        claims = batch.table("remittance_claims", ("claim_id",))
        decisions = batch.append_table("remittance_decisions")
        payments.prefetch("stream_id", {str(n.stream_id) for n in mine if n.topic in PAYMENT_TOPICS and n.topic != Topics.PAYMENT_SCHEDULED})
        wanted = {str(n.stream_id) for n in mine if n.topic in CLAIM_TOPICS and n.topic != Topics.CLAIM_SUBMITTED}
        for n in mine:
            if n.topic == Topics.PAYMENT_SCHEDULED:
                wanted.update(n.payload["claim_ids"])
            elif n.topic == Topics.PAYMENT_RECOUPED:
                wanted.update(n.payload["lines"])
        claims.prefetch("claim_id", wanted)
        for n in mine:
            if n.topic in CLAIM_TOPICS:
                self._claim_event(claims, decisions, n)
            elif n.topic == Topics.PAYMENT_SCHEDULED:
                self._scheduled(payments, paid_claims, claims, n)
            else:
                payment = payments.get(str(n.stream_id))
                if payment is None:
                    log.error("payments: %r for a payment never scheduled; skipped", n)
                    continue
                p = n.payload
                if n.topic == Topics.PAYMENT_ISSUED:
                    payment.update(status="issued", trace_number=p["trace_number"], issued_on=p["issued_on"], issued_position=n.position)
                elif n.topic == Topics.PAYMENT_CANCELLED:
                    payment.update(status="cancelled", cancel_reason=p["reason"], cancelled_position=n.position)
                else:
                    self._recouped(payment, paid_claims, claims, n)
                payment["last_position"] = n.position
                payments.put(payment)

    def _claim_event(self, claims: Table, decisions: AppendTable, n: Notification) -> None:
        p = n.payload
        if n.topic == Topics.CLAIM_SUBMITTED:
            claims.put(
                {
                    "claim_id": str(n.stream_id),
                    "payer_id": p["payer_id"],
                    "provider_id": p["provider_id"],
                    "member_id": p["member_id"],
                    "frequency_code": p["frequency_code"],
                    "status": "submitted",
                    "lines": p["lines"],
                    "decision": None,
                    "last_position": n.position,
                }
            )
            return
        claim = claims.get(str(n.stream_id))
        if claim is None:
            log.error("payments: %r has no submitted claim; skipped", n)
            return
        if n.topic == Topics.CLAIM_VOIDED:
            claim["status"] = "voided"
        elif n.topic == Topics.CLAIM_CORRECTED:
            claim["status"] = "replaced"
        elif n.topic == Topics.CLAIM_PENDED:
            claim["status"] = "pended"
        elif n.topic != Topics.CLAIM_DISPUTE_RESOLVED:
            claim["status"] = "adjudicated"
        if p.get("decision") is not None:
            claim["decision"] = p["decision"]
        claim["last_position"] = n.position
        claims.put(claim)
        if (kind := self._decision_kind(n)) is not None:
            decisions.add(self._decision_row(claim, kind, n.position))

    @staticmethod
    def _decision_kind(n: Notification) -> str | None:
        """What a claim event does to what the provider is owed (remittance_decisions.kind)."""
        if n.topic in (Topics.CLAIM_VOIDED, Topics.CLAIM_CORRECTED):
            return "withdrawn"
        if n.payload.get("decision") is None:  # a dispute upheld changes nothing
            return None
        return "pended" if n.topic == Topics.CLAIM_PENDED else "decided"

    @staticmethod
    def _decision_row(claim: dict[str, Any], kind: str, position: int) -> dict[str, Any]:
        decision = (claim.get("decision") or {}) if kind != "withdrawn" else {}
        paid = decision.get("total_paid_cents", 0)
        unpaid = kind == "decided" and paid == 0
        return {
            "claim_id": claim["claim_id"],
            "payer_id": claim["payer_id"],
            "provider_id": claim["provider_id"],
            "member_id": claim["member_id"],
            "frequency_code": claim["frequency_code"],
            "kind": kind,
            "outcome": decision.get("outcome"),
            "paid_cents": paid,
            "billed_cents": decision.get("total_billed_cents", 0),
            "patient_responsibility_cents": decision.get("total_patient_responsibility_cents"),
            # Only an unpaid decision is ever written out (its CLP); the others mark the claim's state.
            "lines": remittance_lines(claim, decision.get("lines", [])) if unpaid else None,
            "position": position,
        }

    def _recouped(self, payment: dict[str, Any], paid_claims: AppendTable, claims: Table, n: Notification) -> None:
        """A recoupment: the payment's net goes down, and each claim it touches gets an entry of
        negative amounts (a legacy reversal, recorded without lines, is put on the first claim)."""
        p = n.payload
        by_claim = p.get("lines") or {payment["claim_ids"][0]: []}
        payment["reversed_cents"] += p["amount_cents"]
        payment["reversals"] = [
            *payment["reversals"],
            {"reason": p["reason"], "amount_cents": p["amount_cents"], "position": n.position},
        ]
        payment["status"] = "recouped"
        entry = len(payment["reversals"])
        for claim_id, taken in by_claim.items():
            claim = claims.get(claim_id) or {}
            lines = [{**line, "paid_cents": -line["paid_cents"]} for line in remittance_lines(claim, taken)]
            paid_claims.add(
                {
                    **self._claim_entry(payment, claim_id, claim, lines, n.position),
                    "paid_cents": -sum(line["paid_cents"] for line in taken) if taken else -p["amount_cents"],
                    "entry": entry,
                    "reason": p["reason"],
                }
            )

    @staticmethod
    def _claim_entry(payment: dict[str, Any], claim_id: str, claim: dict[str, Any], lines: list[dict[str, Any]],
                     position: int) -> dict[str, Any]:
        decision = claim.get("decision") or {}
        return {
            "payment_id": payment["payment_id"],
            "claim_id": claim_id,
            "payer_id": payment["payer_id"],
            "provider_id": payment["provider_id"],
            "member_id": claim.get("member_id", ""),
            "frequency_code": claim.get("frequency_code", "1"),
            "outcome": decision.get("outcome"),
            "billed_cents": sum(line["billed_cents"] or 0 for line in lines),
            "patient_responsibility_cents": decision.get("total_patient_responsibility_cents"),
            "lines": lines,
            "scheduled_position": position,
        }

    def _scheduled(self, payments: Table, paid_claims: AppendTable, claims: Table, n: Notification) -> None:
        p = n.payload
        payments.put(
            {
                "stream_id": str(n.stream_id),
                "payment_id": p["payment_id"],
                "payer_id": p["payer_id"],
                "provider_id": p["provider_id"],
                "status": "scheduled",
                "amount_cents": p["amount_cents"],
                "reversed_cents": 0,
                "claim_ids": p["claim_ids"],
                "trace_number": None,
                "issued_on": None,
                "reversals": [],
                "cancel_reason": None,
                "cancelled_position": None,
                "scheduled_position": n.position,
                "issued_position": None,
                "last_position": n.position,
            }
        )
        for claim_id in p["claim_ids"]:
            claim = claims.get(claim_id) or {}
            paid_lines = p["lines"].get(claim_id, [])
            paid_claims.add(
                {
                    **self._claim_entry(p, claim_id, claim, remittance_lines(claim, paid_lines), n.position),
                    "paid_cents": sum(line["paid_cents"] for line in paid_lines),
                    "entry": 0,
                    "reason": None,
                }
            )


def remittance_lines(claim: dict[str, Any], paid_lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each paid line with what the claim said (procedure, units, date) and what the decision in
    force said (billed, allowed, patient responsibility, adjustments, remarks)."""
    submitted = {line["line_number"]: line for line in claim.get("lines", [])}
    decided = {line["line_number"]: line for line in (claim.get("decision") or {}).get("lines", [])}
    lines = []
    for paid in paid_lines:
        number = paid["line_number"]
        s = submitted.get(number, {})
        d = decided.get(number, {})
        lines.append(
            {
                "line_number": number,
                "procedure_code": s.get("procedure_code"),
                "modifiers": s.get("modifiers", []),
                "units": s.get("units"),
                "date_of_service": s.get("date_of_service"),
                "billed_cents": d.get("billed_cents", s.get("billed_cents")),
                "allowed_cents": d.get("allowed_cents"),
                "paid_cents": paid["paid_cents"],
                "patient_responsibility_cents": d.get("patient_responsibility_cents"),
                "adjustments": d.get("adjustments", []),
                "remarks": d.get("remarks", []),
            }
        )
    return lines


# --- rows --------------------------------------------------------------------------------------

PAYMENT_STATUSES = ("scheduled", "issued", "cancelled", "recouped")


@dataclass(frozen=True, slots=True)
class PaidClaim:
    """One claim of a payment, as an 835 CLP loop needs it (lines with CAS adjustments)."""

    claim_id: str
    member_id: str
    frequency_code: str
    outcome: str | None
    billed_cents: int
    paid_cents: int
    patient_responsibility_cents: int | None
    lines: list[dict[str, Any]]
    entry: int = 0
    """0: what the payment pays on the claim; n: its n-th recoupment (negative amounts)."""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: str
    payer_id: str
    provider_id: str
    status: str
    amount_cents: int
    reversed_cents: int
    claim_ids: list[str]
    trace_number: str | None
    issued_on: date | None
    reversals: list[dict[str, Any]]
    scheduled_position: int
    issued_position: int | None
    last_position: int
    claims: list[PaidClaim]
    cancel_reason: str | None = None
    cancelled_position: int | None = None


@dataclass(frozen=True, slots=True)
class PaymentPage:
    payments: list[Payment]
    next_page_token: str


# --- queries -----------------------------------------------------------------------------------


def _payments(source: Source, where: Where, *, order: str = "", limit: int | None = None) -> list[Payment]:
    """The payments the condition selects, each with its claims' entries (two reads in all)."""
    found = rows(source, "payments", where, order=order, limit=limit)
    if not found:
        return []
    claims: dict[str, list[PaidClaim]] = {}
    entries = Where("payment_id = ANY(%s)", [row["payment_id"] for row in found])
    for row in rows(source, "payment_claims", entries, order="payment_id, entry, claim_id"):
        claims.setdefault(row["payment_id"], []).append(from_row(PaidClaim, row))
    return [from_row(Payment, {**row, "claims": claims.get(row["payment_id"], [])}) for row in found]


@checked
def get_payment(
    source: Source,
    payment_id: str,
    *,
    provider_id: str | None = None,
    payer_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> Payment:
    """``get_payment(source, payment_id, *, provider_id=None, payer_id=None, min_position=None,
    timeout=None, hub=None) -> Payment``; ``PaymentNotFoundError`` (also for another party's)."""
    wait_for_position(source, PaymentsModel.name, min_position, timeout=timeout, hub=hub)
    found = _payments(source, Where("payment_id = %s", payment_id).party(provider_id, payer_id))
    if not found:
        raise PaymentNotFoundError(f"payment {payment_id} not found")
    return found[0]


@checked
def payment_by_trace(
    source: Source,
    trace_number: str,
    *,
    provider_id: str | None = None,
    payer_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> list[Payment]:
    """``payment_by_trace(source, trace_number, *, provider_id=None, payer_id=None,
    min_position=None, timeout=None, hub=None) -> list[Payment]``: the payments issued under an
    EFT / check trace number (usually one)."""
    wait_for_position(source, PaymentsModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("trace_number = %s", trace_number).party(provider_id, payer_id)
    return _payments(source, where, order="scheduled_position")


@checked
def payments_for_claim(
    source: Source,
    claim_id: str,
    *,
    provider_id: str | None = None,
    payer_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> list[Payment]:
    """``payments_for_claim(source, claim_id, *, provider_id=None, payer_id=None,
    min_position=None, timeout=None, hub=None) -> list[Payment]``, oldest first."""
    claim_id = valid_claim_id(claim_id)
    wait_for_position(source, PaymentsModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("payment_id IN (SELECT payment_id FROM payment_claims WHERE claim_id = %s)", claim_id)
    return _payments(source, where.party(provider_id, payer_id), order="scheduled_position")


@checked
def list_payments(
    source: Source,
    provider_id: str,
    *,
    status: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> PaymentPage:
    """``list_payments(source, provider_id, *, status=None, page_size=50, page_token=None,
    min_position=None, timeout=None, hub=None) -> PaymentPage``: the provider's payments
    (remittances), newest first."""
    one_of(status, PAYMENT_STATUSES, "status")
    pager = Pager("payments", {"provider_id": provider_id, "status": status}, page_size, page_token)
    wait_for_position(source, PaymentsModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("provider_id = %s", provider_id).given("status = %s", status)
    if pager.key is not None:
        where.add("scheduled_position < %s", int(pager.key[0]))
    found = _payments(source, where, order="scheduled_position DESC", limit=pager.limit)
    return PaymentPage(*pager.page(found, lambda payment: [payment.scheduled_position]))


@checked
def scheduled_payments_due(
    source: Source,
    payer_id: str,
    *,
    provider_id: str | None = None,
    limit: int = 500,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> list[Payment]:
    """``scheduled_payments_due(source, payer_id, *, provider_id=None, limit=500,
    min_position=None, timeout=None, hub=None) -> list[Payment]``: the payer's scheduled, not yet
    issued payments (optionally for one provider), oldest first — what IssuePayments issues."""
    wait_for_position(source, PaymentsModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("payer_id = %s AND status = 'scheduled'", payer_id).given("provider_id = %s", provider_id)
    return _payments(source, where, order="scheduled_position", limit=row_limit(limit, default=500, most=5_000))


# --- payment runs: what an 835 reads ---------------------------------------------------------------
# A run's payments to one provider share a trace number, "<run id>-<NPI>" (domain.payment); run ids
# begin with "R" and the run's UTC time, so they sort by time. Both bounds below have the shape of
# every trace of a run (ten digits after the dash), so the range holds exactly the run's traces
# under any collation, and the trace index serves it.


@dataclass(frozen=True, slots=True)
class IssuedRun:
    """One run's payments to a provider (one trace number), as the balance carried between 835s
    needs it."""

    trace_number: str
    end: int  # the last issue position of its payments
    paid_cents: int


@dataclass(frozen=True, slots=True)
class Recoupment:
    """One recoupment of one payment: the payment's n-th (``entry``), at ledger ``position``."""

    payment_id: str
    entry: int
    cents: int
    position: int


def _run(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise ValidationError.single("run_id", 'must be a payment run id as IssuePayments gives it ("R" and 23 characters)')
    return run_id


@checked
def latest_run(
    source: Source,
    payer_id: str,
    *,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> str | None:
    """``latest_run(source, payer_id, *, min_position=None, timeout=None, hub=None) -> str | None``:
    the id of the payer's latest payment run, None before its first."""
    wait_for_position(source, PaymentsModel.name, min_position, timeout=timeout, hub=hub)
    found = fetch(source, "SELECT trace_number FROM payments WHERE payer_id = %s AND trace_number >= 'R0'"
                          " AND trace_number < 'S' ORDER BY trace_number DESC LIMIT 1", (payer_id,))
    return run_of_trace(found[0]["trace_number"]) if found else None


@checked
def run_payments(
    source: Source,
    payer_id: str,
    run_id: str,
    *,
    provider_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> list[Payment]:
    """``run_payments(source, payer_id, run_id, *, provider_id=None, min_position=None, timeout=None,
    hub=None) -> list[Payment]``: the payments the payer's run issued (to one provider), by trace
    number, then in the order they were issued; none for a run of another payer."""
    run_id = _run(run_id)
    wait_for_position(source, PaymentsModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("payer_id = %s AND trace_number >= %s AND trace_number <= %s", payer_id,
                  run_trace_number(run_id, "0" * 10), run_trace_number(run_id, "9" * 10))
    return _payments(source, where.given("provider_id = %s", provider_id), order="trace_number, issued_position")


def issued_history(source: Source, payer_id: str, provider_id: str, *,
                   until: int) -> tuple[list[IssuedRun], list[Recoupment]]:
    """The payer's runs to the provider up to ledger position `until`, in issue order, and every
    recoupment of their payments (which may come later), in ledger order: two aggregates over the
    provider's payments, not the payments themselves."""
    runs = fetch(source, "SELECT trace_number, max(issued_position) AS end, sum(amount_cents) AS paid_cents"
                         " FROM payments WHERE provider_id = %s AND payer_id = %s AND issued_position <= %s"
                         " GROUP BY trace_number ORDER BY 2", (provider_id, payer_id, until))
    taken = fetch(source, "SELECT payment_id, r.entry, (r.taken->>'amount_cents')::bigint AS cents,"
                          " (r.taken->>'position')::bigint AS position FROM payments,"
                          " jsonb_array_elements(reversals) WITH ORDINALITY AS r(taken, entry)"
                          " WHERE provider_id = %s AND payer_id = %s AND issued_position <= %s"
                          " AND reversals <> '[]'::jsonb ORDER BY 4, 1", (provider_id, payer_id, until))
    return ([IssuedRun(r["trace_number"], r["end"], int(r["paid_cents"])) for r in runs],
            [Recoupment(r["payment_id"], r["entry"], r["cents"], r["position"]) for r in taken])


def payments_by_id(source: Source, payment_ids: Sequence[str]) -> list[Payment]:
    """These payments, each with every entry (what it paid, then each recoupment)."""
    if not payment_ids:
        return []
    return _payments(source, Where("payment_id = ANY(%s)", list(payment_ids)), order="scheduled_position")


def unpaid_decided_lines(source: Source, claim_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The lines of each claim's decision in force that pay nothing (denied, or all the member's),
    each with what the claim said of it (procedure, modifiers, units, date), from this projection's
    own copy of the claims (claim id -> lines; claims without any left out)."""
    if not claim_ids:
        return {}
    found = fetch(source, "SELECT claim_id, unpaid, CASE WHEN jsonb_array_length(unpaid) > 0 THEN lines END AS submitted"
                          " FROM (SELECT claim_id, lines, jsonb_path_query_array(decision, '$.lines[*] ? (@.paid_cents == 0)')"
                          " AS unpaid FROM remittance_claims WHERE claim_id = ANY(%s) AND decision IS NOT NULL) AS decided",
                  (list(claim_ids),))
    return {row["claim_id"]: remittance_lines({"lines": row["submitted"], "decision": {"lines": row["unpaid"]}}, row["unpaid"])
            for row in found if row["unpaid"]}


@dataclass(frozen=True, slots=True)
class RunSpan:
    """Where a payer's run lies on the ledger: what its 835s tell of the claims decided to pay
    nothing lies in (start, end]."""

    start: int  # the payer's previous run's last issue position (0 before its first run)
    end: int  # this run's last issue position
    issued_on: date


def run_span(source: Source, payer_id: str, run_id: str) -> RunSpan | None:
    """The run's span (None when the payer has no such run)."""
    bounds = fetch(source, "SELECT min(issued_position) AS first, max(issued_position) AS last, min(issued_on) AS issued_on"
                           " FROM payments WHERE payer_id = %s AND trace_number >= %s AND trace_number <= %s",
                   (payer_id, run_trace_number(_run(run_id), "0" * 10), run_trace_number(run_id, "9" * 10)))[0]
    if bounds["last"] is None:
        return None
    before = fetch(source, "SELECT max(issued_position) AS end FROM payments WHERE payer_id = %s"
                           " AND issued_position < %s", (payer_id, bounds["first"]))[0]
    return RunSpan(before["end"] or 0, bounds["last"], bounds["issued_on"])


def unpaid_claims_between(source: Source, payer_id: str, start: int, end: int, *,
                          provider_id: str | None = None) -> dict[str, list[PaidClaim]]:
    """Per provider (or for one), the payer's claims decided in (start, end] to pay nothing
    (denied, or all the member's) that still stood so at ``end``: not decided again, pended,
    voided or replaced by then. Each as a zero-paying entry with the decision's lines, in ledger
    order. A run's 835s report them in the run whose span holds the decision."""
    where = Where("d.payer_id = %s AND d.position > %s AND d.position <= %s AND d.kind = 'decided'"
                  " AND d.paid_cents = 0", payer_id, start, end).given("d.provider_id = %s", provider_id)
    rows = fetch(source, f"SELECT d.* FROM remittance_decisions d WHERE {where}"  # noqa: S608 - placeholders only
                         " AND NOT EXISTS (SELECT 1 FROM remittance_decisions later WHERE later.claim_id = d.claim_id"
                         " AND later.position > d.position AND later.position <= %s) ORDER BY d.position",
                 (*where.params, end))
    found: dict[str, list[PaidClaim]] = {}
    for r in rows:
        found.setdefault(r["provider_id"], []).append(PaidClaim(
            claim_id=r["claim_id"], member_id=r["member_id"], frequency_code=r["frequency_code"], outcome=r["outcome"],
            billed_cents=r["billed_cents"], paid_cents=0, patient_responsibility_cents=r["patient_responsibility_cents"],
            lines=r["lines"] or []))
    return found
