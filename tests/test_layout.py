"""The package's layout rule, read from the code: no import circles among roomclf's modules
(imports inside functions count too), and the step subpackages never import the command shells."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "roomclf"
SHELLS = ("roomclf.cli", "roomclf.commands")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(tree: ast.AST, package: str) -> set[str]:
    """Every dotted name an import statement anywhere in ``tree`` can refer to (``from a import b``: a and a.b)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return names


def import_edges() -> dict[str, set[str]]:
    files = {module_name(f): f for f in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        targets = set()
        for name in imported_names(ast.parse(path.read_text(), str(path)), package):
            while name and name not in files:         # `from roomclf.x import func` -> module roomclf.x
                name = name.rpartition(".")[0]
            if name and name != mod and not mod.startswith(name + "."):   # a module's own packages are no edge
                targets.add(name)
        edges[mod] = targets
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    group.append(top)
                    if top == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_checker_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    assert imported_names(ast.parse("from ..x import y\nimport z.w"), "roomclf.train") == \
        {"roomclf.x", "roomclf.x.y", "z.w"}


def test_no_import_circles():
    edges = import_edges()
    assert len(edges) > 50 and "roomclf.taxonomy" in edges["roomclf.train.run"]
    assert circles(edges) == []


def test_steps_never_import_the_command_shells():
    upward = {mod: sorted(t for t in targets if t.startswith(SHELLS))
              for mod, targets in import_edges().items() if not mod.startswith(SHELLS)}
    assert {mod: t for mod, t in upward.items() if t} == {}
