"""Merkle tree figures for `make bench`: append cost per event, and proof times on a large tree.

`measure(database_url)` wants a database of its own (it migrates it and fills the tree tables):

1. inserts `real_events` events into ledger_events (hash-linked by the trigger, as in production)
   and times `TreeBuilder.extend` over them, in large and in small batches (leaves, subtrees and
   the stream map: each bench event is a new stream, the map's worst case);
1b. times signing checkpoints, alone and with one witness's cosignature (a real HTTP witness, in a
   thread of this process), `checkpoints` of each, 50 new events before each;
2. grows the tree to `leaves` leaves with SYNTHETIC leaves written straight into ledger_leaves
   and merkle_nodes by the same append code (`tree.append_leaves`) but without events behind them
   (inserting a million real events would dominate the run and tells nothing more about proofs);
3. times roots, inclusion proofs and consistency proofs at random sizes up to `leaves`, each one
   read from PostgreSQL in one statement, and checks a sample of them with the verifier.

Run alone: `python -m bench.tree [LEAVES]` (an embedded PostgreSQL in a
temporary directory unless CLAIMS_DATABASE_URL names a server; a scratch database either way).
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable

import psycopg

from claims_service.ledger import merkle, tree
from claims_service.ledger.chain import WRITERS_LOCK_KEY
from claims_service.ledger.tree import TreeBuilder


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.50) * 1e3, 3), "p99_ms": round(pick(0.99) * 1e3, 3),
            "max_ms": round(ordered[-1] * 1e3, 3), "mean_ms": round(statistics.fmean(ordered) * 1e3, 3)}


def insert_events(conn: psycopg.Connection, count: int, batch: int = 2000) -> None:
    state = b'{"bench":true,"padding":"' + b"x" * 200 + b'"}'
    done = 0
    while done < count:
        n = min(batch, count - done)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITERS_LOCK_KEY,))
            conn.execute(
                "INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
                " SELECT gen_random_uuid(), 1, 'bench:Event', %s FROM generate_series(1, %s)",
                (state, n),
            )
        done += n


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _checkpoint_latency(database_url: str, conn: psycopg.Connection, builder: TreeBuilder, rounds: int,
                        per_round: int = 50) -> dict[str, object]:
    """Checkpoints signed alone and signed then cosigned by one witness over HTTP, alternately."""
    import tempfile
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from claims_service.ledger.checkpointer import Checkpointer
    from claims_service.ledger.note import VerifierKey
    from claims_service.ledger.witnessing import WitnessEndpoint
    from claims_service.witness.directory import init_witness, load_witness
    from claims_service.witness.server import WitnessServer

    key, origin = Ed25519PrivateKey.generate(), "bench.local/ledger"
    alone: list[float] = []
    witnessed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="claims-bench-witness-") as tmp:
        cosigner = init_witness(Path(tmp) / "witness", "bench.local/witness", {origin: [VerifierKey.of(key, origin)]})
        server = WitnessServer(load_witness(Path(tmp) / "witness"), "127.0.0.1:0").start()
        try:
            state = Path(tmp) / "signer.last-checkpoint"  # the signer's own memory, fsync'ed, as in production
            plain = Checkpointer(database_url, key, origin=origin, state_file=state)
            cosigned = Checkpointer(database_url, key, origin=origin, state_file=state,
                                    witnesses=[WitnessEndpoint(server.url, cosigner)])
            for i in range(2 * rounds):
                insert_events(conn, per_round)
                builder.extend(10_000)
                signer, samples = (plain, alone) if i % 2 else (cosigned, witnessed)
                samples.append(_timed(lambda: signer.sign(conn)))  # noqa: B023 - called at once
            cosigned.witnessing.close()
            stored = conn.execute("SELECT count(*) FROM ledger_cosignatures").fetchone()[0]
        finally:
            server.stop()
    return {
        "checkpoints": rounds,
        "signed": _percentiles(alone),
        "signed_and_cosigned": _percentiles(witnessed),
        "cosignatures_stored": stored,
        "note": "sign = tree root, consistency check, the signer's state file (fsync), INSERT; cosigned adds one"
                " witness over HTTP on localhost (keep-alive; a consistency proof from its last size, its state"
                " file fsync'ed) and the INSERT of its cosignature",
    }


def measure(database_url: str, leaves: int = 1_000_000, *, real_events: int = 20_000, samples: int = 2000,
            checkpoints: int = 20, seed: int = 9162, progress: Callable[[str], None] | None = None) -> dict[str, object]:
    from claims_service.migrate import migrate

    say = progress or (lambda _msg: None)
    migrate(database_url)
    rng = random.Random(seed)
    results: dict[str, object] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        if tree.tree_size(conn) or conn.execute("SELECT 1 FROM ledger_events LIMIT 1").fetchone():
            raise RuntimeError("bench.tree.measure needs an empty ledger (a database of its own)")

        # 1. Append cost over real, hash-linked events.
        say(f"inserting {real_events:,} hash-linked events")
        insert_events(conn, real_events)
        half = real_events // 2
        # The service's map cadence (`tree.MAP_EVERY`), or more often on a run too small to reach it.
        with TreeBuilder(database_url, map_every=min(tree.MAP_EVERY, max(1, real_events // 4))) as builder:
            say("extending the tree in batches of 10,000 and of 100")
            large = _timed(lambda: [builder.extend(10_000) for _ in range(max(1, half // 10_000))])
            large_n = tree.tree_size(conn)
            small = _timed(lambda: [builder.extend(100) for _ in range((real_events - large_n) // 100)])
            small_n = tree.tree_size(conn) - large_n
            conn.execute("ANALYZE stream_map_nodes")
            map_bytes = conn.execute("SELECT pg_total_relation_size('stream_map_nodes')"
                                     " + pg_total_relation_size('stream_map_roots')").fetchone()[0]
            map_rows = conn.execute("SELECT count(*) FROM stream_map_nodes").fetchone()[0]
            results["append"] = {
                "events": real_events,
                "us_per_event_batch_10000": round(large / large_n * 1e6, 1),
                "us_per_event_batch_100": round(small / small_n * 1e6, 1) if small_n else None,
                "stream_map_rows_per_event": round(map_rows / tree.tree_size(conn), 2),
                "stream_map_bytes_per_event": round(map_bytes / tree.tree_size(conn), 1),
                "note": "TreeBuilder.extend over events in ledger_events: read, link check, leaf and node hashing,"
                        " COPY of leaves and nodes, the stream map's new leaves and paths (every event a new"
                        " stream here: the map's worst case), commit",
            }
            say(f"signing {checkpoints} checkpoints alone and {checkpoints} cosigned by a witness")
            results["checkpoint"] = _checkpoint_latency(database_url, conn, builder, checkpoints)

        # 2. Synthetic leaves up to `leaves`.
        size = real = tree.tree_size(conn)
        position = conn.execute("SELECT max(position) FROM ledger_leaves").fetchone()[0] or 0
        say(f"growing the tree to {leaves:,} leaves with synthetic leaves")
        started = time.perf_counter()
        frontier = None
        chunk = 100_000
        while size < leaves:
            n = min(chunk, leaves - size)
            batch = [(position + i + 1, hashlib.sha256((size + i).to_bytes(8, "big")).digest()) for i in range(n)]
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (tree.TREE_LOCK_KEY,))
                frontier = tree.append_leaves(conn, size, batch, frontier)
            size += n
            position += n
        synthetic = size - real
        elapsed = time.perf_counter() - started
        conn.execute("ANALYZE ledger_leaves")
        conn.execute("ANALYZE merkle_nodes")
        storage = conn.execute(
            "SELECT pg_total_relation_size('ledger_leaves'), pg_total_relation_size('merkle_nodes')").fetchone()
        results["tree"] = {
            "leaves": size,
            "synthetic_leaves": synthetic,
            "synthetic_us_per_leaf": round(elapsed / synthetic * 1e6, 1) if synthetic > 0 else None,
            "bytes_per_leaf": round((storage[0] + storage[1]) / size, 1),
            "real_leaves": real,
            "note": f"leaves {real:,}..{size - 1:,} are synthetic: written directly into ledger_leaves and"
                    " merkle_nodes (no events behind them) to reach the size quickly",
        }

        # 3. Proof and root times, one statement each.
        say(f"timing {samples:,} roots, inclusion and consistency proofs")
        for _ in range(50):  # warm the connection, prepared statements and caches
            tree.inclusion_proof(conn, rng.randrange(size), size)
        inclusion, consistency, roots = [], [], []
        checked = 0
        for i in range(samples):
            n = rng.randint(size // 2, size)
            index = rng.randrange(n)
            old = rng.randint(1, n)
            t0 = time.perf_counter()
            proof = tree.inclusion_proof(conn, index, n)
            t1 = time.perf_counter()
            cproof = tree.consistency_proof(conn, old, n)
            t2 = time.perf_counter()
            root = tree.root_at(conn, n)
            t3 = time.perf_counter()
            inclusion.append(t1 - t0)
            consistency.append(t2 - t1)
            roots.append(t3 - t2)
            if i % 20 == 0:
                leaf = tree.leaf_at(conn, index)
                assert leaf is not None
                merkle.verify_inclusion(merkle.leaf_hash(leaf.event_hash), index, n, proof, root)
                merkle.verify_consistency(old, n, tree.root_at(conn, old), root, cproof)
                checked += 1
        results["proofs"] = {
            "tree_leaves": size,
            "samples": samples,
            "verified_samples": checked,
            "inclusion": _percentiles(inclusion),
            "consistency": _percentiles(consistency),
            "root": _percentiles(roots),
            "note": "random tree sizes in [n/2, n]; one round trip each on a local unix socket,"
                    " including Python hashing of the folds",
        }
    return results


def main(argv: list[str] | None = None) -> int:
    import os
    import tempfile
    import uuid
    from contextlib import ExitStack
    from pathlib import Path

    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    args = sys.argv[1:] if argv is None else argv
    leaves = int(args[0]) if args else 1_000_000
    with ExitStack() as stack:
        admin = os.environ.get("CLAIMS_DATABASE_URL")
        if not admin:
            from claims_service.database import embedded_server, server_url

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="claims-bench-tree-")))
            admin = server_url(stack.enter_context(embedded_server(tmp, delete_on_exit=True)), "postgres")
        name = f"bench_tree_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            results = measure(make_conninfo(admin, dbname=name), leaves,
                              progress=lambda msg: print(msg, file=sys.stderr))
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
