"""The two database roles (README, "Production database roles"): `claimsctl migrate` as the owner
prepares a database that the service's role then uses for everything it does; a table a later
migration creates is the service's to use without another grant (default privileges), and so are
the tables a projection rebuild (run by the owner) swaps in; the embedded server sets up both roles
itself, also over a database made before there were two; and `serve` warns when the service's
connection could alter the ledger."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from claims_service.adjudication import AdjudicationFollower
from claims_service.application import LedgerApplication
from claims_service.cli.main import main as claimsctl
from claims_service.cli.main import warn_if_the_service_can_alter_the_ledger
from claims_service.commands import Commands
from claims_service.config import Config
from claims_service.database import (
    OWNER_ROLE,
    SERVICE_ROLE,
    DatabaseUrls,
    database_urls,
    embedded_urls,
    grant_service_role,
    ledger_bypass,
)
from claims_service.migrate import MIGRATIONS_DIR, migrate
from projections import catalog
from projections.rebuild import drop_previous, rebuild
from projections.runner import ProjectionRunner
from tests import world

PROVIDER = "provider:" + world.NPI


@pytest.fixture
def roles(pg_roles):
    if pg_roles is None:
        pytest.skip("the server's admin may not create roles (CLAIMS_DATABASE_URL): no split to test")
    return pg_roles


@pytest.fixture
def owned_blank_database(pg_admin_url, roles) -> Iterator[str]:
    """An empty database owned by the owner role, as a DBA creates it (README); its admin URL."""
    name = f"claims_roles_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(roles.owner)))
    yield make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _user(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT current_user").fetchone()[0]


def _privileges(url: str, role: str, table: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {p for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
                if conn.execute("SELECT has_table_privilege(%s, %s, %s)", (role, table, p)).fetchone()[0]}


def test_claimsctl_migrate_as_the_owner_prepares_a_database_the_service_role_then_uses(
        owned_blank_database, roles, tmp_path, monkeypatch, capsys):
    owner, service = roles.owner_url(owned_blank_database), roles.service_url(owned_blank_database)
    monkeypatch.setenv("CLAIMS_MIGRATION_DATABASE_URL", owner)
    monkeypatch.setenv("CLAIMS_DATABASE_URL", service)
    monkeypatch.setenv("CLAIMS_DATA_DIR", str(tmp_path / "data"))
    assert claimsctl(["migrate"]) == 0
    assert "applied" in capsys.readouterr().out
    with psycopg.connect(owned_blank_database) as conn:
        owners = set(conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'S', 'i')").fetchall())
    assert owners == {(roles.owner,)}
    assert ledger_bypass(service) is None
    assert ledger_bypass(owner) == f"role {roles.owner} owns the ledger's tables"

    # The service, as its role: events (hash-linked, under the recorder's table lock), a claim
    # adjudicated with its tracking position, a read model, the tree and a signed checkpoint.
    ledger = LedgerApplication(service, pool_size=2)
    commands = Commands(ledger, today=lambda: date(2026, 11, 2))
    try:
        world.set_up(commands)
        receipt = commands.submit_claim(actor=PROVIDER, **world.claim_body("as the service"))
        follower = AdjudicationFollower(ledger)
        while follower.process_available():
            pass
        runner = ProjectionRunner(service, "claim_status")
        try:
            runner.drain()
        finally:
            runner.close()
    finally:
        commands.close()
        ledger.close()
    assert claimsctl(["checkpoint"]) == 0
    assert claimsctl(["keys", "create", "--role", "dispute", "--label", "as the service"]) == 0
    assert claimsctl(["verify"]) == 0
    with psycopg.connect(service) as conn:
        assert conn.execute("SELECT status FROM claim_status WHERE claim_id = %s",
                            (receipt.claim_id,)).fetchone() == ("adjudicated",)
        assert conn.execute("SELECT count(*) FROM ledger_checkpoints").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM ledger_leaves").fetchone()[0] >= 8

    # Again: nothing to apply, the grants as they were.
    before = _privileges(owned_blank_database, roles.service, "ledger_events")
    assert claimsctl(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert _privileges(owned_blank_database, roles.service, "ledger_events") == before == {"SELECT", "INSERT"}


def test_a_table_a_later_migration_creates_is_the_service_roles_to_use(
        database_url, owner_database_url, service_database_url, roles, tmp_path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9999_later.sql").write_text(
        "CREATE TABLE later_notes (id bigserial PRIMARY KEY, note text NOT NULL);\n")
    # Only the migration: no grant runs after it, the owner's default privileges cover the table.
    assert migrate(owner_database_url, directory) == ["9999_later.sql"]
    assert _privileges(database_url, roles.service, "later_notes") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    with psycopg.connect(service_database_url, autocommit=True) as conn:
        (first,) = conn.execute("INSERT INTO later_notes (note) VALUES ('a') RETURNING id").fetchone()  # nextval
        conn.execute("UPDATE later_notes SET note = 'b' WHERE id = %s", (first,))
        assert conn.execute("SELECT note FROM later_notes").fetchall() == [("b",)]
        conn.execute("DELETE FROM later_notes")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table later_notes"):
            conn.execute("TRUNCATE later_notes")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner of table later_notes"):
            conn.execute("ALTER TABLE later_notes ADD COLUMN extra int")


def test_a_rebuild_runs_as_the_owner_and_the_service_keeps_writing_the_tables_it_swapped_in(
        database_url, owner_database_url, service_database_url, roles, monkeypatch, capsys):
    ledger = LedgerApplication(service_database_url, pool_size=2)
    commands = Commands(ledger, today=lambda: date(2026, 11, 2))
    follower = AdjudicationFollower(ledger)
    try:
        world.set_up(commands)
        first = commands.submit_claim(actor=PROVIDER, **world.claim_body("before the rebuild"))
        while follower.process_available():
            pass
        runner = ProjectionRunner(service_database_url, "claim_status")
        runner.drain()
        runner.close()

        # The service's role may not rebuild (it creates tables); claimsctl says whom to run it as.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rebuild(service_database_url, "claim_status")
        monkeypatch.setenv("CLAIMS_DATABASE_URL", service_database_url)
        assert claimsctl(["projections", "rebuild", "claim_status"]) == 2
        assert "CLAIMS_MIGRATION_DATABASE_URL" in capsys.readouterr().err

        report = rebuild(owner_database_url, "claim_status", keep_previous=True)
        assert report.swapped
        tables = catalog.model("claim_status").tables
        with psycopg.connect(database_url) as conn:
            for table in tables:
                owner = conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
                                     (table,)).fetchone()[0]
                assert owner == roles.owner, table
        for table in tables:
            assert _privileges(database_url, roles.service, table) == {"SELECT", "INSERT", "UPDATE", "DELETE"}, table

        # The live runner, as the service, goes on writing the rebuilt tables.
        second = commands.submit_claim(actor=PROVIDER, **world.claim_body("after the rebuild"))
        commands.void_claim(actor=PROVIDER, provider_id=world.NPI, claim_id=first.claim_id, reason="billed in error")
        while follower.process_available():
            pass
        runner = ProjectionRunner(service_database_url, "claim_status")
        assert runner.drain() > 0
        runner.close()
    finally:
        commands.close()
        ledger.close()
    with psycopg.connect(service_database_url) as conn:
        statuses = dict(conn.execute("SELECT claim_id, status FROM claim_status").fetchall())
    assert statuses == {first.claim_id: "voided", second.claim_id: "adjudicated"}
    monkeypatch.setenv("CLAIMS_MIGRATION_DATABASE_URL", owner_database_url)
    assert claimsctl(["projections", "drop-previous", "claim_status"]) == 0
    assert drop_previous(owner_database_url, "claim_status") == []


def test_services_starting_at_once_grant_one_after_the_other(database_url, owner_database_url,
                                                              service_database_url, roles):
    urls = DatabaseUrls(service=service_database_url, owner=owner_database_url)
    errors: list[BaseException] = []

    def grant() -> None:
        try:
            for _ in range(3):
                grant_service_role(urls)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=grant) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert _privileges(database_url, roles.service, "ledger_events") == {"SELECT", "INSERT"}


def test_serve_warns_when_the_service_connection_could_alter_the_ledger(
        database_url, owner_database_url, service_database_url, roles, caplog):
    caplog.set_level(logging.WARNING, logger="claimsctl")
    warn_if_the_service_can_alter_the_ledger(DatabaseUrls(service=service_database_url, owner=owner_database_url))
    assert caplog.records == []
    for url, reason in ((owner_database_url, f"role {roles.owner} owns the ledger's tables"),
                        (database_url, "is a superuser")):
        caplog.clear()
        warn_if_the_service_can_alter_the_ledger(DatabaseUrls(service=url, owner=url))
        (record,) = caplog.records
        assert reason in record.getMessage() and "CLAIMS_MIGRATION_DATABASE_URL" in record.getMessage()
    # One URL for both: nothing to grant.
    assert grant_service_role(DatabaseUrls(service=owner_database_url, owner=owner_database_url)) is None


def test_the_embedded_default_sets_up_both_roles_and_adopts_a_database_made_before_them():
    """`make run` on a fresh machine: no URL set, so the embedded server, its `claims` database
    owned by the owner role, the service connecting as the service role. Beside it, a database as
    the embedded default made it before there were two roles (created and migrated by the
    superuser, with an event in it): the next start hands it and everything in it to the owner."""
    # Not under pytest's tmp_path: run as root, the embedded server's own user must pass through
    # every directory above its data, and another pytest process closes pytest's root again.
    with tempfile.TemporaryDirectory(prefix="claims-test-") as tmp, \
            database_urls(Config(data_dir=Path(tmp) / "data")) as urls:
        assert (_user(urls.service), _user(urls.owner)) == (SERVICE_ROLE, OWNER_ROLE)
        admin = make_conninfo(urls.owner, user="postgres", dbname="postgres")  # the embedded superuser
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE claims_before")
        before = make_conninfo(admin, dbname="claims_before")
        migrate(before)
        with psycopg.connect(before) as conn:
            conn.execute("INSERT INTO ledger_events (originator_id, originator_version, topic, state)"
                         " VALUES (gen_random_uuid(), 1, 'before', '\\x7b7d')")
        seen: set[str] = set()
        for database in ("claims", "claims_before", "claims_before"):  # the last: started again
            urls = embedded_urls(admin, database)
            assert (_user(urls.owner), _user(urls.service)) == (OWNER_ROLE, SERVICE_ROLE)
            migrate(urls.owner)
            assert grant_service_role(urls) == SERVICE_ROLE
            assert ledger_bypass(urls.service) is None
            with psycopg.connect(make_conninfo(admin, dbname=database)) as conn:
                assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                    (database,)).fetchone()[0] == OWNER_ROLE
                foreign = conn.execute(
                    "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
                    " AND pg_get_userbyid(c.relowner) <> %s UNION ALL"
                    " SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
                    " AND pg_get_userbyid(p.proowner) <> %s", (OWNER_ROLE, OWNER_ROLE)).fetchall()
                assert foreign == []
                assert conn.execute("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles"
                                    " WHERE rolname = %s", (OWNER_ROLE,)).fetchone() == (False,)
            if database not in seen:  # the service appends (hash-linked, under the recorder's lock)
                seen.add(database)
                ledger = LedgerApplication(urls.service, pool_size=1)
                commands = Commands(ledger)
                try:
                    commands.register_provider(actor=world.ADMIN, npi=world.NPI, name="Riverside", taxonomy="207Q00000X")
                finally:
                    commands.close()
                    ledger.close()
            with psycopg.connect(urls.service, autocommit=True) as conn:
                assert conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0] == (
                    2 if database == "claims_before" else 1)
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner of table ledger_events"):
                    conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ALL")
