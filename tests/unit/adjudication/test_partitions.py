"""Adjudicator partitions: a member's partition is stable and the same everywhere; a partition's
name round-trips through its tracking row; a partition starts where every member is surely done;
reconciliation asks the member's own partition how far it has gone."""

from __future__ import annotations

import hashlib

import pytest

from claims_service.adjudication.partitions import (
    Partition,
    done_for_every_member,
    member_partition,
    partitions,
    position_for_member,
    start_position,
)


def test_a_members_partition_is_a_stable_hash_of_its_id():
    # Pinned: changing the function would move members between partitions of a running ledger.
    assert member_partition("M-1001", 2) == int.from_bytes(hashlib.sha256(b"M-1001").digest()[:8], "big") % 2
    assert [member_partition(f"BM{n}", 4) for n in range(8)] == [member_partition(f"BM{n}", 4) for n in range(8)]
    assert member_partition("anyone", 1) == 0


def test_members_spread_over_the_partitions():
    counts = [0, 0, 0]
    for n in range(3_000):
        counts[member_partition(f"M-{n}", 3)] += 1
    assert all(900 < c < 1100 for c in counts), counts


def test_each_member_belongs_to_exactly_one_partition():
    for count in (1, 2, 5):
        for n in range(50):
            assert sum(p.owns(f"M-{n}") for p in partitions(count)) == 1


def test_names_round_trip_and_the_single_adjudicator_keeps_its_name():
    assert Partition().tracking_name == "adjudicator"
    assert Partition(1, 2).tracking_name == "adjudicator.1/2"
    for p in (Partition(), Partition(0, 2), Partition(3, 4)):
        assert Partition.parse(p.tracking_name) == p
    for other in ("projection.claim_status", "adjudicator.2/2", "adjudicator.x/2", "adjudicators", "adjudicator."):
        assert Partition.parse(other) is None
    with pytest.raises(ValueError):
        Partition(2, 2)


def test_a_partition_goes_on_from_its_own_position():
    assert start_position({}, Partition(0, 2)) == 0
    assert start_position({"adjudicator.0/2": 40, "adjudicator.1/2": 70}, Partition(1, 2)) == 70


def test_a_new_partition_starts_where_the_previous_set_had_done_every_member():
    # One adjudicator reached 100: both partitions of two start there.
    assert start_position({"adjudicator": 100}, Partition(1, 2)) == 100
    # Two partitions at 80 and 95, then one again: from 80 (partition 0 may not have passed 81..95).
    two = {"adjudicator.0/2": 80, "adjudicator.1/2": 95}
    assert start_position(two, Partition()) == 80
    # A stale row of the single adjudicator (30) does not send it back before the later set's 80.
    assert start_position({**two, "adjudicator": 30}, Partition()) == 80
    # A set with a partition that never recorded a position has done nothing for sure.
    assert start_position({"adjudicator.0/3": 500}, Partition(0, 2)) == 0


def test_reconciliation_asks_the_members_partition():
    positions = {"adjudicator.0/2": 10, "adjudicator.1/2": 90}
    member = next(f"M-{n}" for n in range(100) if member_partition(f"M-{n}", 2) == 1)
    assert position_for_member(positions, member) == 90
    assert done_for_every_member(positions) == 10
    assert position_for_member({}, member) == 0 and done_for_every_member({}) == 0
    assert position_for_member({"adjudicator": 42}, member) == 42


def test_claims_workers_picks_the_worker_processes_this_instance_runs():
    from claims_service.config import Config
    from claims_service.workers import select_roles

    assert [r.name for r in select_roles("all", 2)] == ["adjudicator.0/2", "adjudicator.1/2", "projections", "tree"]
    assert select_roles("none", 2) == []
    assert [r.name for r in select_roles("adjudicator", 2)] == ["adjudicator.0/2", "adjudicator.1/2"]
    assert [r.name for r in select_roles("adjudicator.1/2,tree", 2)] == ["adjudicator.1/2", "tree"]
    with pytest.raises(ValueError):
        select_roles("adjudicator.1/3", 2)  # a partition of another count
    assert Config(workers="projections, tree").workers == "projections,tree"
    with pytest.raises(ValueError):
        Config(workers="everything")
