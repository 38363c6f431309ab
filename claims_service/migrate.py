"""Apply the numbered SQL files in `migrations/`, in order, each once.

Each file runs in its own transaction together with its row in `schema_migrations` (version,
name, SHA-256 of the file), so a file is either applied and recorded or neither. A session
advisory lock serialises concurrent runners: two services starting at once apply each file once.
A file whose bytes changed after it was applied is refused: the schema's history is as immutable
as the ledger's.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from claims_service.errors import ClaimsError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant unique to this project; pg_advisory_lock keys are bigint.
ADVISORY_LOCK_KEY = 0x436C61696D73  # "Claims"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(ClaimsError):
    status = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        data = path.read_bytes()
        migrations.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=data.decode("utf-8"),
                checksum=hashlib.sha256(data).hexdigest(),
            )
        )
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a number in {directory.name}/")
    return migrations


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the file names applied (empty when up to date)."""
    migrations = load_migrations(directory)
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY,"
                " name text NOT NULL,"
                " checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            recorded = {
                row[0]: (row[1], row[2])
                for row in conn.execute("SELECT version, name, checksum FROM schema_migrations")
            }
            known = {m.version for m in migrations}
            for version, (name, _) in sorted(recorded.items()):
                if version not in known:
                    raise MigrationError(
                        f"migration {version:04d}_{name}.sql was applied but its file is gone"
                    )
            for migration in migrations:
                if migration.version in recorded:
                    _, checksum = recorded[migration.version]
                    if checksum != migration.checksum:
                        raise MigrationError(
                            f"migrations/{migration.file_name} was changed after it was applied "
                            f"(applied sha256 {checksum[:12]}…, file now {migration.checksum[:12]}…); "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                log.info("applied migration %s", migration.file_name)
                applied_now.append(migration.file_name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied_now
