"""Signed checkpoints: the Merkle tree's size and root, signed with Ed25519 (migration 0011).

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
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from claims_service.errors import ClaimsError
from claims_service.ledger import merkle, tree
from claims_service.ledger.chain import ChainVerifier, LedgerRow

log = logging.getLogger(__name__)

ED25519 = 0x01  # the signed-note signature type byte
EM_DASH = "\u2014"
DEFAULT_ORIGIN = "claims-ledger.local/ledger"
MAX_SIGNATURES = 100
CHECKPOINT_LOCK_KEY = 0x436B7074  # "Ckpt": one signer at a time (transaction advisory lock)

ENV_SIGNING_KEY = "CLAIMS_SIGNING_KEY"  # base64 of the 32-byte Ed25519 seed
ENV_SIGNING_KEY_FILE = "CLAIMS_SIGNING_KEY_FILE"  # else <data dir>/signing-key.pem, created on first use
ENV_ORIGIN = "CLAIMS_CHECKPOINT_ORIGIN"
ENV_KEY_NAME = "CLAIMS_SIGNING_KEY_NAME"  # defaults to the origin, as tlog-checkpoint recommends
ENV_EVERY_LEAVES = "CLAIMS_CHECKPOINT_EVERY_LEAVES"
ENV_EVERY_SECONDS = "CLAIMS_CHECKPOINT_EVERY_SECONDS"

_NAME = re.compile(r"^[^\s+]+$")
_SIZE = re.compile(r"^(0|[1-9][0-9]*)$")


class CheckpointError(ClaimsError):
    """A note or key is malformed, or a signature does not verify; the message says which."""

    status: ClassVar[str] = "INVALID_ARGUMENT"


class SignatureError(CheckpointError):
    """The note is well formed but not validly signed by a trusted key."""

    status: ClassVar[str] = "PERMISSION_DENIED"


class InconsistentTreeError(ClaimsError):
    """The tree does not extend the last checkpoint: the signer refuses to sign it."""

    status: ClassVar[str] = "DATA_LOSS"


# --- keys --------------------------------------------------------------------------------------------


def _b64decode(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CheckpointError(f"{what} is not standard base64") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return data


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CheckpointError(f"key name {name!r} must be non-empty, with no spaces and no '+'")
    return name


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: bytes | Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]."""
    raw = public_key if isinstance(public_key, bytes) else public_key_bytes(public_key)
    return hashlib.sha256(_check_name(name).encode("utf-8") + b"\n" + bytes([ED25519]) + raw).digest()[:4]


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
        _check_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise CheckpointError("a verifier key's id is 8 lower-case hex digits")
        data = _b64decode(encoded, "the verifier key")
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


def _key_from_seed(seed: bytes, what: str) -> Ed25519PrivateKey:
    if len(seed) != 32:
        raise CheckpointError(f"{what}: an Ed25519 seed is 32 bytes, got {len(seed)}")
    return Ed25519PrivateKey.from_private_bytes(seed)


