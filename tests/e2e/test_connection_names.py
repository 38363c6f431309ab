"""Each of the service's processes names its PostgreSQL connections after itself (#18), so that
pg_stat_activity tells whose work a backend does (and `make bench` splits PostgreSQL's CPU by it);
a name the operator gave in PGAPPNAME is kept."""

from __future__ import annotations

import os
import time

import psycopg

from bench.load import Server
from claims_service.supervisor import name_connections
from tests.e2e.test_faults import free_port


def connection_names(database_url: str, wanted: set[str]) -> set[str]:
    """The application names of the database's connections, once they include `wanted` (or 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(database_url, autocommit=True, application_name="test") as conn:
            names = {row[0] for row in conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchall()}
        if wanted <= names or time.monotonic() > deadline:
            return names
        time.sleep(0.2)


def test_every_process_names_its_connections(database_url, tmp_path):
    server = Server(database_url, tmp_path, free_port(), env={
        "CLAIMS_SERVER_PROCESSES": "2", "CLAIMS_ADJUDICATOR_PARTITIONS": "2"})
    try:
        wanted = {"claims-server-0", "claims-adj-0of2", "claims-adj-1of2", "claims-proj", "claims-tree",
                  "claims-notification-hub"}
        names = connection_names(database_url, wanted)
        assert wanted <= names
        # Only the service's names: none left to libpq's default (empty) or inherited by a child.
        assert all(name.startswith("claims-") for name in names), names
    finally:
        server.stop()


def test_a_name_the_operator_gave_is_kept(database_url, tmp_path):
    server = Server(database_url, tmp_path, free_port(), env={"PGAPPNAME": "payer-a-claims"})
    try:
        names = connection_names(database_url, {"payer-a-claims", "claims-notification-hub"})
        # The connections that name themselves aside, every one carries the operator's name.
        assert names - {"claims-notification-hub", "claims-reads", "claims-feed", "claims-projections",
                        "claims-progress"} == {"payer-a-claims"}
    finally:
        server.stop()


def test_a_child_replaces_the_name_it_inherited_but_not_the_operators(monkeypatch):
    monkeypatch.setenv("PGAPPNAME", "claims-server-0")
    name_connections("claims-tree")
    assert os.environ["PGAPPNAME"] == "claims-tree"
    monkeypatch.setenv("PGAPPNAME", "payer-a-claims")
    name_connections("claims-tree")
    assert os.environ["PGAPPNAME"] == "payer-a-claims"
    monkeypatch.delenv("PGAPPNAME")
    name_connections("claims-proj")
    assert os.environ["PGAPPNAME"] == "claims-proj"
