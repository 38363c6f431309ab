"""Signed notes and checkpoints: the format, pure (no database, no files, no clock).

Formats (docs/LEDGER.md, "Merkle tree and checkpoints"): the C2SP signed note
(c2sp.org/signed-note) whose text is a C2SP transparency-log checkpoint (c2sp.org/tlog-checkpoint):

    <origin>\\n<tree size, decimal>\\n<root hash, base64>\\n
    \\n
    — <key name> <base64(key id || Ed25519 signature of the text)>\\n

key id = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]; a verifier key is written
`<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`. Standard tools (Go's
golang.org/x/mod/sumdb/note, transparency-dev/formats/log) read both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from claims_service.errors import ClaimsError
from claims_service.ledger import merkle

ED25519 = 0x01  # the signed-note signature type byte
EM_DASH = "\u2014"
DEFAULT_ORIGIN = "claims-ledger.local/ledger"
MAX_SIGNATURES = 100

_NAME = re.compile(r"^[^\s+]+$")
_SIZE = re.compile(r"^(0|[1-9][0-9]*)$")


class CheckpointError(ClaimsError):
    """A note or key is malformed, or a signature does not verify; the message says which."""

    status: ClassVar[str] = "INVALID_ARGUMENT"


class SignatureError(CheckpointError):
    """The note is well formed but not validly signed by a trusted key."""

    status: ClassVar[str] = "PERMISSION_DENIED"


# --- keys --------------------------------------------------------------------------------------------


def decode_base64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointError(f"{what} is not standard base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def check_key_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CheckpointError(f"key name {name!r} must be non-empty, with no spaces and no '+'")
    return name


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: bytes | Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]."""
    raw = public_key if isinstance(public_key, bytes) else public_key_bytes(public_key)
    return hashlib.sha256(check_key_name(name).encode("utf-8") + b"\n" + bytes([ED25519]) + raw).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: bytes  # 32 bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """`<name>+<8 hex digits key id>+<base64(0x01 || 32-byte public key)>`."""
        parts = text.strip().split("+", 2)  # the base64 key itself may contain '+'
        if len(parts) != 3:
            raise CheckpointError("a verifier key is <name>+<key id hex>+<base64 key>")
        name, hex_id, encoded = parts
        check_key_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise CheckpointError("a verifier key's id is 8 lower-case hex digits")
        data = decode_base64(encoded, "the verifier key")
        if len(data) != 33 or data[0] != ED25519:
            raise CheckpointError("the verifier key is not an Ed25519 key (0x01 followed by 32 bytes)")
        key = cls(name, bytes.fromhex(hex_id), data[1:])
        if key_id(name, key.public_key) != key.key_id:
            raise CheckpointError(f"the verifier key's id {hex_id} does not match its name and public key")
        return key

    @classmethod
    def of(cls, key: Ed25519PrivateKey | Ed25519PublicKey, name: str) -> VerifierKey:
        raw = public_key_bytes(key)
        return cls(name, key_id(name, raw), raw)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ED25519]) + self.public_key).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def verifier_key(key: Ed25519PrivateKey | Ed25519PublicKey, name: str) -> str:
    """The public verifier key string to publish (API, README, receipts)."""
    return str(VerifierKey.of(key, name))


# --- notes --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    note: str
    extensions: tuple[str, ...] = ()
    signed_by: tuple[str, ...] = ()  # the trusted keys whose signatures verified, as name+id

    @property
    def body(self) -> str:
        return checkpoint_body(self.origin, self.size, self.root_hash, self.extensions)


def checkpoint_body(origin: str, size: int, root_hash: bytes, extensions: Sequence[str] = ()) -> str:
    if not origin or "\n" in origin:
        raise CheckpointError("the origin must be one non-empty line")
    if size < 0:
        raise CheckpointError("a tree size is not negative")
    if len(root_hash) != merkle.HASH_SIZE:
        raise CheckpointError("a root hash is 32 bytes")
    for line in extensions:
        if not line or "\n" in line:
            raise CheckpointError("extension lines are non-empty single lines")
    lines = [origin, str(size), base64.b64encode(root_hash).decode("ascii"), *extensions]
    return "".join(line + "\n" for line in lines)


def _signature_line(body: str, key: Ed25519PrivateKey, name: str) -> str:
    signature = key.sign(body.encode("utf-8"))
    return f"{EM_DASH} {name} {base64.b64encode(key_id(name, key) + signature).decode('ascii')}\n"


def sign_note(body: str, key: Ed25519PrivateKey, name: str) -> str:
    _check_text(body)
    if not body.endswith("\n"):
        raise CheckpointError("a note's text ends with a newline")
    return body + "\n" + _signature_line(body, key, name)


