"""Fixtures for the Merkle tree and checkpoint tests: a ledger application over the fresh database."""

from __future__ import annotations

import psycopg
import pytest
from eventsourcing.domain import Aggregate, event

from claims_service.application import LedgerApplication


class Counter(Aggregate):
    """A minimal aggregate: the tree is generic, so its tests need no domain rules."""

    @event("Started")
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @event("Bumped")
    def bump(self, by: int) -> None:
        self.count += by


@pytest.fixture
def ledger(database_url: str):
    app = LedgerApplication(database_url, pool_size=2)
    yield app
    app.close()


def append_events(ledger: LedgerApplication, aggregates: int, *, per_write: int = 5) -> None:
    """Record `aggregates` counters with two events each, `per_write` counters per transaction."""
    batch = []
    for i in range(aggregates):
        counter = Counter(name=f"c{i}")
        counter.bump(by=i)
        batch.append(counter)
        if len(batch) == per_write:
            ledger.record(*batch)
            batch = []
    if batch:
        ledger.record(*batch)


def event_hashes(database_url: str) -> list[tuple[int, bytes]]:
    with psycopg.connect(database_url) as conn:
        return [(p, bytes(h)) for p, h in conn.execute("SELECT notification_id, hash FROM ledger_events ORDER BY notification_id")]


def tamper(database_url: str, *statements: str) -> None:
    """Run SQL as a superuser with triggers and constraints' triggers switched off: the attacker."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            for statement in statements:
                conn.execute(statement)
