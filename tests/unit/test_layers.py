"""The import graph reads top-down: each product module imports only what lies below it, no two
files import each other (directly or round a circle), and the ledger's evidence code can be lifted
out by a third party. Walks every module's syntax tree (nothing is imported to check), counting
imports inside functions too (a cycle hidden in a function is still a cycle); imports under
`if TYPE_CHECKING:` are for annotations only and do not count."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("adjudicator", "claims_service", "projections")

# Lower layers never import higher ones; within a layer, only a module's own group.
LAYERS: list[tuple[str, ...]] = [
    ("adjudicator", "claims_service.errors", "claims_service.files", "claims"),
    ("claims_service.ledger",),
    ("claims_service.integrity",),
    ("claims_service.domain",),
    ("claims_service.keys", "claims_service.blobs"),
    ("claims_service.observability",),
    ("claims_service.config", "claims_service.database", "claims_service.migrate", "claims_service.supervisor",
     "claims_service.garbage_collection", "claims_service.application"),
    ("claims_service.group_commit",),
    ("claims_service.adjudication",),
    ("claims_service.commands", "claims_service.reconcile"),
    ("claims_service.attachments",),
    ("projections",),
    ("claims_service.erasure",),  # it purges the read models, and asks them what they keep
    ("claims_service.x12",),
    ("claims_service.api",),
    ("claims_service.server", "claims_service.workers", "claims_service.fhir", "claims_service.witness"),
    ("claims_service.bootstrap",),
    ("claims_service.cli",),
]
# The packages' own __init__ modules: docstrings (and re-exports of their own modules).
PACKAGE_ROOTS = {"claims_service": 0, "projections": 8}

# What the ledger's evidence code may import: the standard library, cryptography, psycopg, orjson
# (payload decoding), protobuf with the generated claims.v1 messages (the bundle's format) and the
# one error root (standard library only), so that a third party can lift the verifier out.
LEDGER_THIRD_PARTY = {"cryptography", "psycopg", "orjson", "google", "claims", "claims_service.errors"}


def product_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, module: str) -> set[str]:
    """Every module `path` imports at run time, resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    annotation_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            annotation_only.update(id(n) for child in node.body for n in ast.walk(child))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            # `from package import module` is an import of the module; of names, of the package.
            submodules = {f"{name}.{alias.name}" for alias in node.names} & ALL_MODULES
            found.update(submodules or {name})
    return found


MODULES = product_modules()
ALL_MODULES = set(MODULES)
GRAPH = {module: {i for i in imports_of(path, module) if i in MODULES and i != module} for module, path in MODULES.items()}


def group_of(module: str) -> tuple[int, str] | None:
    if module in PACKAGE_ROOTS:
        return PACKAGE_ROOTS[module], module
    best = None
    for level, groups in enumerate(LAYERS):
        for group in groups:
            if (module == group or module.startswith(group + ".")) and (best is None or len(group) > len(best[1])):
                best = (level, group)
    return best


def test_every_product_module_has_a_layer():
    assert [m for m in MODULES if group_of(m) is None] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_run_down_the_layers(module):
    level, group = group_of(module)
    wrong = []
    for imported in sorted(GRAPH[module]):
        their_level, their_group = group_of(imported)
        if their_level > level or (their_level == level and their_group != group):
            wrong.append(f"{imported} ({their_group}, layer {their_level})")
    assert wrong == [], f"{module} ({group}, layer {level}) imports upwards or sideways: {wrong}"


def test_no_two_files_import_each_other_even_round_a_circle():
    # Tarjan's strongly connected components over the module graph.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in GRAPH[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            # A package's __init__ re-exporting one of its own modules is not a cycle of files
            # that need each other.
            real = [m for m in component if not any(o != m and o.startswith(m + ".") for o in component)]
            if len(real) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_ledger_package_imports_only_what_a_verifier_needs():
    stdlib = set(sys.stdlib_module_names)
    wrong = {}
    for module, path in MODULES.items():
        if not (module == "claims_service.ledger" or module.startswith("claims_service.ledger.")):
            continue
        outside = set()
        for imported in imports_of(path, module):
            top = imported.split(".")[0]
            if top in stdlib or top == "__future__" or imported.startswith("claims_service.ledger"):
                continue
            if top in LEDGER_THIRD_PARTY or imported in LEDGER_THIRD_PARTY:
                continue
            outside.add(imported)
        if outside:
            wrong[module] = sorted(outside)
    assert wrong == {}
