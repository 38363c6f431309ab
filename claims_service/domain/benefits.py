"""A member's benefit period with one payer for one plan year: the accumulators.

Deductible met, out-of-pocket met and benefit units used move only here, and only by the
adjudicator, in the same transaction as the decision that moves them (exactly once: the
adjudicator's tracking position commits with these events). The period also keeps the claim lines
decided in it, so a later claim can be checked for duplicates from the ledger alone; a reversed
(voided or replaced) claim's lines stay, marked voided, and stop counting as duplicates.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id
from claims_service.domain.values import copy_plain
from claims_service.errors import StateError


class BenefitPeriod(Aggregate):
    """Id from (payer_id, member_id, plan_year); plan year = calendar year of the date of service.

    State: ``deductible_met_cents``, ``oop_met_cents``, ``benefit_units`` (procedure -> units),
    ``claims`` (claim_id -> {deductible_cents, oop_cents, benefit_units, lines, reversed}), and
    ``lines_by_day``, derived from ``claims``: date of service -> (claim's order, line's index,
    claim_id, claim's record, line), so that a claim's duplicate check reads its own days' lines
    rather than every line of the member's year.
    """

    class Opened(Aggregate.Created):
        payer_id: str
        member_id: str
        plan_year: int

        def apply(self, period: BenefitPeriod) -> None:
            period.payer_id = self.payer_id
            period.member_id = self.member_id
            period.plan_year = self.plan_year
            period.deductible_met_cents = 0
            period.oop_met_cents = 0
            period.benefit_units = {}
            period.claims = {}
            period.lines_by_day = {}

    class ClaimApplied(Aggregate.Event):
        """A claim's effect on this period, replacing any effect it had before.

        "Set", not "add": a pended claim is first applied with no amounts (its lines still count
        for duplicates), and its review or a dispute later applies the settled amounts.
        """

        actor: str
        claim_id: str
        deductible_cents: int
        oop_cents: int
        benefit_units: dict[str, int]
        lines: list[dict[str, Any]]

        def apply(self, period: BenefitPeriod) -> None:
            previous = period.claims.get(self.claim_id)
            if previous and not previous["reversed"]:
                period._take_off(previous)
            period.deductible_met_cents += self.deductible_cents
            period.oop_met_cents += self.oop_cents
            for code, units in self.benefit_units.items():
                period.benefit_units[code] = period.benefit_units.get(code, 0) + units
            record = {
                "deductible_cents": self.deductible_cents,
                "oop_cents": self.oop_cents,
                "benefit_units": dict(self.benefit_units),
                "lines": copy_plain(self.lines),
                "reversed": False,
            }
            order = period._order_of(self.claim_id, previous)
            period.claims[self.claim_id] = record
            for index, line in enumerate(record["lines"]):
                period.lines_by_day.setdefault(line["date_of_service"], []).append((order, index, self.claim_id, record, line))

    class ClaimReversed(Aggregate.Event):
        """A voided or replaced claim: its amounts come off the accumulators."""

        actor: str
        claim_id: str
        reason: str

        def apply(self, period: BenefitPeriod) -> None:
            record = period.claims[self.claim_id]
            period._take_off(record)
            record["reversed"] = True

    def _order_of(self, claim_id: str, previous: dict[str, Any] | None) -> int:
        """The claim's place among the claims applied here (its first application's), with its
        earlier lines taken out of the day index when it is applied again."""
        if previous is None:
            return len(self.claims)
        order = None
        for day in {line["date_of_service"] for line in previous["lines"]}:
            entries = self.lines_by_day[day]
            order = next(entry[0] for entry in entries if entry[2] == claim_id)
            entries[:] = [entry for entry in entries if entry[2] != claim_id]
        return order if order is not None else list(self.claims).index(claim_id)

    def _take_off(self, record: dict[str, Any]) -> None:
        self.deductible_met_cents -= record["deductible_cents"]
        self.oop_met_cents -= record["oop_cents"]
        for code, units in record["benefit_units"].items():
            self.benefit_units[code] = self.benefit_units.get(code, 0) - units

    @staticmethod
    def create_id(payer_id: str, member_id: str, plan_year: int) -> UUID:
        return make_id("benefit-period", payer_id, member_id, str(plan_year))

    @classmethod
    def open(cls, *, payer_id: str, member_id: str, plan_year: int) -> BenefitPeriod:
        return cls._create(
            cls.Opened,
            id=cls.create_id(payer_id, member_id, plan_year),
            payer_id=payer_id,
            member_id=member_id,
            plan_year=plan_year,
        )

    def apply_claim(
        self,
        *,
        actor: str,
        claim_id: str,
        deductible_cents: int,
        oop_cents: int,
        benefit_units: dict[str, int],
        lines: list[dict[str, Any]],
    ) -> None:
        if deductible_cents < 0 or oop_cents < 0 or any(u < 0 for u in benefit_units.values()):
            raise StateError("a claim's effect on accumulators is never negative")
        self.trigger_event(
            self.ClaimApplied,
            actor=actor,
            claim_id=claim_id,
            deductible_cents=deductible_cents,
            oop_cents=oop_cents,
            benefit_units=dict(benefit_units),
            lines=copy_plain(lines),
        )

    def reverse_claim(self, *, actor: str, claim_id: str, reason: str) -> bool:
        """Take a claim's effect off; False (and no event) when it has none here."""
        record = self.claims.get(claim_id)
        if record is None or record["reversed"]:
            return False
        self.trigger_event(self.ClaimReversed, actor=actor, claim_id=claim_id, reason=reason)
        return True

    def accumulators(self) -> dict[str, Any]:
        return {
            "plan_year": self.plan_year,
            "deductible_met_cents": self.deductible_met_cents,
            "oop_met_cents": self.oop_met_cents,
            "benefit_units": {k: v for k, v in self.benefit_units.items() if v},
        }

    def accumulators_without(self, claim_ids: set[str]) -> dict[str, Any]:
        """The accumulators as they would stand without these claims' effects (for deciding one
        of them again, leaving out others that no longer stand)."""
        deductible, oop = self.deductible_met_cents, self.oop_met_cents
        units = dict(self.benefit_units)
        for claim_id in claim_ids:
            record = self.claims.get(claim_id)
            if record is None or record["reversed"]:
                continue
            deductible -= record["deductible_cents"]
            oop -= record["oop_cents"]
            for code, used in record["benefit_units"].items():
                units[code] = units.get(code, 0) - used
        return {
            "plan_year": self.plan_year,
            "deductible_met_cents": deductible,
            "oop_met_cents": oop,
            "benefit_units": {k: v for k, v in units.items() if v},
        }

    def earlier_lines(self, *, excluding: set[str], on: Collection[date] | None = None) -> list[dict[str, Any]]:
        """The lines of the claims applied here (but those `excluding`), each with its claim id and
        whether it was reversed, in the order the claims were first applied; only those on the
        days `on`, when given (found through the day index: a member with many claims in a year
        has many lines, and a claim needs its days')."""
        if on is None:
            return [
                {**line, "claim_id": claim_id, "voided": record["reversed"]}
                for claim_id, record in self.claims.items()
                if claim_id not in excluding
                for line in record["lines"]
            ]
        entries = sorted(entry for day in on for entry in self.lines_by_day.get(day, ()) if entry[2] not in excluding)
        return [{**line, "claim_id": claim_id, "voided": record["reversed"]} for _, _, claim_id, record, line in entries]
