"""Member data keys of one database: created, cached unwrapped, destroyed.

A member's data key is a random 256-bit AES key, made on the first event that names the member and
kept in ``member_data_keys`` wrapped under the newest KEK (``kek``), with the member's row in
``member_keys`` (migration 0020): the key id (a random UUID: the pseudonymous reference every
sealed event of theirs carries) and the uuid5 of their member id, to find it again.

Reading keys costs a query and an unwrap, and every event of a member's stream is sealed or opened
with one: `MemberKeyStore` keeps what it read in memory, bounded (least recently used out). A key
destroyed by another process (an erasure by `claimsctl erase-member`) must stop being used within
``cache_seconds``: every ``cache_seconds`` at most, the store reads the count of erasures
(``member_key_erasures``, moved by triggers in the erasing transaction, migration 0026), and when
it moved, reads every cached key again, in one query per thousand. While it stands still, a key is
read from the table once, at its first use. A key found destroyed stays so in the cache. Readers
that go through the ledger in batches (the projections, reconciliation) read the keys of each batch
with the batch instead (`fresh_keys`), in the same snapshot as the events: what they decode always
agrees with the key table at that moment.

Unwrapped keys are also kept process-wide by (key id, KEK id, wrapped bytes) (`_unwrap`), bounded,
so that a batch reader unwraps each key once, not once per batch.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg.rows import tuple_row

from claims_service.domain.ids import make_id
from claims_service.errors import StateError
from claims_service.keys.kek import KeyEncryptionKeys, default_keks
from claims_service.ledger.payloads import UndecodablePayloadError

Connect = Callable[[], AbstractContextManager[Any]]
"""A connection to the ledger's database (a context manager giving a psycopg connection)."""

DEFAULT_CACHE_SECONDS = 2.0
DEFAULT_CACHE_ENTRIES = 20_000
UNWRAPPED_ENTRIES = 50_000


class MemberDataErasedError(StateError):
    """The member's data was erased (their data key destroyed): nothing of theirs can be read or
    recorded any more."""


def member_ref(member_id: str) -> uuid.UUID:
    """What ``member_keys`` finds a member by: the uuid5 of their id, as the ledger's stream ids are made."""
    return make_id("member-key", member_id)


# --- unwrapping (process-wide) ---------------------------------------------------------------

_unwrapped: OrderedDict[tuple[str, str, bytes], AESGCM] = OrderedDict()
_unwrapped_lock = threading.Lock()


def _unwrap(keks: KeyEncryptionKeys, key_id: str, kek_id: str, wrapped: bytes) -> AESGCM:
    entry = (key_id, kek_id, wrapped)
    with _unwrapped_lock:
        found = _unwrapped.get(entry)
        if found is not None:
            _unwrapped.move_to_end(entry)
            return found
    cipher = AESGCM(keks.unwrap(kek_id, wrapped, key_id.encode("ascii")))
    with _unwrapped_lock:
        _unwrapped[entry] = cipher
        while len(_unwrapped) > UNWRAPPED_ENTRIES:
            _unwrapped.popitem(last=False)
    return cipher


# Keys this process destroyed (or saw destroyed): no store of the process uses them again, whatever
# it cached. Key ids are random UUIDs, so one set serves every database the process reaches.
_destroyed: set[str] = set()


def forget_unwrapped(key_id: str) -> None:
    """Drop this process's unwrapped copies of a key (it was just destroyed), for good."""
    with _unwrapped_lock:
        _destroyed.add(key_id)
        for entry in [e for e in _unwrapped if e[0] == key_id]:
            del _unwrapped[entry]


ERASURE_COUNT = "SELECT erasures FROM member_key_erasures"
KEY_ROWS_BY_ID = ("SELECT k.key_id::text, k.erased_at IS NOT NULL, d.kek_id, d.wrapped_key"
                  " FROM member_keys k LEFT JOIN member_data_keys d USING (key_id) WHERE k.key_id = ANY(%s::uuid[])")


def _cipher_of(keks: KeyEncryptionKeys, row: tuple[Any, ...]) -> AESGCM | None:
    key_id, erased, kek_id, wrapped = row
    if erased or wrapped is None or key_id in _destroyed:
        return None
    return _unwrap(keks, key_id, kek_id, bytes(wrapped))


# --- the keys of one batch -------------------------------------------------------------------


@dataclass(frozen=True)
class BatchKeys:
    """The keys a batch of events is sealed under, as the key table had them when the batch was
    read: a `claims_service.ledger.payloads.MemberKeys`."""

    ciphers: dict[str, AESGCM | None]

    def cipher(self, key_id: str) -> AESGCM | None:
        try:
            return self.ciphers[key_id]
        except KeyError:
            raise UndecodablePayloadError("a ledger payload is sealed under a member key this database does not know") from None


