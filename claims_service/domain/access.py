"""Reads of a member's data, as the ledger records them: the access log and emergency access.

``MemberAccess``: one read of one member's data by one principal — who (the actor and the key),
what (the RPC or FHIR interaction, and the resources it returned: ``claim:<id>``,
``payment:<id>``, ``accumulators:<payer>/<year>``, ``eob:<id>``, ``notice:<position>``), under
which grant (``provider`` its own claims, ``payer`` its members', ``dispute`` the dispute team's,
``self`` the member, ``consent:<grant id>``, ``emergency:<access id>``) and when (the event's
timestamp). A read that returns several members' data records one event per member, so that each
event concerns one member only (their data can be encrypted, or erased, with them). Each event is
a stream of its own with a new id (given by the caller: the domain draws no randomness; the
service gives a UUIDv7, so that records arrive at the right edge of the ledger's stream index):
recording never conflicts with anything, so it rides any group commit.

``EmergencyAccess``: a provider reading a member's history without consent, by declaring an
emergency with a reason ("break the glass"). Declared together with the access it allows (one
commit), told to the member's payers on their notice streams, listed for their review, and shown
to the member in the access log.
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate

GRANTS = ("provider", "payer", "dispute", "self")  # and "consent:<grant id>", "emergency:<access id>"
MAX_RESOURCES = 1000


class MemberAccess(Aggregate):
    """One read of one member's data. State: the event's fields."""

    class Recorded(Aggregate.Created):
        actor: str
        key_id: str
        member_id: str
        method: str
        resources: list[str]
        grant: str

        def apply(self, access: MemberAccess) -> None:
            access.actor = self.actor
            access.key_id = self.key_id
            access.member_id = self.member_id
            access.method = self.method
            access.resources = list(self.resources)
            access.grant = self.grant

    @classmethod
    def record(cls, *, access_id: UUID, actor: str, key_id: str, member_id: str, method: str, resources: list[str],
               grant: str) -> MemberAccess:
        return cls._create(cls.Recorded, id=access_id, actor=actor, key_id=key_id, member_id=member_id, method=method,
                           resources=list(resources[:MAX_RESOURCES]), grant=grant)


class EmergencyAccess(Aggregate):
    """A provider's declared emergency; its id (a random UUID) is the access id the member's
    access log and the payers' notices name. State: the event's fields."""

    class Declared(Aggregate.Created):
        actor: str
        key_id: str
        provider_id: str
        member_id: str
        reason: str
        payer_ids: list[str]

        def apply(self, access: EmergencyAccess) -> None:
            access.actor = self.actor
            access.key_id = self.key_id
            access.provider_id = self.provider_id
            access.member_id = self.member_id
            access.reason = self.reason
            access.payer_ids = list(self.payer_ids)

    @classmethod
    def declare(cls, *, access_id: UUID, actor: str, key_id: str, provider_id: str, member_id: str, reason: str,
                payer_ids: list[str]) -> EmergencyAccess:
        return cls._create(cls.Declared, id=access_id, actor=actor, key_id=key_id, provider_id=provider_id,
                           member_id=member_id, reason=reason, payer_ids=sorted(set(payer_ids)))

    @property
    def access_id(self) -> str:
        return str(self.id)

    @property
    def grant(self) -> str:
        return f"emergency:{self.access_id}"
