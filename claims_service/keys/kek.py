"""Key-encryption keys (KEKs): what wraps every member's data key, held outside the ledger.

The ledger's database holds each member's data key only wrapped (AES-256-GCM under a KEK, bound to
the member's key id), so a copy of the database alone opens nothing. KEKs are named by ids;
several may be held at once (rotation): new data keys are wrapped under the newest, and a data key
is unwrapped under the KEK whose id it was wrapped with. `claimsctl member-keys rewrap` wraps every
data key under the newest KEK, after which an older KEK can be retired.

Where they come from (the first that is set):

* ``CLAIMS_MEMBER_KEK_PROVIDER=package.module:factory``: a KMS. ``factory()`` returns an object
  with the `KeyEncryptionKeys` interface below; ``wrap`` and ``unwrap`` call the KMS (AWS KMS
  Encrypt/Decrypt or GenerateDataKey with the ``context`` as encryption context, Google Cloud
  KMS, Vault transit ...), so that the KEK never leaves it. Only data keys cross the wire, and
  only when they are not already cached unwrapped (``claims_service.keys.store``).
* ``CLAIMS_MEMBER_KEKS``: ``id:base64-key,id:base64-key`` (32-byte keys; the last one is the
  newest), e.g. from a secrets manager through the environment.
* ``CLAIMS_MEMBER_KEK_FILE``: a file of lines ``<id> <base64 key>`` (``#`` comments; the last
  line is the newest), mode 0600.
* else ``<data dir>/member-keks``, created with one fresh KEK on first use (development).

Imports: the standard library, cryptography and ``claims_service.files`` only.
"""

from __future__ import annotations

import base64
import importlib
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from claims_service.errors import ClaimsError
from claims_service.files import write_private

KEK_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_FILE = "member-keks"
WRAP_AAD = b"claims-ledger/member-data-key/v1\n"


class KeyEncryptionKeyError(ClaimsError):
    """The KEKs are missing, malformed, or do not include the one a data key was wrapped with."""

    status = "FAILED_PRECONDITION"


class KeyEncryptionKeys(Protocol):
    """What the ledger asks of whoever holds the KEKs (a local file, a KMS)."""

    @property
    def newest(self) -> str:
        """The id of the KEK new data keys are wrapped with."""
        ...

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        """``data_key`` wrapped under the newest KEK, bound to ``context`` (the member's key id):
        (the KEK's id, the wrapped bytes)."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        """The data key ``wrapped`` holds, under KEK ``kek_id`` and bound to ``context``;
        `KeyEncryptionKeyError` when that KEK is not held or the bytes do not authenticate."""
        ...


class LocalKeyEncryptionKeys:
    """KEKs held in this process (from the environment or a file): AES-256-GCM wrapping,
    ``nonce (12 bytes) || ciphertext || tag``, associated data ``WRAP_AAD || kek id || 0x0A ||
    context``."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyEncryptionKeyError("no key-encryption key is configured")
        self._keys: dict[str, AESGCM] = {}
        for kek_id, key in keys:
            if not KEK_ID.fullmatch(kek_id):
                raise KeyEncryptionKeyError(f"a KEK id must be 1 to 64 of A-Z a-z 0-9 . _ - (got {kek_id[:70]!r})")
            if len(key) != 32:
                raise KeyEncryptionKeyError(f"KEK {kek_id}: a key-encryption key is 32 bytes (AES-256), not {len(key)}")
            if kek_id in self._keys:
                raise KeyEncryptionKeyError(f"KEK {kek_id} is given twice")
            self._keys[kek_id] = AESGCM(key)
        self._newest = keys[-1][0]

    @property
    def newest(self) -> str:
        return self._newest

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        aad = WRAP_AAD + self._newest.encode() + b"\n" + context
        return self._newest, nonce + self._keys[self._newest].encrypt(nonce, data_key, aad)

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        kek = self._keys.get(kek_id)
        if kek is None:
            raise KeyEncryptionKeyError(f"a member data key is wrapped under KEK {kek_id!r}, which is not configured "
                                        "(CLAIMS_MEMBER_KEKS / CLAIMS_MEMBER_KEK_FILE)")
        try:
            return kek.decrypt(wrapped[:12], wrapped[12:], WRAP_AAD + kek_id.encode() + b"\n" + context)
        except (InvalidTag, ValueError):
            raise KeyEncryptionKeyError(f"a member data key does not unwrap under KEK {kek_id!r}") from None


