"""Claim bundles: one claim's history with everything needed to check it offline.

A bundle (protobuf `claims.v1.ClaimBundle`, stored as its canonical JSON mapping) holds the signed
checkpoint (with its witnesses' cosignatures) and, for every event of the claim and of its
payments, the stored bytes, the chain hashes, its leaf index and an inclusion proof into the
checkpoint's tree; and (format 2) the stream map's proof of each of those streams' head and of the
first payment stream that does not exist, so that it shows no event was left out. `verify_bundle`
needs no database and no service: only the bundle, the ledger's public (verifier) key and, to
require cosignatures, the witnesses' keys. It checks the signature and cosignatures, each event's
hash and inclusion, each stream's own chain, and that each stream is there up to its head
(docs/LEDGER.md, "Claim bundles"); which streams make up a claim, and whether its recorded
decision replays, are the claims' business (``claims_service.adjudication.bundles`` passes them in).

Imports: the standard library, psycopg, protobuf and the generated ``claims.v1`` messages (the
bundle's format), and this package.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from google.protobuf import json_format

from claims.v1 import common_pb2, ledger_pb2
from claims_service.ledger import merkle, streammap, tree
from claims_service.ledger.chain import GENESIS, row_hash
from claims_service.ledger.checkpointer import Checkpointer, latest_checkpoint
from claims_service.ledger.cosignature import CosignerKey, verify_cosignatures
from claims_service.ledger.note import CheckpointError, parse_and_verify, parse_checkpoint_body, split_note
from claims_service.ledger.verify import verify_streams

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
INCLUSION_ONLY_FORMAT = 1  # the first format: inclusion proofs, no proof that nothing is left out

Replay = Callable[[ledger_pb2.ClaimBundle], tuple[str, list[str]]]
"""A bundle whose proofs verified -> (what replaying its decision showed, failures)."""


@dataclass(frozen=True)
class Completeness:
    """Which streams a complete bundle holds, as the claims define it (the ledger knows no claims):
    the `required` streams, which must exist, and a dense `family` — family(0), family(1), … of
    which the first k exist and family(k) does not (a claim's payments: their ids are numbered).
    Each stream comes with a label for messages."""

    required: Sequence[tuple[uuid.UUID, str]]
    family: Callable[[int], tuple[uuid.UUID, str]] | None = None
    limit: int = 100_000


def _proof_pb(proof: streammap.MapProof) -> ledger_pb2.StreamHeadProof:
    message = ledger_pb2.StreamHeadProof(stream_id=str(proof.stream), siblings=proof.siblings)
    if proof.found is not None:
        message.version, message.head_hash = proof.found.version, proof.found.event_hash
    if proof.other is not None:
        message.other_stream_id = str(proof.other.stream)
        message.other_version, message.other_head_hash = proof.other.version, proof.other.event_hash
    return message


def _proof_of(message: ledger_pb2.StreamHeadProof) -> streammap.MapProof:
    stream = uuid.UUID(message.stream_id)
    found = streammap.Leaf(stream, message.version, bytes(message.head_hash)) if message.version else None
    other = (streammap.Leaf(uuid.UUID(message.other_stream_id), message.other_version, bytes(message.other_head_hash))
             if message.other_stream_id else None)
    return streammap.MapProof(stream, found, other, [bytes(h) for h in message.siblings])


def export_bundle(database_url: str, claim_stream: uuid.UUID, completeness: Completeness,
                  checkpointer: Checkpointer) -> ledger_pb2.ClaimBundle:
    """Every event of the claim's streams (`completeness`) as of a signed checkpoint that covers them
    all (the latest; one is signed now if it does not), each with its inclusion proof, and the
    stream map's proof of each stream's head and of the first missing member of the family."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        streams = [stream for stream, _ in completeness.required]
        if completeness.family is not None:
            for n in range(completeness.limit):
                stream, _ = completeness.family(n)
                if conn.execute("SELECT 1 FROM ledger_events WHERE originator_id = %s LIMIT 1", (stream,)).fetchone() is None:
                    break
                streams.append(stream)
        # No bundle of events the ledger did not hash: each must still hash and link (DATA_LOSS).
        verify_streams(database_url, streams)
        row = conn.execute("SELECT max(notification_id) FROM ledger_events WHERE originator_id = ANY(%s)",
                           (streams,)).fetchone()
        last_position = row[0] if row else None
        if last_position is None:
            raise CheckpointError(f"stream {claim_stream} has no events")
        latest = latest_checkpoint(conn)
        last_leaf = tree.leaf_index_of(conn, last_position)
    if latest is None or last_leaf is None or latest.tree_size <= last_leaf or not _has_map(latest.note):
        latest = checkpointer.checkpoint_now()
    with psycopg.connect(database_url, autocommit=True) as conn:
        map_root = _map_root(latest.note)
        proofs: list[ledger_pb2.StreamHeadProof] = []
        present: list[uuid.UUID] = []
        if map_root is None:
            log.warning("checkpoint of %d leaves commits to no stream map: the bundle of %s cannot prove it is"
                        " complete until a newer checkpoint is signed", latest.tree_size, claim_stream)
            present = streams
        else:
            for stream, _ in completeness.required:
                proof = streammap.prove(conn, map_root, stream)
                proofs.append(_proof_pb(proof))
                present.append(stream)
            for n in range(completeness.limit if completeness.family is not None else 0):
                stream, _ = completeness.family(n)  # type: ignore[misc]
                proof = streammap.prove(conn, map_root, stream)
                proofs.append(_proof_pb(proof))
                if proof.found is None:
                    break
                present.append(stream)
        last = tree.leaf_at(conn, latest.tree_size - 1)
        assert last is not None  # the checkpoint's tree is built
        rows = conn.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state, prev_hash, stream_prev_hash, hash"
            " FROM ledger_events WHERE originator_id = ANY(%s) AND notification_id <= %s ORDER BY notification_id",
            (present, last.position),
        ).fetchall()
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
        stream_heads=proofs,
    )


