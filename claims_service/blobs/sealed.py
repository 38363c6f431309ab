"""An attachment as stored: the document encrypted in chunks under its member's data key.

Stored bytes::

    "CLMBLOB1" || nonce prefix (7 random bytes) || chunk || chunk || ...
    chunk = uint32 big-endian length of the sealed chunk || AES-256-GCM(plaintext chunk)

Chunk *i* (from 0) is sealed with the nonce ``prefix || uint32(i) || flag`` (flag 1 for the last
chunk, 0 otherwise) and the associated data ``"CLMBLOB1" || key id``: every chunk authenticates,
and so do its place in the order and the document's end (the STREAM construction), and the blob
opens only under the member it was stored for. Plaintext chunks are 1 MiB (the last one shorter).

`BlobSealer` seals while it hashes (SHA-256 of the document as uploaded) and counts; `open_blob`
opens, hashes and counts again and refuses (`TamperedBlobError`, DATA_LOSS) anything that does
not check out: a chunk that does not authenticate, a blob cut short or extended, a hash or size
other than the ledger recorded.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from claims_service.blobs.store import BlobWriter
from claims_service.errors import DataLossError

MAGIC = b"CLMBLOB1"
CHUNK = 1 << 20
TAG = 16


class TamperedBlobError(DataLossError):
    """A stored attachment does not check out against what the ledger recorded of it."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail)
        self.args = (f"the attachment's stored document cannot be trusted: {detail}",)

    def __str__(self) -> str:
        return str(self.args[0])


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")


class BlobSealer:
    """Seals a document into a `BlobWriter` as it arrives (any piece sizes), hashing and counting it."""

    def __init__(self, writer: BlobWriter, key_id: str, cipher: AESGCM) -> None:
        self.writer = writer
        self.cipher = cipher
        self.aad = MAGIC + key_id.encode("ascii")
        self.prefix = os.urandom(7)
        self.digest = hashlib.sha256()
        self.size = 0
        self.pending = bytearray()
        self.index = 0
        writer.write(MAGIC + self.prefix)

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.size += len(data)
        self.pending += data
        # Keep at least one byte back: the last chunk is sealed as the last one.
        while len(self.pending) > CHUNK:
            self._chunk(bytes(self.pending[:CHUNK]), last=False)
            del self.pending[:CHUNK]

    def _chunk(self, plain: bytes, *, last: bool) -> None:
        sealed = self.cipher.encrypt(_nonce(self.prefix, self.index, last), plain, self.aad)
        self.writer.write(struct.pack(">I", len(sealed)) + sealed)
        self.index += 1

    def finish(self) -> tuple[str, int]:
        """Seal the last chunk; (SHA-256 hex, size) of the document."""
        self._chunk(bytes(self.pending), last=True)
        self.pending.clear()
        return self.digest.hexdigest(), self.size


def open_blob(stored: Iterable[bytes], key_id: str, cipher: AESGCM, *, sha256: str | None = None,
              size: int | None = None) -> Iterator[bytes]:
    """The document's bytes, chunk by chunk; after the last one, its hash and size checked
    against ``sha256`` and ``size`` (`TamperedBlobError` on any mismatch, raised before the end)."""
    aad = MAGIC + key_id.encode("ascii")
    buffer = bytearray()
    source = iter(stored)
    exhausted = False

    def need(n: int) -> bool:
        nonlocal exhausted
        while len(buffer) < n and not exhausted:
            try:
                buffer.extend(next(source))
            except StopIteration:
                exhausted = True
        return len(buffer) >= n

    if not need(len(MAGIC) + 7) or bytes(buffer[:len(MAGIC)]) != MAGIC:
        raise TamperedBlobError("it is not a sealed blob")
    prefix = bytes(buffer[len(MAGIC):len(MAGIC) + 7])
    del buffer[:len(MAGIC) + 7]
    digest = hashlib.sha256()
    total = index = 0
    while True:
        if not need(4):
            raise TamperedBlobError("it ends before its last chunk")
        (length,) = struct.unpack(">I", bytes(buffer[:4]))
        if length < TAG or length > CHUNK + TAG or not need(4 + length):
            raise TamperedBlobError(f"chunk {index} is cut short or malformed")
        sealed = bytes(buffer[4:4 + length])
        del buffer[:4 + length]
        last = not need(1)
        try:
            plain = cipher.decrypt(_nonce(prefix, index, last), sealed, aad)
        except InvalidTag:
            raise TamperedBlobError(f"chunk {index} does not authenticate (altered, moved, or the blob was cut)") from None
        digest.update(plain)
        total += len(plain)
        index += 1
        if last:
            if sha256 is not None and digest.hexdigest() != sha256:
                raise TamperedBlobError("its SHA-256 is not the one the ledger recorded")
            if size is not None and total != size:
                raise TamperedBlobError("its size is not the one the ledger recorded")
            if plain:
                yield plain
            return
        yield plain
