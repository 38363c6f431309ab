"""The adjudicator's unit of work: the aggregates one batch reads and changes, saved together with
the batch's tracking position, and the cache that keeps the long-lived ones between batches."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from claims_service.application import LedgerApplication
from claims_service.keys.store import MemberDataErasedError
from claims_service.domain.claim import Claim
from claims_service.domain.payment import Payment


class Header(NamedTuple):
    """A notification without its payload: all the loop needs (payloads come from the aggregates)."""

    id: int
    originator_id: UUID
    originator_version: int
    topic: str
    traceparent: str | None = None  # the trace context its writer left in the event's metadata (traced only)
    member_id: str | None = None  # a claim event's member, read only when the adjudicator is partitioned


class AggregateCache:
    """The aggregates the adjudicator read or wrote, kept between batches (least recently used
    dropped first), so that a member's benefit period, a provider or a contract is not rebuilt
    from all of its events for every claim.

    It stays true to the ledger because the adjudicator reads every notification in order: before
    a batch is worked, ``forget_changed`` drops every aggregate that an event of the batch has moved
    past the cached version (another writer's change; the adjudicator's own events carry versions
    it already has). An absent aggregate is cached as None and dropped by any event of it. After a
    batch that did not commit, the cache holds changes the ledger never got: ``clear`` it.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[UUID, Any] = OrderedDict()

    def __contains__(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, aggregate_id: UUID) -> Any | None:
        self._items.move_to_end(aggregate_id)
        return self._items[aggregate_id]

    def put(self, aggregate_id: UUID, aggregate: Any | None) -> None:
        self._items[aggregate_id] = aggregate
        self._items.move_to_end(aggregate_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def forget_changed(self, notifications: Sequence[Header]) -> None:
        for notification in notifications:
            if notification.originator_id in self._items:
                cached = self._items[notification.originator_id]
                if cached is None or cached.version < notification.originator_version:
                    del self._items[notification.originator_id]

    def aggregates(self) -> list[Any]:
        return list(self._items.values())

    def discard(self, aggregate_id: UUID) -> None:
        self._items.pop(aggregate_id, None)

    def clear(self) -> None:
        self._items.clear()


class UnitOfWork:
    """The aggregates one batch reads and changes; everything it changed is saved together."""

    # Claims and payments are read once or twice in their lives (decided, perhaps voided later),
    # and a claim with its recorded facts is large: they leave the cache with their batch, as do
    # answers of "absent". Members, providers, contracts and benefit periods stay.
    TRANSIENT = (Claim, Payment, type(None))

    def __init__(self, ledger: LedgerApplication, cache: AggregateCache | None = None) -> None:
        self.ledger = ledger
        self.cache = cache if cache is not None else AggregateCache()
        self.changed: dict[UUID, Any] = {}
        self.transient: set[UUID] = set()

    def get(self, aggregate_id: UUID) -> Any | None:
        if aggregate_id not in self.cache:
            try:
                self.keep(aggregate_id, self.ledger.repository.get(aggregate_id))
            except (AggregateNotFoundError, MemberDataErasedError):  # an erased member's record: as absent
                self.keep(aggregate_id, None)
        return self.cache.get(aggregate_id)

    def prefetch(self, aggregate_ids: list[UUID]) -> None:
        """Load the aggregates a batch will read in one query instead of one each."""
        wanted = [i for i in dict.fromkeys(aggregate_ids) if i not in self.cache]
        found = self.ledger.load_many(wanted)
        for aggregate_id in wanted:
            self.keep(aggregate_id, found.get(aggregate_id))

    def add(self, aggregate: Any) -> Any:
        self.keep(aggregate.id, aggregate)
        self.changed[aggregate.id] = aggregate
        return aggregate

    def forget_transient(self) -> None:
        """Drop this batch's claims, payments and absences from the cache (the batch is done)."""
        for aggregate_id in self.transient:
            self.cache.discard(aggregate_id)

    def keep(self, aggregate_id: UUID, aggregate: Any | None) -> None:
        """Put an aggregate (None: known to be absent) in the cache for this batch."""
        self.cache.put(aggregate_id, aggregate)
        if isinstance(aggregate, self.TRANSIENT):
            self.transient.add(aggregate_id)

    def changing(self, aggregate: Any) -> Any:
        self.changed[aggregate.id] = aggregate
        return aggregate
