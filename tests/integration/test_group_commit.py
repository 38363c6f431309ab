"""Group commit against a real PostgreSQL: batched writes are acknowledged after their commit,
each with its own receipt, and one conflicting request fails alone."""

from __future__ import annotations

import threading

import psycopg
import pytest

from claims_service.application import LedgerApplication
from claims_service.errors import ConflictError
from claims_service.group_commit import GroupCommitter
from tests.integration.test_hash_chain import Tally


@pytest.fixture
def committer(database_url: str):
    ledger = LedgerApplication(database_url)
    committer = GroupCommitter(ledger)
    yield ledger, committer
    committer.close()
    ledger.close()


def test_concurrent_writes_share_commits_and_get_their_own_receipts(committer, database_url):
    ledger, group = committer
    receipts: dict[int, list] = {}

    def client(slot: int) -> None:
        for i in range(20):
            tally = Tally(name=f"{slot}-{i}")
            tally.bump(by=1)
            receipts[slot * 100 + i] = group.record(tally)

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(receipts) == 16 * 20
    with psycopg.connect(database_url) as conn:
        stored = {row[0]: (row[1], row[2]) for row in conn.execute("SELECT notification_id, hash, leaf_index FROM ledger_events")}
    assert len(stored) == 16 * 20 * 2
    for pair in receipts.values():
        assert len(pair) == 2 and pair[0].position < pair[1].position
        for receipt in pair:
            assert stored[receipt.position] == (receipt.event_hash, receipt.leaf_index)


def test_a_conflicting_write_fails_alone_and_the_rest_of_its_batch_commits(committer):
    ledger, group = committer
    shared = Tally(name="shared")
    group.record(shared)
    stale_a, stale_b = ledger.repository.get(shared.id), ledger.repository.get(shared.id)
    stale_a.bump(by=1)
    stale_b.bump(by=2)
    others = [Tally(name=f"other-{i}") for i in range(5)]
    outcomes: list[object] = []
    barrier = threading.Barrier(7)

    def write(aggregate) -> None:
        barrier.wait()
        try:
            outcomes.append(group.record(aggregate))
        except ConflictError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=write, args=(a,)) for a in (stale_a, stale_b, *others)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(o, ConflictError) for o in outcomes) == 1
    for other in others:
        assert ledger.repository.get(other.id).name == other.name
    assert ledger.repository.get(shared.id).count in (1, 2)
