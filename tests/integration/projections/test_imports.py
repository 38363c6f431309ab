"""The read side reads events and never writes them: projections import no write side (the
ledger application, its commands, the adjudicator) and nothing of the gRPC layer. Only the
benchmark drives the write side, to make a history to measure."""

from __future__ import annotations

import ast
from pathlib import Path

import projections

FORBIDDEN = ("grpc", "claims", "claims_service.api", "claims_service.server", "claims_service.application",
             "claims_service.commands", "claims_service.adjudication", "claims_service.group_commit",
             "claims_service.cli", "adjudicator")
ALLOWED_TO_WRITE = {"bench.py"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_projections_import_neither_the_write_side_nor_the_transport() -> None:
    files = sorted(Path(projections.__file__).parent.glob("*.py"))
    assert len(files) >= 10
    for path in files:
        if path.name in ALLOWED_TO_WRITE:
            continue
        for name in imported_modules(path):
            assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), (path.name, name)
            if name.startswith("claims_service."):
                assert name in ("claims_service.errors", "claims_service.notifications") \
                    or name.startswith("claims_service.domain."), (path.name, name)
