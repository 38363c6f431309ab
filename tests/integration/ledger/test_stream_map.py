"""The stream map in PostgreSQL: the tree builder keeps it batch by batch (equal to the map built
from the events at every size), checkpoints commit to it, a ledger older than the map gets one, its
proofs verify, and a false map or damaged map tables are named."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from claims_service.ledger import streammap, tree
from claims_service.ledger.checkpointer import Checkpointer
from claims_service.ledger.note import parse_and_verify, sign_checkpoint
from claims_service.ledger.tree import TreeBuilder
from tests.integration.ledger.conftest import Counter, append_events, tamper
from tests.integration.ledger.test_checkpoints import KEY, ORIGIN, VKEY, verify_checkpoint


def heads_at(conn: psycopg.Connection, size: int) -> dict[uuid.UUID, tuple[int, bytes]]:
    rows = conn.execute("SELECT e.originator_id, e.originator_version, e.hash FROM ledger_events e"
                        " JOIN ledger_leaves l ON l.position = e.notification_id WHERE l.leaf_index < %s"
                        " ORDER BY e.notification_id", (size,)).fetchall()
    return streammap.heads_of(rows)


def checked_map(conn: psycopg.Connection, proofs: int | None = 0) -> tuple[bytes, dict[uuid.UUID, tuple[int, bytes]]]:
    """The stored map's root at the tree's size and the heads there, asserting that root is the map
    built from those heads and that the first `proofs` streams' proofs (every one's for None) open
    to their heads."""
    size = tree.tree_size(conn)
    root = streammap.root_at(conn, size)
    heads = heads_at(conn, size)
    assert root == streammap.build_root(heads), size
    for stream, head in list(heads.items())[:proofs]:
        assert streammap.verify(root, streammap.prove(conn, root, stream)) == head
    return root, heads


def record_statements(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every statement run through `psycopg.Connection.execute` from now on, in order."""
    statements: list[object] = []
    real_execute = psycopg.Connection.execute

    def execute(self, query, *args, **kwargs):  # noqa: ANN001, ANN202 - the method's own arguments
        statements.append(query)
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    return statements


def test_the_builder_keeps_the_map_of_every_batch(ledger, database_url):
    with TreeBuilder(database_url, map_every=1) as builder:
        for round_ in range(4):
            append_events(ledger, 3 + round_)
            builder.extend(7)  # batches that end inside a write, too
            builder.catch_up()
    with psycopg.connect(database_url) as conn:
        roots = conn.execute("SELECT tree_size, root FROM stream_map_roots ORDER BY tree_size").fetchall()
        assert len(roots) >= 6 and roots[-1][0] == tree.tree_size(conn)
        for size, root in roots:
            assert bytes(root) == streammap.build_root(heads_at(conn, size)), size
        size, root = roots[-1][0], bytes(roots[-1][1])
        heads = heads_at(conn, size)
        for stream, head in list(heads.items())[:10]:
            assert streammap.verify(root, streammap.prove(conn, root, stream)) == head
        for _ in range(10):
            assert streammap.verify(root, streammap.prove(conn, root, uuid.uuid4())) is None
        # An earlier root still opens: nothing was overwritten.
        early_size, early_root = roots[0][0], bytes(roots[0][1])
        stream = next(iter(heads_at(conn, early_size)))
        assert streammap.verify(early_root, streammap.prove(conn, early_root, stream)) == heads_at(conn, early_size)[stream]


def test_the_builder_maps_every_thousand_leaves_and_the_signer_the_rest(ledger, database_url):
    with TreeBuilder(database_url, map_every=30) as builder:
        for _ in range(5):
            append_events(ledger, 7)  # 14 events
            builder.catch_up()
        with psycopg.connect(database_url) as conn:
            sizes = [r[0] for r in conn.execute("SELECT tree_size FROM stream_map_roots ORDER BY tree_size")]
        assert sizes == [42]  # 14, 28: fewer than 30 unmapped; 42: mapped; 56, 70: not yet
        signed = Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()
        assert signed.tree_size == 70
        with psycopg.connect(database_url) as conn:
            assert [r[0] for r in conn.execute("SELECT tree_size FROM stream_map_roots ORDER BY tree_size")] == [42, 70]
            assert streammap.root_at(conn, 70) == streammap.build_root(heads_at(conn, 70))


