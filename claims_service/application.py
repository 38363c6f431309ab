"""The ledger application: one eventsourcing `Application` over the hash-linked events table.

Every aggregate of the domain lives in the one `ledger_events` table, so that one hash chain
orders everything. The recorder is the library's PostgreSQL *process* recorder so that a
follower (the adjudicator) can write its events and its tracking position in one transaction.
Tables come from `migrations/` (CREATE_TABLE is off); the library's database functions path is
never enabled (it takes no table lock, see FIELD-NOTES).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, replace
from functools import cached_property
from typing import Any

import orjson
from eventsourcing.application import Application, ProcessingEvent, Repository
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    Notification,
    OperationalError,
    ProgrammingError,
    Recording,
    StoredEvent,
    Tracking,
    find_id_convertor,
)
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import resolve_topic, retry, strtobool
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from claims_service.domain.claim import claim_requests
from claims_service.errors import ConflictError, DataLossError
from claims_service.keys.kek import KeyEncryptionKeyError
from claims_service.keys.sealing import ErasedEvent, Sealer
from claims_service.keys.store import MemberDataErasedError, MemberKeyStore
from claims_service.ledger import payloads
from claims_service.ledger.checkpointer import LatestCheckpoint, StoredCheckpoint
from claims_service.observability import metrics

log = logging.getLogger(__name__)


def postgres_env(database_url: str, *, pool_size: int = 8, max_overflow: int = 8) -> dict[str, str]:
    """The eventsourcing PostgreSQL settings for a libpq URL (host may be a socket directory)."""
    params = conninfo_to_dict(database_url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "CREATE_TABLE": "no",
        "POSTGRES_DBNAME": str(params.get("dbname", "postgres")),
        "POSTGRES_HOST": str(params.get("host", "localhost")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        # No pre-ping: it costs a round trip per checkout; a dead connection raises an
        # OperationalError that the library's retry (and our callers) already handle.
        # Wait at most this long for the events table's lock rather than forever.
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_CONNECT_TIMEOUT": "5",
        # Read by 9.5.6 under this name (the docs say POSTGRES_SINGLE_ROW_TRACKING).
        "SINGLE_ROW_TRACKING": "y",
    }
    return env


def member_encryption(env: Mapping[str, str] | None = None) -> bool:
    """Whether new member events are sealed under their member's key: ``CLAIMS_MEMBER_ENCRYPTION``
    ``on`` (the default) or ``off`` (as before: plain, or the library's one-key cipher)."""
    value = ((env or {}).get("CLAIMS_MEMBER_ENCRYPTION") or os.environ.get("CLAIMS_MEMBER_ENCRYPTION") or "on").lower()
    if value not in ("on", "off"):
        raise ValueError("CLAIMS_MEMBER_ENCRYPTION is on or off")
    return value == "on"


def member_key_cache(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The member key cache's bounds: ``CLAIMS_MEMBER_KEY_CACHE_SECONDS`` (how often at most the
    erasure count is read: an erasure elsewhere takes effect within it),
    ``CLAIMS_MEMBER_KEY_CACHE_ENTRIES``."""
    def setting(name: str) -> str | None:
        return (env or {}).get(name) or os.environ.get(name) or None

    found: dict[str, Any] = {}
    if (seconds := setting("CLAIMS_MEMBER_KEY_CACHE_SECONDS")) is not None:
        found["cache_seconds"] = float(seconds)
    if (entries := setting("CLAIMS_MEMBER_KEY_CACHE_ENTRIES")) is not None:
        found["cache_entries"] = int(entries)
    return found


class LedgerRecorder(PostgresProcessRecorder):
    """The library's process recorder, each write one statement that PostgreSQL commits itself.

    A write (events, with a follower's tracking row or not) is ``ledger_append`` (migration 0024)
    in a transaction of its own: the tracking row, the lock timeout, the events table's lock, the
    NOTIFY and the INSERT ... RETURNING, the library's statements in the library's order, then the
    commit, all before PostgreSQL answers. The events table's lock is held for PostgreSQL's work
    and the WAL flush alone, never across a round trip to this process, whose thread may be
    waiting for the interpreter lock or a core meanwhile. (Not pipeline mode, which would also
    save the round trips: psycopg's can deadlock on a large statement, the server waiting in
    ClientRead while the client waits for results, psycopg/psycopg#685, and an adjudication batch
    of a few hundred claims with their recorded facts is one.) The rows go as five arrays sent in
    binary: the library sends one array of a composite type as text, which escapes every payload
    byte by byte in Python (about a tenth of a claim's CPU).
    """

    RECENT_RECEIPTS = 65_536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Hash and leaf index of the rows this recorder inserted lately, as the INSERT returned
        # them: a write's receipt needs no second query.
        self._recent: OrderedDict[int, tuple[bytes, int]] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._commit_seconds: Any = None  # metrics, once the application names its writer

    def instrument(self, writer: str) -> None:
        """Time this recorder's writes as ``writer``'s (the group commit, the adjudicator) in metrics."""
        self._commit_seconds = metrics.get().commit_seconds.labels(writer)

    def recent_receipts(self, positions: Sequence[int]) -> dict[int, tuple[bytes, int]]:
        """(hash, leaf index) of those of ``positions`` this recorder inserted lately."""
        with self._recent_lock:
            return {p: self._recent[p] for p in positions if p in self._recent}

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        tracking: Tracking | None = kwargs.get("tracking")
        if not stored_events:  # a follower's position alone: the library's tracking row, no lock
            with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
                self._insert_events(curs, stored_events, **kwargs)
            return None
        metadata: Mapping[Any, str] | None = kwargs.get("event_metadata")
        requests: Mapping[Any, Any] | None = kwargs.get("claim_requests")
        started = time.perf_counter()
        with self.datastore.get_connection() as conn:
            conn.autocommit = True  # the statement is its own transaction: see the class
            try:
                with conn.cursor() as curs:
                    curs.execute(self._append_statement, (
                        tracking.application_name if tracking else None,
                        tracking.notification_id if tracking else None,
                        f"{self.datastore.lock_timeout}s",
                        [e.originator_id for e in stored_events],
                        [e.originator_version for e in stored_events],
                        [e.topic for e in stored_events],
                        [e.state for e in stored_events],
                        # Metadata (stream id -> JSON text: its trace context) goes into the unhashed
                        # metadata column (0016).
                        [metadata.get(e.originator_id) for e in stored_events] if metadata else None,
                        # A new claim's request id (migration 0027), recorded in the same transaction.
                        [requests.get(e.originator_id) if e.originator_version == 1 else None
                         for e in stored_events] if requests else None,
                    ), binary=True)
                    rows = curs.fetchall()
            finally:
                if not conn.closed:
                    conn.autocommit = False
        if self._commit_seconds is not None:
            self._commit_seconds.observe(time.perf_counter() - started)
        if len(rows) != len(stored_events):
            raise ProgrammingError(f"inserted {len(stored_events)} events but got {len(rows)} positions back")
        with self._recent_lock:
            for row in rows:
                self._recent[row["notification_id"]] = (bytes(row["hash"]), row["leaf_index"])
            while len(self._recent) > self.RECENT_RECEIPTS:
                self._recent.popitem(last=False)
        return [row["notification_id"] for row in rows]

    @cached_property
    def _append_statement(self) -> bytes:
        # Rendered once: a Composed is rendered again at every execute.
        return SQL("SELECT notification_id, hash, leaf_index FROM {schema}.ledger_append("
                   "%s::text, %s::bigint, %s::text, %b::uuid[], %b::bigint[], %b::text[], %b::bytea[], %b::text[], "
                   "%b::uuid[])"
                   ).format(schema=Identifier(self.datastore.schema)).as_bytes()


class LedgerTranscoder(JSONTranscoder):
    """The library's JSON transcoder, encoding with orjson: the same bytes, four times faster.

    Events are hashed as stored, so the bytes must not change: orjson's compact output with
    dates and datetimes passed through to the library's transcodings is byte-for-byte what the
    library's `json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)` writes for the plain data
    domain events carry (str, int, bool, None, list, dict with str keys, date, datetime) — a test
    compares them event by event. Decoding stays the library's.
    """

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=self._encode_obj, option=orjson.OPT_PASSTHROUGH_DATETIME)


Locate = Callable[[Any, int], "int | None"]
"""(stream id, version) -> the event's ledger position, None when it cannot be found."""


def _unreadable(locate: Locate | None, stream_id: Any, version: int, what: str) -> DataLossError:
    position = None
    if locate is not None:
        try:
            position = locate(stream_id, version)
        except Exception:  # noqa: BLE001 - the error is about the event, whatever finding it costs
            position = None
    log.error("stored event %s@%s (position %s) cannot be read: %s", stream_id, version, position, what)
    return DataLossError(position, f"{what} (stream {stream_id}, version {version})")


class LedgerMapper(Mapper[Any]):
    """The library's mapper, whose failures to read a stored event are DATA_LOSS naming its ledger
    position, not an internal error: its topic names no event class, its payload does not decode,
    or it lacks fields its event class requires. (The messages name the failure's type only: a
    payload's text may hold PHI.)

    With a ``sealer`` (``claims_service.keys.sealing``), the events of a member's stream are stored
    with their member data sealed under the member's key (when ``seal`` is on) and read back opened,
    or as an `ErasedEvent` once the member was erased."""

    locate: Locate | None = None
    sealer: Sealer | None = None
    seal: bool = False

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if self.seal and self.sealer is not None:
            stored = self.sealer.to_stored_event(domain_event)
            if stored is not None:
                return stored
        return super().to_stored_event(domain_event)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        if self.sealer is not None and payloads.sealed_key_id(stored_event.state) is not None:
            return self._opened(stored_event, self.sealer)
        try:
            event = super().to_domain_event(stored_event)
        except MapperDeserialisationError as error:
            cause = type(error.__cause__ or error).__name__
            raise _unreadable(self.locate, stored_event.originator_id, stored_event.originator_version,
                              f"its payload does not decode ({cause})") from error
        except Exception as error:
            raise _unreadable(self.locate, stored_event.originator_id, stored_event.originator_version,
                              f"it names no event this service knows ({type(error).__name__})") from error
        required = _declared_fields(type(event))
        if not required.issubset(event.__dict__):
            missing = required - event.__dict__.keys()
            raise _unreadable(self.locate, stored_event.originator_id, stored_event.originator_version,
                              f"its payload lacks {len(missing)} of the event's fields")
        if self.sealer is not None and stored_event.originator_version == 1 and "member_id" not in event.__dict__:
            self.sealer.keys.note_stream(stored_event.originator_id, "")  # no member's: its later events are not sealed
        return event

    def _opened(self, stored_event: StoredEvent, sealer: Sealer) -> Any:
        """A member-sealed event, opened as the library would have decoded it (or erased)."""
        try:
            cls = resolve_topic(stored_event.topic)
        except Exception as error:
            raise _unreadable(self.locate, stored_event.originator_id, stored_event.originator_version,
                              f"it names no event this service knows ({type(error).__name__})") from error
        try:
            opened = sealer.open(stored_event)
        except (MemberDataErasedError, KeyEncryptionKeyError):
            raise  # an erased member; KEKs missing from the configuration: the data is not damaged
        except Exception as error:
            raise _unreadable(self.locate, stored_event.originator_id, stored_event.originator_version,
                              f"its payload does not decode ({type(error).__name__})") from error
        if isinstance(opened, ErasedEvent) or opened is None:
            return opened
        opened["originator_id"] = find_id_convertor(cls, type(stored_event.originator_id))(stored_event.originator_id)
        opened["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = opened.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(opened)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", opened)
        required = _declared_fields(cls)
        if not required.issubset(opened):
            raise _unreadable(self.locate, stored_event.originator_id, stored_event.originator_version,
                              f"its payload lacks {len(required - opened.keys())} of the event's fields")
        return event


_FIELDS: dict[type, frozenset[str]] = {}


def _declared_fields(cls: type) -> frozenset[str]:
    """The fields an event class declares without a default (its dataclass fields), per class."""
    found = _FIELDS.get(cls)
    if found is None:
        declared = getattr(cls, "__dataclass_fields__", {}).values()
        found = _FIELDS[cls] = frozenset(f.name for f in declared if f.default is MISSING and f.default_factory is MISSING
                                         and f.init)
    return found


class LedgerRepository(Repository[Any]):
    """The library's repository, whose events that decode but do not apply (a payload whose values
    no longer fit its event) are DATA_LOSS naming the event's position, like the mapper's."""

    locate: Locate | None = None

    def get(self, aggregate_id: Any, *, projector_func: Any = None, **kwargs: Any) -> Any:
        return super().get(aggregate_id, projector_func=projector_func or self._project, **kwargs)

    def _project(self, aggregate: Any, events: Iterable[Any]) -> Any:
        for event in events:  # a row that does not decode fails here, in the mapper
            aggregate = apply_stored(event, aggregate, self.locate)
        return aggregate


def apply_stored(event: Any, aggregate: Any, locate: Locate | None) -> Any:
    """A stored event applied to the aggregate as it stands; DATA_LOSS if it no longer applies."""
    try:
        return event.mutate(aggregate)
    except MemberDataErasedError:
        raise  # an erased member's record: refused as such, not damaged
    except Exception as error:
        raise _unreadable(locate, event.originator_id, event.originator_version,
                          f"its event does not apply ({type(error).__name__})") from error


@dataclass(frozen=True)
class Receipt:
    """What a write returns: where its last event sits in the ledger and that event's hash."""

    position: int
    event_hash: bytes
    # The event's leaf in the Merkle tree: once a checkpoint's tree_size exceeds it, its inclusion
    # proof can be fetched (LedgerService GetCheckpoint + GetInclusionProof).
    leaf_index: int
    # The latest signed checkpoint covering the leaf, when one already exists as the receipt is
    # given (for a fresh write, hardly ever: checkpoints are signed later, every so many events).
    checkpoint: StoredCheckpoint | None = None


class LedgerApplication(Application):
    name = "Ledger"  # -> tables ledger_events and ledger_tracking

    def __init__(self, database_url: str, *, pool_size: int = 8, env: dict[str, str] | None = None,
                 writer: str = "ledger"):
        self.database_url = database_url
        settings = postgres_env(database_url, pool_size=pool_size)
        settings.update(env or {})
        super().__init__(env=settings)
        # Metrics: who writes through this application, and what its commits decided and paid.
        self.recorder.instrument(writer)  # type: ignore[attr-defined]
        self._metrics = metrics.get()
        self.mapper.locate = self.repository.locate = self.position_of  # type: ignore[attr-defined]
        # Member data keys (claims_service.keys): every member's events sealed under their own key,
        # unless CLAIMS_MEMBER_ENCRYPTION=off (then written as before; sealed events still read).
        self.member_keys = MemberKeyStore(self.datastore.get_connection, **member_key_cache(settings))
        self.mapper.sealer = Sealer(self.member_keys, self.mapper.transcoder, self._first_event,  # type: ignore[attr-defined]
                                    lambda stored: payloads.decode_state(stored.state, keys=self.member_keys))
        self.mapper.seal = member_encryption(settings)  # type: ignore[attr-defined]
        self._previous_member_keys = payloads.default_member_keys()
        payloads.set_default_member_keys(self.member_keys)
        # The latest signed checkpoint, for receipts (Receipt.checkpoint).
        self.checkpoints = LatestCheckpoint(self._latest_checkpoint)

    recorder_class: type[LedgerRecorder] = LedgerRecorder

    def close(self) -> None:
        if payloads.default_member_keys() is self.member_keys:
            payloads.set_default_member_keys(self._previous_member_keys)
        super().close()

    def construct_mapper(self) -> Any:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=LedgerMapper)

    def construct_repository(self) -> Any:
        # The library's own construction, with the repository class above.
        cache_maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return LedgerRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=int(cache_maxsize) if cache_maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            fastforward_skipping=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    def construct_recorder(self) -> Any:
        factory = self.factory
        return self.recorder_class(
            datastore=factory.datastore,  # type: ignore[attr-defined]
            events_table_name="ledger_events",
            tracking_table_name="ledger_tracking",
        )

    def construct_transcoder(self) -> Any:
        transcoder = LedgerTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: Any) -> None:
        super().register_transcodings(transcoder)
        from claims_service.domain.transcodings import register_domain_transcodings

        register_domain_transcodings(transcoder)

    @property
    def datastore(self) -> PostgresDatastore:
        return self.recorder.datastore  # type: ignore[attr-defined, no-any-return]

    def record(self, *aggregates: Any, tracking: Tracking | None = None,
               metadata: Mapping[Any, str] | None = None) -> list[Recording[Any]]:
        """Save the aggregates' pending events in one transaction (with `tracking`, exactly once)."""
        return self.record_events([e for a in aggregates for e in a.collect_events()], tracking=tracking,
                                  metadata=metadata, aggregates={a.id: a for a in aggregates})

    def map_events(self, events: Sequence[Any]) -> list[StoredEvent]:
        """The events as `record_events` stores them: encoded, and sealed under their members' keys
        (reading a key the first time). For a caller whose events are then written by another
        thread (`claims_service.group_commit`), so that this work is not in that thread's turn."""
        return [self.mapper.to_stored_event(event) for event in events]

    def record_events(self, events: Sequence[Any], *, tracking: Tracking | None = None,
                      metadata: Mapping[Any, str] | None = None,
                      aggregates: Mapping[Any, Any] | None = None,
                      stored: Sequence[StoredEvent] | None = None) -> list[Recording[Any]]:
        """Save already-collected domain events in one transaction; they stay retryable on failure.
        ``metadata`` (stream id -> JSON text: a trace context) is stored beside the events, unhashed;
        ``aggregates`` (by id) lets metrics count what an event does not carry (an issued amount);
        ``stored``: the events as `map_events` gave them, else they are mapped here."""
        try:
            if stored is None:
                processing = ProcessingEvent(tracking=tracking)
                # The events as they are (what `collect_events` does for events, without checking
                # each against a runtime Protocol: microseconds an event, 2-3 % of the adjudicator's CPU).
                processing.events.extend(events)
                if metadata:
                    processing.saved_kwargs["event_metadata"] = metadata
                recordings = self._record(processing)  # with the claims' request ids: see `_record`
            else:
                recordings = self._insert_stored(events, stored, tracking, metadata)
        except IntegrityError as error:
            raise ConflictError("another write changed the same record first; retry") from error
        self._metrics.observe_committed(events, aggregates)
        return recordings

    def _insert_stored(self, events: Sequence[Any], stored: Sequence[StoredEvent], tracking: Tracking | None,
                       metadata: Mapping[Any, str] | None) -> list[Recording[Any]]:
        """What the library's `EventStore.put` does after mapping: insert, and pair each event with
        its notification."""
        if len(stored) != len(events):
            raise ProgrammingError(f"{len(events)} events but {len(stored)} stored events")
        kwargs: dict[str, Any] = {"tracking": tracking}
        if metadata:
            kwargs["event_metadata"] = metadata
        if requests := claim_requests(events):
            kwargs["claim_requests"] = requests
        positions = self.recorder.insert_events(stored, **kwargs) or []
        return [Recording(event, Notification(originator_id=s.originator_id, originator_version=s.originator_version,
                                              topic=s.topic, state=s.state, id=position))
                for event, s, position in zip(events, stored, positions, strict=True)]

    def _record(self, processing: ProcessingEvent[Any]) -> list[Recording[Any]]:
        """The library's, with each new claim's request id for the same transaction (every path
        that saves a submission: `record`, `record_events`, the library's `save`)."""
        if requests := claim_requests(processing.events):
            processing.saved_kwargs["claim_requests"] = requests
        return super()._record(processing)

    def receipts(self, recordings: Sequence[Recording[Any]]) -> dict[int, Receipt]:
        """The hash of each recorded event, by position: as its INSERT returned it, or read."""
        positions = [r.notification.id for r in recordings]
        if not positions:
            return {}
        recent = self.recorder.recent_receipts(positions)  # type: ignore[attr-defined]
        if len(recent) == len(positions):
            found = {p: Receipt(p, event_hash, leaf) for p, (event_hash, leaf) in recent.items()}
        else:
            with self.datastore.transaction(commit=False) as curs:
                curs.execute(
                    "SELECT notification_id, hash, leaf_index FROM ledger_events WHERE notification_id = ANY(%s)",
                    (positions,),
                )
                found = {row["notification_id"]: Receipt(row["notification_id"], bytes(row["hash"]), row["leaf_index"])
                         for row in curs.fetchall()}
        # Fresh writes: only a checkpoint already in memory could cover them (see LatestCheckpoint).
        return {p: self.with_checkpoint(r, refresh=False) for p, r in found.items()}

    def with_checkpoint(self, receipt: Receipt, *, refresh: bool = True) -> Receipt:
        """The receipt with the latest signed checkpoint that covers its leaf, if there is one."""
        checkpoint = self.checkpoints.covering(receipt.leaf_index, refresh=refresh)
        return receipt if checkpoint is None else replace(receipt, checkpoint=checkpoint)

    def _latest_checkpoint(self) -> StoredCheckpoint | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT tree_size, root_hash, note, signed_at FROM ledger_checkpoints_cosigned"
                         " ORDER BY tree_size DESC LIMIT 1")
            row = curs.fetchone()
        return StoredCheckpoint(row["tree_size"], bytes(row["root_hash"]), row["note"], row["signed_at"]) if row else None

    def _first_event(self, stream_id: Any) -> StoredEvent | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT originator_id, originator_version, topic, state FROM ledger_events"
                         " WHERE originator_id = %s AND originator_version = 1", (stream_id,))
            row = curs.fetchone()
        return StoredEvent(row["originator_id"], 1, row["topic"], bytes(row["state"])) if row else None

    def position_of(self, stream_id: Any, version: int) -> int | None:
        """The ledger position of a stream's event, None when there is none."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT notification_id FROM ledger_events WHERE originator_id = %s AND originator_version = %s",
                         (stream_id, version))
            row = curs.fetchone()
        return row["notification_id"] if row else None

    def load_many(self, aggregate_ids: Sequence[Any], *, refuse_erased: bool = False) -> dict[Any, Any]:
        """Reconstruct many aggregates with one query (absent ids are left out; so are erased
        members' records, unless ``refuse_erased``: then one raises MemberDataErasedError, as
        ``repository.get`` does)."""
        ids = list(dict.fromkeys(aggregate_ids))
        if not ids:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT originator_id, originator_version, topic, state FROM ledger_events"
                " WHERE originator_id = ANY(%b) ORDER BY originator_id, originator_version",
                (ids,),
                binary=True,  # ids and payloads both ways as they are, without text escaping
            )
            rows = curs.fetchall()
        aggregates: dict[Any, Any] = {}
        erased: set[Any] = set()
        for row in rows:
            if row["originator_id"] in erased:
                continue
            stored = StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
            event = self.mapper.to_domain_event(stored)
            if isinstance(event, ErasedEvent) and not refuse_erased:  # left out, like an absent one
                erased.add(row["originator_id"])
                aggregates.pop(row["originator_id"], None)
                continue
            aggregates[row["originator_id"]] = apply_stored(event, aggregates.get(row["originator_id"]), self.position_of)
        return aggregates

    def drop_dead_connections(self) -> None:
        """After the database restarted every pooled connection is dead, and each checkout would
        fail once before the pool replaced it: check them all now (followers call this when a
        database error stopped them, so that their restart finds live connections)."""
        self.datastore.pool.check()

    def head(self) -> Receipt | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT notification_id, hash, leaf_index FROM ledger_events ORDER BY notification_id DESC LIMIT 1")
            row = curs.fetchone()
        return Receipt(row["notification_id"], bytes(row["hash"]), row["leaf_index"]) if row else None
