"""Which rule set is in force when: deployments are ledger events with an effective date.

A claim is judged by the rule set in force on its received date: the deployment with the latest
effective date on or before it (on equal dates, the later deployment wins). Deploying records the
rule set's content hash, so a decision can be tied to the exact code that made it.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id
from claims_service.errors import ValidationError


class RuleSetSchedule(Aggregate):
    """The one schedule of rule-set deployments (a single stream)."""

    class Started(Aggregate.Created):
        def apply(self, schedule: RuleSetSchedule) -> None:
            schedule.deployments = []

    class Deployed(Aggregate.Event):
        actor: str
        version: str
        content_hash: str
        effective_date: date

        def apply(self, schedule: RuleSetSchedule) -> None:
            schedule.deployments.append(
                {"version": self.version, "content_hash": self.content_hash, "effective_date": self.effective_date}
            )

    @staticmethod
    def create_id() -> UUID:
        return make_id("ruleset-schedule")

    @classmethod
    def start(cls) -> RuleSetSchedule:
        return cls._create(cls.Started, id=cls.create_id())

    def deploy(self, *, actor: str, version: str, content_hash: str, effective_date: date) -> None:
        if not 1900 <= effective_date.year <= 2199:
            raise ValidationError.single("effective_date", "must be a year between 1900 and 2199")
        self.trigger_event(
            self.Deployed, actor=actor, version=version, content_hash=content_hash, effective_date=effective_date
        )

    def version_on(self, day: date) -> str | None:
        in_force = None
        for deployment in sorted(self.deployments, key=lambda d: d["effective_date"]):
            if deployment["effective_date"] <= day:
                in_force = deployment["version"]
        return in_force
