"""The erasure of a member's data, as the ledger records it (crypto-shredding).

A member's data on the ledger is sealed under the member's own data key (``domain.phi``); erasing
the member destroys that key, after which their events keep their stored bytes (so every hash,
tree, checkpoint, receipt and bundle still verifies) but read as erased. The erasure itself is an
event of its own stream, with no member data in it: the member's pseudonymous key id (the
reference their sealed events carry), the streams whose data went with it (uuids: the claims,
coverage, benefit periods, visits), and what it could not erase (events written before payloads
were sealed per member hold their data as they were written, and stay as they are).

The read models purge the listed streams when they reach this event (and a rebuilt read model
never sees the erased data at all).
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate

from claims_service.domain.ids import make_id


class MemberErasure(Aggregate):
    """Id from the member's key id: a member is erased once. State: the event's fields."""

    class Recorded(Aggregate.Created):
        actor: str
        key_id: str  # the member's pseudonymous reference (their sealed events name it)
        streams: list[str]  # every stream of the member's: claims, coverage, benefit periods, visits...
        sealed_events: int  # events of those streams sealed under the destroyed key: now erased
        legacy_events: int  # events written before per-member keys: not erasable, left as they are
        attachments: int  # documents deleted from the blob store

        def apply(self, erasure: MemberErasure) -> None:
            erasure.key_id = self.key_id
            erasure.streams = list(self.streams)
            erasure.sealed_events = self.sealed_events
            erasure.legacy_events = self.legacy_events
            erasure.attachments = self.attachments

    @staticmethod
    def create_id(key_id: str) -> UUID:
        return make_id("member-erasure", key_id)

    @classmethod
    def record(cls, *, actor: str, key_id: str, streams: list[str], sealed_events: int, legacy_events: int,
               attachments: int) -> MemberErasure:
        return cls._create(cls.Recorded, id=cls.create_id(key_id), actor=actor, key_id=key_id,
                           streams=sorted(streams), sealed_events=sealed_events, legacy_events=legacy_events,
                           attachments=attachments)
