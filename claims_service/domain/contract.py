"""A payer–provider contract and its versioned fee schedules.

A fee schedule, once published, never changes: a new price list is a new
version with an effective date not before the previous one, so that a claim
adjudicated last year can be re-run against exactly the schedule it saw.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id
from claims_service.domain.values import PublishContract, PublishFeeSchedule, copy_plain
from claims_service.errors import StateError


class Contract(Aggregate):
    """Id from ``contract_id``.

    State: ``contract_id``, ``payer_id``, ``schedule_version`` and
    ``effective_date`` of the latest schedule, ``schedules`` (``[{version, effective_date, fees}]``
    in version order). Fee keys are ``"CODE"`` or ``"CODE:MOD"``; values are
    integer cents per unit.
    """

    # --- events ----------------------------------------------------------------

    class Published(Aggregate.Created):
        actor: str
        contract_id: str
        payer_id: str
        version: int
        effective_date: date
        fees: dict[str, int]

        def apply(self, contract: Contract) -> None:
            contract.contract_id = self.contract_id
            contract.payer_id = self.payer_id
            contract.schedules = []
            contract._add_schedule(self.version, self.effective_date, self.fees)

    class FeeSchedulePublished(Aggregate.Event):
        actor: str
        version: int
        effective_date: date
        fees: dict[str, int]

        def apply(self, contract: Contract) -> None:
            contract._add_schedule(self.version, self.effective_date, self.fees)

    def _add_schedule(self, version: int, effective_date: date, fees: dict[str, int]) -> None:
        self.schedules.append(
            {"version": version, "effective_date": effective_date, "fees": dict(fees)}
        )
        # Not "version": that name is the aggregate's event sequence number.
        self.schedule_version = version
        self.effective_date = effective_date

    # --- ids ---------------------------------------------------------------------

    @staticmethod
    def create_id(contract_id: str) -> UUID:
        return make_id("contract", contract_id)

    # --- commands ------------------------------------------------------------------

    @classmethod
    def publish(
        cls,
        *,
        actor: str,
        contract_id: str,
        payer_id: str,
        version: int,
        effective_date: date,
        fees: dict[str, int],
    ) -> Contract:
        cmd = PublishContract.checked(
            actor=actor,
            contract_id=contract_id,
            payer_id=payer_id,
            version=version,
            effective_date=effective_date,
            fees=fees,
        )
        return cls._create(
            cls.Published,
            id=cls.create_id(cmd.contract_id),
            actor=cmd.actor,
            contract_id=cmd.contract_id,
            payer_id=cmd.payer_id,
            version=cmd.version,
            effective_date=cmd.effective_date,
            fees=dict(cmd.fees),
        )

    def publish_fee_schedule(
        self, *, actor: str, version: int, effective_date: date, fees: dict[str, int]
    ) -> None:
        cmd = PublishFeeSchedule.checked(
            actor=actor, version=version, effective_date=effective_date, fees=fees
        )
        if cmd.version <= self.schedule_version:
            msg = f"version must be greater than {self.schedule_version}"
            raise StateError(msg)
        if cmd.effective_date < self.effective_date:
            msg = "effective_date must not precede the previous schedule's"
            raise StateError(msg)
        self.trigger_event(
            self.FeeSchedulePublished,
            actor=cmd.actor,
            version=cmd.version,
            effective_date=cmd.effective_date,
            fees=dict(cmd.fees),
        )

    # --- queries ---------------------------------------------------------------------

    def fee_schedule_on(self, day: date) -> dict[str, Any] | None:
        """A copy of the schedule in force on ``day`` (``{version, effective_date,
        fees}``), or None before the first one. On equal effective dates the
        higher version wins."""
        found = None
        for schedule in self.schedules:
            if schedule["effective_date"] <= day:
                found = schedule
        return copy_plain(found)
