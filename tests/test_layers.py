"""The layout rules of DESIGN.md, read from the source with `ast`: data flows one way (profile ->
engine -> disk -> theory -> UI), so a module imports only lower ranks or its own package, no
import circle, no module over 400 lines. Imports inside functions count; registries that name a
module by string (importlib) are late binding and do not."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "silab"
MAX_LINES = 400

# The rank of each part of silab (its first name under silab). Same rank, other package: refused.
RANK = {"errors": 0, "protocol": 0,
        "config": 1,
        "tasks": 2, "runs": 2,
        "engine": 3, "theory": 3,
        "console": 4, "track": 4, "figures": 4, "tui": 4,
        "sweep": 5,
        "cli": 6}    # the entry point: each command (the sweep's too) is dispatched from it
FITTING = "silab.tui.fitting"   # the lab's one door to silab.theory


def module_files() -> dict[str, Path]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = ("silab",) + path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = module_files()


def imports_of(name: str, path: Path) -> set[str]:
    """The silab modules `name` imports, at any level; `from pkg import mod` names the module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if (m == "silab" or m.startswith("silab.")) and m != name}


def stdlib_imports_only(path: Path) -> list[str]:
    import sys
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.append(node.module or "")
    return [n for n in names if n.split(".")[0] not in sys.stdlib_module_names]


EDGES = {name: imports_of(name, path) for name, path in MODULES.items()}


def part(name: str) -> str:
    return name.split(".")[1] if "." in name else ""


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read():
    assert "silab.config" in EDGES["silab.cli"]
    assert "silab.tui.fitting" in EDGES["silab.tui.widgets.panels"]    # inside TYPE_CHECKING too
    assert "silab.theory.models" in EDGES["silab.sweep.stats"]          # inside a function
    assert EDGES["silab.protocol"] == set()
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_part_has_a_rank():
    unranked = sorted({part(m) for m in MODULES if part(m) and part(m) not in RANK})
    assert not unranked, f"parts of silab without a rank in {__file__}: {unranked}"


def test_no_import_circle():
    found = cycles(EDGES)
    if found:
        pytest.fail("import circles:\n" + "\n".join(" <-> ".join(c) for c in found))


def test_imports_run_down_the_ranks():
    bad = []
    for src, targets in sorted(EDGES.items()):
        if not part(src) or part(src) not in RANK:
            continue
        for dst in sorted(targets):
            if dst == "silab" or part(dst) == part(src):
                continue
            if src == FITTING and part(dst) == "theory":
                continue
            if RANK.get(part(dst), 99) >= RANK[part(src)]:
                bad.append(f"{src} (rank {RANK[part(src)]}) -> {dst} "
                           f"(rank {RANK.get(part(dst), '?')})")
    if bad:
        pytest.fail("imports that run up or across the flow:\n" + "\n".join(bad))


def test_the_lab_reaches_the_theory_only_through_fitting():
    bad = [f"{src} -> {dst}" for src, targets in sorted(EDGES.items()) if part(src) == "tui"
           for dst in sorted(targets) if part(dst) == "theory" and src != FITTING]
    if bad:
        pytest.fail(f"silab.theory imported outside {FITTING}:\n" + "\n".join(bad))


def test_protocol_imports_only_the_standard_library():
    other = stdlib_imports_only(MODULES["silab.protocol"])
    assert not other, f"silab/protocol.py imports outside the stdlib: {other}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_over_400_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT.parent)}: {lines} lines > {MAX_LINES}"
