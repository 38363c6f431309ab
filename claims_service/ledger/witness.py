"""A witness (C2SP tlog-witness): it cosigns a log's checkpoints, but only consistent extensions of
the last one it cosigned, so that a log cannot show two histories (a split view) to two parties
who each check a witness's cosignature.

This module is the protocol, with no HTTP in it: `Witness.add_checkpoint(request body)` answers
with the status, content type and body the spec prescribes (`claims_service.witness.server` puts
it on HTTP; `claimsctl witness serve`). The request is

    old <size the client thinks the witness is at>\\n
    <zero to 63 consistency proof hashes, base64, one a line>\\n
    \\n
    <the signed checkpoint note>

and the answers, checked in this order: 400 (malformed request, or old size beyond the
checkpoint's), 404 (unknown origin), 403 (no valid signature by the log's key), 409 with the
witness's size (`text/x.tlog.size`: old size is not the size the witness last cosigned), 422 (a
size-0 checkpoint whose root is not the empty tree's, a proof where none belongs, a consistency
proof that does not verify, or the same size with another root), else 200 with the cosignature
line(s), the new state persisted before the answer.

State: one file, the last checkpoint cosigned per origin (the note with the log's verified
signature and this witness's cosignature), replaced atomically (temporary file, fsync, rename,
fsync of the directory) under an exclusive file lock, so checking the old size and recording the
new checkpoint are one step even across processes.

Evidence: a refused checkpoint whose signature verified is misbehaviour by the log (or its key).
The witness writes both signed notes, the proof offered and why it refused to
`<state dir>/evidence/`, and logs an error. Two notes signed by the log's key with one tree size
and two roots prove a split view to anyone with the log's public key (`check_evidence`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.errors import ClaimsError
from claims_service.ledger import merkle, statefile
from claims_service.ledger.cosignature import CosignerKey, cosign, verify_cosignatures
from claims_service.ledger.note import (
    CheckpointError,
    SignatureError,
    VerifierKey,
    decode_base64,
    parse_checkpoint_body,
    split_note,
    verify_note,
)

log = logging.getLogger(__name__)

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 * 1024
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT = "text/plain; charset=utf-8"
STATE_FORMAT = 1

_SIZE = re.compile(r"^(0|[1-9][0-9]*)$")


class WitnessError(ClaimsError):
    """The witness's own files are missing or not what they should be."""

    status: ClassVar[str] = "FAILED_PRECONDITION"


class RequestError(ValueError):
    """A malformed add-checkpoint request (400)."""


# --- the request --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: list[bytes]
    note: str


