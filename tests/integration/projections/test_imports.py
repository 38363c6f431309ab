"""The read side reads events and never writes them: projections import no write side (the
ledger application, its commands, the adjudicator) and nothing of the gRPC layer. Within the
package, imports point one way (no cycle, none hidden inside a function), and the feeds sit on
top: no projection module imports them but the streams built on the hub. Observability (metrics,
traces) lies below, as the layers say. The benchmarks, which drive the write side to make a
history, live in bench/, outside the package."""

from __future__ import annotations

import ast
from pathlib import Path

import projections

FORBIDDEN = ("grpc", "claims", "claims_service.api", "claims_service.server", "claims_service.application",
             "claims_service.commands", "claims_service.adjudication", "claims_service.group_commit",
             "claims_service.cli", "adjudicator", "bench")
FILES = sorted(Path(projections.__file__).parent.glob("*.py"))


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "projections":  # from projections import catalog
                names.update(f"projections.{alias.name}" for alias in node.names)
    return names


def package_imports(path: Path) -> set[str]:
    """The modules of this package that ``path`` imports (by module name, without the prefix)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {name.removeprefix("projections.") for name in imported_modules(tree) if name.startswith("projections.")}


def test_projections_import_neither_the_write_side_nor_the_transport() -> None:
    assert len(FILES) >= 10
    for path in FILES:
        for name in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), (path.name, name)
            if name.startswith("claims_service."):
                assert name == "claims_service.errors" or name.startswith("claims_service.ledger.") \
                    or name.startswith("claims_service.domain.") \
                    or name.split(".")[:2] == ["claims_service", "observability"] or name.startswith("claims_service.keys."), (path.name, name)


def test_imports_within_the_package_form_no_cycle_and_none_hides_in_a_function() -> None:
    graph = {path.stem: package_imports(path) for path in FILES if path.stem != "__init__"}
    for path in FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden = {n for n in imported_modules(function) if n == "projections" or n.startswith("projections.")}
                assert not hidden, (path.name, function.name, hidden)
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_no_projection_module_imports_the_feeds() -> None:
    feeds = {"feed", "streams"}
    assert not [path.name for path in FILES if path.stem not in feeds and feeds & package_imports(path)]
