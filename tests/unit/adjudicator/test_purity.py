"""The adjudicator stays pure: it imports the standard library and pydantic only, and reads no
clock, randomness or environment. Walks every module's syntax tree (nothing is imported to check)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import adjudicator

PACKAGE = Path(adjudicator.__file__).parent
THIRD_PARTY_ALLOWED = {"pydantic"}
# Standard-library modules that bring a clock, randomness, the environment, processes or I/O.
FORBIDDEN_STDLIB = {
    "asyncio",
    "http",
    "multiprocessing",
    "os",
    "random",
    "secrets",
    "shutil",
    "socket",
    "sqlite3",
    "ssl",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "urllib",
    "uuid",
    "zoneinfo",
}
FORBIDDEN_ATTRIBUTES = {"today", "now", "utcnow", "environ", "getenv", "urandom", "perf_counter", "time_ns"}
FORBIDDEN_CALLS = {"__import__", "import_module", "open", "exec", "eval"}


def modules() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 20
    return found


def imported_roots(tree: ast.AST) -> list[tuple[str, int]]:
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the package; `from . import bench` names bench
                prefix = ".".join(filter(None, ("adjudicator", node.module)))
                roots += [(f"{prefix}.{alias.name}", node.lineno) for alias in node.names]
            else:
                roots.append((node.module or "", node.lineno))
    return roots


def test_imports_only_the_standard_library_pydantic_and_itself():
    problems = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, lineno in imported_roots(tree):
            root = name.split(".")[0]
            where = f"{path.relative_to(PACKAGE.parent)}:{lineno} imports {name}"
            if root == "adjudicator":
                continue
            if root in THIRD_PARTY_ALLOWED:
                continue
            if root not in sys.stdlib_module_names:
                problems.append(where + " (not the standard library or pydantic)")
            elif root in FORBIDDEN_STDLIB:
                problems.append(where + " (clock, randomness, environment or I/O)")
    assert problems == []


def test_reads_no_clock_environment_or_dynamic_code():
    problems = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
                problems.append(f"{where} uses .{node.attr}")
            elif isinstance(node, ast.Call):
                function = node.func
                name = function.id if isinstance(function, ast.Name) else getattr(function, "attr", None)
                if name in FORBIDDEN_CALLS:
                    problems.append(f"{where} calls {name}()")
    assert problems == []


def test_the_walk_notices_a_forbidden_import():
    tree = ast.parse("import random\nfrom psycopg import sql\nfrom datetime import date\nfrom . import bench\n")
    names = [name for name, _ in imported_roots(tree)]
    assert names == ["random", "psycopg", "datetime", "adjudicator.bench"]
    assert "random" in FORBIDDEN_STDLIB and "psycopg" not in sys.stdlib_module_names