def test_the_signer_beside_the_builder_maps_with_the_builders_cache(ledger, database_url, monkeypatch):
    """The signer in the tree process brings the map to the size it signs with the builder's map:
    the paths are in its cache, so nothing is read from the table; a signing that fails empties
    that cache (what it made was not stored), and the builder goes on from the table."""
    from claims_service.ledger import checkpointer as checkpointer_module

    reads = record_statements(monkeypatch)
    signer = Checkpointer(database_url, KEY, origin=ORIGIN)
    with TreeBuilder(database_url, map_every=30) as builder:
        for _ in range(4):
            append_events(ledger, 7)
            builder.catch_up()  # mapped at 42; 56 is not
        with psycopg.connect(database_url, autocommit=True) as conn:
            signed = signer.sign(conn, stream_map=builder.stream_map)
            assert signed.tree_size == 56 and streammap.root_at(conn, 56) == streammap.build_root(heads_at(conn, 56))
        assert not any(str(q).startswith(streammap._SELECT_NODES) for q in reads)
        append_events(ledger, 6)
        builder.catch_up()  # 68: fewer than 30 unmapped since 56
        reads.clear()
        monkeypatch.setattr(checkpointer_module, "sign_checkpoint", lambda *args: (_ for _ in ()).throw(OSError("no key")))
        with psycopg.connect(database_url, autocommit=True) as conn, pytest.raises(OSError):
            signer.sign(conn, stream_map=builder.stream_map)  # the map brought to 68, then rolled back
        assert not any(str(q).startswith(streammap._SELECT_NODES) for q in reads)
        assert len(builder.stream_map._cache) == 0
        monkeypatch.undo()
        append_events(ledger, 20)
        builder.catch_up()
        with psycopg.connect(database_url) as conn:
            size = tree.tree_size(conn)
            assert streammap.mapped_size(conn) == size
            assert streammap.root_at(conn, 68) is None  # the failed signing's map was not stored
            assert streammap.root_at(conn, size) == streammap.build_root(heads_at(conn, size))


def test_checkpoints_commit_to_the_map_and_a_ledger_older_than_the_map_gets_one(ledger, database_url):
    append_events(ledger, 6)
    with TreeBuilder(database_url) as builder:
        builder.catch_up()
    # As if the tree was built before migration 0018: no map at all.
    tamper(database_url, "DELETE FROM stream_map_roots", "DELETE FROM stream_map_nodes")
    signed = Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()
    checkpoint = parse_and_verify(signed.note, VKEY)
    with psycopg.connect(database_url) as conn:
        expected = streammap.build_root(heads_at(conn, checkpoint.size))
    assert checkpoint.extensions == (streammap.extension_line(expected),)
    append_events(ledger, 2)  # and the next one goes on from the map made for the first
    later = parse_and_verify(Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now().note, VKEY)
    with psycopg.connect(database_url) as conn:
        assert later.extensions == (streammap.extension_line(streammap.build_root(heads_at(conn, later.size))),)
        assert [r[0] for r in conn.execute("SELECT tree_size FROM stream_map_roots ORDER BY tree_size")] == [
            checkpoint.size, later.size]


