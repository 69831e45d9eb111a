"""Malformed suites, generated: every one is refused with an InputError (exit 2, one line), never a traceback.

Bounded for CI (1,500 examples, derandomized); BENCH_FUZZ_EXAMPLES=N tries N times as many. Each example starts from a valid suite and breaks it:
a key set to a value of the wrong type, size or shape, an unknown key, or YAML text with anchors, tags and deep
nesting.
"""

import os

import pytest
import yaml
from conftest import bench
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.common.errors import InputError
from benchmark.config.suite import load_suite

SCALE = int(os.environ.get("BENCH_FUZZ_EXAMPLES", "1"))  # every fuzz test's bound, times this

BASE = {
    "name": "t",
    "model": None,
    "tasks": ["rte"],
    "data": {"max_train_samples": 16, "max_eval_samples": 8},
    "training": {"epochs": 1, "batch_size": 8},
    "search": {"grid": {"learning_rate": [1e-3]}, "seeds": [1]},
}

PATHS = [
    ("name",),
    ("model",),
    ("tasks",),
    ("tasks", 0),
    ("tasks", 1),
    ("data",),
    ("data", "max_train_samples"),
    ("data", "glue_dir"),
    ("data", "sample_seed"),
    ("training",),
    ("training", "epochs"),
    ("training", "batch_size"),
    ("training", "learning_rate"),
    ("training", "precision"),
    ("training", "max_seq_length"),
    ("training", "warmup_ratio"),
    ("search",),
    ("search", "grid"),
    ("search", "grid", "learning_rate"),
    ("search", "grid", "batch_size"),
    ("search", "space"),
    ("search", "space", "learning_rate"),
    ("search", "space", "epochs"),
    ("search", "seeds"),
    ("search", "algorithm"),
    ("search", "num_samples"),
    ("search", "scheduler"),
    ("search", "scheduler", "type"),
    ("search", "scheduler", "grace_period"),
    ("search", "eval_every_steps"),
    ("search", "max_failures"),
    ("resources",),
    ("resources", "workers_per_trial"),
    ("resources", "cpus_per_worker"),
    ("resources", "max_concurrent_trials"),
    ("multitask",),
    ("multitask", "tasks"),
    ("multitask", "two_stage"),
    ("multitask", "two_stage", "grid"),
    ("ensemble",),
    ("ensemble", "methods"),
    ("ensemble", "k"),
    ("output",),
    ("storage",),
    ("trust_remote_code",),
    ("unknown_key",),
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**15, max_value=10**40)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["rte", "mrpc", "fp16", "asha", "optuna", "pbt", "loguniform", "choice", "vote", "", "..", "/"])
    | st.dates()
    | st.binary(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=12)
            | st.sampled_from(
                ["loguniform", "uniform", "randint", "choice", "type", "learning_rate", "epochs", "name", "train"]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)


def put(suite: dict, path: tuple, value) -> dict:
    node = suite
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), (dict, list)) else {}
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return suite
    last = path[-1]
    if isinstance(node, dict):
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int):
        node[last : last + 1] = [value]
    return suite


@st.composite
def broken_suites(draw) -> str:
    import copy

    suite = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        put(suite, draw(st.sampled_from(PATHS)), draw(values))
    return yaml.dump(suite, allow_unicode=draw(st.booleans()))  # yaml.dump: dates and bytes keep their tags


TOKENS = [
    "name:",
    " t",
    "\n",
    "tasks:",
    " [rte]",
    "[",
    "]",
    "{",
    "}",
    "&a ",
    "*a",
    "!!set ",
    "!!binary ",
    "!!str ",
    "!!python/object/apply:os.system ",
    "!tag ",
    "- ",
    ": ",
    ", ",
    "? ",
    "<<: *a",
    "'",
    '"',
    "\t",
    "  ",
    "rte",
    "1e400",
    ".nan",
    "-.inf",
    "2001-01-01",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
    "|\n",
    ">-\n",
    "# c",
    "\x00",
    "\ufeff",
    "ü",
    "\u2028",
    "training:",
    " epochs:",
    " 99999999999999999999",
    "search:",
    " grid:",
    "model:",
    "~",
    "null",
    "yes",
    "0x1F",
    "0o17",
    "1_000",
    "=",
    "seeds:",
]
yaml_texts = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)