def parse_signing_key(data: bytes, what: str = "signing key") -> Ed25519PrivateKey:
    """PEM (PKCS#8), 32 raw bytes, base64 of the 32-byte seed, or a note signer key
    (`PRIVATE+KEY+<name>+<id>+<base64(0x01 || seed)>`)."""
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(stripped, password=None)
        except (ValueError, TypeError) as error:
            raise CheckpointError(f"{what}: unreadable PEM ({error})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointError(f"{what}: the PEM key is not Ed25519")
        return key
    if len(data) == 32:
        return _key_from_seed(data, what)
    try:
        text = stripped.decode("ascii")
    except UnicodeDecodeError:
        raise CheckpointError(f"{what}: neither PEM, nor 32 raw bytes, nor base64") from None
    if text.startswith("PRIVATE+KEY+"):
        parts = text.split("+", 4)  # the base64 key itself may contain '+'
        if len(parts) != 5:
            raise CheckpointError(f"{what}: a note signer key is PRIVATE+KEY+<name>+<id>+<base64 key>")
        raw = _b64decode(parts[4], what)
        if len(raw) != 33 or raw[0] != ED25519:
            raise CheckpointError(f"{what}: not an Ed25519 signer key")
        key = _key_from_seed(raw[1:], what)
        if key_id(parts[2], key).hex() != parts[3]:
            raise CheckpointError(f"{what}: the key id {parts[3]} does not match the key's name and public key")
        return key
    return _key_from_seed(_b64decode(text, what), what)


def load_or_create_signing_key(path: Path | str) -> Ed25519PrivateKey:
    """The key in `path`; generated there (PEM, mode 0600) if the file does not exist yet."""
    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("signing key %s is readable by others (mode %o); chmod 600 it", path, mode)
        return parse_signing_key(path.read_bytes(), f"signing key {path}")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Write a private temporary file, then link it into place: a concurrent starter either wins
    # the link or reads the winner's complete file; nobody sees a half-written key.
    fd, tmp = tempfile.mkstemp(prefix=".signing-key-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return parse_signing_key(path.read_bytes(), f"signing key {path}")
    finally:
        os.unlink(tmp)
    log.info("generated a new Ed25519 signing key in %s", path)
    return key


def signing_key_from_env(environ: Mapping[str, str] | None = None) -> Ed25519PrivateKey | None:
    """CLAIMS_SIGNING_KEY: base64 of the 32-byte Ed25519 seed; None when unset."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_SIGNING_KEY)
    if not value:
        return None
    return _key_from_seed(_b64decode(value.strip(), ENV_SIGNING_KEY), ENV_SIGNING_KEY)


def resolve_signing_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> Ed25519PrivateKey:
    """The service's key: CLAIMS_SIGNING_KEY, else the file CLAIMS_SIGNING_KEY_FILE names, else
    `<data dir>/signing-key.pem` (generated on first use, for development)."""
    env = os.environ if environ is None else environ
    key = signing_key_from_env(env)
    if key is not None:
        return key
    return load_or_create_signing_key(Path(env.get(ENV_SIGNING_KEY_FILE) or Path(data_dir) / "signing-key.pem"))


@dataclass(frozen=True)
class SigningSettings:
    origin: str = DEFAULT_ORIGIN
    key_name: str = DEFAULT_ORIGIN
    every_leaves: int = 1000
    every_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SigningSettings:
        env = os.environ if environ is None else environ
        origin = env.get(ENV_ORIGIN) or DEFAULT_ORIGIN
        try:
            return cls(origin=origin, key_name=_check_name(env.get(ENV_KEY_NAME) or origin),
                       every_leaves=int(env.get(ENV_EVERY_LEAVES) or 1000),
                       every_seconds=float(env.get(ENV_EVERY_SECONDS) or 60.0))
        except ValueError as error:
            raise CheckpointError(f"checkpoint settings: {error}") from None


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


def sign_checkpoint(key: Ed25519PrivateKey, name: str, origin: str, size: int, root: bytes) -> str:
    """The signed note of a checkpoint (origin, tree size, root hash)."""
    return sign_note(checkpoint_body(origin, size, root), key, name)


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
        _check_name(parts[1])
        raw = _b64decode(parts[2], f"the signature of {parts[1]}")
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
    root = _b64decode(root_text, "the checkpoint's root hash")
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


# --- stored checkpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    signed_at: datetime


_SELECT_CHECKPOINT = "SELECT tree_size, root_hash, note, signed_at FROM ledger_checkpoints"


def _stored(row: tuple | None) -> StoredCheckpoint | None:
    return StoredCheckpoint(row[0], bytes(row[1]), row[2], row[3]) if row else None


def latest_checkpoint(conn: psycopg.Connection) -> StoredCheckpoint | None:
    return _stored(conn.execute(_SELECT_CHECKPOINT + " ORDER BY tree_size DESC LIMIT 1").fetchone())


def checkpoint_at(conn: psycopg.Connection, tree_size: int) -> StoredCheckpoint | None:
    return _stored(conn.execute(_SELECT_CHECKPOINT + " WHERE tree_size = %s", (tree_size,)).fetchone())


def checkpoint_covering(conn: psycopg.Connection, leaf_index: int) -> StoredCheckpoint | None:
    """The earliest checkpoint whose tree contains the leaf (None until one is signed)."""
    return _stored(conn.execute(_SELECT_CHECKPOINT + " WHERE tree_size > %s ORDER BY tree_size LIMIT 1",
                                (leaf_index,)).fetchone())


def export_checkpoint(note: str | StoredCheckpoint, path: Path | str) -> Path:
    """Write the note to `path` (atomically: a reader never sees half a note)."""
    text = note.note if isinstance(note, StoredCheckpoint) else note
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=path.parent if str(path.parent) else ".")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path


@dataclass
class Checkpointer:
    """Signs checkpoints of the tree: every `every_leaves` new leaves, or every `every_seconds`
    when the tree grew, and on demand. A new checkpoint must extend the last one (a consistency
    proof from the stored tree, verified before signing): a log never signs two inconsistent heads."""

    database_url: str
    key: Ed25519PrivateKey
    origin: str = DEFAULT_ORIGIN
    key_name: str | None = None
    every_leaves: int = 1000
    every_seconds: float = 60.0
    cosigners: Sequence[tuple[Ed25519PrivateKey, str]] = ()
    _last_signed: float = field(default_factory=time.monotonic, init=False, repr=False)

    def __post_init__(self) -> None:
        self.key_name = _check_name(self.key_name or self.origin)

    @classmethod
    def from_settings(cls, database_url: str, key: Ed25519PrivateKey, settings: SigningSettings) -> Checkpointer:
        return cls(database_url, key, origin=settings.origin, key_name=settings.key_name,
                   every_leaves=settings.every_leaves, every_seconds=settings.every_seconds)

    @property
    def verifier_key(self) -> str:
        assert self.key_name is not None
        return verifier_key(self.key, self.key_name)

    def sign(self, conn: psycopg.Connection, size: int | None = None) -> StoredCheckpoint:
        """Sign the tree at `size` (default: as built now) unless a checkpoint of that size exists."""
        assert self.key_name is not None
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHECKPOINT_LOCK_KEY,))
            asked = size
            if size is None:
                size = tree.tree_size(conn)
            root = tree.root_at(conn, size)
            latest = latest_checkpoint(conn)
            if latest is not None:
                if latest.tree_size > size:
                    existing = checkpoint_at(conn, size)
                    if existing is not None:
                        return existing
                    if asked is None:
                        raise InconsistentTreeError(
                            f"the tree has {size} leaves but a checkpoint of {latest.tree_size} leaves was signed:"
                            " the tree or the ledger was cut back; refusing to sign")
                    raise CheckpointError(f"a checkpoint of {latest.tree_size} leaves exists;"
                                          f" not signing the older size {size}")
                proof = tree.consistency_proof(conn, latest.tree_size, size)
                try:
                    merkle.verify_consistency(latest.tree_size, size, latest.root_hash, root, proof)
                except merkle.ProofError as error:
                    raise InconsistentTreeError(
                        f"the tree of {size} leaves does not extend the checkpoint of {latest.tree_size} leaves"
                        f" ({error}); refusing to sign. The ledger or the tree was rewritten.") from None
                if latest.tree_size == size:
                    return latest
            note = sign_checkpoint(self.key, self.key_name, self.origin, size, root)
            for cokey, coname in self.cosigners:
                note = add_signature(note, cokey, coname)
            row = conn.execute(
                "INSERT INTO ledger_checkpoints (tree_size, root_hash, note) VALUES (%s, %s, %s)"
                " RETURNING tree_size, root_hash, note, signed_at",
                (size, root, note),
            ).fetchone()
        self._last_signed = time.monotonic()
        log.info("signed checkpoint of %d leaves", size)
        return _stored(row)  # type: ignore[return-value]

    def checkpoint_now(self, *, extend: bool = True) -> StoredCheckpoint:
        """On demand: bring the tree up to date (unless `extend` is False), then sign it."""
        if extend:
            with tree.TreeBuilder(self.database_url) as builder:
                builder.catch_up()
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return self.sign(conn)

    def due(self, conn: psycopg.Connection) -> bool:
        size = tree.tree_size(conn)
        latest = latest_checkpoint(conn)
        signed = latest.tree_size if latest else 0
        if size <= signed:
            return False
        if size - signed >= self.every_leaves:
            return True
        return time.monotonic() - self._last_signed >= self.every_seconds

    def tick(self, *_: object) -> StoredCheckpoint | None:
        """Sign if due (the TreeBuilder's `after_extend` hook)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            if self.due(conn):
                return self.sign(conn)
        return None

    def run_forever(self, stop_event: threading.Event, *, timeout: float = 1.0) -> None:
        """Follow the ledger: extend the tree on every insert, sign checkpoints when due."""
        conn: psycopg.Connection | None = None  # one connection for every tick, not one per tick

        def after(_added: int) -> None:
            nonlocal conn
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.database_url, autocommit=True)
                if self.due(conn):
                    self.sign(conn)
            except (InconsistentTreeError, tree.TreeError) as error:
                log.error("checkpoint: %s", error)

        try:
            tree.TreeBuilder(self.database_url).run_forever(stop_event, timeout=timeout, after_extend=after)
        finally:
            if conn is not None:
                conn.close()


# --- checking the live ledger against a kept checkpoint ----------------------------------------------------


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
    4. the tree recomputed from the leaves equals the stored tree, every subtree of it;
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
        if frontier.size == cp.size:
            audit.root_at_checkpoint = frontier.root()
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
