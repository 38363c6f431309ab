"""The ledger application: one eventsourcing `Application` over the hash-linked events table.

Every aggregate of the domain lives in the one `ledger_events` table, so that one hash chain
orders everything. The recorder is the library's PostgreSQL *process* recorder so that a
follower (the adjudicator) can write its events and its tracking position in one transaction.
Tables come from `migrations/` (CREATE_TABLE is off); the library's database functions path is
never enabled (it takes no table lock, see FIELD-NOTES).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Recording, Tracking
from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from claims_service.errors import ConflictError


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
        "POSTGRES_PRE_PING": "y",
        # Wait at most this long for the events table's lock rather than forever.
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_CONNECT_TIMEOUT": "5",
        # Read by 9.5.6 under this name (the docs say POSTGRES_SINGLE_ROW_TRACKING).
        "SINGLE_ROW_TRACKING": "y",
    }
    return env


@dataclass(frozen=True)
class Receipt:
    """What a write returns: where its last event sits in the ledger and that event's hash."""

    position: int
    event_hash: bytes


class Ledger(Application):
    name = "Ledger"  # -> tables ledger_events and ledger_tracking

    def __init__(self, database_url: str, *, pool_size: int = 8, env: dict[str, str] | None = None):
        self.database_url = database_url
        settings = postgres_env(database_url, pool_size=pool_size)
        settings.update(env or {})
        super().__init__(env=settings)

    def construct_recorder(self) -> Any:
        return self.factory.process_recorder()

    def register_transcodings(self, transcoder: Any) -> None:
        super().register_transcodings(transcoder)
        from claims_service.domain.transcodings import register_domain_transcodings

        register_domain_transcodings(transcoder)

    @property
    def datastore(self) -> PostgresDatastore:
        return self.recorder.datastore  # type: ignore[attr-defined, no-any-return]

    def record(self, *aggregates: Any, tracking: Tracking | None = None) -> list[Recording[Any]]:
        """Save the aggregates' pending events in one transaction (with `tracking`, exactly once)."""
        return self.record_events([e for a in aggregates for e in a.collect_events()], tracking=tracking)

    def record_events(self, events: Sequence[Any], *, tracking: Tracking | None = None) -> list[Recording[Any]]:
        """Save already-collected domain events in one transaction; they stay retryable on failure."""
        processing = ProcessingEvent(tracking=tracking)
        processing.collect_events(*events)
        try:
            return self._record(processing)
        except IntegrityError as error:
            raise ConflictError("another write changed the same record first; retry") from error

    def receipts(self, recordings: Sequence[Recording[Any]]) -> dict[int, Receipt]:
        """The hash of each recorded event, by position (read after the commit)."""
        positions = [r.notification.id for r in recordings]
        if not positions:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT notification_id, hash FROM ledger_events WHERE notification_id = ANY(%s)",
                (positions,),
            )
            return {row["notification_id"]: Receipt(row["notification_id"], bytes(row["hash"])) for row in curs.fetchall()}

    def head(self) -> Receipt | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT notification_id, hash FROM ledger_events ORDER BY notification_id DESC LIMIT 1")
            row = curs.fetchone()
        return Receipt(row["notification_id"], bytes(row["hash"])) if row else None
