"""The checkpointer: stores signed checkpoints of the Merkle tree (migration 0011) and signs new
ones, every so many leaves or seconds and on demand, never one that does not extend the last.

"The last" is what the signer itself remembers (`signer_state.SignerState`, a file next to its
key), not only what the database says: a database rewritten with recomputed hashes, a rebuilt tree
and its checkpoints deleted, or restored from an older backup, makes the signer refuse. A refusal
is a fault: it is logged naming what was found, reported (`on_fault`, which turns health
NOT_SERVING), and the checkpointer signs nothing more until it is restarted."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import ClassVar, NoReturn

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.errors import ClaimsError
from claims_service.ledger import merkle, streammap, tree
from claims_service.ledger.note import (
    DEFAULT_ORIGIN,
    CheckpointError,
    VerifierKey,
    add_signature,
    check_key_name,
    sign_checkpoint,
    verifier_key,
)
from claims_service.ledger.signer_state import SignedHead, SignerState
from claims_service.ledger.witnessing import WitnessEndpoint, Witnessing

log = logging.getLogger(__name__)

CHECKPOINT_LOCK_KEY = 0x436B7074  # "Ckpt": one signer at a time (transaction advisory lock)


class InconsistentTreeError(ClaimsError):
    """The tree does not extend the last checkpoint: the signer refuses to sign it."""

    status: ClassVar[str] = "DATA_LOSS"


@dataclass(frozen=True)
class SigningSettings:
    origin: str = DEFAULT_ORIGIN
    key_name: str = DEFAULT_ORIGIN
    every_leaves: int = tree.MAP_EVERY
    every_seconds: float = 60.0
    state_file: Path | None = None  # the signer's memory of its last note (None: tests only)
    witnesses: tuple[WitnessEndpoint, ...] = ()  # asked to cosign each new checkpoint (CLAIMS_WITNESSES)
    witness_timeout: float = 5.0


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    signed_at: datetime


# The note with its witnesses' cosignatures appended (migration 0017).
_SELECT_CHECKPOINT = "SELECT tree_size, root_hash, note, signed_at FROM ledger_checkpoints_cosigned"


def _stored(row: tuple | None) -> StoredCheckpoint | None:
    return StoredCheckpoint(row[0], bytes(row[1]), row[2], row[3]) if row else None


def latest_checkpoint(conn: psycopg.Connection) -> StoredCheckpoint | None:
    return _stored(conn.execute(_SELECT_CHECKPOINT + " ORDER BY tree_size DESC LIMIT 1").fetchone())


def checkpoint_at(conn: psycopg.Connection, tree_size: int) -> StoredCheckpoint | None:
    return _stored(conn.execute(_SELECT_CHECKPOINT + " WHERE tree_size = %s", (tree_size,)).fetchone())


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
    every_leaves: int = tree.MAP_EVERY
    every_seconds: float = 60.0
    cosigners: Sequence[tuple[Ed25519PrivateKey, str]] = ()
    state_file: Path | None = None
    on_fault: Callable[[str], None] = lambda _reason: None
    witnesses: Sequence[WitnessEndpoint] = ()
    witness_timeout: float = 5.0
    fault: str | None = field(default=None, init=False)
    _last_signed: float = field(default_factory=time.monotonic, init=False, repr=False)

    def __post_init__(self) -> None:
        self.key_name = check_key_name(self.key_name or self.origin)
        self.state = (SignerState(self.state_file, VerifierKey.of(self.key, self.key_name), self.origin)
                      if self.state_file is not None else None)
        self.witnessing = Witnessing(self.witnesses, self.witness_timeout) if self.witnesses else None

    @classmethod
    def from_settings(cls, database_url: str, key: Ed25519PrivateKey, settings: SigningSettings) -> Checkpointer:
        return cls(database_url, key, origin=settings.origin, key_name=settings.key_name,
                   every_leaves=settings.every_leaves, every_seconds=settings.every_seconds,
                   state_file=settings.state_file, witnesses=settings.witnesses,
                   witness_timeout=settings.witness_timeout)

    @property
    def verifier_key(self) -> str:
        assert self.key_name is not None
        return verifier_key(self.key, self.key_name)

    def sign(self, conn: psycopg.Connection, size: int | None = None, *,
             stream_map: streammap.StreamMap | None = None) -> StoredCheckpoint:
        """Sign the tree at `size` (default: as built now) unless a checkpoint of that size exists.
        `stream_map`: the tree builder's (its cache), when the map must be brought to `size`."""
        try:
            return self._sign(conn, size, stream_map)
        except BaseException:
            if stream_map is not None:
                stream_map.forget()  # it may hold nodes of an update that did not commit
            raise

    def _sign(self, conn: psycopg.Connection, size: int | None,
              stream_map: streammap.StreamMap | None) -> StoredCheckpoint:
        assert self.key_name is not None
        if self.fault is not None:
            raise InconsistentTreeError(f"the signer stopped after a fault: {self.fault}")
        with self._remembered() as last, conn.transaction():
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
                        self._refuse(f"the tree has {size} leaves but a checkpoint of {latest.tree_size} leaves was"
                                     " signed: the tree or the ledger was cut back")
                    raise CheckpointError(f"a checkpoint of {latest.tree_size} leaves exists;"
                                          f" not signing the older size {size}")
                proof = tree.consistency_proof(conn, latest.tree_size, size)
                try:
                    merkle.verify_consistency(latest.tree_size, size, latest.root_hash, root, proof)
                except merkle.ProofError as error:
                    self._refuse(f"the tree of {size} leaves does not extend the checkpoint of {latest.tree_size}"
                                 f" leaves ({error}): the ledger or the tree was rewritten")
            if last is not None:
                self._check_extends(conn, last, size, root)
            if latest is not None and latest.tree_size == size:
                return latest
            note = sign_checkpoint(self.key, self.key_name, self.origin, size, root,
                                   streammap.checkpoint_extensions(conn, size, stream_map))
            for cokey, coname in self.cosigners:
                note = add_signature(note, cokey, coname)
            if self.state is not None:
                # Durably remembered before anyone can see it: a crash after this point leaves
                # a signer that knows the note, never a note the signer forgot.
                self.state.record(SignedHead(size, root, note))
            row = conn.execute(
                "INSERT INTO ledger_checkpoints (tree_size, root_hash, note) VALUES (%s, %s, %s)"
                " RETURNING tree_size, root_hash, note, signed_at",
                (size, root, note),
            ).fetchone()
        self._last_signed = time.monotonic()
        log.info("signed checkpoint of %d leaves", size)
        return self._cosigned(conn, _stored(row))  # type: ignore[arg-type]

    def _cosigned(self, conn: psycopg.Connection, stored: StoredCheckpoint) -> StoredCheckpoint:
        """After the INSERT: the witnesses' cosignatures, stored and appended to the note. A witness
        that is down or refuses is logged, never raised: the log keeps signing."""
        if self.witnessing is None:
            return stored
        note = self.witnessing.cosign(conn, stored.tree_size, stored.root_hash, stored.note,
                                      lambda old, new: tree.consistency_proof(conn, old, new))
        return replace(stored, note=note)

    def rewitness(self, conn: psycopg.Connection) -> None:
        """Offer the latest checkpoint again to the witnesses that have not cosigned it (at most
        every `Witnessing.retry_seconds`)."""
        if self.witnessing is None or self.fault is not None or not self.witnessing.retry_due():
            return
        latest = latest_checkpoint(conn)
        if latest is not None and self.witnessing.missing(conn, latest.tree_size, latest.root_hash):
            self._cosigned(conn, latest)

    def _remembered(self) -> AbstractContextManager[SignedHead | None]:
        return self.state.locked() if self.state is not None else nullcontext(None)

    def _check_extends(self, conn: psycopg.Connection, last: SignedHead, size: int, root: bytes) -> None:
        """Refuse unless the tree at `size` extends the signer's own last note."""
        if size < last.tree_size:
            self._refuse(f"the tree has {size} leaves but this signer already signed {last.tree_size}:"
                         " the ledger was cut back or restored from an older backup")
        if size == last.tree_size:
            if root != last.root_hash:
                self._refuse(f"the tree of {size} leaves has another root than the one this signer signed for"
                             " that size: the ledger was rewritten")
            return
        try:
            proof = tree.consistency_proof(conn, last.tree_size, size)
            merkle.verify_consistency(last.tree_size, size, last.root_hash, root, proof)
        except (merkle.ProofError, tree.TreeError) as error:
            self._refuse(f"the tree of {size} leaves does not extend the checkpoint of {last.tree_size} leaves this"
                         f" signer signed ({error}): the ledger or the tree was rewritten")

    def stop_signing(self, reason: str) -> None:
        """Sign nothing more (another check found the ledger faulty); refusals name `reason`."""
        if self.fault is None:
            self.fault = reason

    def _refuse(self, reason: str) -> NoReturn:
        self.fault = reason
        log.error("checkpoint signer refuses to sign: %s; signing stopped", reason)
        self.on_fault(reason)
        raise InconsistentTreeError(f"{reason}; refusing to sign")

    def checkpoint_now(self, *, extend: bool = True) -> StoredCheckpoint:
        """On demand: bring the tree up to date (unless `extend` is False), then sign it."""
        if extend:
            with tree.TreeBuilder(self.database_url) as builder:
                builder.catch_up()
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return self.sign(conn)

    def checkpoint_covering(self, size: int, *, timeout: float) -> StoredCheckpoint:
        """The latest checkpoint when it covers `size` leaves; else the tree is grown to `size`
        within `timeout` seconds (`tree.TreeBuilder.grow_to`: OUT_OF_RANGE beyond the ledger's
        events, DEADLINE_EXCEEDED past the deadline) and signed as it then stands."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            latest = latest_checkpoint(conn)
        if latest is not None and latest.tree_size >= size:
            return latest
        with tree.TreeBuilder(self.database_url) as builder:
            builder.grow_to(size, timeout=timeout)
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
            self.rewitness(conn)
        return None

    def run_forever(self, stop_event: threading.Event, *, timeout: float = 1.0) -> None:
        """Follow the ledger: extend the tree on every insert, sign checkpoints when due."""
        conn: psycopg.Connection | None = None  # one connection for every tick, not one per tick

        builder = tree.TreeBuilder(self.database_url)

        def after(_added: int) -> None:
            nonlocal conn
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = psycopg.connect(self.database_url, autocommit=True)
                if self.due(conn):
                    # The builder's map, whose cache holds the paths: a size it has not mapped is
                    # then not an update read from the table node by node (this runs in its thread).
                    self.sign(conn, stream_map=builder.stream_map)
                else:
                    self.rewitness(conn)
            except (InconsistentTreeError, tree.TreeError) as error:
                log.error("checkpoint: %s", error)

        try:
            builder.run_forever(stop_event, timeout=timeout, after_extend=after)
        finally:
            builder.close()
            if conn is not None:
                conn.close()


class LatestCheckpoint:
    """The latest signed checkpoint, kept in memory, for receipts: a receipt names it when it covers
    the receipt's leaf. A fresh write's leaf is never covered yet, so asking costs nothing
    (`refresh=False`); an old receipt (an idempotent retry) may be, so the store is read again, at
    most every `max_age` seconds. A failed read leaves the receipt without a checkpoint: it is
    optional, never a reason to fail the call."""

    def __init__(self, load: Callable[[], StoredCheckpoint | None], *, max_age: float = 1.0) -> None:
        self._load = load
        self.max_age = max_age
        self._latest: StoredCheckpoint | None = None
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def offer(self, checkpoint: StoredCheckpoint | None) -> None:
        """Keep `checkpoint` if it is newer (larger) than the one kept."""
        if checkpoint is None:
            return
        with self._lock:
            if self._latest is None or checkpoint.tree_size > self._latest.tree_size:
                self._latest = checkpoint

    def covering(self, leaf_index: int, *, refresh: bool = False) -> StoredCheckpoint | None:
        """The latest checkpoint if its tree includes leaf `leaf_index`, else None."""
        latest = self._latest
        if latest is not None and latest.tree_size > leaf_index:
            return latest
        if not refresh:
            return None
        with self._lock:
            now = time.monotonic()
            if now - self._loaded_at < self.max_age:
                return None
            self._loaded_at = now
        try:
            self.offer(self._load())
        except Exception as error:  # noqa: BLE001 - optional enrichment: the receipt goes out without it
            log.warning("could not read the latest checkpoint for a receipt: %s", error)
        latest = self._latest
        return latest if latest is not None and latest.tree_size > leaf_index else None
