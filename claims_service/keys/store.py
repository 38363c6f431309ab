"""Member data keys of one database: created, cached unwrapped, destroyed.

A member's data key is a random 256-bit AES key, made on the first event that names the member and
kept in ``member_data_keys`` wrapped under the newest KEK (``kek``), with the member's row in
``member_keys`` (migration 0020): the key id (a random UUID: the pseudonymous reference every
sealed event of theirs carries) and the uuid5 of their member id, to find it again.

Reading keys costs a query and an unwrap, and every event of a member's stream is sealed or opened
with one: `MemberKeyStore` keeps what it read in memory, bounded (least recently used out) and
revalidated against the table every ``cache_seconds``, so a key destroyed by another process (an
erasure by `claimsctl erase-member`) stops being used within that time: a due key is read again at
its next use, and those used since their last read are read with any miss, in one query. A key
found destroyed stays so in the cache. Readers that go through the ledger in batches (the projections, reconciliation)
read the keys of each batch with the batch instead (`fresh_keys`), in the same snapshot as the
events: what they decode always agrees with the key table at that moment.

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
        # key id -> (cipher, or None once destroyed; when last read from the table)
        self._ciphers: OrderedDict[str, tuple[AESGCM | None, float]] = OrderedDict()
        # member ref -> key id (a member's key id never changes; its key may be destroyed)
        self._members: OrderedDict[uuid.UUID, str] = OrderedDict()
        # key id -> when it was last read from the table, oldest first: the keys due for
        # revalidation are found at the front, not by a pass over the whole cache at every miss
        # (which made a pass over many members' events quadratic)
        self._read_at: OrderedDict[str, float] = OrderedDict()
        # live keys served from the cache since they were last read: only these are revalidated
        # with a miss. One not used since waits for its next use, which reads it (a miss): else a
        # full cache (a pass over the history fills it) is read again every `cache_seconds` whole
        self._used: set[str] = set()
        # stream id -> the key id of its member ("" for a stream that belongs to no member)
        self._streams: OrderedDict[Any, str] = OrderedDict()
        self.reads = 0  # queries of the key table (tests, the bench)

    @property
    def keks(self) -> KeyEncryptionKeys:
        return self._keks or default_keks()

    # --- reading ----------------------------------------------------------------------------

    def cipher(self, key_id: str) -> AESGCM | None:
        """The member's data key, or None once destroyed; `UndecodablePayloadError` for a key id
        this database does not know."""
        if key_id in _destroyed:
            return None
        now = time.monotonic()
        with self._lock:
            found = self._ciphers.get(key_id)
            if self._fresh(found, now):
                self._ciphers.move_to_end(key_id)
                if found[0] is not None:
                    self._used.add(key_id)
                return found[0]
            stale = self._stale(now, 1000)
        # One query for this key and every other cached key that is due for revalidation.
        rows = self._read(KEY_ROWS_BY_ID, ([key_id, *stale],))
        self._remember(rows, now, dropped={*stale, key_id})
        with self._lock:
            found = self._ciphers.get(key_id)
        if found is None:
            raise UndecodablePayloadError("a ledger payload is sealed under a member key this database does not know")
        return found[0]

    def prefetch(self, key_ids: Iterable[str]) -> None:
        """Read those of these keys that are not cached (or are due for revalidation) in one query,
        for a caller about to open many members' events one by one."""
        now = time.monotonic()
        with self._lock:
            wanted = [k for k in dict.fromkeys(key_ids) if k not in _destroyed and not self._fresh(self._ciphers.get(k), now)]
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start:start + 1000]
            self._remember(self._read(KEY_ROWS_BY_ID, (chunk,)), now, dropped=set(chunk))

    def _fresh(self, found: tuple[AESGCM | None, float] | None, now: float) -> bool:
        """Whether a cache entry may be used without reading the table: known destroyed, or read
        less than `cache_seconds` ago."""
        return found is not None and (found[0] is None or now - found[1] < self.cache_seconds)

    def _stale(self, now: float, limit: int) -> list[str]:
        """Up to `limit` cached live keys read from the table `cache_seconds` ago or more and used
        since (under the lock). The due ones not used since leave the revalidation order: their
        next use is a miss."""
        stale: list[str] = []
        unused: list[str] = []
        for key_id, at in self._read_at.items():
            if now - at < self.cache_seconds or len(stale) >= limit:
                break
            (stale if key_id in self._used else unused).append(key_id)
        for key_id in unused:
            del self._read_at[key_id]
        return stale

    def _remember(self, rows: list[tuple[Any, ...]], now: float, dropped: set[str]) -> None:
        keks = self.keks
        seen = {row[0]: _cipher_of(keks, row) for row in rows}
        with self._lock:
            for key_id in dropped - seen.keys():
                self._ciphers.pop(key_id, None)
                self._read_at.pop(key_id, None)
                self._used.discard(key_id)
            for key_id, cipher in seen.items():
                self._ciphers[key_id] = (cipher, now)
                self._ciphers.move_to_end(key_id)
                self._note_read(key_id, cipher, now)
            while len(self._ciphers) > self.cache_entries:
                evicted = self._ciphers.popitem(last=False)[0]
                self._read_at.pop(evicted, None)
                self._used.discard(evicted)

    def _note_read(self, key_id: str, cipher: AESGCM | None, now: float) -> None:
        """Keep a live key's read time in read order; a destroyed one is never revalidated."""
        self._used.discard(key_id)
        if cipher is None:
            self._read_at.pop(key_id, None)
        else:
            self._read_at[key_id] = now
            self._read_at.move_to_end(key_id)

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
            now = time.monotonic()
            self._ciphers[key_id] = (cipher := AESGCM(data_key), now)
            self._note_read(key_id, cipher, now)
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
            self._ciphers[key_id] = (None, time.monotonic())
            self._read_at.pop(key_id, None)
            self._used.discard(key_id)
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
