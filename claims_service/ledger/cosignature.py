"""Witness cosignatures on checkpoints: C2SP tlog-cosignature, the Ed25519 type (cosignature/v1). Pure.

A cosignature is one more signature line on a checkpoint note (docs/LEDGER.md, "Witnesses"):

    — <witness name> base64(key id || u64 timestamp || Ed25519 signature)

key id    = SHA-256(<witness name> || 0x0A || 0x04 || 32-byte public key)[:4]
signed    = "cosignature/v1\\n" || "time <timestamp>\\n" || the checkpoint's note text (every body line,
            extension lines included, with its final newline; no signature line)
timestamp = POSIX seconds when the witness cosigned, big-endian, never zero

A witness's verifier key is `<name>+<key id, 8 hex digits>+<base64(0x04 || public key)>`. The type
byte 0x04 keeps a cosignature from ever passing for the log's own signature (type 0x01, another
key id) and the reverse. A cosignature states: as of its timestamp, this is the largest tree the
witness has seen for the origin that is consistent with everything it saw before.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from claims_service.ledger.note import (
    EM_DASH,
    CheckpointError,
    SignatureError,
    check_key_name,
    decode_base64,
    public_key_bytes,
    split_note,
)

COSIGNATURE_V1 = 0x04  # the signed-note signature type of timestamped Ed25519 cosignatures
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1
_SIGNATURE_SIZE = 4 + 8 + 64


def cosigner_key_id(name: str, public_key: bytes | Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]."""
    raw = public_key if isinstance(public_key, bytes) else public_key_bytes(public_key)
    return hashlib.sha256(check_key_name(name).encode("utf-8") + b"\n" + bytes([COSIGNATURE_V1]) + raw).digest()[:4]


@dataclass(frozen=True)
class CosignerKey:
    """A witness's public key, as verifiers are given it: `<name>+<key id hex>+<base64(0x04 || key)>`."""

    name: str
    key_id: bytes
    public_key: bytes  # 32 bytes

    @classmethod
    def parse(cls, text: str) -> CosignerKey:
        parts = text.strip().split("+", 2)  # the base64 key may itself contain '+'
        if len(parts) != 3:
            raise CheckpointError("a witness key is <name>+<key id hex>+<base64 key>")
        name, hex_id, encoded = parts
        check_key_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise CheckpointError("a witness key's id is 8 lower-case hex digits")
        data = decode_base64(encoded, "the witness key")
        if len(data) != 33 or data[0] != COSIGNATURE_V1:
            raise CheckpointError("not a witness key: a cosignature/v1 key is 0x04 followed by a 32-byte Ed25519 key"
                                  " (a key starting with 0x01 signs notes, not cosignatures)")
        key = cls(name, bytes.fromhex(hex_id), data[1:])
        if cosigner_key_id(name, key.public_key) != key.key_id:
            raise CheckpointError(f"the witness key's id {hex_id} does not match its name and public key")
        return key

    @classmethod
    def of(cls, key: Ed25519PrivateKey | Ed25519PublicKey, name: str) -> CosignerKey:
        raw = public_key_bytes(key)
        return cls(name, cosigner_key_id(name, raw), raw)

    @property
    def label(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"

    def __str__(self) -> str:
        return f"{self.label}+{base64.b64encode(bytes([COSIGNATURE_V1]) + self.public_key).decode('ascii')}"


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header line, the time line, then the note text."""
    if not 0 < timestamp <= MAX_TIMESTAMP:
        raise CheckpointError(f"a cosignature's timestamp is between 1 and 2^63-1, not {timestamp}")
    return (HEADER + f"time {timestamp}\n" + body).encode("utf-8")


def cosign(key: Ed25519PrivateKey, name: str, body: str, timestamp: int) -> str:
    """The cosignature line of `key` (named `name`) on the note text `body`, at `timestamp`."""
    signature = key.sign(cosigned_message(body, timestamp))
    blob = cosigner_key_id(name, key) + struct.pack(">Q", timestamp) + signature
    return f"{EM_DASH} {name} {base64.b64encode(blob).decode('ascii')}\n"


@dataclass(frozen=True)
class Cosignature:
    """A cosignature that verified: who made it and when."""

    witness: str  # name+key id
    timestamp: int


def _as_keys(keys: str | CosignerKey | Iterable[str | CosignerKey]) -> list[CosignerKey]:
    if isinstance(keys, (str, CosignerKey)):
        keys = [keys]
    return [k if isinstance(k, CosignerKey) else CosignerKey.parse(k) for k in keys]


def verify_cosignatures(note: str | bytes, keys: str | CosignerKey | Iterable[str | CosignerKey]) -> list[Cosignature]:
    """The valid cosignatures on `note` by the trusted witness `keys`, one per key (the newest).

    As the signed-note spec says: lines of unknown keys (the log's own signature among them) are
    ignored; a line whose name and key id match a trusted witness key must verify, or the whole
    note is rejected (SignatureError).
    """
    trusted = {(k.name, k.key_id): k for k in _as_keys(keys)}
    body, signatures = split_note(note)
    found: dict[str, Cosignature] = {}
    for sig in signatures:
        key = trusted.get((sig.name, sig.key_id))
        if key is None:
            continue
        raw = sig.signature  # after the 4-byte key id: timestamp and signature
        if len(raw) != _SIGNATURE_SIZE - 4:
            raise SignatureError(f"the cosignature by {key.label} is not a timestamp and an Ed25519 signature")
        (timestamp,) = struct.unpack(">Q", raw[:8])
        try:
            message = cosigned_message(body, timestamp)
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(raw[8:], message)
        except (InvalidSignature, CheckpointError):
            raise SignatureError(f"the cosignature by {key.label} does not verify: the checkpoint was altered"
                                 " or the cosignature forged") from None
        if key.label not in found or found[key.label].timestamp < timestamp:
            found[key.label] = Cosignature(key.label, timestamp)
    return sorted(found.values(), key=lambda c: c.witness)
