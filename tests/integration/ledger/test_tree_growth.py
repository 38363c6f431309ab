"""Growing the tree to a size a caller asks for, within a deadline: built on the spot, waited for
while another builder holds the tree, OUT_OF_RANGE at once beyond the ledger's events,
DEADLINE_EXCEEDED past the deadline; checkpoints signed on demand the same way; the latest
checkpoint kept in memory for receipts."""

from __future__ import annotations

import time

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.ledger import tree
from claims_service.ledger.checkpointer import Checkpointer, latest_checkpoint
from claims_service.ledger.tree import TREE_LOCK_KEY, TreeBuilder, TreeLagError, TreeSizeError
from tests.integration.ledger.conftest import Counter, append_events


def events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]


def test_the_tree_is_built_up_to_a_size_the_ledger_holds(ledger, database_url):
    append_events(ledger, 10)  # 20 events, no tree yet
    with TreeBuilder(database_url) as builder:
        assert builder.grow_to(7, timeout=5) >= 7
        assert builder.grow_to(20, timeout=5) == 20
        assert builder.grow_to(3, timeout=0) == 20  # reached already: no waiting, no building
    with psycopg.connect(database_url) as conn:
        assert tree.tree_size(conn) == 20
        assert tree.events_for(conn, 20) == 20 and tree.events_for(conn, 25) == 20


@pytest.mark.parametrize("size", [21, 1_000, 2**63 - 1])
def test_a_size_beyond_the_ledgers_events_is_out_of_range_at_once(ledger, database_url, size):
    append_events(ledger, 10)
    with TreeBuilder(database_url) as builder:
        builder.grow_to(5, timeout=5)
        started = time.monotonic()
        with pytest.raises(TreeSizeError) as refused:
            builder.grow_to(size, timeout=30)
    assert time.monotonic() - started < 1.0
    assert refused.value.status == "OUT_OF_RANGE" and "holds 20 events" in str(refused.value)


def test_while_another_builder_holds_the_tree_it_is_waited_for_until_the_deadline(ledger, database_url):
    append_events(ledger, 5)
    with psycopg.connect(database_url, autocommit=True) as holder, TreeBuilder(database_url) as builder:
        holder.execute("SELECT pg_advisory_lock(%s)", (TREE_LOCK_KEY,))
        started = time.monotonic()
        with pytest.raises(TreeLagError) as late:
            builder.grow_to(10, timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 2.0
        assert late.value.status == "DEADLINE_EXCEEDED" and late.value.reached == 0 and late.value.wanted == 10
        holder.execute("SELECT pg_advisory_unlock(%s)", (TREE_LOCK_KEY,))
        assert builder.grow_to(10, timeout=5) == 10


def test_a_checkpoint_is_signed_on_demand_only_when_none_covers_the_size(ledger, database_url):
    append_events(ledger, 5)
    signer = Checkpointer(database_url, Ed25519PrivateKey.generate(), origin="claims.test/log")
    first = signer.checkpoint_covering(4, timeout=5)
    assert first.tree_size == 10  # signed as the tree stood once grown (it was built whole)
    assert signer.checkpoint_covering(10, timeout=5) == first  # covered: nothing new is signed
    append_events(ledger, 1)
    assert signer.checkpoint_covering(12, timeout=5).tree_size == 12
    with pytest.raises(TreeSizeError):
        signer.checkpoint_covering(13, timeout=5)
    with psycopg.connect(database_url) as conn:
        assert latest_checkpoint(conn).tree_size == 12


def test_an_old_receipt_names_the_checkpoint_that_covers_it_a_fresh_one_costs_no_read(ledger, database_url):
    append_events(ledger, 3)
    [old] = ledger.receipts(ledger.record(Counter(name="old"))).values()
    assert old.checkpoint is None
    reads = []
    load = ledger.checkpoints._load
    ledger.checkpoints._load = lambda: reads.append(1) or load()
    signer = Checkpointer(database_url, Ed25519PrivateKey.generate(), origin="claims.test/log")
    signed = signer.checkpoint_now()  # by another process, as far as the ledger knows: not offered
    [fresh] = ledger.receipts(ledger.record(Counter(name="fresh"))).values()
    assert fresh.checkpoint is None and reads == []  # a new write: never read for
    again = ledger.with_checkpoint(old)
    assert again.checkpoint == signed and again.checkpoint.tree_size > old.leaf_index and reads == [1]
    assert ledger.with_checkpoint(fresh).checkpoint is None  # not covered; read again only after max_age
    assert reads == [1]
    assert events(database_url) == signed.tree_size + 1
