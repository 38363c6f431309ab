"""`prefetching_payments`: a claim's first payments come from one read; the count past them, and
every other aggregate, from the plain load; the payments found are those the plain load finds."""

from __future__ import annotations

from uuid import UUID

import pytest

from claims_service.adjudication import effects
from claims_service.adjudication.settlement import PREFETCHED_PAYMENTS, claim_payments, prefetching_payments
from claims_service.domain.payment import Payment

CLAIM = "c-1"


def payment_ids(n: int) -> list[UUID]:
    return [Payment.create_id(effects.payment_id_for(CLAIM, i)) for i in range(n)]


class Store:
    """Aggregates by id (stand-ins: only their identity matters here), counting each kind of read."""

    def __init__(self, ids: list[UUID]) -> None:
        self.aggregates = {i: object() for i in ids}
        self.loads: list[UUID] = []
        self.many: list[list[UUID]] = []

    def load(self, aggregate_id: UUID) -> object | None:
        self.loads.append(aggregate_id)
        return self.aggregates.get(aggregate_id)

    def load_many(self, ids: list[UUID]) -> dict[UUID, object]:
        self.many.append(list(ids))
        return {i: self.aggregates[i] for i in ids if i in self.aggregates}


@pytest.mark.parametrize("payments", [0, 1, 2, PREFETCHED_PAYMENTS - 1])
def test_a_claims_payments_within_the_prefetch_take_one_read(payments):
    store = Store(payment_ids(payments))
    found = claim_payments(prefetching_payments(store.load, store.load_many, CLAIM), CLAIM)
    assert found == [store.aggregates[i] for i in payment_ids(payments)]
    assert store.many == [payment_ids(PREFETCHED_PAYMENTS)]
    assert store.loads == []


@pytest.mark.parametrize("payments", [PREFETCHED_PAYMENTS, PREFETCHED_PAYMENTS + 3])
def test_payments_past_the_prefetch_are_counted_up_with_the_plain_load(payments):
    store = Store(payment_ids(payments))
    found = claim_payments(prefetching_payments(store.load, store.load_many, CLAIM), CLAIM)
    assert found == [store.aggregates[i] for i in payment_ids(payments)]
    assert store.loads == payment_ids(payments + 1)[PREFETCHED_PAYMENTS:]  # the first missing one included


def test_other_aggregates_go_to_the_plain_load():
    other = UUID(int=7)
    store = Store([other])
    load = prefetching_payments(store.load, store.load_many, CLAIM)
    assert load(other) is store.aggregates[other]
    assert store.loads == [other]
