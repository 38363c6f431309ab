"""The signer's Ed25519 key: from a base64 seed, a key file (PEM, raw or base64), or a file made
on first use for development. Which one is configured is the caller's business (config.py)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.ledger.note import ED25519, CheckpointError, decode_base64, key_id

log = logging.getLogger(__name__)


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
        raw = decode_base64(parts[4], what)
        if len(raw) != 33 or raw[0] != ED25519:
            raise CheckpointError(f"{what}: not an Ed25519 signer key")
        key = _key_from_seed(raw[1:], what)
        if key_id(parts[2], key).hex() != parts[3]:
            raise CheckpointError(f"{what}: the key id {parts[3]} does not match the key's name and public key")
        return key
    return _key_from_seed(decode_base64(text, what), what)


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


def signing_key_from_seed(seed_b64: str, what: str = "CLAIMS_SIGNING_KEY") -> Ed25519PrivateKey:
    """A key from the base64 of its 32-byte Ed25519 seed; `what` names the setting in errors."""
    return _key_from_seed(decode_base64(seed_b64.strip(), what), what)


def resolve_signing_key(data_dir: Path, *, seed: str | None = None, key_file: Path | None = None) -> Ed25519PrivateKey:
    """The service's key: the seed when given, else the key file, else `<data dir>/signing-key.pem`
    (generated on first use, for development)."""
    if seed:
        return signing_key_from_seed(seed)
    return load_or_create_signing_key(key_file or Path(data_dir) / "signing-key.pem")
