"""Migrations against a real PostgreSQL: fresh apply, idempotent re-apply, edited files refused,
concurrent runners."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from claims_service.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate


def recorded(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()


def test_a_fresh_database_gets_every_migration_in_order(blank_database_url):
    applied = migrate(blank_database_url)
    files = [m.file_name for m in load_migrations()]
    assert applied == files
    assert [v for v, _ in recorded(blank_database_url)] == [m.version for m in load_migrations()]
    with psycopg.connect(blank_database_url) as conn:
        assert conn.execute("SELECT to_regclass('ledger_events')").fetchone()[0] == "ledger_events"


def test_reapplying_is_a_no_op(blank_database_url):
    migrate(blank_database_url)
    assert migrate(blank_database_url) == []


def test_a_file_changed_after_it_was_applied_is_refused(blank_database_url, tmp_path: Path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    migrate(blank_database_url, directory)
    edited = directory / "0002_hash_chain.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match="0002_hash_chain.sql was changed after it was applied"):
        migrate(blank_database_url, directory)


def test_a_new_file_is_applied_after_the_others(blank_database_url, tmp_path: Path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    migrate(blank_database_url, directory)
    (directory / "9999_extra.sql").write_text("CREATE TABLE extra (id int);")
    assert migrate(blank_database_url, directory) == ["9999_extra.sql"]


def test_a_failing_file_leaves_nothing_behind(blank_database_url, tmp_path: Path):
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "9999_broken.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(blank_database_url, directory)
    with psycopg.connect(blank_database_url) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone()[0] is None
    assert 9999 not in [v for v, _ in recorded(blank_database_url)]


def test_two_concurrent_runners_apply_each_file_once(blank_database_url):
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def runner() -> None:
        barrier.wait()
        try:
            results.append(migrate(blank_database_url))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    files = [m.file_name for m in load_migrations()]
    assert sorted(results, key=len) == [[], files]
    assert len(recorded(blank_database_url)) == len(files)
