"""Read model "benefits": member coverage (the plan's deductible and out-of-pocket maximum),
accumulators per payer + member + plan year, and the explanation of benefits of every claim.

Tables (migrations/0006_benefits.sql): ``member_coverage`` (from ``MemberCoverage`` events),
``member_accumulators`` and ``benefit_claims`` (from ``BenefitPeriod`` events: a claim's effect is
*set*, not added, so a later decision replaces it and a reversal takes it off — exactly as the
aggregate does), ``explanation_of_benefits`` (from ``Claim`` events: the member-facing lines).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from projections.events import Notification, Topics
from projections.store import Batch, ReadModel, Row

log = logging.getLogger(__name__)

MEMBER_TOPICS = frozenset({Topics.MEMBER_ENROLLED, Topics.MEMBER_CHANGED, Topics.MEMBER_TERMINATED})
PERIOD_TOPICS = frozenset({Topics.PERIOD_OPENED, Topics.PERIOD_CLAIM_APPLIED, Topics.PERIOD_CLAIM_REVERSED})
CLAIM_TOPICS = frozenset(
    {
        Topics.CLAIM_SUBMITTED,
        Topics.CLAIM_ADJUDICATED,
        Topics.CLAIM_PENDED,
        Topics.CLAIM_REVIEW_RESOLVED,
        Topics.CLAIM_DISPUTE_RESOLVED,
        Topics.CLAIM_VOIDED,
        Topics.CLAIM_CORRECTED,
    }
)


def segment_of(effective_on: str, plan_id: str, terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "effective_on": effective_on,
        "plan_id": plan_id,
        "deductible_cents": terms.get("deductible_cents"),
        "oop_max_cents": terms.get("oop_max_cents"),
    }


def segment_on(segments: Sequence[dict[str, Any]], day: str) -> dict[str, Any]:
    """The plan segment in force on ``day`` (ISO text); the first one before any starts."""
    found = segments[0]
    for segment in segments:
        if segment["effective_on"] <= day:
            found = segment
    return found


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
        effects.prefetch("stream_id", period_ids)
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
