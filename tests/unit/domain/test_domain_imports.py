"""The domain imports inward only: no transport, no database driver, no application."""

from __future__ import annotations

import ast
from pathlib import Path

import claims_service.domain as domain

FORBIDDEN = ("grpc", "psycopg", "psycopg_pool", "claims_service.application", "claims_service.ledger",
             "claims_service.api", "claims_service.server", "adjudicator", "projections",
             "eventsourcing.postgres", "eventsourcing.application")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_domain_modules_import_no_adapters() -> None:
    files = sorted(Path(domain.__file__).parent.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        for name in imported_modules(path):
            assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), (path.name, name)


def test_domain_never_reads_the_clock_or_randomness() -> None:
    for path in Path(domain.__file__).parent.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for needle in ("date.today", "datetime.now", "utcnow", "uuid4", "import random", "os.environ"):
            assert needle not in source, (path.name, needle)