def add_checkpoint_request(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The add-checkpoint request body."""
    if old_size < 0:
        raise ValueError("the old size is not negative")
    if len(proof) > MAX_PROOF_LINES:
        raise ValueError(f"a consistency proof has at most {MAX_PROOF_LINES} hashes")
    lines = [f"old {old_size}"] + [base64.b64encode(bytes(h)).decode("ascii") for h in proof]
    return ("".join(line + "\n" for line in lines) + "\n" + note).encode("utf-8")


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("the request is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise RequestError("no empty line between the old size and proof lines and the checkpoint")
    lines = head.split("\n")
    first = lines[0]
    if not first.startswith("old ") or not _SIZE.match(first[4:]):
        raise RequestError("the first line is 'old <size>', the size in decimal without leading zeros")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise RequestError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            digest = decode_base64(line, "a consistency proof line")
        except CheckpointError as error:
            raise RequestError(str(error)) from None
        if len(digest) != merkle.HASH_SIZE:
            raise RequestError("a consistency proof line is one 32-byte hash")
        proof.append(digest)
    return AddCheckpoint(int(first[4:]), proof, note)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, content type and body."""

    status: int
    body: str
    content_type: str = TEXT


# --- the witness's state -----------------------------------------------------------------------


class WitnessState:
    """The last checkpoint cosigned per origin, in one JSON file: {"format": 1, "logs": {origin: note}}."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @contextmanager
    def locked(self) -> Iterator[dict[str, str]]:
        """Hold the state's file lock; yield the notes by origin (save() them before leaving)."""
        with statefile.locked(self.path):
            yield self.read()

    def read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as error:
            raise WitnessError(f"the witness state {self.path.name} is not JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or not isinstance(data.get("logs"), dict):
            raise WitnessError(f"the witness state {self.path.name} is not a format {STATE_FORMAT} state file")
        return {str(k): str(v) for k, v in data["logs"].items()}

    def save(self, logs: Mapping[str, str]) -> None:
        """Replace the file durably (temporary file, fsync, rename, fsync of the directory)."""
        text = json.dumps({"format": STATE_FORMAT, "logs": dict(sorted(logs.items()))}, indent=2) + "\n"
        statefile.write_durably(self.path, text)


def origin_hash(origin: str) -> str:
    """How the monitoring URL names a log: SHA-256 of its origin, lower-case hex."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


# --- the witness ------------------------------------------------------------------------------


@dataclass
class Witness:
    """Cosigns consistent extensions of the logs it knows (`logs`: origin -> the log's verifier keys)."""

    key: Ed25519PrivateKey
    name: str
    logs: Mapping[str, Sequence[VerifierKey]]
    state: WitnessState
    evidence_dir: Path
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.cosigner = CosignerKey.of(self.key, self.name)
        for origin, note in self.state.read().items():  # a state file this key did not write is refused
            try:
                if not verify_cosignatures(note, [self.cosigner]):
                    raise CheckpointError(f"no cosignature by {self.cosigner.label}")
                parse_checkpoint_body(split_note(note)[0])
            except (CheckpointError, ValueError) as error:
                raise WitnessError(f"the witness state holds a checkpoint for {origin!r} this witness did not"
                                   f" cosign: {error}") from None

    @property
    def verifier_key(self) -> str:
        return str(self.cosigner)

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            request = parse_add_checkpoint(body)
            note_body, _ = split_note(request.note)
            origin, size, root, _ext = parse_checkpoint_body(note_body)
        except (RequestError, CheckpointError) as error:
            return Answer(400, f"malformed request: {error}\n")
        keys = self.logs.get(origin)
        if not keys:
            return Answer(404, f"unknown log origin {origin!r}\n")
        try:
            _, signed_by = verify_note(request.note, keys)
        except SignatureError as error:
            return Answer(403, f"{error}\n")
        if request.old_size > size:
            return Answer(400, f"old size {request.old_size} is beyond the checkpoint's size {size}\n")
        with self._lock, self.state.locked() as logs:
            previous = logs.get(origin)
            prev_size, prev_root = _size_root(previous) if previous else (0, merkle.EMPTY_ROOT)
            if request.old_size != prev_size:
                return Answer(409, f"{prev_size}\n", SIZE_CONTENT_TYPE)
            refusal = _inconsistency(request, size, root, prev_size, prev_root)
            if refusal is not None:
                if previous is not None:
                    self._evidence(origin, refusal, previous, request)
                return Answer(422, f"{refusal}\n")
            timestamp = int(self.clock())
            line = cosign(self.key, self.name, note_body, timestamp)
            logs[origin] = note_body + "\n" + "".join(_lines_of(request.note, keys)) + line
            self.state.save(logs)
        log.info("cosigned %s at %d leaves (signed by %s)", origin, size, ", ".join(signed_by))
        return Answer(200, line)

    def latest(self, hashed_origin: str) -> Answer:
        """GET <monitoring prefix>/<origin hash>/checkpoint: the last checkpoint cosigned for that log."""
        for origin, note in self.state.read().items():
            if origin_hash(origin) == hashed_origin:
                return Answer(200, note)
        return Answer(404, "this witness has cosigned no checkpoint of that log\n")

    def _evidence(self, origin: str, reason: str, cosigned: str, request: AddCheckpoint) -> Path:
        """Keep what the log sent next to what it sent before: evidence anyone can check."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        _, size, _, _ = parse_checkpoint_body(split_note(request.note)[0])
        record = {
            "kind": "claims-ledger witness refusal",
            "format": 1,
            "origin": origin,
            "reason": reason,
            "witness": self.verifier_key,
            "received_at": now.isoformat(),
            "cosigned_note": cosigned,
            "submitted_note": request.note,
            "old_size": request.old_size,
            "proof": [base64.b64encode(h).decode("ascii") for h in request.proof],
        }
        self.evidence_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.evidence_dir / f"{now:%Y%m%dT%H%M%S%fZ}-{origin_hash(origin)[:12]}-{size}.json"
        statefile.write_durably(path, json.dumps(record, indent=2) + "\n", mode=0o644)
        log.error("witness REFUSED a checkpoint of %s at %d leaves: %s; evidence (both signed notes) in %s",
                  origin, size, reason, path)
        return path


def _size_root(note: str) -> tuple[int, bytes]:
    _, size, root, _ = parse_checkpoint_body(split_note(note)[0])
    return size, root


def _lines_of(note: str, keys: Sequence[VerifierKey]) -> list[str]:
    """The note's signature lines by the log's keys (the ones the witness verified)."""
    wanted = {(k.name, k.key_id) for k in keys}
    _, signatures = split_note(note)
    block = note[note.rfind("\n\n") + 2:].split("\n")[:-1]
    return [line + "\n" for line, sig in zip(block, signatures) if (sig.name, sig.key_id) in wanted]


def _inconsistency(request: AddCheckpoint, size: int, root: bytes, prev_size: int, prev_root: bytes) -> str | None:
    """Why the checkpoint is not a consistent extension of the one cosigned before, or None."""
    if size == 0 and root != merkle.EMPTY_ROOT:
        return "a checkpoint of size 0 must have the empty tree's root"
    if request.old_size == 0:
        if request.proof:
            return "a consistency proof from size 0 is empty"
        return None
    if size == prev_size:
        if root != prev_root:
            return (f"split view: the log signed two different roots for tree size {size}"
                    " (the one cosigned before and this one)")
        return None
    try:
        merkle.verify_consistency(prev_size, size, prev_root, root, request.proof)
    except merkle.ProofError as error:
        return (f"the checkpoint of {size} leaves is not shown to extend the one of {prev_size} leaves cosigned"
                f" before ({error})")
    return None


# --- evidence ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    proven: bool  # the log's key signed two inconsistent checkpoints, shown by the evidence alone
    summary: str


def check_evidence(record: Mapping[str, object], log_keys: Sequence[VerifierKey]) -> Verdict:
    """What an evidence file proves, checked with the log's public key(s) only.

    Both notes must carry a valid signature by the log. Same size, different roots: a split view,
    proven. Different sizes: the consistency proof offered is checked again; when it fails, the
    log signed a larger tree it did not show to extend the smaller one, and the log's own
    GetConsistencyProof between the two sizes settles it (there is none if the log forked)."""
    try:
        first = str(record["cosigned_note"])
        second = str(record["submitted_note"])
        proof = [base64.b64decode(str(h), validate=True) for h in record.get("proof", [])]  # type: ignore[union-attr]
    except (KeyError, TypeError, ValueError) as error:
        return Verdict(False, f"not a witness evidence file: {error}")
    try:
        verify_note(first, log_keys)
        verify_note(second, log_keys)
        origin1, size1, root1, _ = parse_checkpoint_body(split_note(first)[0])
        origin2, size2, root2, _ = parse_checkpoint_body(split_note(second)[0])
    except CheckpointError as error:
        return Verdict(False, f"the notes are not both signed by the log's key: {error}")
    if origin1 != origin2:
        return Verdict(False, f"the notes are of two logs ({origin1!r}, {origin2!r})")
    if size1 == size2:
        if root1 != root2:
            return Verdict(True, f"split view PROVEN: the log {origin1} signed two different roots for tree size"
                                 f" {size1} ({base64.b64encode(root1).decode()} and {base64.b64encode(root2).decode()})")
        return Verdict(False, f"both notes have size {size1} and the same root: no inconsistency")
    small, large = sorted([(size1, root1), (size2, root2)])
    try:
        merkle.verify_consistency(small[0], large[0], small[1], large[1], proof)
    except merkle.ProofError as error:
        return Verdict(False, f"the log signed {small[0]} and {large[0]} leaves and the proof offered does not link"
                              f" them ({error}); ask the log for a consistency proof from {small[0]} to {large[0]}:"
                              " if none verifies, its history forked")
    return Verdict(False, "the proof in the evidence links the two checkpoints: no inconsistency")