def test_a_false_map_is_named_by_verify_checkpoint(ledger, database_url, monkeypatch, capsys, tmp_path):
    append_events(ledger, 5)
    signed = Checkpointer(database_url, KEY, origin=ORIGIN).checkpoint_now()
    honest = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, _write(tmp_path / "honest", signed.note))
    assert honest[0] == 0, honest[1]
    # The key signs a map that leaves one stream's last event out.
    with psycopg.connect(database_url) as conn:
        heads = heads_at(conn, signed.tree_size)
    stream = next(s for s, (version, _) in heads.items() if version > 1)
    heads[stream] = (heads[stream][0] - 1, b"\x00" * 32)
    false = sign_checkpoint(KEY, ORIGIN, ORIGIN, signed.tree_size, signed.root_hash,
                            [streammap.extension_line(streammap.build_root(heads))])
    code, out = verify_checkpoint(database_url, monkeypatch, capsys, tmp_path, _write(tmp_path / "false", false))
    assert code == 1 and "the log signed a false map" in out


def test_damaged_map_tables_stop_the_tree_naming_the_map(ledger, database_url):
    append_events(ledger, 4)
    with TreeBuilder(database_url, map_every=1) as builder:
        builder.catch_up()
    tamper(database_url, "DELETE FROM stream_map_nodes")
    append_events(ledger, 1)
    with TreeBuilder(database_url, map_every=1) as builder, pytest.raises(tree.TreeError, match="stream map node .* is not stored"):
        builder.catch_up()


def _write(path, text: str):
    path.write_text(text)
    return path


def test_a_map_stored_by_hash_alone_is_moved_by_migration_0023_and_still_proves_and_grows(blank_database_url, tmp_path):
    """A ledger whose map was kept before 0023 (rows by hash only): after the migration its roots
    still open, and the builder goes on from them, writing its nodes at their update's tree size."""
    import shutil

    from claims_service.application import LedgerApplication
    from claims_service.migrate import MIGRATIONS_DIR, migrate

    before = tmp_path / "migrations"
    before.mkdir()
    # The schema before 0023, and the function today's writers append with (0024, and 0027's).
    earlier = [p for p in sorted(MIGRATIONS_DIR.glob("*.sql"))
               if p.name < "0023" or p.name in ("0024_ledger_append.sql", "0027_claim_requests.sql")]
    for path in earlier:
        shutil.copy(path, before)
    migrate(blank_database_url, before)
    ledger = LedgerApplication(blank_database_url, pool_size=2)
    try:
        append_events(ledger, 30)
        with TreeBuilder(blank_database_url, map_every=0) as builder:  # the tree, no map: written below
            builder.catch_up()
        with psycopg.connect(blank_database_url) as conn:
            old_size = tree.tree_size(conn)
            memory = streammap.MemoryMap()
            old_root = memory.update(heads_at(conn, old_size))
            for h, node in memory.nodes.items():
                leaf = isinstance(node, streammap.Leaf)
                conn.execute("INSERT INTO stream_map_nodes (hash, left_hash, right_hash, stream_id, version, event_hash)"
                             " VALUES (%s, %s, %s, %s, %s, %s)",
                             (h, None if leaf else node[0], None if leaf else node[1], node.stream if leaf else None,
                              node.version if leaf else None, node.event_hash if leaf else None))
            conn.execute("INSERT INTO stream_map_roots (tree_size, root) VALUES (%s, %s)", (old_size, old_root))
        assert migrate(blank_database_url) == [p.name for p in sorted(MIGRATIONS_DIR.glob("*.sql")) if p not in earlier]

        with psycopg.connect(blank_database_url) as conn:
            assert conn.execute("SELECT DISTINCT made_at FROM stream_map_nodes").fetchall() == [(0,)]
            heads = heads_at(conn, old_size)
            for stream, head in list(heads.items())[:5]:
                assert streammap.verify(old_root, streammap.prove(conn, old_root, stream)) == head
        append_events(ledger, 12)
        with TreeBuilder(blank_database_url, map_every=1) as builder:
            builder.catch_up()
        with psycopg.connect(blank_database_url) as conn:
            new_size = tree.tree_size(conn)
            new_root = streammap.root_at(conn, new_size)
            new_heads = heads_at(conn, new_size)
            assert new_root == streammap.build_root(new_heads)
            assert conn.execute("SELECT root_at FROM stream_map_roots WHERE tree_size = %s", (new_size,)).fetchone() == (new_size,)
            made = conn.execute("SELECT made_at, count(*) FROM stream_map_nodes GROUP BY 1 ORDER BY 1").fetchall()
            assert [m for m, _ in made] == [0, new_size]  # the new nodes are the update's, together
            # Old and new streams prove under the new root (paths through old rows and new ones), and
            # a stream that never was proves absent.
            for stream in [*list(heads)[:5], *[s for s in new_heads if s not in heads][:5]]:
                assert streammap.verify(new_root, streammap.prove(conn, new_root, stream)) == new_heads[stream]
            assert streammap.verify(new_root, streammap.prove(conn, new_root, uuid.uuid4())) is None
            assert streammap.verify(old_root, streammap.prove(conn, old_root, next(iter(heads)))) == heads[next(iter(heads))]
    finally:
        ledger.close()


