"""Erasing a member (crypto-shredding): `claimsctl erase-member` and ``AdminService.EraseMember``.

The member's data on the ledger is sealed under their data key (``claims_service.keys``); erasing
them, in this order:

1. finds their streams: every stream whose first event names them (sealed under their key, or,
   written before payloads were sealed per member, naming their member id), in one pass over the
   ledger's first events;
2. in ONE transaction, while no projection writes (their tracking rows locked): destroys the data
   key (its row deleted, the member marked erased: nothing more is recorded for them) and deletes
   their rows from every read model (every table with their ``member_id``, or one of their streams
   as ``claim_id`` or ``stream_id``; rebuilds in progress and kept previous copies too). A
   projection batch that had read their events before commits first and is purged with the rest;
   one that reads after finds them erased;
3. deletes their attachments' documents from the blob store (their directory);
4. records the erasure on the ledger (``MemberErasure.Recorded``: their key id, the streams, what
   was and was not erased, no member data), at which every read model purges the streams again
   (what a rebuild, which never reads their sealed data, needs for the events that were never
   sealed).

Afterwards the chain, the tree, checkpoints, receipts and bundles are unchanged (no stored byte
changed); the member's events read as erased; money reconciles (amounts, ids, codes and plan terms
were never sealed). Erasing again reports the first erasure. Events written before per-member keys
hold their data as written: they are counted (``legacy_events``), not erased.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from eventsourcing.application import AggregateNotFoundError
from psycopg import sql
from psycopg.rows import tuple_row

from claims_service.application import LedgerApplication, Receipt
from claims_service.blobs.store import BlobStore
from claims_service.domain import phi
from claims_service.domain.erasure import MemberErasure
from claims_service.errors import ConflictError, MemberNotFoundError, ValidationError
from claims_service.keys.store import destroy_key, member_ref
from claims_service.ledger.chain import EVENTS_TABLE
from claims_service.ledger.payloads import SEALED_PREFIX, UndecodablePayloadError, decode_state
from projections import catalog

log = logging.getLogger(__name__)

ERASED_BY = ("claim_id", "stream_id")  # as projections.store.ERASED_BY
READ_MODEL_SUFFIXES = ("", "_rebuild", "_previous")


@dataclass(frozen=True)
class ErasureReport:
    key_id: str
    streams: int
    sealed_events: int
    legacy_events: int
    attachments: int
    read_model_rows: int
    receipt: Receipt
    already_erased: bool = False

    def summary(self) -> str:
        if self.already_erased:
            return (f"already erased (key {self.key_id}): the erasure is at ledger position {self.receipt.position}")
        text = (f"erased: member data key {self.key_id} destroyed; {self.sealed_events} events in {self.streams} streams now "
                f"read as erased; {self.read_model_rows} read-model rows and {self.attachments} attachment(s) deleted; "
                f"recorded at ledger position {self.receipt.position} (hash {self.receipt.event_hash.hex()[:16]}…)")
        if self.legacy_events:
            text += (f"\n{self.legacy_events} event(s) of this member were written before payloads were sealed per "
                     "member: they keep their data as written (not erasable without breaking the chain)")
        return text

    def as_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "streams": self.streams, "sealed_events": self.sealed_events,
                "legacy_events": self.legacy_events, "attachments": self.attachments,
                "read_model_rows": self.read_model_rows, "position": self.receipt.position,
                "hash": self.receipt.event_hash.hex(), "already_erased": self.already_erased}


def check_member_id(member_id: str) -> str:
    if not isinstance(member_id, str) or not member_id or member_id != member_id.strip() or len(member_id) > 500 \
            or any(ord(c) < 32 or ord(c) == 127 for c in member_id):
        raise ValidationError.single("member_id", "must be a member id (1 to 500 characters, no control characters, "
                                     "no surrounding whitespace)")
    return member_id


class Eraser:
    """``Eraser(ledger, save, blobs=None)``: erases members; ``save(aggregate) -> Receipt``
    records the erasure (the group committer's, or the ledger's own)."""

    def __init__(self, ledger: LedgerApplication, save: Callable[[Any], Receipt], blobs: BlobStore | None = None) -> None:
        self.ledger = ledger
        self.save = save
        self.blobs = blobs

    def erase(self, member_id: str, *, actor: str) -> ErasureReport:
        check_member_id(member_id)
        ref = member_ref(member_id)
        with self.ledger.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            row = cur.execute("SELECT key_id::text, erased_at IS NOT NULL FROM member_keys WHERE member_ref = %s",
                              (ref,)).fetchone()
        key_id = row[0] if row else None
        recorded = self._recorded(key_id) if row and row[1] else None
        if recorded is not None:
            return recorded
        streams = self._streams(member_id, key_id)
        if not streams and key_id is None:
            raise MemberNotFoundError("member_id: the ledger holds no data of this member")
        sealed, legacy = self._count(streams, key_id)
        with self.ledger.datastore.get_connection() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            if key_id is None:  # only events from before member keys: the member is marked erased all the same
                key_id = str(cur.execute("INSERT INTO member_keys (key_id, member_ref, erased_at) VALUES (gen_random_uuid(),"
                                         " %s, now()) ON CONFLICT (member_ref) DO UPDATE SET erased_at = now()"
                                         " RETURNING key_id", (ref,)).fetchone()[0])
            cur.execute("SELECT 1 FROM ledger_tracking WHERE application_name LIKE 'projection.%%'"
                        " ORDER BY application_name FOR UPDATE")
            destroy_key(conn, key_id)
            rows = purge_read_models(cur, member_id, streams)
        self.ledger.member_keys.forget(key_id)
        attachments = self.blobs.delete_prefix(key_id) if self.blobs is not None else 0
        erasure = MemberErasure.record(actor=actor, key_id=key_id, streams=streams, sealed_events=sealed,
                                       legacy_events=legacy, attachments=attachments)
        try:
            receipt = self.save(erasure)
        except ConflictError:  # erased at the same moment by another caller
            again = self._recorded(key_id)
            assert again is not None
            return again
        log.info("member erased: key %s, %d streams, %d sealed and %d older events, %d read-model rows, %d attachments",
                 key_id, len(streams), sealed, legacy, rows, attachments)
        return ErasureReport(key_id, len(streams), sealed, legacy, attachments, rows, receipt)

    def _recorded(self, key_id: str | None) -> ErasureReport | None:
        if key_id is None:
            return None
        try:
            erasure = self.ledger.repository.get(MemberErasure.create_id(key_id))
        except AggregateNotFoundError:
            return None
        with self.ledger.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT notification_id, hash, leaf_index FROM ledger_events WHERE originator_id = %s"
                         " AND originator_version = 1", (erasure.id,))
            found = curs.fetchone()
        receipt = self.ledger.with_checkpoint(Receipt(found["notification_id"], bytes(found["hash"]), found["leaf_index"]))
        return ErasureReport(key_id, len(erasure.streams), erasure.sealed_events, erasure.legacy_events, erasure.attachments,
                             0, receipt, already_erased=True)

    def _streams(self, member_id: str, key_id: str | None) -> list[str]:
        """Every stream whose first event names the member: sealed under their key, or older and
        naming their member id (plain JSON, or the library's one-key cipher, opened here)."""
        prefix = _sealed_under(key_id)
        found = []
        with self.ledger.datastore.get_connection() as conn, conn.cursor(binary=True, row_factory=tuple_row) as cur:
            for stream, state in cur.execute(*first_events_query(EVENTS_TABLE, member_id, key_id)):
                state = bytes(state)
                if state.startswith(prefix):
                    found.append(stream)
                    continue
                if state.startswith(SEALED_PREFIX):
                    continue  # another member's
                try:
                    named = decode_state(state).get(phi.MEMBER_FIELD)
                except (UndecodablePayloadError, ValueError):
                    continue  # sealed some way this process cannot open: not checked here
                if named == member_id:
                    found.append(stream)
        return sorted(found)

    def _count(self, streams: list[str], key_id: str | None) -> tuple[int, int]:
        if not streams:
            return 0, 0
        prefix = SEALED_PREFIX + key_id.encode("ascii") + b'"' if key_id else b"\x00"
        with self.ledger.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            total, sealed = cur.execute(
                f"SELECT count(*), count(*) FILTER (WHERE substring(state from 1 for %s) = %s) FROM {EVENTS_TABLE}"
                " WHERE originator_id = ANY(%s::uuid[])", (len(prefix), prefix, streams)).fetchone()
        return int(sealed), int(total) - int(sealed)


def _sealed_under(key_id: str | None) -> bytes:
    """How a payload sealed under this key begins (a byte no payload begins with, for no key)."""
    return SEALED_PREFIX + key_id.encode("ascii") + b'"' if key_id else b"\x00"


def first_events_query(table: str, member_id: str, key_id: str | None) -> tuple[str, tuple[Any, ...]]:
    """The first events that may name the member: sealed under their key; plain JSON naming them, or
    naming no member at all; and any other payload (the library's one-key cipher), to be opened.
    A one-key payload's random nonce begins with "{" once in 256: it names no member in the clear,
    so it is kept (filtering on the member's name alone missed it)."""
    prefix = _sealed_under(key_id)
    field = f'"{phi.MEMBER_FIELD}":'.encode()
    query = (f"SELECT originator_id::text, state FROM {table} WHERE originator_version = 1 AND"
             " (substring(state from 1 for %s) = %s"
             "  OR (get_byte(state, 0) = 123 AND substring(state from 1 for %s) <> %s"
             "      AND (position(%s in state) > 0 OR position(%s in state) = 0))"
             "  OR get_byte(state, 0) <> 123)")
    return query, (len(prefix), prefix, len(SEALED_PREFIX), SEALED_PREFIX, field + orjson.dumps(member_id), field)


def purge_read_models(cur: psycopg.Cursor[Any], member_id: str, streams: list[str]) -> int:
    """Delete the member's rows from every read-model table (live, being rebuilt, kept from a
    rebuild): by ``member_id``, and by their streams as ``claim_id`` or ``stream_id``; the rows of
    a table a read model keeps on erasure (a payment's claims) are scrubbed instead; how many."""
    keeping = {table: model for model in map(catalog.model, catalog.NAMES) for table in model.kept_on_erasure}
    deleted = 0
    tables = [row[0] for row in cur.execute("SELECT table_name FROM read_model_tables ORDER BY table_name").fetchall()]
    for base in tables:
        for suffix in READ_MODEL_SUFFIXES:
            relation = base + suffix
            if cur.execute("SELECT to_regclass(%s)", (relation,)).fetchone()[0] is None:
                continue
            if base in keeping:  # rewritten as a rebuild after the erasure writes it, not deleted
                deleted += keeping[base].scrub(cur, relation, streams)
                continue
            columns = {row[0] for row in cur.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (relation,)).fetchall()}
            if phi.MEMBER_FIELD in columns:
                deleted += cur.execute(sql.SQL("DELETE FROM {} WHERE {}::text = %s").format(
                    sql.Identifier(relation), sql.Identifier(phi.MEMBER_FIELD)), (member_id,)).rowcount
            for column in ERASED_BY:
                if column in columns and streams:
                    deleted += cur.execute(sql.SQL("DELETE FROM {} WHERE {}::text = ANY(%s::text[])").format(
                        sql.Identifier(relation), sql.Identifier(column)), (streams,)).rowcount
    return deleted


def wait_for_read_models(database_url: str, position: int, timeout: float = 10.0) -> bool:
    """Wait until every projection has passed ``position`` (it purged the erased streams); False
    on timeout."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT min(notification_id) FROM ledger_tracking WHERE application_name LIKE 'projection.%'"
                               " AND application_name NOT LIKE '%.rebuild'").fetchone()
            if row is None or row[0] is None or row[0] >= position:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
