"""The architecture holds: no import cycles among bench's modules, and the packages keep their layers."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "tasks", "ensembles")
# Lower layers never import higher ones. The folders follow the data flow: a suite is parsed (config) and
# expanded (plan), trials train (train), the run directory keeps them (records, below the plan, which names
# the folders stage two starts from), ensembles combine them, rows
# and tables come out (results), and `run` drives it all through Ray.
LAYERS = [
    ("benchmark.common",),
    ("tasks",),
    ("benchmark.train",),
    ("benchmark.config",),
    ("benchmark.records",),
    ("benchmark.plan",),
    ("ensembles",),
    ("benchmark.results",),
    ("benchmark.run",),
    ("benchmark.cli", "benchmark.measure"),
]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """Every project module `path` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def layer(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    g = graph()
    assert len(g) > 60  # every module of the three packages was read
    assert cycles(g) == []


def test_packages_import_only_lower_layers():
    upward = [
        f"{m} -> {d}"
        for m, deps in graph().items()
        for d in deps
        if layer(m) is not None and layer(d) is not None and layer(d) > layer(m)
    ]
    assert upward == []


def test_no_test_module_looks_like_product_code():
    """pytest collects `test_*.py` and `*_test.py`: no product module may match either pattern."""
    assert [m for m in modules() if m.rpartition(".")[2].startswith("test_") or m.endswith("_test")] == []


def test_no_function_is_longer_than_80_lines():
    """Functions you read top to bottom, as the training loops are: none of the three packages' functions (study
    scripts included) is longer than 80 lines, signature and docstring counted."""
    long = [
        f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for module, path in modules().items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80
    ]
    assert long == []
