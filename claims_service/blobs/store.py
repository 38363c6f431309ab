"""Where attachments' bytes live: the `BlobStore` interface and the directory store.

A blob store keeps opaque byte strings under keys ``<prefix>/<name>`` (both ``[A-Za-z0-9._-]``).
What the service needs of one:

* ``writer(prefix)``: a `BlobWriter`; ``write(data)`` as often as needed, then ``commit(name)``
  makes the whole blob visible under ``prefix/name`` at once (a reader never sees part of one; a
  blob already there is kept: keys are content addresses), or ``abort()`` leaves nothing;
* ``read(key)``: the blob's bytes in pieces (`BlobNotFoundError` when there is none);
* ``delete_prefix(prefix)``: every blob under a prefix gone (a member's erasure); how many.

`DirectoryBlobStore` keeps them as files under a directory (by default ``<data dir>/blobs``):
directories 0700, files 0600 from their first byte, written to a temporary file, fsync'ed and
renamed into place (the directory fsync'ed too).

An S3-compatible store (AWS S3, MinIO, Ceph RGW, GCS's XML API) fits the same interface:
``writer`` is a multipart upload to a temporary key (parts of at least 5 MiB), ``commit`` completes
it and copies it to ``prefix/name`` (or uploads under the final key with ``If-None-Match: *``),
``abort`` aborts the upload; ``read`` is a ranged or streaming GetObject; ``delete_prefix`` lists
the prefix and deletes in batches of 1,000 (``DeleteObjects``), with object versioning off or
the noncurrent versions expired, or the deleted bytes live on. It is not built here (README,
"Attachments", says why); ``CLAIMS_BLOB_STORE=package.module:factory`` plugs one in.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from claims_service.errors import ClaimsError, NotFoundError

NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
READ_BYTES = 1 << 20


class BlobNotFoundError(NotFoundError):
    """No blob under that key (deleted, or never stored here)."""


class BlobStoreError(ClaimsError):
    """The blob store refused an operation (a bad key, the disk full ...)."""

    status = "UNAVAILABLE"


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self, name: str) -> str:
        """Make the blob visible under ``<prefix>/<name>``; returns its key."""
        ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    def writer(self, prefix: str) -> BlobWriter: ...

    def read(self, key: str) -> Iterator[bytes]: ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...


def _checked(part: str, what: str) -> str:
    if not NAME.fullmatch(part) or part in (".", ".."):
        raise BlobStoreError(f"a blob {what} is 1 to 128 of A-Z a-z 0-9 . _ -")
    return part


def split_key(key: str) -> tuple[str, str]:
    prefix, sep, name = key.partition("/")
    if not sep:
        raise BlobStoreError("a blob key is <prefix>/<name>")
    return _checked(prefix, "prefix"), _checked(name, "name")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=directory)
        os.fchmod(fd, 0o600)
        self.path = Path(tmp)
        self.file = os.fdopen(fd, "wb")
        self.done = False

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self, name: str) -> str:
        _checked(name, "name")
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        target = self.directory / name
        try:
            if target.exists():  # the same content stored before: keep that one
                self.path.unlink()
            else:
                os.replace(self.path, target)
                _fsync_dir(self.directory)
        finally:
            self.done = True
        return f"{self.directory.name}/{name}"

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self.file.close()
            self.path.unlink(missing_ok=True)


class DirectoryBlobStore:
    """``DirectoryBlobStore(root)``: blobs as files ``root/<prefix>/<name>`` (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _dir(self, prefix: str, *, create: bool) -> Path:
        directory = self.root / _checked(prefix, "prefix")
        if create:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.mkdir(mode=0o700, exist_ok=True)
        return directory

    def writer(self, prefix: str) -> BlobWriter:
        return _FileWriter(self._dir(prefix, create=True))

    def path(self, key: str) -> Path:
        prefix, name = split_key(key)
        return self.root / prefix / name

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read(self, key: str) -> Iterator[bytes]:
        try:
            handle = self.path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError("the attachment's document is not in the blob store") from None
        with handle:
            while chunk := handle.read(READ_BYTES):
                yield chunk

    def delete_prefix(self, prefix: str) -> int:
        directory = self._dir(prefix, create=False)
        if not directory.is_dir():
            return 0
        count = sum(1 for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
        shutil.rmtree(directory)
        if self.root.is_dir():
            _fsync_dir(self.root)
        return count
