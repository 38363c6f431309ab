"""Group commit against a real PostgreSQL: batched writes are acknowledged after their commit,
each with its own receipt, and one conflicting or unsealable request fails alone."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from eventsourcing.domain import Aggregate, event

from claims_service.application import LedgerApplication
from claims_service.errors import ConflictError
from claims_service.group_commit import GroupCommitter
from claims_service.keys.store import MemberDataErasedError, destroy_key
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


class Note(Aggregate):
    """An aggregate of a member's stream: its events are sealed under the member's data key."""

    @event("Noted")
    def __init__(self, member_id: str, text: str) -> None:
        self.member_id = member_id
        self.text = text


def erased_member(ledger: LedgerApplication, database_url: str) -> str:
    """A member whose data key was made, then destroyed."""
    keys = ledger.mapper.sealer.keys
    key_id, _ = keys.key_of_member("M-ERASED")
    with psycopg.connect(database_url) as conn:
        destroy_key(conn, key_id)
    keys.forget(key_id)
    return "M-ERASED"


def test_a_request_maps_its_own_events_and_an_erased_members_write_fails_in_its_own_thread(committer, database_url):
    """`record` seals a request's events in the request's thread, before they are queued: a write
    for an erased member fails there, and nothing of it reaches the ledger."""
    ledger, group = committer
    member = erased_member(ledger, database_url)
    with pytest.raises(MemberDataErasedError):
        group.record(Note(member_id=member, text="after the erasure"))
    receipt = group.record(Note(member_id="M-LIVE", text="kept"))[0]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0] == 1
        assert conn.execute("SELECT notification_id FROM ledger_events").fetchone()[0] == receipt.position


def test_a_queued_write_that_cannot_be_sealed_fails_alone_and_its_batch_commits(committer, database_url):
    """A write queued unmapped (`submit`, from an event loop) is sealed by the writer, one write at
    a time: one for an erased member fails with its own error, the others queued with it commit."""
    ledger, group = committer
    member = erased_member(ledger, database_url)
    futures = [group.submit(Note(member_id=f"M-{i}", text="kept")) for i in range(3)]
    futures.insert(1, group.submit(Note(member_id=member, text="after the erasure")))
    futures += [group.submit(Note(member_id=f"M-{i}", text="kept too")) for i in range(3, 5)]
    with pytest.raises(MemberDataErasedError):
        futures[1].result(timeout=30)
    kept = [f.result(timeout=30)[0] for i, f in enumerate(futures) if i != 1]
    with psycopg.connect(database_url) as conn:
        stored = {row[0] for row in conn.execute("SELECT notification_id FROM ledger_events")}
    assert stored == {receipt.position for receipt in kept}


def test_a_lone_write_is_committed_in_its_own_thread_and_writes_queued_behind_a_commit_by_the_writer(committer, monkeypatch):
    """No commit in flight: the request commits its own write, in its own thread (no hand-off to
    another thread and back). Writes that queue while that commit is in flight are handed to the
    writer thread, which commits them together, and the first request returns meanwhile."""
    ledger, group = committer
    committed_in: list[tuple[str, int]] = []
    first_commit_started, release_first = threading.Event(), threading.Event()
    record_events = ledger.record_events

    def observed(events, **kwargs):
        committed_in.append((threading.current_thread().name, len(events)))
        if len(committed_in) == 2:  # the leader's commit below: hold it until the others queued
            first_commit_started.set()
            assert release_first.wait(30)
        return record_events(events, **kwargs)

    monkeypatch.setattr(ledger, "record_events", observed)
    group.record(Tally(name="alone"))
    assert committed_in == [(threading.current_thread().name, 1)]

    leader = threading.Thread(target=group.record, args=(Tally(name="leader"),), name="leader")
    leader.start()
    assert first_commit_started.wait(30)
    followers = [threading.Thread(target=group.record, args=(Tally(name=f"follower-{i}"),), name=f"follower-{i}")
                 for i in range(3)]
    for follower in followers:
        follower.start()
    deadline = time.monotonic() + 30
    while len(group._pending) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    release_first.set()
    leader.join(30)
    for follower in followers:
        follower.join(30)
    assert committed_in[1] == ("leader", 1)
    assert committed_in[2:] == [("group-commit", 3)]
    assert ledger.recorder.max_notification_id() == 3 + 2


def test_a_closed_committer_refuses_writes(committer):
    _ledger, group = committer
    group.close()
    with pytest.raises(RuntimeError, match="closed"):
        group.record(Tally(name="late"))
