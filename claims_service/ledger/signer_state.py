"""What the signer signed last, kept outside the database: its memory of the log.

A checkpoint is a promise that the log will only ever grow from it. The database cannot hold that
promise: whoever administers it can rewrite a payload, recompute every later hash, rebuild the
tree tables and delete `ledger_checkpoints`, or restore an older backup, and a signer that asked
the database what it had signed before would then sign a second, different root for a size it had
already signed. So the signer keeps its last signed note in a file next to its key, and signs
only trees that are consistent extensions of it.

The file holds the note itself (self-authenticating: it carries the signer's own signature). It is
replaced atomically (a temporary file, fsync, rename, fsync of the directory) *before* the new
note is stored or handed to anyone, under an exclusive lock (`fcntl.flock`) that every process
signing with the key shares: the server, the workers and `claimsctl checkpoint`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from claims_service.ledger import statefile
from claims_service.ledger.note import CheckpointError, VerifierKey, parse_and_verify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignedHead:
    """The tree size and root of the last checkpoint the signer signed, and its note."""

    tree_size: int
    root_hash: bytes
    note: str


class SignerState:
    """``SignerState(path, verifier)``: ``locked()`` (a context manager yielding the last
    ``SignedHead`` or None, holding the lock), ``record(head)`` (inside ``locked()``), ``read()``."""

    def __init__(self, path: Path | str, verifier: VerifierKey, origin: str) -> None:
        self.path = Path(path)
        self.verifier = verifier
        self.origin = origin

    @contextmanager
    def locked(self) -> Iterator[SignedHead | None]:
        with statefile.locked(self.path):
            yield self.read()

    def read(self) -> SignedHead | None:
        """The last signed head, or None before the first signature. A file that is not a note
        this key signed for this origin is an error: the signer's memory must not be forged."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            checkpoint = parse_and_verify(text, self.verifier, origin=self.origin)
        except CheckpointError as error:
            raise CheckpointError(f"the signer's state file {self.path.name} is not a checkpoint of this key and"
                                  f" origin: {error}") from None
        return SignedHead(checkpoint.size, checkpoint.root_hash, text)

    def record(self, head: SignedHead) -> None:
        """Replace the file with `head`'s note, durably, before the note goes anywhere else."""
        statefile.write_durably(self.path, head.note)
