"""The latest checkpoint kept in memory for receipts: a fresh write costs no read, an old receipt
is read for at most once per max_age, a newer checkpoint always wins, a failed read is no failure."""

from __future__ import annotations

from datetime import UTC, datetime

from claims_service.ledger.checkpointer import LatestCheckpoint, StoredCheckpoint


def checkpoint(size: int) -> StoredCheckpoint:
    return StoredCheckpoint(size, bytes(32), f"origin\n{size}\n", datetime(2026, 1, 1, tzinfo=UTC))


class Store:
    def __init__(self) -> None:
        self.latest: StoredCheckpoint | None = None
        self.reads = 0
        self.fail = False

    def load(self) -> StoredCheckpoint | None:
        self.reads += 1
        if self.fail:
            raise OSError("the database is gone")
        return self.latest


def test_a_fresh_write_is_only_looked_up_in_memory():
    store = Store()
    store.latest = checkpoint(10)
    cache = LatestCheckpoint(store.load)
    assert cache.covering(5) is None and store.reads == 0
    cache.offer(checkpoint(10))
    assert cache.covering(9) == checkpoint(10) and cache.covering(10) is None and store.reads == 0


def test_an_old_receipt_reads_the_store_at_most_once_per_max_age():
    store = Store()
    cache = LatestCheckpoint(store.load, max_age=60)
    assert cache.covering(3, refresh=True) is None and store.reads == 1
    store.latest = checkpoint(8)
    assert cache.covering(3, refresh=True) is None and store.reads == 1  # read a moment ago
    cache.max_age = 0
    assert cache.covering(3, refresh=True) == checkpoint(8) and store.reads == 2
    assert cache.covering(7) == checkpoint(8) and store.reads == 2  # covered: from memory


def test_only_a_larger_checkpoint_replaces_the_one_kept():
    cache = LatestCheckpoint(Store().load)
    cache.offer(checkpoint(20))
    cache.offer(checkpoint(5))
    cache.offer(None)
    assert cache.covering(19) == checkpoint(20)


def test_a_failed_read_leaves_the_receipt_without_a_checkpoint(caplog):
    store = Store()
    store.fail = True
    cache = LatestCheckpoint(store.load, max_age=0)
    assert cache.covering(1, refresh=True) is None
    assert "could not read the latest checkpoint" in caplog.text
