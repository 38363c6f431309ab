"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

The server is the one CLAIMS_DATABASE_URL names, or an embedded PostgreSQL started in a temporary
directory and deleted afterwards. Each test that asks for `database_url` gets its own database,
cloned from a template that has every migration applied (cloning is much faster than migrating).

The two roles of production (README, "Production database roles") are made once per session
(roles belong to the whole server): the template is owned and migrated by the owner role, which
then granted the service role what it needs, so every clone has the same split. `database_url` is
the database as the server's superuser (tests that play a DBA or an attacker, or look anywhere);
`owner_database_url` and `service_database_url` are the same database as the two roles; the e2e
service connects as the service role.
"""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import claims_service  # noqa: F401 - before any test module imports grpc: it sets gRPC's fork handling

# Member data keys (claims_service.keys): one fixed key-encryption key for the whole session (and
# the services the e2e tests start), so that no test writes a KEK file into a data directory of
# the working tree.
os.environ.setdefault("CLAIMS_MEMBER_KEKS", "test-kek:" + base64.b64encode(bytes(range(32))).decode())


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    external = os.environ.get("CLAIMS_DATABASE_URL")
    if external:
        yield external
        return
    from claims_service.database import embedded_server, server_url

    with tempfile.TemporaryDirectory(prefix="claims-test-") as tmp:
        with embedded_server(Path(tmp), delete_on_exit=True) as server:
            yield server_url(server, "postgres")


@dataclass(frozen=True)
class DatabaseRoles:
    """The session's owner and service roles (one password for both: the server may want one)."""

    owner: str
    service: str
    password: str

    def owner_url(self, database_url: str) -> str:
        return make_conninfo(database_url, user=self.owner, password=self.password)

    def service_url(self, database_url: str) -> str:
        return make_conninfo(database_url, user=self.service, password=self.password)


@pytest.fixture(scope="session")
def pg_roles(pg_admin_url: str) -> Iterator[DatabaseRoles | None]:
    """The owner and service roles, made once per session (None if the server's admin may not
    create roles: then every connection is the admin's, as before the split)."""
    from claims_service.database import ensure_roles

    suffix = uuid.uuid4().hex[:8]
    roles = DatabaseRoles(f"claims_owner_{suffix}", f"claims_service_{suffix}", secrets.token_urlsafe(18))
    try:
        ensure_roles(pg_admin_url, roles.owner, roles.service, password=roles.password)
    except psycopg.errors.InsufficientPrivilege:
        yield None
        return
    yield roles
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for role in (roles.service, roles.owner):
            try:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            except psycopg.errors.DependentObjectsStillReferenced:
                pass  # a database a test left behind still holds its objects: it goes with the server


def _create_database(admin_url: str, name: str, template: str | None = None, owner: str | None = None) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        if owner:
            statement += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        conn.execute(statement)
    return make_conninfo(admin_url, dbname=name)


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str, pg_roles: DatabaseRoles | None) -> Iterator[str]:
    """Every migration applied by the owner role, the service role granted what it needs: what
    `claimsctl migrate` does with both URLs set."""
    from claims_service.database import DatabaseUrls, grant_service_role
    from claims_service.migrate import migrate

    name = f"claims_template_{uuid.uuid4().hex[:8]}"
    url = _create_database(pg_admin_url, name, owner=pg_roles.owner if pg_roles else None)
    if pg_roles is None:
        migrate(url)
    else:
        migrate(pg_roles.owner_url(url))
        grant_service_role(DatabaseUrls(service=pg_roles.service_url(url), owner=pg_roles.owner_url(url)))
    yield name
    _drop_database(pg_admin_url, name)


@pytest.fixture
def blank_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty database: no migrations applied."""
    name = f"claims_test_{uuid.uuid4().hex[:12]}"
    url = _create_database(pg_admin_url, name)
    yield url
    _drop_database(pg_admin_url, name)


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str, pg_roles: DatabaseRoles | None) -> Iterator[str]:
    """A fresh database with every migration applied, as the server's superuser (owned, like the
    template, by the owner role)."""
    name = f"claims_test_{uuid.uuid4().hex[:12]}"
    url = _create_database(pg_admin_url, name, template=template_database, owner=pg_roles.owner if pg_roles else None)
    yield url
    _drop_database(pg_admin_url, name)


@pytest.fixture
def owner_database_url(database_url: str, pg_roles: DatabaseRoles | None) -> str:
    """The same database as the owner role (migrations, rebuilds)."""
    return pg_roles.owner_url(database_url) if pg_roles else database_url


@pytest.fixture
def service_database_url(database_url: str, pg_roles: DatabaseRoles | None) -> str:
    """The same database as the service role (what the service connects as)."""
    return pg_roles.service_url(database_url) if pg_roles else database_url
