"""Adjudicator partitions (``CLAIMS_ADJUDICATOR_PARTITIONS``): which of M adjudicators decides a
claim, and where a partition starts.

Members are split among the partitions by a stable hash of the member id (SHA-256, first eight
bytes, modulo M). Every event the adjudicator acts on belongs to a claim's stream — the claim's
submission, its void, its replacement — and so to the claim's member, read from the stream's first
event (`Claim.Submitted`, hashed with the ledger like every payload, so the routing cannot be
steered by anything outside the chain). Each partition reads every notification in order (its
cache must see every change: see `unit_of_work.AggregateCache`) and acts on its members' only, with
a tracking position of its own; so one member's claims are decided in ledger order by one
process, and its benefit periods have one writer. What a partition writes belongs to its members
and their claims (the claim, its payment, the member's benefit periods), so partitions never
contend, except over a replacement that names another member: it takes the original off the
original member's accumulators (idempotent, under the ledger's optimistic concurrency).

Exactly once does not rest on the positions alone: the adjudicator skips a claim that is already
decided and a void already taken off, so a partition that starts earlier than it needed to only
reads again. That is what makes changing M safe: a partition that has no position yet starts where
every member was surely done — the furthest of the older sets' lowest positions
(`start_position`).

Pure: no database, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

NAME = "adjudicator"  # ledger_tracking.application_name of the single adjudicator (M = 1)


def member_partition(member_id: str, count: int) -> int:
    """The partition (0 .. count - 1) of a member: stable across processes, machines and releases."""
    if count == 1:
        return 0
    return int.from_bytes(hashlib.sha256(member_id.encode("utf-8")).digest()[:8], "big") % count


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count}")

    @property
    def tracking_name(self) -> str:
        """Its ``ledger_tracking`` row, also its follower name in metrics and status:
        ``adjudicator`` alone, ``adjudicator.<index>/<count>`` as one of several."""
        return NAME if self.count == 1 else f"{NAME}.{self.index}/{self.count}"

    def owns(self, member_id: str) -> bool:
        return member_partition(member_id, self.count) == self.index

    @staticmethod
    def parse(name: str) -> Partition | None:
        """The partition a tracking name records, None for any other follower."""
        if name == NAME:
            return Partition()
        prefix = NAME + "."
        if not name.startswith(prefix):
            return None
        index, _, count = name[len(prefix):].partition("/")
        if not (index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
            return None
        return Partition(int(index), int(count))


def partitions(count: int) -> list[Partition]:
    return [Partition(index, count) for index in range(count)]


def sets_of(positions: Mapping[str, int]) -> dict[int, dict[int, int]]:
    """The adjudicators' recorded positions, by partition count and index."""
    found: dict[int, dict[int, int]] = {}
    for name, position in positions.items():
        partition = Partition.parse(name)
        if partition is not None:
            found.setdefault(partition.count, {})[partition.index] = position
    return found


def start_position(positions: Mapping[str, int], partition: Partition) -> int:
    """Where ``partition`` goes on from, given every recorded adjudicator position (tracking name
    -> position): its own, or further where another set of partitions has done every member up to
    a later position (each set covers every member, so its lowest position is done for all)."""
    found = sets_of(positions)
    own = found.get(partition.count, {}).get(partition.index, 0)
    done_by_others = [min(got.get(i, 0) for i in range(count)) for count, got in found.items() if count != partition.count]
    return max([own, *done_by_others])


def done_for_every_member(positions: Mapping[str, int]) -> int:
    """The furthest position up to which every member's claims are surely done (0: none recorded)."""
    return max((min(got.get(i, 0) for i in range(count)) for count, got in sets_of(positions).items()), default=0)


def position_for_member(positions: Mapping[str, int], member_id: str) -> int:
    """How far the adjudicator has surely gone for one member: the furthest position any set of
    partitions recorded for the member's partition (reconciliation asks whether a void was taken
    off the member's accumulators yet)."""
    return max((got.get(member_partition(member_id, count), 0) for count, got in sets_of(positions).items()), default=0)
