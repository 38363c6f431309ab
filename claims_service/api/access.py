"""The access log: every read of a member's data, recorded on the ledger before the data leaves.

Who reads what is itself a record of the ledger (``domain.access.MemberAccess``): hash-linked,
in the Merkle tree, signed into checkpoints like a claim, listed to the member
(MemberService.ListAccessLog). Every read that returns a member's data records it — the provider's,
payer's, dispute team's and member's RPCs, the streamed notices and claim changes, the FHIR
endpoint — naming the caller (its role, party and key), the RPC, the resources returned and the
grant it read under; the event's timestamp says when.

Granularity: one event per member per call. A page of claims of thirty members records thirty
events, in one write; a stream records, per batch of items it sends, one event per member in
the batch. One event concerns one member only, so that member data in it can be encrypted with
(or erased with) that member's key.

When: after the read, before the answer. The events go to the group committer (``submit``), which
saves them in the next transaction together with everything else queued (other reads' records,
claims); the call answers once that commit is done. So no member data leaves without its record
on disk (a failed commit fails the call: UNAVAILABLE, and the caller got nothing), and a crash
after the commit cannot lose it. The price is one group commit's latency per read call: not a
transaction and WAL flush of its own, since every concurrent read and write shares one (measured
in README, "The access log: what is recorded, and what it costs"). A stream waits on its loop (not
a thread) for each batch's commit before sending the batch.

Recording nothing at all: calls that return no member's data (an empty page, NOT_FOUND, a
heartbeat) record nothing. The member's reads of the access log itself and of their consents are
not recorded (they hold who read, not the member's health data; recording them would fill the log
with itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from claims_service.api.auth import Principal
from claims_service.application import Receipt
from claims_service.domain.access import MemberAccess
from claims_service.domain.ids import time_ordered_id
from claims_service.group_commit import GroupCommitter

# The grant a role's own reads are under: its tenancy.
ROLE_GRANTS = {"provider": "provider", "payer": "payer", "dispute": "dispute", "member": "self", "admin": "admin"}

Seen = Iterable[tuple[str, str]]
"""(member id, resource) for each thing a read returned, e.g. ("M-1", "claim:5f...")."""


def by_member(seen: Seen) -> dict[str, list[str]]:
    """The resources per member, each once, in the order first seen."""
    found: dict[str, list[str]] = {}
    for member_id, resource in seen:
        resources = found.setdefault(member_id, [])
        if resource not in resources:
            resources.append(resource)
    return found


class AccessLog:
    """``AccessLog(writer)``: ``record`` (blocking, in a unary call's thread) and ``arecord`` (on
    the event loop, in a stream) save one ``MemberAccess`` per member seen, with ``before`` (an
    emergency declaration) in the same commit, and return the last event's receipt (None when
    nothing was seen)."""

    def __init__(self, writer: GroupCommitter) -> None:
        self._writer = writer
        self.recorded = 0  # events, for tests and benchmarks

    def _aggregates(self, who: Principal, method: str, seen: Seen, grant: str | None) -> list[MemberAccess]:
        grant = grant or ROLE_GRANTS.get(who.role, who.role)
        # A time-ordered id, not a random one: each record is a stream of its own, and a random id
        # would land on a random page of the ledger's stream index, which after every checkpoint
        # logs the whole page (0.78 full-page images a paced call on a 1,000,000-event ledger).
        return [MemberAccess.record(access_id=time_ordered_id(), actor=who.actor, key_id=who.key_id, member_id=member_id, method=method,
                                    resources=resources, grant=grant)
                for member_id, resources in by_member(seen).items()]

    def _counted(self, who: Principal, method: str, seen: Seen, grant: str | None) -> list[MemberAccess]:
        accesses = self._aggregates(who, method, seen, grant)
        self.recorded += len(accesses)
        return accesses

    def record(self, who: Principal, method: str, seen: Seen, *, grant: str | None = None,
               before: Sequence[Any] = ()) -> Receipt | None:
        # The writer's `record`: the events are sealed here, in the call's thread, not in the
        # group commit's turn (claims_service.group_commit).
        accesses = self._counted(who, method, seen, grant)
        return self._writer.record(*before, *accesses)[-1] if accesses else None

    async def arecord(self, who: Principal, method: str, seen: Seen, *, grant: str | None = None) -> None:
        # On the event loop, which must not wait for a key read: queued unsealed (`submit`).
        accesses = self._counted(who, method, seen, grant)
        if accesses:
            await asyncio.wrap_future(self._writer.submit(*accesses))