def add_signature(note: str, key: Ed25519PrivateKey, name: str) -> str:
    """Cosign: append another key's signature line (for example the new key during a rotation)."""
    body, _ = split_note(note)
    return note + _signature_line(body, key, name)


def sign_checkpoint(key: Ed25519PrivateKey, name: str, origin: str, size: int, root: bytes,
                    extensions: Sequence[str] = ()) -> str:
    """The signed note of a checkpoint (origin, tree size, root hash, extension lines)."""
    return sign_note(checkpoint_body(origin, size, root, extensions), key, name)


def _check_text(text: str) -> None:
    for ch in text:
        if ch < " " and ch != "\n":
            raise CheckpointError(f"malformed note: control character {ch!r}")


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


def split_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """The note's text and its signature lines (not yet verified)."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError("malformed note: not UTF-8") from None
    _check_text(note)
    if not note.endswith("\n"):
        raise CheckpointError("malformed note: it does not end with a newline")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise CheckpointError("malformed note: no blank line before the signatures")
    body, block = note[:cut + 1], note[cut + 2:]
    lines = block.split("\n")[:-1]
    if not lines:
        raise CheckpointError("malformed note: no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != EM_DASH:
            raise CheckpointError(f"malformed note: signature line {line[:40]!r} is not '— <name> <base64>'")
        check_key_name(parts[1])
        raw = decode_base64(parts[2], f"the signature of {parts[1]}")
        if len(raw) < 5:
            raise CheckpointError(f"malformed note: the signature of {parts[1]} is too short")
        signatures.append(NoteSignature(parts[1], raw[:4], raw[4:]))
    return body, signatures


def _as_verifier_keys(keys: str | VerifierKey | Iterable[str | VerifierKey]) -> list[VerifierKey]:
    if isinstance(keys, (str, VerifierKey)):
        keys = [keys]
    result = [k if isinstance(k, VerifierKey) else VerifierKey.parse(k) for k in keys]
    if not result:
        raise CheckpointError("no verifier key given")
    return result


def verify_note(note: str | bytes, keys: str | VerifierKey | Iterable[str | VerifierKey]) -> tuple[str, tuple[str, ...]]:
    """Verify the note's signatures against the trusted `keys`; return its text and who signed.

    As the signed-note spec says: signatures by unknown keys are ignored; a signature by a trusted
    key (same name and key id) that fails to verify rejects the whole note; at least one trusted
    signature must verify.
    """
    trusted = {(k.name, k.key_id): k for k in _as_verifier_keys(keys)}
    body, signatures = split_note(note)
    verified: list[str] = []
    for sig in signatures:
        key = trusted.get((sig.name, sig.key_id))
        if key is None:
            continue
        if len(sig.signature) != 64 or not key.verify(body.encode("utf-8"), sig.signature):
            raise SignatureError(f"the signature by {sig.name}+{sig.key_id.hex()} does not verify:"
                                 " the note was altered or the signature forged")
        verified.append(f"{key.name}+{key.key_id.hex()}")
    if not verified:
        seen = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in signatures)
        wanted = ", ".join(f"{n}+{i.hex()}" for n, i in trusted)
        raise SignatureError(f"the note carries no signature by a trusted key (trusted: {wanted}; signed by: {seen})")
    return body, tuple(verified)


def parse_checkpoint_body(body: str) -> tuple[str, int, bytes, tuple[str, ...]]:
    lines = body.split("\n")
    if lines[-1] != "" or len(lines) < 4:
        raise CheckpointError("malformed checkpoint: it needs an origin, a tree size and a root hash line")
    lines = lines[:-1]
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointError("malformed checkpoint: empty origin")
    if not _SIZE.match(size_text):
        raise CheckpointError(f"malformed checkpoint: tree size {size_text[:30]!r} is not a decimal number")
    root = decode_base64(root_text, "the checkpoint's root hash")
    if len(root) != merkle.HASH_SIZE:
        raise CheckpointError("malformed checkpoint: the root hash is not 32 bytes")
    if any(not line for line in extensions):
        raise CheckpointError("malformed checkpoint: an empty line in the checkpoint text")
    return origin, int(size_text), root, tuple(extensions)


def parse_and_verify(note_text: str | bytes, verifier_key: str | VerifierKey | Iterable[str | VerifierKey],
                     *, origin: str | None = None) -> Checkpoint:
    """Verify the signature(s), then parse the checkpoint. Raises CheckpointError/SignatureError."""
    body, signed_by = verify_note(note_text, verifier_key)
    cp_origin, size, root, extensions = parse_checkpoint_body(body)
    if origin is not None and cp_origin != origin:
        raise CheckpointError(f"the checkpoint is for origin {cp_origin!r}, not {origin!r}")
    text = note_text.decode("utf-8") if isinstance(note_text, bytes) else note_text
    return Checkpoint(cp_origin, size, root, text, extensions, signed_by)
