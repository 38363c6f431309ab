"""Attachments' documents, the pure parts: the sealed blob format (every way of tampering with it
refused) and the directory store (atomic, private). No database."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from claims_service.blobs.sealed import CHUNK, BlobSealer, TamperedBlobError, open_blob
from claims_service.blobs.store import BlobNotFoundError, BlobStoreError, DirectoryBlobStore

KEY_ID = "6f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"


class Memory:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def sealed_blob(document: bytes, pieces: int = 7919, key_id: str = KEY_ID) -> tuple[bytes, str, AESGCM]:
    out, cipher = Memory(), AESGCM(b"m" * 32)
    sealer = BlobSealer(out, key_id, cipher)  # type: ignore[arg-type]
    for start in range(0, len(document), pieces):
        sealer.write(document[start:start + pieces])
    digest, size = sealer.finish()
    assert size == len(document)
    return out.data, digest, cipher


def test_a_sealed_blob_opens_to_the_document_whatever_the_pieces():
    for size in (1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 12345):
        document = os.urandom(size)
        data, digest, cipher = sealed_blob(document)
        if size >= 16:  # a byte or two of plaintext may turn up in ciphertext by chance
            assert document[:64] not in data
        opened = b"".join(open_blob([data[i:i + 1000] for i in range(0, len(data), 1000)], KEY_ID, cipher,
                                    sha256=digest, size=size))
        assert opened == document


def test_every_way_of_tampering_with_a_blob_is_refused():
    document = os.urandom(2 * CHUNK + 100)
    data, digest, cipher = sealed_blob(document)
    first = 8 + 7 + 4 + CHUNK + 16  # the header and the first chunk
    second = first + 4 + CHUNK + 16
    flipped = bytearray(data)
    flipped[first + 100] ^= 0x80
    swapped = data[:15] + data[first:second] + data[15:first] + data[second:]
    other, other_digest, _ = sealed_blob(os.urandom(100))
    cases = {
        "a flipped bit": bytes(flipped),
        "cut at a chunk's end": data[:second],
        "cut inside a chunk": data[:-7],
        "chunks swapped": swapped,
        "a chunk appended": data + data[first:second],
        "another document": other,
        "not a blob": b"%PDF-1.7",
        "empty": b"",
    }
    for what, tampered in cases.items():
        with pytest.raises(TamperedBlobError):
            list(open_blob([tampered], KEY_ID, cipher, sha256=digest, size=len(document)))
        assert what
    with pytest.raises(TamperedBlobError):  # another member's key id: the chunks do not authenticate
        list(open_blob([data], "00000000-0000-0000-0000-000000000000", cipher, sha256=digest))
    with pytest.raises(TamperedBlobError, match="SHA-256"):  # whole and authentic, but not what the ledger recorded
        list(open_blob([other], KEY_ID, cipher, sha256=digest))
    assert b"".join(open_blob([other], KEY_ID, cipher, sha256=other_digest))


def test_the_directory_store_writes_atomically_and_privately(tmp_path):
    store = DirectoryBlobStore(tmp_path / "blobs")
    writer = store.writer("member-1")
    writer.write(b"half a document")
    assert not list((tmp_path / "blobs" / "member-1").glob("[!.]*"))  # nothing visible before commit
    writer.abort()
    assert not list((tmp_path / "blobs" / "member-1").iterdir())
    writer = store.writer("member-1")
    writer.write(b"a document")
    key = writer.commit("abc")
    path = tmp_path / "blobs" / "member-1" / "abc"
    assert key == "member-1/abc" and b"".join(store.read(key)) == b"a document"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = store.writer("member-1")
    again.write(b"the same content, stored before")
    again.commit("abc")
    assert b"".join(store.read(key)) == b"a document" and len(list(path.parent.iterdir())) == 1
    assert store.delete_prefix("member-1") == 1 and not path.parent.exists()
    with pytest.raises(BlobNotFoundError):
        list(store.read(key))
    for bad in ("../x", "a/b/c", "noslash", "a/.."):
        with pytest.raises(BlobStoreError):
            store.path(bad)
    assert store.delete_prefix("nobody") == 0
    assert not Path(tmp_path / "blobs" / "..").samefile(tmp_path / "blobs")
