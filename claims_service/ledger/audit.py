"""Checking the live ledger against a checkpoint someone kept (`claimsctl verify-checkpoint`): the
signature, every event's chain, the leaves, the stored tree and a consistency proof, in one snapshot."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import psycopg

from claims_service.ledger import merkle, streammap, tree
from claims_service.ledger.chain import ChainVerifier, LedgerRow
from claims_service.ledger.note import Checkpoint, CheckpointError, VerifierKey, parse_and_verify


@dataclass
class LedgerAudit:
    """What `verify_against_checkpoint` found. `problems` is empty when everything holds."""

    checkpoint: Checkpoint | None = None
    events: int = 0
    leaves: int = 0
    tree_root: bytes | None = None
    root_at_checkpoint: bytes | None = None
    chain_intact: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.checkpoint is not None

    def as_dict(self) -> dict[str, object]:
        cp = self.checkpoint
        return {
            "ok": self.ok,
            "checkpoint": None if cp is None else {
                "origin": cp.origin, "tree_size": cp.size,
                "root_hash": base64.b64encode(cp.root_hash).decode(), "signed_by": list(cp.signed_by),
            },
            "ledger": {
                "events": self.events, "leaves": self.leaves, "chain_intact": self.chain_intact,
                "root_hash": base64.b64encode(self.tree_root).decode() if self.tree_root else None,
                "root_at_checkpoint_size": base64.b64encode(self.root_at_checkpoint).decode()
                if self.root_at_checkpoint else None,
            },
            "problems": list(self.problems),
            "seconds": round(self.seconds, 3),
        }


def _stream(conn: psycopg.Connection, name: str, query: str, batch: int = 20_000) -> Iterator[tuple]:
    with conn.cursor(name=name, binary=True) as cur:
        cur.itersize = batch
        cur.execute(query)
        yield from cur


def verify_against_checkpoint(database_url: str, note_text: str | bytes,
                              verifier_keys: str | VerifierKey | Iterable[str | VerifierKey]) -> LedgerAudit:
    """Check the live ledger against a checkpoint someone kept. In one snapshot:

    1. the note's signature, by a trusted key;
    2. the hash chain of every event (a changed row that kept its old hash shows here);
    3. the leaves: gapless, each naming an existing event with that event's hash, in order;
    4. the tree recomputed from the leaves equals the stored tree, every subtree of it, and the
       checkpoint's stream map root (if it has one) equals the map of its events' stream heads;
    5. a consistency proof (from the stored tree) from the checkpoint's size to the live size
       verifies against the checkpoint's root and the recomputed root: a ledger rewritten after
       the checkpoint, even with every hash recomputed, fails here; a cut-off one has fewer leaves.
    """
    started = time.perf_counter()
    audit = LedgerAudit()
    try:
        cp = parse_and_verify(note_text, verifier_keys)
    except CheckpointError as error:
        audit.problems.append(f"checkpoint rejected: {error}")
        return audit
    audit.checkpoint = cp
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            _walk(conn, cp, audit)
            if not audit.problems or all(p.startswith("chain:") for p in audit.problems):
                _check_tree(conn, cp, audit)
    audit.seconds = time.perf_counter() - started
    return audit


def _walk(conn: psycopg.Connection, cp: Checkpoint, audit: LedgerAudit) -> None:
    """Stream the events and the leaves side by side, both in position order."""
    events = _stream(conn, "audit_events",
                     "SELECT notification_id, originator_id, originator_version, topic, state,"
                     " prev_hash, stream_prev_hash, hash FROM ledger_events ORDER BY notification_id")
    leaves = _stream(conn, "audit_leaves",
                     "SELECT leaf_index, position, event_hash FROM ledger_leaves ORDER BY position")
    # Every stored subtree, in the order the recomputation completes them (by its last leaf, then level).
    nodes = _stream(conn, "audit_nodes",
                    "SELECT level, idx, hash FROM merkle_nodes ORDER BY ((idx + 1) << level), level")
    chain = ChainVerifier()
    chain_ok = True
    frontier = merkle.Frontier()
    try:
        map_root = streammap.root_from_extensions(cp.extensions)
    except merkle.ProofError as error:
        audit.problems.append(f"the checkpoint's stream map line: {error}")
        map_root = None
    heads: dict | None = {} if map_root is not None else None  # each stream's head up to the checkpoint
    leaf = next(leaves, None)
    untreed_from: int | None = None  # the first event without a leaf: where the tree lags behind
    for rec in events:
        row = LedgerRow(rec[0], rec[1], rec[2], rec[3], bytes(rec[4]), bytes(rec[5]), bytes(rec[6]), bytes(rec[7]))
        audit.events += 1
        if chain_ok and not chain.feed(row):
            chain_ok = False  # reported; the leaves are still checked
            audit.problems.append(f"chain: {chain.report.problem}")
        if leaf is not None and leaf[1] < row.position:
            audit.problems.append(f"leaf {leaf[0]} names position {leaf[1]}, which is not in the ledger:"
                                  " an event was deleted")
            return
        if leaf is None or leaf[1] != row.position:
            if untreed_from is None:
                untreed_from = row.position
            continue
        index, event_hash = leaf[0], bytes(leaf[2])
        if untreed_from is not None:
            audit.problems.append(f"the event at position {untreed_from} is missing from the tree,"
                                  " but later events are in it")
            return
        if index != frontier.size:
            audit.problems.append(f"leaf indexes jump from {frontier.size - 1} to {index} at position {row.position}")
            return
        if event_hash != row.hash:
            audit.problems.append(f"leaf {index} holds another hash than the event at position {row.position}:"
                                  " the event or the leaf was changed")
            return
        for (level, idx), digest in frontier.append(merkle.leaf_hash(event_hash))[1:]:
            stored = next(nodes, None)
            if stored is None or (stored[0], stored[1]) != (level, idx) or bytes(stored[2]) != digest:
                audit.problems.append(f"the stored subtree ({level}, {idx}) is missing or differs from the one"
                                      " recomputed from the leaves: the tree tables were altered")
                return
        if heads is not None and frontier.size <= cp.size:
            heads[row.stream_id] = (row.version, row.hash)
        if frontier.size == cp.size:
            audit.root_at_checkpoint = frontier.root()
            # Over the very events the checkpoint signed (a rewrite of them is named below), the map
            # it signed must be theirs.
            if heads is not None and audit.root_at_checkpoint == cp.root_hash and streammap.build_root(heads) != map_root:
                audit.problems.append(f"the checkpoint's stream map root is not the map of the stream heads of its"
                                      f" {cp.size} events: the log signed a false map (bundles proved against it"
                                      " could leave events out)")
        leaf = next(leaves, None)
    if leaf is not None:
        audit.problems.append(f"leaf {leaf[0]} names position {leaf[1]}, which is not in the ledger:"
                              " events were cut off the end")
        return
    extra = next(nodes, None)
    if extra is not None:
        audit.problems.append(f"the stored tree holds subtree ({extra[0]}, {extra[1]}) beyond its leaves:"
                              " the tree tables were altered")
        return
    chain.finish()
    audit.chain_intact = chain_ok
    audit.leaves = frontier.size
    audit.tree_root = frontier.root()
    if cp.size == 0:
        audit.root_at_checkpoint = merkle.EMPTY_ROOT


def _check_tree(conn: psycopg.Connection, cp: Checkpoint, audit: LedgerAudit) -> None:
    size = audit.leaves
    if size < cp.size:
        audit.problems.append(f"the ledger's tree has {size} leaves but the checkpoint covers {cp.size}:"
                              " events were cut off the end (or the tree has not been rebuilt)")
        return
    try:
        stored_root = tree.root_at(conn, size)
        proof = tree.consistency_proof(conn, cp.size, size)
    except tree.TreeError as error:
        audit.problems.append(f"the stored tree is incomplete: {error}")
        return
    if stored_root != audit.tree_root:
        audit.problems.append("the stored tree's root differs from the root recomputed from the leaves:"
                              " the tree tables were altered")
    try:
        merkle.verify_consistency(cp.size, size, cp.root_hash, audit.tree_root or merkle.EMPTY_ROOT, proof)
    except merkle.ProofError as error:
        if audit.root_at_checkpoint is not None and audit.root_at_checkpoint != cp.root_hash:
            audit.problems.append(f"the first {cp.size} events no longer hash to the checkpoint's root:"
                                  f" the ledger was rewritten after the checkpoint was signed ({error})")
        else:
            audit.problems.append(f"the consistency proof from the checkpoint fails: {error}")
