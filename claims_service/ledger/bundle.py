"""Claim bundles: one claim's history with everything needed to check it offline.

A bundle (protobuf `claims.v1.ClaimBundle`, stored as its canonical JSON mapping) holds the signed
checkpoint and, for every event of the claim and of its payments, the stored bytes, the chain
hashes, its leaf index and an inclusion proof into the checkpoint's tree. `verify_bundle` needs no
database and no service: only the bundle and the ledger's public (verifier) key. It checks the
signature, each event's hash and inclusion, and each stream's own chain (docs/LEDGER.md, "Claim
bundles"); which streams make up a claim, and whether its recorded decision replays, are the
claims' business (``claims_service.adjudication.bundles`` passes them in).

Imports: the standard library, psycopg, protobuf and the generated ``claims.v1`` messages (the
bundle's format), and this package.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg
from google.protobuf import json_format

from claims.v1 import common_pb2, ledger_pb2
from claims_service.ledger import merkle, tree
from claims_service.ledger.chain import GENESIS, row_hash
from claims_service.ledger.checkpointer import Checkpointer, latest_checkpoint
from claims_service.ledger.note import CheckpointError, parse_and_verify

FORMAT_VERSION = 1

Replay = Callable[[ledger_pb2.ClaimBundle], tuple[str, list[str]]]
"""A bundle whose proofs verified -> (what replaying its decision showed, failures)."""


def export_bundle(database_url: str, claim_stream: uuid.UUID, streams: Sequence[uuid.UUID],
                  checkpointer: Checkpointer) -> ledger_pb2.ClaimBundle:
    """The events of `streams` (the claim's own and those that belong to it), each with its
    inclusion proof into the latest signed checkpoint (one is signed now if none covers them)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state, prev_hash, stream_prev_hash, hash"
            " FROM ledger_events WHERE originator_id = ANY(%s) ORDER BY notification_id",
            (list(streams),),
        ).fetchall()
        last_position = rows[-1][0]
        latest = latest_checkpoint(conn)
        last_leaf = tree.leaf_index_of(conn, last_position)
    if latest is None or last_leaf is None or latest.tree_size <= last_leaf:
        latest = checkpointer.checkpoint_now()
    with psycopg.connect(database_url, autocommit=True) as conn:
        events = []
        for position, stream, version, topic, state, prev_hash, stream_prev, digest in rows:
            leaf = tree.leaf_index_of(conn, position)
            events.append(ledger_pb2.BundleEvent(
                position=position, stream_id=str(stream), stream_version=version, topic=topic, state=bytes(state),
                prev_hash=bytes(prev_hash), stream_prev_hash=bytes(stream_prev), hash=bytes(digest),
                leaf_index=leaf, inclusion_proof=tree.inclusion_proof(conn, leaf, latest.tree_size),
            ))
    return ledger_pb2.ClaimBundle(
        format_version=FORMAT_VERSION,
        claim_id=str(claim_stream),
        checkpoint=common_pb2.SignedCheckpoint(note=latest.note, tree_size=latest.tree_size, root_hash=latest.root_hash),
        events=events,
    )


def bundle_to_json(bundle: ledger_pb2.ClaimBundle) -> str:
    return json_format.MessageToJson(bundle, preserving_proto_field_name=True, indent=2) + "\n"


def bundle_from_json(text: str) -> ledger_pb2.ClaimBundle:
    return json_format.Parse(text, ledger_pb2.ClaimBundle())


@dataclass
class BundleReport:
    claim_id: str
    events: int = 0
    tree_size: int = 0
    replay: str = "not checked"
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_bundle(bundle: ledger_pb2.ClaimBundle, verifier_key: str, *, replay: Replay | None = None) -> BundleReport:
    """Check a bundle offline; every failure is named (event position and what failed). With
    `replay`, a bundle whose proofs hold also has its decision replayed."""
    report = BundleReport(claim_id=bundle.claim_id, events=len(bundle.events))
    if bundle.format_version != FORMAT_VERSION:
        report.failures.append(f"unknown bundle format version {bundle.format_version}")
        return report
    try:
        checkpoint = parse_and_verify(bundle.checkpoint.note, verifier_key)
    except (CheckpointError, ValueError) as error:
        report.failures.append(f"checkpoint: {error}")
        return report
    report.tree_size = checkpoint.size
    if (bundle.checkpoint.tree_size, bytes(bundle.checkpoint.root_hash)) != (checkpoint.size, checkpoint.root_hash):
        report.failures.append("checkpoint: tree_size/root_hash fields differ from the signed note")
    streams: dict[str, tuple[int, bytes]] = {}
    seen_streams = {event.stream_id for event in bundle.events}
    for event in bundle.events:
        where = f"event at position {event.position}"
        try:
            stream = uuid.UUID(event.stream_id)
        except ValueError:
            report.failures.append(f"{where}: stream id is not a UUID")
            continue
        recomputed = row_hash(bytes(event.prev_hash), event.position, stream, event.stream_version, event.topic, bytes(event.state))
        if recomputed != bytes(event.hash):
            report.failures.append(f"{where}: its bytes do not hash to its hash (payload, topic or link altered)")
            continue
        try:
            included = merkle.verify_inclusion(merkle.leaf_hash(bytes(event.hash)), event.leaf_index, checkpoint.size,
                                               [bytes(p) for p in event.inclusion_proof], checkpoint.root_hash)
        except merkle.ProofError as error:
            included, detail = False, str(error)
        else:
            detail = "the proof does not lead to the signed root"
        if not included:
            report.failures.append(f"{where}: not included in the signed tree ({detail})")
        previous = streams.get(event.stream_id)
        expected_version, expected_link = (previous[0] + 1, previous[1]) if previous else (1, GENESIS)
        if event.stream_version != expected_version or bytes(event.stream_prev_hash) != expected_link:
            report.failures.append(f"{where}: stream {event.stream_id} chain broken at version {event.stream_version}")
        streams[event.stream_id] = (event.stream_version, bytes(event.hash))
    if bundle.claim_id not in seen_streams:
        report.failures.append("the claim's own events are missing")
    if not report.failures and replay is not None:
        report.replay, failures = replay(bundle)
        report.failures += failures
    return report


def load_bundle_file(path: str) -> ledger_pb2.ClaimBundle:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        json.loads(text)
        return bundle_from_json(text)
    except (ValueError, json_format.ParseError) as error:
        raise CheckpointError(f"{path} is not a claim bundle: {error}") from None
