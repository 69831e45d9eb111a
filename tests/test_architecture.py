"""The architecture holds: no import cycles among bench's modules, and the packages keep their layers."""

import ast
import sys
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


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    return [node.module] + [f"{node.module}.{a.name}" for a in node.names]


def _project_module(name: str, known: set[str]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported: its body and the blocks in it, not function bodies."""
    out, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return out


# Extras a user may not have installed (pyproject's optional dependencies): an import that reaches one defers it.
OPTIONAL = ("optuna", "nltk", "mlflow")


def third_party(name: str) -> str | None:
    """What importing `name` loads, if it is not the standard library: its package, or for Ray its subpackage
    (Ray Tune and Ray Train each cost seconds beside Ray's core), or the optional extra it reaches."""
    parts = name.split(".")
    if parts[0] in sys.stdlib_module_names:
        return None
    return next((p for p in parts if p in OPTIONAL), ".".join(parts[:2]) if parts[0] == "ray" else parts[0])


def third_party_loaded() -> dict[str, set[str]]:
    """For each project module, the third-party packages that importing it loads (its parents' too)."""
    mods = modules()
    known = set(mods)
    direct, third = {}, {}
    for m, path in mods.items():
        direct[m], third[m] = set(), set()
        for node in _module_level_imports(ast.parse(path.read_text())):
            for name in _imported_names(node):
                own = _project_module(name, known)
                if own:
                    direct[m].add(own)
                elif third_party(name):
                    third[m].add(third_party(name))
        parent = m.rpartition(".")[0]
        if parent:
            direct[m].add(parent)
    loaded = {}
    for m in mods:
        seen, todo = set(), [m]
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(direct.get(n, ()))
        loaded[m] = set().union(*(third.get(n, set()) for n in seen))
    return loaded


REASONS = ("start-up", "optional dependency")


def _says_why(lines: list[str], node: ast.stmt, import_lines: set[int]) -> bool:
    """A comment naming the reason (start-up speed, or an optional dependency imported where it is used) on the
    import itself or above its run of imports."""
    own = lines[node.lineno - 1 : node.end_lineno]
    if any("#" in line and any(r in line.split("#", 1)[1] for r in REASONS) for line in own):
        return True
    i = node.lineno - 1
    while i >= 1:
        line = lines[i - 1].strip()
        if line.startswith("#"):
            if any(r in line for r in REASONS):
                return True
        elif i not in import_lines:
            return False
        i -= 1
    return False


def deferred_import_problems() -> list[str]:
    mods = modules()
    known, loaded = set(mods), third_party_loaded()
    problems = []
    for m, path in mods.items():
        text = path.read_text()
        tree, lines = ast.parse(text), text.splitlines()
        inner = [
            node
            for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn)
            if isinstance(node, (ast.Import, ast.ImportFrom))
        ]
        import_lines = {n for node in inner for n in range(node.lineno, node.end_lineno + 1)}
        for node in inner:
            brings = set()
            for name in _imported_names(node):
                own = _project_module(name, known)
                if own:
                    brings |= loaded[own]
                elif third_party(name):
                    brings.add(third_party(name))
            new = brings - loaded[m]
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if not new:
                problems.append(f"{where}: loads nothing {m} does not load already; import it at the top")
            elif not _says_why(lines, node, import_lines):
                problems.append(f"{where}: deferred ({', '.join(sorted(new))}) without a comment saying start-up")
    return problems


def test_imports_inside_functions_are_only_for_start_up_speed():
    """An import inside a function must defer a third-party package the module does not load anyway, and say so
    in a comment: no cycles hidden that way (the graph above counts them), no stray lazy imports."""
    loaded = third_party_loaded()
    assert "torch" in loaded["benchmark.train.trainer"] and "torch" not in loaded["benchmark.config.suite"]
    assert "ray.tune" in loaded["benchmark.run.trial"] and "ray.train" not in loaded["benchmark.run.trial"]
    assert third_party("ray.tune.search.optuna") == "optuna" and third_party("json") is None
    assert deferred_import_problems() == []
