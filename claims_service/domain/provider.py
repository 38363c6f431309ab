"""A provider (identified by NPI): registration, licences and network participation.

Credentials are kept as a list of verifications, newest last, so that a
renewal or a reinstatement after revocation adds a record instead of
rewriting one, and ``licensed_on`` answers correctly for any past date. A
revocation or an expiry applies to the latest verification of that licence
number that is still standing; from its date on that record no longer counts.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id
from claims_service.domain.values import (
    ExpireCredential,
    JoinNetwork,
    LeaveNetwork,
    RegisterProvider,
    RevokeCredential,
    VerifyCredential,
)
from claims_service.errors import NotFoundError, StateError


class Provider(Aggregate):
    """A rendering/billing provider; id from the NPI.

    State: ``npi``, ``name``, ``taxonomy``; ``credentials``
    (``[{licence_number, state, valid_from, valid_to, revoked_on,
    expired_on}]``) and ``networks`` (``[{payer_id, contract_id,
    effective_date, end_date}]``), both in event order.
    """

    # --- events ----------------------------------------------------------------

    class Registered(Aggregate.Created):
        actor: str
        npi: str
        name: str
        taxonomy: str

        def apply(self, provider: Provider) -> None:
            provider.npi = self.npi
            provider.name = self.name
            provider.taxonomy = self.taxonomy
            provider.credentials = []
            provider.networks = []

    class CredentialVerified(Aggregate.Event):
        actor: str
        licence_number: str
        state: str
        valid_from: date
        valid_to: date

        def apply(self, provider: Provider) -> None:
            provider.credentials.append(
                {
                    "licence_number": self.licence_number,
                    "state": self.state,
                    "valid_from": self.valid_from,
                    "valid_to": self.valid_to,
                    "revoked_on": None,
                    "expired_on": None,
                }
            )

    class CredentialRevoked(Aggregate.Event):
        actor: str
        licence_number: str
        revoked_on: date

        def apply(self, provider: Provider) -> None:
            record = provider._standing_credential(self.licence_number)
            assert record is not None
            record["revoked_on"] = self.revoked_on

    class CredentialExpired(Aggregate.Event):
        """The licence lapsed (early, or as observed by a credentialing sweep)."""

        actor: str
        licence_number: str
        expired_on: date

        def apply(self, provider: Provider) -> None:
            record = provider._standing_credential(self.licence_number)
            assert record is not None
            record["expired_on"] = self.expired_on

    class JoinedNetwork(Aggregate.Event):
        actor: str
        payer_id: str
        contract_id: str
        effective_date: date
        end_date: date | None

        def apply(self, provider: Provider) -> None:
            provider.networks.append(
                {
                    "payer_id": self.payer_id,
                    "contract_id": self.contract_id,
                    "effective_date": self.effective_date,
                    "end_date": self.end_date,
                }
            )

    class LeftNetwork(Aggregate.Event):
        actor: str
        payer_id: str
        contract_id: str
        end_date: date

        def apply(self, provider: Provider) -> None:
            record = provider._latest_participation(self.payer_id, self.contract_id)
            assert record is not None
            record["end_date"] = self.end_date

    # --- ids ---------------------------------------------------------------------

    @staticmethod
    def create_id(npi: str) -> UUID:
        return make_id("provider", npi)

    # --- commands ------------------------------------------------------------------

    @classmethod
    def register(cls, *, actor: str, npi: str, name: str, taxonomy: str) -> Provider:
        cmd = RegisterProvider.checked(actor=actor, npi=npi, name=name, taxonomy=taxonomy)
        return cls._create(
            cls.Registered,
            id=cls.create_id(cmd.npi),
            actor=cmd.actor,
            npi=cmd.npi,
            name=cmd.name,
            taxonomy=cmd.taxonomy,
        )

    def verify_credential(
        self,
        *,
        actor: str,
        licence_number: str,
        state: str,
        valid_from: date,
        valid_to: date,
    ) -> None:
        cmd = VerifyCredential.checked(
            actor=actor,
            licence_number=licence_number,
            state=state,
            valid_from=valid_from,
            valid_to=valid_to,
        )
        for record in self.credentials:
            if (
                record["licence_number"] == cmd.licence_number
                and record["state"] == cmd.state
                and record["valid_from"] == cmd.valid_from
                and record["valid_to"] == cmd.valid_to
                and record["revoked_on"] is None
                and record["expired_on"] is None
            ):
                msg = "this credential is already verified for that period"
                raise StateError(msg)
        self.trigger_event(
            self.CredentialVerified,
            actor=cmd.actor,
            licence_number=cmd.licence_number,
            state=cmd.state,
            valid_from=cmd.valid_from,
            valid_to=cmd.valid_to,
        )

    def revoke_credential(self, *, actor: str, licence_number: str, revoked_on: date) -> None:
        cmd = RevokeCredential.checked(
            actor=actor, licence_number=licence_number, revoked_on=revoked_on
        )
        self._require_standing(cmd.licence_number)
        self.trigger_event(
            self.CredentialRevoked,
            actor=cmd.actor,
            licence_number=cmd.licence_number,
            revoked_on=cmd.revoked_on,
        )

    def expire_credential(self, *, actor: str, licence_number: str, expired_on: date) -> None:
        cmd = ExpireCredential.checked(
            actor=actor, licence_number=licence_number, expired_on=expired_on
        )
        self._require_standing(cmd.licence_number)
        self.trigger_event(
            self.CredentialExpired,
            actor=cmd.actor,
            licence_number=cmd.licence_number,
            expired_on=cmd.expired_on,
        )

    def join_network(
        self,
        *,
        actor: str,
        payer_id: str,
        contract_id: str,
        effective_date: date,
        end_date: date | None = None,
    ) -> None:
        cmd = JoinNetwork.checked(
            actor=actor,
            payer_id=payer_id,
            contract_id=contract_id,
            effective_date=effective_date,
            end_date=end_date,
        )
        for record in self.networks:
            if (
                record["payer_id"] == cmd.payer_id
                and record["contract_id"] == cmd.contract_id
                and (record["end_date"] is None or cmd.effective_date <= record["end_date"])
                and (cmd.end_date is None or record["effective_date"] <= cmd.end_date)
            ):
                msg = "overlaps an existing participation under this contract"
                raise StateError(msg)
        self.trigger_event(
            self.JoinedNetwork,
            actor=cmd.actor,
            payer_id=cmd.payer_id,
            contract_id=cmd.contract_id,
            effective_date=cmd.effective_date,
            end_date=cmd.end_date,
        )

    def leave_network(
        self, *, actor: str, payer_id: str, contract_id: str, end_date: date
    ) -> None:
        cmd = LeaveNetwork.checked(
            actor=actor, payer_id=payer_id, contract_id=contract_id, end_date=end_date
        )
        record = self._latest_participation(cmd.payer_id, cmd.contract_id)
        if record is None:
            msg = "not in this payer's network under this contract"
            raise StateError(msg)
        if cmd.end_date < record["effective_date"]:
            msg = "end_date must not precede the participation's effective date"
            raise StateError(msg)
        if record["end_date"] is not None and cmd.end_date >= record["end_date"]:
            msg = "the participation already ends by that date"
            raise StateError(msg)
        self.trigger_event(
            self.LeftNetwork,
            actor=cmd.actor,
            payer_id=cmd.payer_id,
            contract_id=cmd.contract_id,
            end_date=cmd.end_date,
        )

    # --- queries ---------------------------------------------------------------------

    def _standing_credential(self, licence_number: str) -> dict[str, Any] | None:
        for record in reversed(self.credentials):
            if (
                record["licence_number"] == licence_number
                and record["revoked_on"] is None
                and record["expired_on"] is None
            ):
                return record
        return None

    def _require_standing(self, licence_number: str) -> None:
        if not any(r["licence_number"] == licence_number for r in self.credentials):
            msg = "no credential with this licence number"
            raise NotFoundError(msg)
        if self._standing_credential(licence_number) is None:
            msg = "this credential is already revoked or expired"
            raise StateError(msg)

    def _latest_participation(self, payer_id: str, contract_id: str) -> dict[str, Any] | None:
        """The participation under this contract that starts last (they never overlap)."""
        matching = [
            r for r in self.networks if r["payer_id"] == payer_id and r["contract_id"] == contract_id
        ]
        return max(matching, key=lambda r: r["effective_date"], default=None)

    @staticmethod
    def _credential_valid_on(record: dict[str, Any], day: date) -> bool:
        if not record["valid_from"] <= day <= record["valid_to"]:
            return False
        for stop in (record["revoked_on"], record["expired_on"]):
            if stop is not None and day >= stop:
                return False
        return True

    def licensed_on(self, day: date, state: str | None = None) -> bool:
        """True if some verified licence (in ``state``, if given) is valid on ``day``."""
        return any(
            self._credential_valid_on(record, day)
            for record in self.credentials
            if state is None or record["state"] == state
        )

    def credentials_on(self, day: date) -> list[dict[str, Any]]:
        """Copies of the credential records valid on ``day`` (adjudication facts)."""
        return [dict(r) for r in self.credentials if self._credential_valid_on(r, day)]

    def _participations_on(self, payer_id: str, day: date) -> list[dict[str, Any]]:
        return [
            r
            for r in self.networks
            if r["payer_id"] == payer_id
            and r["effective_date"] <= day
            and (r["end_date"] is None or day <= r["end_date"])
        ]

    def in_network_on(self, payer_id: str, day: date) -> bool:
        return bool(self._participations_on(payer_id, day))

    def contract_ids_on(self, payer_id: str, day: date) -> list[str]:
        """The contracts under which the provider is in ``payer_id``'s network on ``day``."""
        return [r["contract_id"] for r in self._participations_on(payer_id, day)]
