"""No module of the signing part imports itself back, not even through others or only for type
checking: a loop makes the import order matter and hides which module depends on which."""

from __future__ import annotations

import ast
from pathlib import Path

import services.signing

ROOT = Path(services.signing.__file__).parent
PACKAGE = "services.signing"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] == "migrations":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((PACKAGE, *parts))] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The signing modules ``name`` imports anywhere in its body (packages on the way included:
    importing ``a.b`` runs ``a`` first)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    found = set()
    for target in targets:
        parts = target.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    # a module's own packages run before it whatever it imports: not a way back to itself
    ancestors = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    return {t for t in found & known if t != name and t not in ancestors}


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    loops, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                loops.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return loops


def test_no_module_of_signing_imports_itself_back() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert "services.signing.pades" in graph and graph["services.signing.pades"], "the scan found no imports"
    assert _loops(graph) == []


def test_the_check_sees_a_loop() -> None:
    assert _loops({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
