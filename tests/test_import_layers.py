"""Import layers: no cycle between invguard's subpackages, ``audit`` a leaf, ``targets`` low.

The graph is read from the source with :mod:`ast`, without importing anything: an edge A -> B means
some module of subpackage A imports a module of subpackage B (top-level modules such as
``invguard.errors`` are nodes of their own). Imports under ``if TYPE_CHECKING:`` are skipped.
Module-level imports make the layer graph; imports inside functions are a second graph, checked
separately, so that a function-local import cannot hide a cycle either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import invguard

SRC = Path(invguard.__file__).resolve().parent
PACKAGE = "invguard"

# Cycles between subpackages through module-level imports that exist today, each as the packages
# along it (A -> B -> ... -> A, starting at the alphabetically first). Any other cycle fails.
KNOWN_CYCLES: frozenset[tuple[str, ...]] = frozenset()
# Cycles that close only through an import inside a function (module-level edges plus those).
KNOWN_CYCLES_VIA_FUNCTIONS: frozenset[tuple[str, ...]] = frozenset()

# Leaves below everything (they import only each other): all that audit may import.
LEAVES = frozenset({"errors", "config_errors", "config_fields", "_lazy", "params", "fileio"})
# What targets may import, module level and in functions: nothing above it.
TARGETS_MAY_IMPORT = LEAVES


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen in ``module`` at ``line``."""

    module: str
    target: str
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = (PACKAGE, *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# ``__main__`` modules are entry points (``python -m invguard.gateway``): above every layer.
MODULES: dict[str, Path] = {
    _module_name(p): p for p in sorted(SRC.rglob("*.py")) if p.name != "__main__.py"
}


def _is_type_checking(test: ast.expr) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id == "TYPE_CHECKING")
        or (isinstance(n, ast.Attribute) and n.attr == "TYPE_CHECKING")
        for n in ast.walk(test)
    )


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
        return
    base = _resolve(module, is_package, node)
    for alias in node.names:
        full = f"{base}.{alias.name}"
        yield full if full in MODULES else base


def _walk(nodes: list[ast.stmt], in_function: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``nodes``, and whether it sits inside a function."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.orelse, in_function)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(node.body, True)
        else:
            for name in ("body", "orelse", "finalbody"):
                yield from _walk(getattr(node, name, []), in_function)
            for handler in getattr(node, "handlers", []):
                yield from _walk(handler.body, in_function)
            for case in getattr(node, "cases", []):
                yield from _walk(case.body, in_function)


def _imports(module: str) -> Iterator[Import]:
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    for node, in_function in _walk(ast.parse(path.read_text()).body, False):
        assert isinstance(node, ast.Import | ast.ImportFrom)
        for target in _targets(module, is_package, node):
            if target.split(".")[0] == PACKAGE:
                yield Import(module, target, node.lineno, in_function)


IMPORTS: list[Import] = [imp for m in MODULES for imp in _imports(m)]


def _package(module: str) -> str | None:
    """The subpackage (or top-level module) a module belongs to; None for ``invguard`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


Graph = dict[str, dict[str, list[Import]]]


def _graph(*, functions: bool) -> Graph:
    """Package -> imported package -> the imports that make the edge."""
    graph: Graph = {}
    for imp in IMPORTS:
        if imp.in_function and not functions:
            continue
        src, dst = _package(imp.module), _package(imp.target)
        if src is None or dst is None or src == dst:
            continue
        graph.setdefault(src, {}).setdefault(dst, []).append(imp)
    return graph


def _cycles(graph: Graph) -> set[tuple[str, ...]]:
    """Every simple cycle, rotated to start at its smallest package."""
    found: set[tuple[str, ...]] = set()

    def extend(path: list[str]) -> None:
        for nxt in graph.get(path[-1], {}):
            if nxt == path[0]:
                found.add(tuple(path))
            elif nxt > path[0] and nxt not in path:
                extend([*path, nxt])

    for start in sorted(graph):
        extend([start])
    return found


def _explain(graph: Graph, cycle: tuple[str, ...]) -> str:
    """Each hop of ``cycle`` with one import that makes it (a function-level one if any)."""
    hops = []
    for a, b in zip(cycle, (*cycle[1:], cycle[0]), strict=True):
        imp = max(graph[a][b], key=lambda i: i.in_function)
        where = " in a function" if imp.in_function else ""
        hops.append(f"{a} -> {b} ({imp.module}:{imp.line} imports {imp.target}{where})")
    return "; ".join(hops)


def _check(graph: Graph, known: frozenset[tuple[str, ...]], kind: str) -> None:
    cycles = _cycles(graph)
    new = sorted(cycles - known)
    assert not new, f"new {kind} import cycle between subpackages: " + " | ".join(
        " -> ".join((*c, c[0])) + ": " + _explain(graph, c) for c in new
    )


def test_the_graph_is_read() -> None:
    assert "invguard.targets.base" in MODULES
    assert any(i.target == "invguard.targets.base" for i in IMPORTS)
    assert any(i.in_function for i in IMPORTS)


def test_no_cycle_between_subpackages() -> None:
    _check(_graph(functions=False), KNOWN_CYCLES, "module-level")


def test_function_level_imports_add_no_cycle() -> None:
    _check(_graph(functions=True), KNOWN_CYCLES_VIA_FUNCTIONS, "function-level")


def _imported_packages(package: str) -> dict[str, list[Import]]:
    out: dict[str, list[Import]] = {}
    for imp in IMPORTS:
        dst = _package(imp.target)
        if _package(imp.module) == package and dst is not None and dst != package:
            out.setdefault(dst, []).append(imp)
    return out


def _listed(found: dict[str, list[Import]]) -> str:
    return "; ".join(
        f"{imp.module}:{imp.line} imports {imp.target}" for imps in found.values() for imp in imps
    )


def test_leaves_import_only_leaves() -> None:
    for leaf in sorted(LEAVES):
        found = {k: v for k, v in _imported_packages(leaf).items() if k not in LEAVES}
        assert not found, f"invguard.{leaf} must import only {sorted(LEAVES)}: {_listed(found)}"


def test_audit_is_a_leaf() -> None:
    found = {k: v for k, v in _imported_packages("audit").items() if k not in LEAVES}
    assert not found, f"invguard.audit must import only {sorted(LEAVES)}: {_listed(found)}"


def test_targets_import_nothing_above_them() -> None:
    found = {k: v for k, v in _imported_packages("targets").items() if k not in TARGETS_MAY_IMPORT}
    assert not found, (
        f"invguard.targets must import only {sorted(TARGETS_MAY_IMPORT)}: {_listed(found)}"
    )