def test_the_map_goes_on_after_its_cache_is_emptied(ledger, database_url):
    """A builder whose cache of nodes fills up empties it and still finds every node it descends
    through: where each child of the nodes it kept is stored is kept with them."""
    with TreeBuilder(database_url, map_every=1) as builder:
        builder._map = streammap.StreamMap(cache_limit=8)  # emptied at nearly every update
        for round_ in range(5):
            append_events(ledger, 6 + round_)
            builder.catch_up()
            with psycopg.connect(database_url) as conn:
                checked_map(conn, proofs=3)


def test_the_builders_cache_holds_the_current_map_and_no_replaced_node(ledger, database_url):
    """An update lets go of the nodes it replaced (a moved head's old leaf and the nodes above it),
    and keeps a leaf it only moved down: what the cache holds is exactly the current map, so its
    room goes to the nodes the next updates descend through."""
    counters: list[Counter] = []
    with TreeBuilder(database_url, map_every=1) as builder:
        for round_ in range(5):
            for counter in counters[::2]:  # heads that move
                counter.bump(by=1)
            fresh = [Counter(name=f"r{round_}-{i}") for i in range(5 + round_)]  # new streams
            ledger.record(*counters[::2], *fresh)
            counters += fresh
            builder.catch_up()
            with psycopg.connect(database_url) as conn:
                root, _ = checked_map(conn)
            cached = builder._map._cache.nodes
            held, level = set(), [root]
            while level:
                held.update(level)
                level = [child for h in level if not isinstance(cached[h], streammap.Leaf)
                         for child in cached[h] if child != streammap.EMPTY]
            assert set(cached) == held, round_


def test_a_map_that_outgrows_the_cache_keeps_its_upper_levels(ledger, database_url):
    """Past its limit the cache keeps the levels nearest the root (with where their children are
    stored) and the updates go on from them, reading the rest from the table."""
    with TreeBuilder(database_url, map_every=1) as builder:
        builder._map = streammap.StreamMap(cache_limit=12)
        for round_ in range(4):
            append_events(ledger, 8 + round_)
            builder.catch_up()
            cached = builder._map._cache.nodes
            assert len(cached) <= 12
            with psycopg.connect(database_url) as conn:
                root, _ = checked_map(conn)
            assert root in cached  # the top is what every update descends through first


