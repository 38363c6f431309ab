"""A member's coverage with one payer: enrolment, plan changes, termination and
prior authorisations.

Coverage is a sequence of *segments* (plan and terms from a date onwards)
inside the coverage period ``[effective_date, termination_date]`` (both
inclusive). A change supersedes every segment that starts on or after its
``effective_on``: the latest word about a date wins, and the history of what
was believed before stays in the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id
from claims_service.domain.values import (
    copy_plain,
    AuthorizePrior,
    ChangeCoverage,
    EnrolMember,
    TerminateCoverage,
)
from claims_service.errors import AlreadyExistsError, StateError


class MemberCoverage(Aggregate):
    """Coverage of one member by one payer; id from (payer_id, member_id).

    State: ``member_id``, ``payer_id``, ``plan_id`` and ``terms`` (of the
    latest segment), ``effective_date``, ``termination_date`` (None: open),
    ``segments`` (``[{effective_on, plan_id, terms}]`` by date) and
    ``prior_auths`` (auth_id -> ``{auth_id, procedure_code, units,
    valid_from, valid_to}``).
    """

    # No class-level annotations here: eventsourcing would turn them into a
    # dataclass __init__ and a second "created" event.

    # --- events ----------------------------------------------------------------

    class Enrolled(Aggregate.Created):
        actor: str
        member_id: str
        payer_id: str
        plan_id: str
        effective_date: date
        termination_date: date | None
        terms: dict[str, Any]

        def apply(self, member: MemberCoverage) -> None:
            member.member_id = self.member_id
            member.payer_id = self.payer_id
            member.plan_id = self.plan_id
            member.effective_date = self.effective_date
            member.termination_date = self.termination_date
            member.terms = copy_plain(self.terms)
            member.segments = [
                {
                    "effective_on": self.effective_date,
                    "plan_id": self.plan_id,
                    "terms": copy_plain(self.terms),
                }
            ]
            member.prior_auths = {}

    class Changed(Aggregate.Event):
        """Plan and/or terms from ``effective_on``; and/or new coverage dates.
        ``None`` fields are unchanged."""

        actor: str
        effective_on: date
        plan_id: str | None
        terms: dict[str, Any] | None
        effective_date: date | None
        termination_date: date | None

        def apply(self, member: MemberCoverage) -> None:
            if self.effective_date is not None:
                member.effective_date = self.effective_date
            if self.termination_date is not None:
                member.termination_date = self.termination_date
            if self.plan_id is not None or self.terms is not None:
                base = member._segment_on(self.effective_on)
                segment = {
                    "effective_on": self.effective_on,
                    "plan_id": self.plan_id if self.plan_id is not None else base["plan_id"],
                    "terms": copy_plain(self.terms if self.terms is not None else base["terms"]),
                }
                kept = [s for s in member.segments if s["effective_on"] < self.effective_on]
                member.segments = [*kept, segment]
                member.plan_id = segment["plan_id"]
                member.terms = copy_plain(segment["terms"])

    class Terminated(Aggregate.Event):
        actor: str
        termination_date: date

        def apply(self, member: MemberCoverage) -> None:
            member.termination_date = self.termination_date

    class PriorAuthorized(Aggregate.Event):
        actor: str
        auth_id: str
        procedure_code: str
        units: int
        valid_from: date
        valid_to: date

        def apply(self, member: MemberCoverage) -> None:
            member.prior_auths[self.auth_id] = {
                "auth_id": self.auth_id,
                "procedure_code": self.procedure_code,
                "units": self.units,
                "valid_from": self.valid_from,
                "valid_to": self.valid_to,
            }

    # --- ids ---------------------------------------------------------------------

    @staticmethod
    def create_id(payer_id: str, member_id: str) -> UUID:
        return make_id("member", payer_id, member_id)

    # --- commands ------------------------------------------------------------------

    @classmethod
    def enrol(
        cls,
        *,
        actor: str,
        member_id: str,
        payer_id: str,
        plan_id: str,
        effective_date: date,
        terms: dict[str, Any],
        termination_date: date | None = None,
    ) -> MemberCoverage:
        cmd = EnrolMember.checked(
            actor=actor,
            member_id=member_id,
            payer_id=payer_id,
            plan_id=plan_id,
            effective_date=effective_date,
            termination_date=termination_date,
            terms=terms,
        )
        return cls._create(
            cls.Enrolled,
            id=cls.create_id(cmd.payer_id, cmd.member_id),
            actor=cmd.actor,
            member_id=cmd.member_id,
            payer_id=cmd.payer_id,
            plan_id=cmd.plan_id,
            effective_date=cmd.effective_date,
            termination_date=cmd.termination_date,
            terms=cmd.terms.model_dump(mode="python"),
        )

    def change(
        self,
        *,
        actor: str,
        effective_on: date,
        plan_id: str | None = None,
        terms: dict[str, Any] | None = None,
        effective_date: date | None = None,
        termination_date: date | None = None,
    ) -> None:
        cmd = ChangeCoverage.checked(
            actor=actor,
            effective_on=effective_on,
            plan_id=plan_id,
            terms=terms,
            effective_date=effective_date,
            termination_date=termination_date,
        )
        start = cmd.effective_date if cmd.effective_date is not None else self.effective_date
        end = cmd.termination_date if cmd.termination_date is not None else self.termination_date
        if end is not None and end < start:
            msg = "coverage would end before it starts"
            raise StateError(msg)
        if cmd.effective_on < start or (end is not None and cmd.effective_on > end):
            msg = "effective_on must fall within the coverage period"
            raise StateError(msg)
        self.trigger_event(
            self.Changed,
            actor=cmd.actor,
            effective_on=cmd.effective_on,
            plan_id=cmd.plan_id,
            terms=cmd.terms.model_dump(mode="python") if cmd.terms is not None else None,
            effective_date=cmd.effective_date,
            termination_date=cmd.termination_date,
        )

    def terminate(self, *, actor: str, termination_date: date) -> None:
        cmd = TerminateCoverage.checked(actor=actor, termination_date=termination_date)
        if cmd.termination_date < self.effective_date:
            msg = "termination_date must not precede the effective date"
            raise StateError(msg)
        if cmd.termination_date == self.termination_date:
            msg = "coverage is already terminated on that date"
            raise StateError(msg)
        self.trigger_event(
            self.Terminated, actor=cmd.actor, termination_date=cmd.termination_date
        )

    def authorize(
        self,
        *,
        actor: str,
        auth_id: str,
        procedure_code: str,
        units: int,
        valid_from: date,
        valid_to: date,
    ) -> None:
        """Record a prior authorisation granted to this member."""
        cmd = AuthorizePrior.checked(
            actor=actor,
            auth_id=auth_id,
            procedure_code=procedure_code,
            units=units,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        if cmd.auth_id in self.prior_auths:
            msg = "a prior authorisation with this auth_id is already recorded"
            raise AlreadyExistsError(msg)
        self.trigger_event(
            self.PriorAuthorized,
            actor=cmd.actor,
            auth_id=cmd.auth_id,
            procedure_code=cmd.procedure_code,
            units=cmd.units,
            valid_from=cmd.valid_from,
            valid_to=cmd.valid_to,
        )

    # --- queries ---------------------------------------------------------------------

    def _segment_on(self, day: date) -> dict[str, Any]:
        return segment_on(self.segments, day)

    def covered_on(self, day: date) -> bool:
        return self.effective_date <= day and (
            self.termination_date is None or day <= self.termination_date
        )

    def coverage_periods(self) -> list[dict[str, Any]]:
        """The coverage as periods, one per plan segment, inside the coverage dates: what the
        adjudicator's facts record (keys member_id, payer_id, plan_id, effective_date,
        termination_date, terms; the terms are copies)."""
        periods = []
        segments = sorted(self.segments, key=lambda s: s["effective_on"])
        for i, segment in enumerate(segments):
            # The first plan applies from the coverage's start, also when the coverage was moved
            # to begin before it (as `_segment_on` has it).
            start = self.effective_date if i == 0 else max(segment["effective_on"], self.effective_date)
            end = self.termination_date
            if i + 1 < len(segments):
                next_start = segments[i + 1]["effective_on"] - timedelta(days=1)
                end = next_start if end is None else min(end, next_start)
            if end is not None and end < start:
                continue
            periods.append(
                {
                    "member_id": self.member_id,
                    "payer_id": self.payer_id,
                    "plan_id": segment["plan_id"],
                    "effective_date": start,
                    "termination_date": end,
                    "terms": copy_plain(segment["terms"]),
                }
            )
        return periods

    def coverage_on(self, day: date) -> dict[str, Any] | None:
        """The coverage period in force on ``day`` (see `coverage_periods`), or None if not covered."""
        return next(
            (p for p in self.coverage_periods()
             if p["effective_date"] <= day and (p["termination_date"] is None or day <= p["termination_date"])),
            None,
        )

    def prior_auths_on(self, procedure_code: str, day: date) -> list[dict[str, Any]]:
        """Copies of the authorisations for ``procedure_code`` valid on ``day``."""
        return [
            dict(auth)
            for auth in self.prior_auths.values()
            if auth["procedure_code"] == procedure_code
            and auth["valid_from"] <= day <= auth["valid_to"]
        ]


def segment_on(segments: Sequence[dict[str, Any]], day: Any) -> dict[str, Any]:
    """The plan segment in force on ``day`` (segments ordered by ``effective_on``; dates, or ISO
    text as the read models keep them); the first one before any starts."""
    found = segments[0]
    for segment in segments:
        if segment["effective_on"] <= day:
            found = segment
    return found