def new_kek() -> bytes:
    return secrets.token_bytes(32)


def new_kek_id() -> str:
    return f"kek-{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(3)}"


def parse_kek_list(text: str, what: str = "CLAIMS_MEMBER_KEKS") -> list[tuple[str, bytes]]:
    """``id:base64,id:base64`` (or, from a file, one ``id base64`` per line; ``#`` comments)."""
    found = []
    for raw in re.split(r"[,\n]", text):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        kek_id, sep, encoded = item.partition(":") if ":" in item else item.partition(" ")
        if not sep or not encoded.strip():
            raise KeyEncryptionKeyError(f"{what}: expected '<id>:<base64 key>' (a line '<id> <base64 key>' in a file)")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            raise KeyEncryptionKeyError(f"{what}: the key of KEK {kek_id.strip()!r} is not base64") from None
        found.append((kek_id.strip(), key))
    return found


def read_kek_file(path: Path) -> list[tuple[str, bytes]]:
    return parse_kek_list(path.read_text(encoding="utf-8"), str(path))


def create_kek_file(path: Path) -> None:
    """A new KEK file with one fresh KEK (mode 0600; refuses to replace a file that exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# Key-encryption keys of the claims ledger's member data keys: '<id> <base64 key>',\n"
                     "# the last line is the newest. Losing this file loses every member's data; keep a copy apart.\n")
        handle.write(f"{new_kek_id()} {base64.b64encode(new_kek()).decode()}\n")


def add_kek(path: Path) -> str:
    """Append a fresh KEK to a KEK file (it becomes the newest); returns its id."""
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    kek_id = new_kek_id()
    while any(kek_id == known for known, _ in parse_kek_list(existing, str(path))):
        kek_id = new_kek_id()
    text = existing + ("" if existing.endswith("\n") or not existing else "\n")
    write_private(path, text + f"{kek_id} {base64.b64encode(new_kek()).decode()}\n")
    return kek_id


def kek_file_path(environ: Mapping[str, str]) -> Path:
    """The KEK file the environment names (or the data directory's default)."""
    named = environ.get("CLAIMS_MEMBER_KEK_FILE")
    if named:
        return Path(named)
    return Path(environ.get("CLAIMS_DATA_DIR") or ".data") / DEFAULT_FILE


def load_keks(environ: Mapping[str, str] | None = None) -> KeyEncryptionKeys:
    """The KEKs as the environment configures them (module docstring, in that order)."""
    env = os.environ if environ is None else environ
    provider = env.get("CLAIMS_MEMBER_KEK_PROVIDER")
    if provider:
        module, _, name = provider.partition(":")
        try:
            factory = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as error:
            raise KeyEncryptionKeyError(f"CLAIMS_MEMBER_KEK_PROVIDER: cannot load {provider!r} ({error})") from None
        keks: KeyEncryptionKeys = factory()
        return keks
    listed = env.get("CLAIMS_MEMBER_KEKS")
    if listed:
        return LocalKeyEncryptionKeys(parse_kek_list(listed))
    path = kek_file_path(env)
    if not path.exists():
        if env.get("CLAIMS_MEMBER_KEK_FILE"):
            raise KeyEncryptionKeyError(f"CLAIMS_MEMBER_KEK_FILE: {path} does not exist")
        create_kek_file(path)
    return LocalKeyEncryptionKeys(read_kek_file(path))


_default: KeyEncryptionKeys | None = None
_default_lock = threading.Lock()


def default_keks() -> KeyEncryptionKeys:
    """This process's KEKs: as configured (`configure`), else from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = load_keks()
        return _default


def configure(keks: KeyEncryptionKeys | None) -> None:
    """Use these KEKs in this process from now on (None: read the environment again on next use)."""
    global _default
    with _default_lock:
        _default = keks