def fresh_keys(conn: Any, key_ids: Iterable[str], keks: KeyEncryptionKeys | None = None) -> BatchKeys:
    """The current state of these keys (one query on ``conn``, in its transaction if it is in one)."""
    wanted = sorted(set(key_ids))
    if not wanted:
        return BatchKeys({})
    keks = keks or default_keks()
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(KEY_ROWS_BY_ID, (wanted,)).fetchall()
    return BatchKeys({row[0]: _cipher_of(keks, row) for row in rows})


# --- one database's keys, cached -------------------------------------------------------------


class MemberKeyStore:
    """``MemberKeyStore(connect, keks=None, *, cache_seconds=2.0, cache_entries=20000)``: the data
    keys of the database ``connect`` reaches (a `claims_service.ledger.payloads.MemberKeys`)."""

    def __init__(self, connect: Connect, keks: KeyEncryptionKeys | None = None, *,
                 cache_seconds: float = DEFAULT_CACHE_SECONDS, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self._connect = connect
        self._keks = keks
        self.cache_seconds = cache_seconds
        self.cache_entries = cache_entries
        self._lock = threading.Lock()
        # key id -> its cipher, or None once destroyed
        self._ciphers: OrderedDict[str, AESGCM | None] = OrderedDict()
        # member ref -> key id (a member's key id never changes; its key may be destroyed)
        self._members: OrderedDict[uuid.UUID, str] = OrderedDict()
        # stream id -> the key id of its member ("" for a stream that belongs to no member)
        self._streams: OrderedDict[Any, str] = OrderedDict()
        # The erasure count as last read, and when that read began (monotonic): every cached key
        # agrees with the table as of then. One thread reads it at a time.
        self._validating = threading.Lock()
        self._erasures: int | None = None
        self._validated_at = float("-inf")
        # Moved each time a moved count sends the cached keys back to the table: a key read that
        # began before it may predate the erasure and is read again rather than cached.
        self._generation = 0
        self.reads = 0  # queries of the key tables (tests, the bench)

    @property
    def keks(self) -> KeyEncryptionKeys:
        return self._keks or default_keks()

    # --- reading ----------------------------------------------------------------------------

    def cipher(self, key_id: str) -> AESGCM | None:
        """The member's data key, or None once destroyed; `UndecodablePayloadError` for a key id
        this database does not know."""
        if key_id in _destroyed:
            return None
        self._validate()
        with self._lock:
            if key_id in self._ciphers:
                self._ciphers.move_to_end(key_id)
                return self._ciphers[key_id]
        found = self._fetch([key_id])
        if key_id not in found:
            raise UndecodablePayloadError("a ledger payload is sealed under a member key this database does not know")
        return found[key_id]

    def prefetch(self, key_ids: Iterable[str]) -> None:
        """Read those of these keys that are not cached in one query a thousand, for a caller about
        to open many members' events one by one."""
        self._validate()
        with self._lock:
            wanted = [k for k in dict.fromkeys(key_ids) if k not in _destroyed and k not in self._ciphers]
        if wanted:
            self._fetch(wanted)

    def _validate(self) -> None:
        """At most every `cache_seconds`: read the erasure count; when it moved since the last
        read, read every cached live key again. A key destroyed elsewhere is thus never used
        `cache_seconds` after its erasure committed."""
        if time.monotonic() - self._validated_at < self.cache_seconds:
            return
        with self._validating:
            started = time.monotonic()
            if started - self._validated_at < self.cache_seconds:
                return  # another thread read it meanwhile
            erasures = int(self._read(ERASURE_COUNT, ())[0][0])
            if self._erasures is not None and erasures != self._erasures:
                with self._lock:
                    self._generation += 1
                    live = [key_id for key_id, cipher in self._ciphers.items() if cipher is not None]
                self._fetch(live)
            self._erasures = erasures
            self._validated_at = started

    def _fetch(self, key_ids: list[str]) -> dict[str, AESGCM | None]:
        """Read these keys from the table (a thousand a query) and cache what was found; a key
        known here but no longer in the table leaves the cache."""
        keks = self.keks
        while True:
            with self._lock:
                generation = self._generation
            found: dict[str, AESGCM | None] = {}
            for start in range(0, len(key_ids), 1000):
                rows = self._read(KEY_ROWS_BY_ID, (key_ids[start:start + 1000],))
                found.update((row[0], _cipher_of(keks, row)) for row in rows)
            with self._lock:
                if generation != self._generation:
                    continue  # the cache went back to the table meanwhile: this read may predate an erasure
                for key_id in key_ids:
                    if key_id not in found:
                        self._ciphers.pop(key_id, None)
                for key_id, cipher in found.items():
                    self._ciphers[key_id] = cipher
                    self._ciphers.move_to_end(key_id)
                while len(self._ciphers) > self.cache_entries:
                    self._ciphers.popitem(last=False)
            return found

    def _read(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        self.reads += 1
        with self._connect() as conn, conn.cursor(row_factory=tuple_row) as cur:
            return list(cur.execute(query, params).fetchall())

    def key_of_member(self, member_id: str, *, create: bool = True) -> tuple[str, AESGCM]:
        """The member's (key id, data key), made on first use; `MemberDataErasedError` once the
        member was erased (nothing new is recorded for them)."""
        ref = member_ref(member_id)
        with self._lock:
            key_id = self._members.get(ref)
            if key_id is not None:
                self._members.move_to_end(ref)
        if key_id is None:
            rows = self._read("SELECT key_id::text FROM member_keys WHERE member_ref = %s", (ref,))
            if rows:
                key_id = rows[0][0]
            elif not create:
                raise UndecodablePayloadError("this member has no data key")
            else:
                key_id = self._create(ref)
            with self._lock:
                self._members[ref] = key_id
                while len(self._members) > self.cache_entries:
                    self._members.popitem(last=False)
        cipher = self.cipher(key_id)
        if cipher is None:
            raise MemberDataErasedError("this member's data was erased: nothing more is recorded for them")
        return key_id, cipher

    def _create(self, ref: uuid.UUID) -> str:
        key_id = str(uuid.uuid4())
        data_key = os.urandom(32)
        kek_id, wrapped = self.keks.wrap(data_key, key_id.encode("ascii"))
        self.reads += 1
        with self._connect() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            made = cur.execute("INSERT INTO member_keys (key_id, member_ref) VALUES (%s, %s)"
                               " ON CONFLICT (member_ref) DO NOTHING RETURNING key_id", (key_id, ref)).fetchone()
            if made is None:  # made by another writer a moment ago
                row = cur.execute("SELECT key_id::text FROM member_keys WHERE member_ref = %s", (ref,)).fetchone()
                return str(row[0])
            cur.execute("INSERT INTO member_data_keys (key_id, kek_id, wrapped_key) VALUES (%s, %s, %s)",
                        (key_id, kek_id, wrapped))
        with self._lock:
            self._ciphers[key_id] = AESGCM(data_key)
            self._ciphers.move_to_end(key_id)
        return key_id

    # --- streams ----------------------------------------------------------------------------

    def stream_key(self, stream_id: Any) -> str | None:
        """The key id of the member a stream belongs to as far as this process saw ("" for none,
        None when it has not seen the stream)."""
        with self._lock:
            return self._streams.get(stream_id)

    def note_stream(self, stream_id: Any, key_id: str) -> None:
        with self._lock:
            self._streams[stream_id] = key_id
            self._streams.move_to_end(stream_id)
            while len(self._streams) > self.cache_entries * 4:
                self._streams.popitem(last=False)

    # --- erasure ----------------------------------------------------------------------------

    def forget(self, key_id: str) -> None:
        """The key was destroyed (by this process): never use it again."""
        with self._lock:
            self._ciphers[key_id] = None
        forget_unwrapped(key_id)


def destroy_key(conn: Any, key_id: str) -> bool:
    """Delete a member's data key and mark the member erased, in ``conn``'s transaction; False
    when it was destroyed before."""
    with conn.cursor(row_factory=tuple_row) as cur:
        deleted = cur.execute("DELETE FROM member_data_keys WHERE key_id = %s", (key_id,)).rowcount
        cur.execute("UPDATE member_keys SET erased_at = coalesce(erased_at, now()) WHERE key_id = %s", (key_id,))
    forget_unwrapped(key_id)
    return deleted > 0


def rewrap_all(conn: Any, keks: KeyEncryptionKeys | None = None) -> int:
    """Wrap every data key not under the newest KEK under it (in ``conn``'s transaction); returns
    how many. After it, older KEKs wrap nothing and can be retired."""
    keks = keks or default_keks()
    count = 0
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute("SELECT key_id::text, kek_id, wrapped_key FROM member_data_keys WHERE kek_id <> %s FOR UPDATE",
                           (keks.newest,)).fetchall()
        for key_id, kek_id, wrapped in rows:
            data_key = keks.unwrap(kek_id, bytes(wrapped), key_id.encode("ascii"))
            new_id, new_wrapped = keks.wrap(data_key, key_id.encode("ascii"))
            cur.execute("UPDATE member_data_keys SET kek_id = %s, wrapped_key = %s, wrapped_at = now() WHERE key_id = %s",
                        (new_id, new_wrapped, key_id))
            count += 1
    return count


def kek_usage(conn: Any) -> dict[str, int]:
    """How many data keys each KEK wraps."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return {kek: n for kek, n in cur.execute("SELECT kek_id, count(*) FROM member_data_keys GROUP BY kek_id").fetchall()}
