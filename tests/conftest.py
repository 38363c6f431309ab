"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

The server is the one CLAIMS_DATABASE_URL names, or an embedded PostgreSQL started in a temporary
directory and deleted afterwards. Each test that asks for `database_url` gets its own database,
cloned from a template that has every migration applied (cloning is much faster than migrating).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo


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


def _create_database(admin_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(statement)
    return make_conninfo(admin_url, dbname=name)


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    from claims_service.migrate import migrate

    name = f"claims_template_{uuid.uuid4().hex[:8]}"
    url = _create_database(pg_admin_url, name)
    migrate(url)
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
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh database with every migration applied."""
    name = f"claims_test_{uuid.uuid4().hex[:12]}"
    url = _create_database(pg_admin_url, name, template=template_database)
    yield url
    _drop_database(pg_admin_url, name)