def test_a_builder_started_on_a_long_ledger_reads_the_maps_upper_levels_at_once(ledger, database_url, monkeypatch):
    """`warm` reads the latest map level by level: all of it when it fits the cache (the next
    update then reads no node), its upper levels when it does not."""
    with TreeBuilder(database_url, map_every=1) as builder:
        append_events(ledger, 40)
        builder.catch_up()
    with psycopg.connect(database_url, autocommit=True) as conn:
        size = tree.tree_size(conn)
        root = streammap.root_at(conn, size)
        memory = streammap.MemoryMap()
        assert memory.update(heads_at(conn, size)) == root
        whole = streammap.StreamMap()
        assert whole.warm(conn) == len(whole._cache.nodes) == len(memory.nodes)
        assert set(whole._cache.nodes) == set(memory.nodes)
        top = streammap.StreamMap(cache_limit=20)
        top.warm(conn)
        assert root in top._cache.nodes and 0 < len(top._cache.nodes) <= 15
        reads = record_statements(monkeypatch)
        append_events(ledger, 3)
        with conn.transaction():
            new_root = whole.catch_up(conn, tree.tree_size(conn))
        assert not any(str(q).startswith(streammap._SELECT_NODES) for q in reads)
        assert new_root == streammap.build_root(heads_at(conn, tree.tree_size(conn)))


def test_a_map_update_that_did_not_commit_leaves_nothing_to_build_on(ledger, database_url, monkeypatch):
    """The builder's transaction fails after the map was brought up to date in it: the nodes it
    made are not stored, and the next update does not take them for stored ones."""
    with TreeBuilder(database_url, map_every=1) as builder:
        append_events(ledger, 8)
        builder.catch_up()
        real = streammap.StreamMap.catch_up

        def fails_after(self, conn, tree_size):  # noqa: ANN001 - the method's own arguments
            real(self, conn, tree_size)
            raise psycopg.OperationalError("the connection was lost before the commit")

        append_events(ledger, 5)
        monkeypatch.setattr(streammap.StreamMap, "catch_up", fails_after)
        with pytest.raises(psycopg.OperationalError):
            builder.extend(3)  # three leaves, the map updated, nothing committed
        assert len(builder._map._cache) == 0  # what that update made was forgotten with it
        monkeypatch.setattr(streammap.StreamMap, "catch_up", real)
        builder.catch_up()
        append_events(ledger, 4)
        builder.catch_up()
    with psycopg.connect(database_url) as conn:
        checked_map(conn, proofs=None)


def test_a_live_builder_writes_the_map_in_paced_chunks_to_the_same_map(ledger, database_url, monkeypatch):
    """An update's new nodes are written `write_chunk` rows a statement, with a pause after each in
    proportion to how long it took (a live builder's writes leave room for the submissions); the
    map, its rows and its proofs are those of one statement."""
    pauses: list[float] = []
    monkeypatch.setattr(streammap.time, "sleep", pauses.append)
    with TreeBuilder(database_url, map_every=1) as builder:
        builder._map = streammap.StreamMap(write_chunk=5, write_pause=1.0)
        append_events(ledger, 30)
        statements = record_statements(monkeypatch)
        builder.catch_up()
        written = [q for q in statements if q in (streammap._INSERT_INNER, streammap._INSERT_LEAVES)]
        monkeypatch.undo()
        with psycopg.connect(database_url) as conn:
            _, heads = checked_map(conn, proofs=None)
            memory = streammap.MemoryMap()
            memory.update(heads)
            stored = {bytes(h) for (h,) in conn.execute("SELECT hash FROM stream_map_nodes").fetchall()}
            assert set(memory.nodes) <= stored
    assert len(written) >= len(memory.nodes) / 5 > 1  # a statement for each five rows
    assert len(pauses) == len(written) and all(p >= 0 for p in pauses)


def test_the_tree_process_paces_its_map_writes(database_url):
    """The builder that runs in the tree process (`run_forever`) paces its map's writes; one used to
    catch up in bulk (tests, the bench, a rebuild) does not."""
    with TreeBuilder(database_url) as builder:
        assert builder.stream_map.write_pause == 0
        stop = threading.Event()
        stop.set()
        builder.run_forever(stop)
        assert builder.stream_map.write_pause == tree.LIVE_MAP_WRITE_PAUSE > 0