def _map_root(note: str) -> bytes | None:
    body, _ = split_note(note)
    return streammap.root_from_extensions(parse_checkpoint_body(body)[3])


def _has_map(note: str) -> bool:
    return _map_root(note) is not None


def bundle_to_json(bundle: ledger_pb2.ClaimBundle) -> str:
    return json_format.MessageToJson(bundle, preserving_proto_field_name=True, indent=2) + "\n"


def bundle_from_json(text: str) -> ledger_pb2.ClaimBundle:
    return json_format.Parse(text, ledger_pb2.ClaimBundle())


@dataclass
class BundleReport:
    claim_id: str
    events: int = 0
    tree_size: int = 0
    format_version: int = 0
    replay: str = "not checked"
    complete: str = "not checked"
    streams: int = 0
    cosigned_by: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_bundle(bundle: ledger_pb2.ClaimBundle, verifier_key: str | Sequence[str], *, replay: Replay | None = None,
                  completeness: Completeness | None = None, witnesses: Sequence[str | CosignerKey] = (),
                  min_witnesses: int | None = None, inclusion_only: bool = False) -> BundleReport:
    """Check a bundle offline; every failure is named (event position, stream, what failed).

    A format 2 bundle must prove it holds every event of the streams `completeness` names (default:
    the claim's own stream) as of its checkpoint; a format 1 bundle cannot, and fails unless
    `inclusion_only`. With `witnesses` (their cosigner keys), the checkpoint must carry valid
    cosignatures from `min_witnesses` of them (default: all). With `replay`, a bundle whose proofs
    hold also has its decision replayed."""
    report = BundleReport(claim_id=bundle.claim_id, events=len(bundle.events), format_version=bundle.format_version)
    if bundle.format_version not in (FORMAT_VERSION, INCLUSION_ONLY_FORMAT):
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
    _check_witnesses(bundle.checkpoint.note, witnesses, min_witnesses, report)
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
        if event.stream_version > expected_version:
            left_out = (f"version {expected_version}" if event.stream_version == expected_version + 1
                        else f"versions {expected_version}-{event.stream_version - 1}")
            report.failures.append(f"{where}: stream {event.stream_id}: {left_out} left out (the bundle goes on at"
                                   f" version {event.stream_version})")
        elif event.stream_version != expected_version or bytes(event.stream_prev_hash) != expected_link:
            report.failures.append(f"{where}: stream {event.stream_id} chain broken at version {event.stream_version}")
        streams[event.stream_id] = (event.stream_version, bytes(event.hash))
    if bundle.claim_id not in seen_streams:
        report.failures.append("the claim's own events are missing")
    if inclusion_only:
        report.complete = (f"NOT CHECKED: format {bundle.format_version} bundle checked for inclusion only"
                           " (--inclusion-only): events may have been left out")
    elif bundle.format_version == INCLUSION_ONLY_FORMAT:
        report.failures.append("bundle format 1 proves inclusion only, not that the bundle holds every event of the"
                               " claim (events may have been left out); check it with --inclusion-only to accept that")
    else:
        if completeness is None:
            completeness = Completeness([(uuid.UUID(bundle.claim_id), "the claim")])
        _check_complete(bundle, checkpoint.extensions, completeness, streams, report)
    if not report.failures and replay is not None:
        report.replay, failures = replay(bundle)
        report.failures += failures
    return report


