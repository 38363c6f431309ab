"""Read model "benefits": member coverage (the plan's deductible and out-of-pocket maximum),
accumulators per payer + member + plan year, and the explanation of benefits of every claim —
its writer (``BenefitsModel``), its rows (``Accumulators``, ``Eob``, ``EobPage``) and its queries
(``member_accumulators``, ``member_payers``, ``explanation_of_benefits``, ``member_eobs``,
``patient_eobs``; waiting, checks and pages as ``reading`` describes).

Tables (migrations/0006_benefits.sql): ``member_coverage`` (from ``MemberCoverage`` events),
``member_accumulators`` and ``benefit_claims`` (from ``BenefitPeriod`` events: a claim's effect is
*set*, not added, so a later decision replaces it and a reversal takes it off — exactly as the
aggregate does), ``explanation_of_benefits`` (from ``Claim`` events: the member-facing lines).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from claims_service.domain.member import segment_on
from claims_service.errors import ClaimNotFoundError, MemberNotFoundError
from projections.events import Notification, Topics
from projections.reading import (
    Hub,
    Pager,
    Source,
    Where,
    checked,
    date_part,
    position_part,
    rows,
    select,
    select_one,
    valid_claim_id,
    wait_for_position,
)
from projections.store import Batch, ReadModel, Row

log = logging.getLogger(__name__)

MEMBER_TOPICS = frozenset({Topics.MEMBER_ENROLLED, Topics.MEMBER_CHANGED, Topics.MEMBER_TERMINATED})
PERIOD_CLAIM_TOPICS = frozenset({Topics.PERIOD_CLAIM_APPLIED, Topics.PERIOD_CLAIM_REVERSED})
PERIOD_TOPICS = frozenset({Topics.PERIOD_OPENED}) | PERIOD_CLAIM_TOPICS
CLAIM_TOPICS = Topics.CLAIM_STATE_CHANGES


def segment_of(effective_on: str, plan_id: str, terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "effective_on": effective_on,
        "plan_id": plan_id,
        "deductible_cents": terms.get("deductible_cents"),
        "oop_max_cents": terms.get("oop_max_cents"),
    }


class BenefitsModel(ReadModel):
    name = "benefits"
    tables = ("member_coverage", "member_accumulators", "benefit_claims", "explanation_of_benefits")
    topics = MEMBER_TOPICS | PERIOD_TOPICS | CLAIM_TOPICS

    def apply(self, batch: Batch, notifications: Sequence[Notification]) -> None:
        mine = [n for n in notifications if n.topic in self.topics]
        if not mine:
            return
        members = batch.table("member_coverage", ("stream_id",))
        periods = batch.table("member_accumulators", ("stream_id",))
        effects = batch.table("benefit_claims", ("stream_id", "claim_id"))
        eobs = batch.table("explanation_of_benefits", ("claim_id",))
        members.prefetch("stream_id", {str(n.stream_id) for n in mine if n.topic in (Topics.MEMBER_CHANGED, Topics.MEMBER_TERMINATED)})
        period_ids = {str(n.stream_id) for n in mine if n.topic in PERIOD_TOPICS}
        periods.prefetch("stream_id", period_ids)
        # Each claim's effect on its period by both keys: by the period alone it was every claim of
        # the member's year, read again at each of them.
        effects.prefetch_keys({(str(n.stream_id), n.payload["claim_id"]) for n in mine if n.topic in PERIOD_CLAIM_TOPICS})
        eobs.prefetch("claim_id", {str(n.stream_id) for n in mine if n.topic in CLAIM_TOPICS and n.topic != Topics.CLAIM_SUBMITTED})
        for n in mine:
            stream = str(n.stream_id)
            if n.topic in CLAIM_TOPICS:
                self._claim_event(eobs, n)
            elif n.topic == Topics.MEMBER_ENROLLED:
                p = n.payload
                members.put(
                    {
                        "stream_id": stream,
                        "payer_id": p["payer_id"],
                        "member_id": p["member_id"],
                        "plan_id": p["plan_id"],
                        "effective_date": p["effective_date"],
                        "termination_date": p.get("termination_date"),
                        "segments": [segment_of(p["effective_date"], p["plan_id"], p["terms"])],
                        "last_position": n.position,
                    }
                )
            elif n.topic in MEMBER_TOPICS:
                member = members.get(stream)
                if member is None:
                    log.error("benefits: %r for a member never enrolled; skipped", n)
                    continue
                self._member_changed(member, n)
                member["last_position"] = n.position
                members.put(member)
            elif n.topic == Topics.PERIOD_OPENED:
                p = n.payload
                periods.put(
                    {
                        "stream_id": stream,
                        "payer_id": p["payer_id"],
                        "member_id": p["member_id"],
                        "plan_year": p["plan_year"],
                        "deductible_met_cents": 0,
                        "oop_met_cents": 0,
                        "benefit_units": {},
                        "last_position": n.position,
                    }
                )
            else:
                period = periods.get(stream)
                if period is None:
                    log.error("benefits: %r for a benefit period never opened; skipped", n)
                    continue
                self._period_changed(period, effects, n)
                period["last_position"] = n.position
                periods.put(period)

    # --- coverage --------------------------------------------------------------------------

    def _member_changed(self, member: Row, n: Notification) -> None:
        p = n.payload
        if n.topic == Topics.MEMBER_TERMINATED:
            member["termination_date"] = p["termination_date"]
            return
        if p.get("effective_date") is not None:
            member["effective_date"] = p["effective_date"]
        if p.get("termination_date") is not None:
            member["termination_date"] = p["termination_date"]
        if p.get("plan_id") is not None or p.get("terms") is not None:
            base = segment_on(member["segments"], p["effective_on"])
            segment = {
                "effective_on": p["effective_on"],
                "plan_id": p["plan_id"] if p.get("plan_id") is not None else base["plan_id"],
                "deductible_cents": base["deductible_cents"],
                "oop_max_cents": base["oop_max_cents"],
            }
            if p.get("terms") is not None:
                segment.update(
                    deductible_cents=p["terms"].get("deductible_cents"),
                    oop_max_cents=p["terms"].get("oop_max_cents"),
                )
            kept = [s for s in member["segments"] if s["effective_on"] < p["effective_on"]]
            member["segments"] = [*kept, segment]
            member["plan_id"] = segment["plan_id"]

    # --- accumulators ----------------------------------------------------------------------

    def _period_changed(self, period: Row, effects: Any, n: Notification) -> None:
        p = n.payload
        stream = period["stream_id"]
        effect = effects.get(stream, p["claim_id"])
        if n.topic == Topics.PERIOD_CLAIM_APPLIED:
            if effect is not None and not effect["reversed"]:
                self._take_off(period, effect)
            period["deductible_met_cents"] += p["deductible_cents"]
            period["oop_met_cents"] += p["oop_cents"]
            units = dict(period["benefit_units"])
            for code, used in p["benefit_units"].items():
                units[code] = units.get(code, 0) + used
            period["benefit_units"] = units
            effects.put(
                {
                    "stream_id": stream,
                    "claim_id": p["claim_id"],
                    "deductible_cents": p["deductible_cents"],
                    "oop_cents": p["oop_cents"],
                    "benefit_units": p["benefit_units"],
                    "reversed": False,
                    "last_position": n.position,
                }
            )
        elif effect is None:
            log.error("benefits: %r reverses a claim never applied; skipped", n)
        else:  # ClaimReversed
            self._take_off(period, effect)
            effects.put({**effect, "reversed": True, "last_position": n.position})

    @staticmethod
    def _take_off(period: Row, effect: Row) -> None:
        period["deductible_met_cents"] -= effect["deductible_cents"]
        period["oop_met_cents"] -= effect["oop_cents"]
        units = dict(period["benefit_units"])
        for code, used in effect["benefit_units"].items():
            units[code] = units.get(code, 0) - used
        period["benefit_units"] = units

    # --- explanation of benefits -------------------------------------------------------------

    def _claim_event(self, eobs: Any, n: Notification) -> None:
        claim_id = str(n.stream_id)
        p = n.payload
        if n.topic == Topics.CLAIM_SUBMITTED:
            lines = [
                {
                    "line_number": line["line_number"],
                    "date_of_service": line["date_of_service"],
                    "procedure_code": line["procedure_code"],
                    "modifiers": line.get("modifiers", []),
                    "units": line["units"],
                    "billed_cents": line["billed_cents"],
                    "allowed_cents": None,
                    "paid_cents": None,
                    "you_owe_cents": None,
                    "status": "submitted",
                    "adjustments": [],
                    "remarks": [],
                }
                for line in p["lines"]
            ]
            eobs.put(
                {
                    "claim_id": claim_id,
                    "payer_id": p["payer_id"],
                    "member_id": p["member_id"],
                    "provider_id": p["provider_id"],
                    "claim_status": "submitted",
                    "outcome": None,
                    "received_on": p["received_on"],
                    "first_date_of_service": min(line["date_of_service"] for line in p["lines"]),
                    "lines": lines,
                    "total_billed_cents": sum(line["billed_cents"] for line in lines),
                    "total_allowed_cents": None,
                    "total_paid_cents": None,
                    "total_you_owe_cents": None,
                    "submitted_position": n.position,
                    "last_position": n.position,
                }
            )
            return
        eob = eobs.get(claim_id)
        if eob is None:
            log.error("benefits: %r has no submitted claim; skipped", n)
            return
        if n.topic == Topics.CLAIM_VOIDED:
            eob["claim_status"] = "voided"
        elif n.topic == Topics.CLAIM_CORRECTED:
            eob["claim_status"] = "replaced"
        else:
            if n.topic == Topics.CLAIM_PENDED:
                eob["claim_status"] = "pended"
            elif n.topic != Topics.CLAIM_DISPUTE_RESOLVED:
                eob["claim_status"] = "adjudicated"
            if p.get("decision") is not None:
                self._explain(eob, p["decision"])
        eob["last_position"] = n.position
        eobs.put(eob)

    @staticmethod
    def _explain(eob: Row, decision: dict[str, Any]) -> None:
        results = {line["line_number"]: line for line in decision.get("lines", [])}
        lines = []
        for line in eob["lines"]:
            result = results.get(line["line_number"])
            if result is not None:
                line = {
                    **line,
                    "billed_cents": result["billed_cents"],
                    "allowed_cents": result["allowed_cents"],
                    "paid_cents": result["paid_cents"],
                    "you_owe_cents": result["patient_responsibility_cents"],
                    "status": result["status"],
                    "adjustments": result.get("adjustments", []),
                    "remarks": result.get("remarks", []),
                }
            lines.append(line)
        eob["lines"] = lines
        eob["outcome"] = decision.get("outcome")
        eob["total_allowed_cents"] = decision.get("total_allowed_cents")
        eob["total_paid_cents"] = decision.get("total_paid_cents")
        eob["total_you_owe_cents"] = decision.get("total_patient_responsibility_cents")


# --- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accumulators:
    payer_id: str
    member_id: str
    plan_year: int
    plan_id: str
    deductible_cents: int | None  # the plan's
    oop_max_cents: int | None
    deductible_met_cents: int
    oop_met_cents: int
    deductible_remaining_cents: int | None
    oop_remaining_cents: int | None
    benefit_units: dict[str, int]
    last_position: int


@dataclass(frozen=True, slots=True)
class Eob:
    """Explanation of benefits of one claim; ``lines`` carry billed, allowed, paid, you_owe cents."""

    claim_id: str
    payer_id: str
    member_id: str
    provider_id: str
    claim_status: str
    outcome: str | None
    received_on: date
    first_date_of_service: date
    lines: list[dict[str, Any]]
    total_billed_cents: int
    total_allowed_cents: int | None
    total_paid_cents: int | None
    total_you_owe_cents: int | None
    submitted_position: int
    last_position: int


@dataclass(frozen=True, slots=True)
class EobPage:
    eobs: list[Eob]
    next_page_token: str


# --- queries -----------------------------------------------------------------------------------


@checked
def member_accumulators(
    source: Source,
    payer_id: str,
    member_id: str,
    plan_year: int,
    *,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> Accumulators:
    """``member_accumulators(source, payer_id, member_id, plan_year, *, min_position=None,
    timeout=None, hub=None) -> Accumulators``: deductible and out-of-pocket met in the plan year,
    with the limits of the plan in force at the end of that year (or of the latest plan segment
    starting before then). ``MemberNotFoundError`` when the member is not enrolled with the payer."""
    wait_for_position(source, BenefitsModel.name, min_position, timeout=timeout, hub=hub)
    members = rows(source, "member_coverage", Where("payer_id = %s AND member_id = %s", payer_id, member_id))
    if not members:
        raise MemberNotFoundError("member_id: no such member is enrolled with this payer")  # no PHI echoed
    member = members[0]
    periods = rows(source, "member_accumulators",
                   Where("payer_id = %s AND member_id = %s AND plan_year = %s", payer_id, member_id, plan_year))
    period = periods[0] if periods else {"deductible_met_cents": 0, "oop_met_cents": 0, "benefit_units": {}, "last_position": member["last_position"]}
    segment = segment_on(member["segments"], f"{plan_year:04d}-12-31")
    deductible, oop_max = segment.get("deductible_cents"), segment.get("oop_max_cents")
    met_deductible, met_oop = period["deductible_met_cents"], period["oop_met_cents"]
    return Accumulators(
        payer_id=payer_id,
        member_id=member_id,
        plan_year=plan_year,
        plan_id=segment["plan_id"],
        deductible_cents=deductible,
        oop_max_cents=oop_max,
        deductible_met_cents=met_deductible,
        oop_met_cents=met_oop,
        deductible_remaining_cents=None if deductible is None else max(0, deductible - met_deductible),
        oop_remaining_cents=None if oop_max is None else max(0, oop_max - met_oop),
        benefit_units={k: v for k, v in period["benefit_units"].items() if v},
        last_position=max(period["last_position"], member["last_position"]),
    )


@checked
def member_payers(source: Source, member_id: str) -> list[str]:
    """``member_payers(source, member_id) -> list[str]``: the payers that enrol this member id
    (whatever the coverage dates), by payer id; empty when none does."""
    found = rows(source, "member_coverage", Where("member_id = %s", member_id), order="payer_id")
    return [row["payer_id"] for row in found]


@checked
def explanation_of_benefits(
    source: Source,
    claim_id: str,
    *,
    payer_id: str | None = None,
    member_id: str | None = None,
    provider_id: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> Eob:
    """``explanation_of_benefits(source, claim_id, *, payer_id=None, member_id=None,
    provider_id=None, min_position=None, timeout=None, hub=None) -> Eob``; ``ClaimNotFoundError``
    when there is none, or it is another provider's, payer's or member's."""
    claim_id = valid_claim_id(claim_id)
    wait_for_position(source, BenefitsModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("claim_id = %s", claim_id).party(provider_id, payer_id).given("member_id = %s", member_id)
    return select_one(source, Eob, "explanation_of_benefits", where, ClaimNotFoundError(f"claim {claim_id} not found"))


@checked
def member_eobs(
    source: Source,
    payer_id: str,
    member_id: str,
    *,
    plan_year: int | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> EobPage:
    """``member_eobs(source, payer_id, member_id, *, plan_year=None, page_size=50,
    page_token=None, min_position=None, timeout=None, hub=None) -> EobPage``: the member's
    explanations of benefits by first date of service (then submission), oldest first."""
    pager = Pager("eobs", {"payer_id": payer_id, "member_id": member_id, "plan_year": plan_year}, page_size, page_token,
                  shape=(date_part, position_part))
    wait_for_position(source, BenefitsModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("payer_id = %s AND member_id = %s", payer_id, member_id)
    if plan_year is not None:
        where.add("first_date_of_service BETWEEN %s AND %s", date(plan_year, 1, 1), date(plan_year, 12, 31))
    if pager.key is not None:
        where.add("(first_date_of_service, submitted_position) > (%s::date, %s)", pager.key[0], int(pager.key[1]))
    found = select(source, Eob, "explanation_of_benefits", where, order="first_date_of_service, submitted_position",
                   limit=pager.limit)
    return EobPage(*pager.page(found, lambda eob: [eob.first_date_of_service.isoformat(), eob.submitted_position]))


@checked
def patient_eobs(
    source: Source,
    member_id: str,
    *,
    payer_id: str | None = None,
    provider_id: str | None = None,
    page_size: int = 50,
    page_token: str | None = None,
    min_position: int | None = None,
    timeout: float | None = None,
    hub: Hub | None = None,
) -> EobPage:
    """``patient_eobs(source, member_id, *, payer_id=None, provider_id=None, page_size=50,
    page_token=None, min_position=None, timeout=None, hub=None) -> EobPage``: the explanations of
    benefits of a member id that the caller may see — a payer's members' (``payer_id``), a
    provider's own claims (``provider_id``), or every payer's (neither) — by first date of service
    (then submission), oldest first. A member id is unique within its payer only: without
    ``payer_id`` the page may hold several payers' members of that id (each EOB names its payer)."""
    pager = Pager("patient_eobs", {"member_id": member_id, "payer_id": payer_id, "provider_id": provider_id},
                  page_size, page_token, shape=(date_part, position_part))
    wait_for_position(source, BenefitsModel.name, min_position, timeout=timeout, hub=hub)
    where = Where("member_id = %s", member_id).party(provider_id, payer_id)
    if pager.key is not None:
        where.add("(first_date_of_service, submitted_position) > (%s::date, %s)", pager.key[0], int(pager.key[1]))
    found = select(source, Eob, "explanation_of_benefits", where, order="first_date_of_service, submitted_position",
                   limit=pager.limit)
    return EobPage(*pager.page(found, lambda eob: [eob.first_date_of_service.isoformat(), eob.submitted_position]))
