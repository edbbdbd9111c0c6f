"""The architecture, checked: no import cycle in `shared/` (imports inside functions and
type-only imports count too), and each context imports only the contexts below it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("shared.settings", "shared.models", "shared.errors", "shared.logs", "shared.permissions",
     "shared.timestamps"),
    ("shared.tenant",),
    ("shared.state",),
    ("shared.policy", "shared.services"),
    ("shared.tenancy",),
    ("shared.safety",),
    ("shared.playbook",),
    ("shared.intake",),
    ("shared.sweeps",),
    ("shared.cli", "shared.preflight"),
)
"""Bottom first. A module may import its own context and any context of a lower layer."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every `shared` module this one imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path, or None. Iterative DFS with colours."""
    colour: dict[str, int] = {}
    for start in sorted(edges):
        if colour.get(start):
            continue
        stack = [(start, iter(sorted(edges[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child) == 1:
                return [*path[path.index(child):], child]
            elif not colour.get(child):
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(edges[child]))))
    return None


def layer_of(module: str) -> int:
    for index, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def test_find_cycle_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_shared() -> None:
    edges = graph()
    assert len(edges) > 50  # the walk found the package
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_contexts_import_only_downwards() -> None:
    upward = [
        f"{module} -> {dep}"
        for module, deps in graph().items() if module != "shared"
        for dep in deps if layer_of(dep) > layer_of(module)
    ]
    assert upward == []


def test_functions_reach_the_core_only_through_shared() -> None:
    """Trigger adapters import the core; the core never imports them."""
    known = modules()
    for name, path in known.items():
        text = path.read_text(encoding="utf-8")
        assert "from functions" not in text and "import functions" not in text, name