def _check_witnesses(note: str, witnesses: Sequence[str | CosignerKey], min_witnesses: int | None,
                     report: BundleReport) -> None:
    if not witnesses:
        if min_witnesses:
            report.failures.append(f"{min_witnesses} witness cosignature(s) required but no witness key given")
        return
    keys = [k if isinstance(k, CosignerKey) else CosignerKey.parse(k) for k in witnesses]
    need = len(keys) if min_witnesses is None else min_witnesses
    try:
        cosignatures = verify_cosignatures(note, keys)
    except CheckpointError as error:
        report.failures.append(f"checkpoint: {error}")
        return
    report.cosigned_by = [f"{c.witness} at {datetime.fromtimestamp(c.timestamp, UTC):%Y-%m-%dT%H:%M:%SZ}"
                          for c in cosignatures]
    if len(cosignatures) < need:
        have = ", ".join(c.witness for c in cosignatures) or "none"
        report.failures.append(f"checkpoint: {len(cosignatures)} valid cosignature(s) by the {len(keys)} witness key(s)"
                               f" given ({have}), {need} required")


def _check_complete(bundle: ledger_pb2.ClaimBundle, extensions: Sequence[str], completeness: Completeness,
                    streams: Mapping[str, tuple[int, bytes]], report: BundleReport) -> None:
    """Every stream the claim has, at the checkpoint, is in the bundle up to its head."""
    try:
        root = streammap.root_from_extensions(extensions)
    except merkle.ProofError as error:
        report.failures.append(f"completeness: {error}")
        return
    if root is None:
        report.failures.append(f"completeness: the checkpoint commits to no stream map (no '{streammap.EXTENSION}'"
                               " line), so nothing shows that no event is left out")
        return
    heads: dict[uuid.UUID, streammap.Head | None] = {}
    for message in bundle.stream_heads:
        try:
            proof = _proof_of(message)
        except ValueError:
            report.failures.append(f"completeness: stream map proof for {message.stream_id!r}: not a stream id")
            continue
        if proof.stream in heads:
            report.failures.append(f"completeness: two stream map proofs for stream {proof.stream}")
            continue
        try:
            heads[proof.stream] = streammap.verify(root, proof)
        except merkle.ProofError as error:
            report.failures.append(f"completeness: {error}")
    checked: set[str] = set()
    failures_before = len(report.failures)

    def check(stream: uuid.UUID, label: str, must_exist: bool) -> bool:
        """False when the stream does not exist at the checkpoint (or nothing shows whether it does)."""
        name = f"{label} (stream {stream})"
        if stream not in heads:
            report.failures.append(f"completeness: {name}: the bundle has no stream map proof of its head or of its"
                                   " absence, so it may have been left out")
            return False
        head = heads[stream]
        if head is None:
            if must_exist:
                report.failures.append(f"completeness: {name}: the checkpoint's stream map holds no such stream")
            elif str(stream) in streams:
                report.failures.append(f"completeness: {name}: the bundle holds events of a stream the checkpoint's"
                                       " stream map does not hold")
            return False
        checked.add(str(stream))
        version, head_hash = head
        held = streams.get(str(stream))
        if held is None:
            report.failures.append(f"completeness: {name}: the checkpoint holds {version} event(s) of it"
                                   f" (versions 1-{version}), the bundle none: the whole stream is left out")
        elif held[0] < version:
            missing = f"version {version}" if held[0] + 1 == version else f"versions {held[0] + 1}-{version}"
            report.failures.append(f"completeness: {name}: the checkpoint holds versions 1-{version}, the bundle ends"
                                   f" at version {held[0]}: {missing} left out")
        elif held[0] > version:
            report.failures.append(f"completeness: {name}: the bundle holds version {held[0]}, beyond the checkpoint's"
                                   f" head (version {version})")
        elif held[1] != head_hash:
            report.failures.append(f"completeness: {name}: the bundle's version {version} is not the one the"
                                   " checkpoint holds (another hash)")
        return True

    for stream, label in completeness.required:
        check(stream, label, True)
    if completeness.family is not None:
        for n in range(completeness.limit):
            stream, label = completeness.family(n)
            if not check(stream, label, False):
                break
    for stream_id in sorted(set(streams) - checked):
        report.failures.append(f"completeness: stream {stream_id}: events in the bundle, but the stream is not one"
                               " the bundle's stream map proofs account for")
    report.streams = len(checked)
    if len(report.failures) == failures_before:
        report.complete = (f"complete: every event of its {len(checked)} stream(s) as of the checkpoint"
                           " (stream map proofs)")


def load_bundle_file(path: str) -> ledger_pb2.ClaimBundle:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        json.loads(text)
        return bundle_from_json(text)
    except (ValueError, json_format.ParseError) as error:
        raise CheckpointError(f"{path} is not a claim bundle: {error}") from None