TEXTS = [
    "name: &a t\ntasks: [*a]\n",
    "base: &b {epochs: 1}\nname: t\ntasks: [rte]\ntraining:\n  <<: *b\n  <<: *b\n",
    "name: t\ntasks: [rte]\ntraining: &x {epochs: *x}\n",
    "name: !!binary aGVsbG8=\ntasks: [rte]\n",
    "name: t\ntasks: !!set {rte: null, mrpc: null}\n",
    "name: t\ntasks: [rte]\ntraining: {epochs: !!float 1e400}\n",
    "name: t\ntasks: [rte]\ntraining: {learning_rate: .nan}\n",
    "name: t\ntasks: [rte]\nsearch: {seeds: [2001-01-01]}\n",
    "name: !custom t\ntasks: [rte]\n",
    "name: !!python/name:os.system t\ntasks: [rte]\n",
    "name: t\ntasks: [rte]\nmodel: !!omap [a: 1]\n",
    "name: t\ntasks: [rte]\n? [complex, key]\n: 1\n",
    "name: t\ntasks: [rte]\ntraining: {epochs: 99999999999999999999999999999999}\n",
    "name: t\ntasks: " + "[" * 5000 + "]" * 5000 + "\n",
    "name: t\ntasks: [rte]\nsearch: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
    "name: t\ntasks: [rte]\nx: &a [*a]\n",
    "\ufeffname: t\ntasks: [rte]\n\x85",
    "name: t\x00\ntasks: [rte]\n",
    "name: t\ntasks: [rte]\n---\nname: u\n",
    "name: t\ntasks: [rte]\nsearch: {grid: {learning_rate: [%s], batch_size: [%s]}}\n"
    % (", ".join(f"{i + 1}.0e-6" for i in range(1000)), ", ".join(str(8 * (i + 1)) for i in range(1000))),
    "name: t\ntasks: [rte]\ndata: {sample_seed: -1}\n",
    "name: t\ntasks: [rte]\nsearch: {sample_seed: 100000000000000000000000}\n",
    # Paths the OS refuses (these crashed with ValueError, OSError or RuntimeError before).
    *[
        yaml.safe_dump({"name": "t", "tasks": ["rte"], **extra})
        for extra in (
            {"tasks": ["a\0.yaml"]},
            {"model": "./a\0b"},
            {"model": "./" + "a" * 5000},
            {"model": "~nouser/x"},
            {"data": {"glue_dir": "a" * 5000}},
            {"data": {"glue_dir": "~nouser/x"}},
            {"output": "a\0b"},
            {"output": "~nouser/x"},
            {
                "tasks": [
                    {
                        "name": "u",
                        "train": "b" * 5000 + ".csv",
                        "validation": "x.csv",
                        "text_columns": ["t"],
                        "labels": ["a", "b"],
                    }
                ]
            },
            {
                "tasks": [
                    {
                        "name": "u",
                        "train": "a\0.csv",
                        "validation": "x.csv",
                        "text_columns": ["t"],
                        "labels": ["a", "b"],
                    }
                ]
            },
            {"search": {"grid": {"learning_rate": [1e-5]}, "seeds": [1], "\nkey\x1b[31m": 1}},
        )
    ],
    "name: t\ntasks:\n  - {name: ünï, train: x.csv, validation: y.csv, text_columns: [t], labels: [a, b]}\n",
]


def check(path, text: str) -> None:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_suite(path)
    except InputError as e:
        assert len(str(e).splitlines()) == 1, str(e)


@pytest.fixture(autouse=True)
def _data(glue_dir, cache_dir):
    return glue_dir


@settings(
    max_examples=1000 * SCALE,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=broken_suites())
def test_generated_suites_raise_input_error_only(tmp_path, text):
    check(tmp_path / "suite.yaml", text)


@settings(
    max_examples=500 * SCALE,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=yaml_texts)
def test_generated_yaml_text_raises_input_error_only(tmp_path, text):
    check(tmp_path / "suite.yaml", text)


@pytest.mark.parametrize("text", TEXTS)
def test_yaml_anchors_tags_and_nesting(tmp_path, text):
    check(tmp_path / "suite.yaml", text)


@pytest.mark.parametrize("text", [TEXTS[2], TEXTS[9], TEXTS[13], "name: t\ntasks: [rte]\ntraining: {epochs: []}\n"])
def test_cli_validate_exits_2_with_one_line(tmp_path, text):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    proc = bench("validate", path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("bench: error: ")
    assert "Traceback" not in proc.stderr
