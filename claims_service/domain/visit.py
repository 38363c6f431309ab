"""A visit (encounter) as the provider records it, before or without a claim.

Its payer hears of it at once (a visit notice on SubscribeAdjudications, before any claim of it):
who, where, when and whether it is an emergency, never the diagnoses."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.formats import EMERGENCY_PLACES_OF_SERVICE
from claims_service.domain.ids import make_id
from claims_service.domain.values import RecordVisit
from claims_service.errors import DuplicateRequestError


class Visit(Aggregate):
    """Id from (provider_id, visit_id): visit ids are the provider's own.

    State: ``visit_id``, ``provider_id`` (NPI), ``member_id``, ``payer_id``,
    ``date_of_service``, ``place_of_service``, ``diagnosis_codes``, ``emergency``.

    ``emergency`` was added to ``Recorded`` later: visits recorded before carry none and read as
    False (the class default), so the bytes already hashed never change; their emergency is
    their place of service's (``is_emergency``).
    """

    class Recorded(Aggregate.Created):
        actor: str
        visit_id: str
        provider_id: str
        member_id: str
        payer_id: str
        date_of_service: date
        place_of_service: str
        diagnosis_codes: list[str]
        emergency: bool = False  # absent from visits recorded before it existed

        def apply(self, visit: Visit) -> None:
            visit.visit_id = self.visit_id
            visit.provider_id = self.provider_id
            visit.member_id = self.member_id
            visit.payer_id = self.payer_id
            visit.date_of_service = self.date_of_service
            visit.place_of_service = self.place_of_service
            visit.diagnosis_codes = list(self.diagnosis_codes)
            visit.emergency = self.emergency

    @staticmethod
    def create_id(provider_id: str, visit_id: str) -> UUID:
        return make_id("visit", provider_id, visit_id)

    @classmethod
    def record(
        cls,
        *,
        actor: str,
        visit_id: str,
        provider_id: str,
        member_id: str,
        payer_id: str,
        date_of_service: date,
        place_of_service: str,
        diagnosis_codes: list[str],
        emergency: bool = False,
    ) -> Visit:
        cmd = RecordVisit.checked(
            actor=actor,
            visit_id=visit_id,
            provider_id=provider_id,
            member_id=member_id,
            payer_id=payer_id,
            date_of_service=date_of_service,
            place_of_service=place_of_service,
            diagnosis_codes=diagnosis_codes,
            emergency=emergency,
        )
        return cls.record_request(cmd)

    @classmethod
    def record_request(cls, cmd: RecordVisit) -> Visit:
        """Record an already validated request (``RecordVisit.checked(...)``), so that the
        application can compare a retry with the visit it finds under the same id."""
        return cls._create(
            cls.Recorded,
            id=cls.create_id(cmd.provider_id, cmd.visit_id),
            actor=cmd.actor,
            visit_id=cmd.visit_id,
            provider_id=cmd.provider_id,
            member_id=cmd.member_id,
            payer_id=cmd.payer_id,
            date_of_service=cmd.date_of_service,
            place_of_service=cmd.place_of_service,
            diagnosis_codes=list(cmd.diagnosis_codes),
            emergency=cmd.is_emergency,
        )

    @property
    def is_emergency(self) -> bool:
        return self.emergency or self.place_of_service in EMERGENCY_PLACES_OF_SERVICE

    def body(self) -> dict[str, Any]:
        """The visit as recorded, in the shape of ``RecordVisit.body()``."""
        return {
            "visit_id": self.visit_id,
            "provider_id": self.provider_id,
            "member_id": self.member_id,
            "payer_id": self.payer_id,
            "date_of_service": self.date_of_service,
            "place_of_service": self.place_of_service,
            "diagnosis_codes": list(self.diagnosis_codes),
            "emergency": self.is_emergency,
        }

    def ensure_same_request(self, request: RecordVisit) -> None:
        """For a retry with this visit's id: refuse a different visit (the message names the
        field, never a value)."""
        if request.body() != self.body():
            msg = "visit_id: this visit id is already recorded with different content"
            raise DuplicateRequestError(msg)
