"""Malformed inputs beyond the suite: task declarations and task files, model folders, data files.

Every generated input is either accepted or refused with an InputError (exit 2, one line); nothing else escapes.
The in-process checks are the ones `bench validate` and `bench run` make before anything starts (load_suite,
then every split of every task); a few CLI runs prove the exit code path. Bounded for CI; set
BENCH_FUZZ_EXAMPLES to try more (the counts go to stdout with -s).
"""

import copy
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.common.errors import InputError
from benchmark.config.suite import load_suite
from benchmark.run.runner import check_data
from benchmark.train.modeling import resolve_model
from tests.conftest import bench
from tests.test_fuzz_suite import SCALE, put, values

TRIED = Counter()


def refused_or_accepted(kind: str, check) -> InputError | None:
    """Run `check`; an InputError must be one line. Anything else raised fails the test (a traceback)."""
    TRIED[kind] += 1
    try:
        check()
    except InputError as e:
        assert "\n" not in str(e) and str(e).strip(), repr(str(e))
        TRIED[f"{kind} refused"] += 1
        return e
    return None


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(f"\nmalformed inputs tried: {dict(TRIED)}")


# --- task declarations, inline or in a task file -------------------------------------------------------------

DECL_PATHS = [
    ("name",),
    ("train",),
    ("validation",),
    ("test",),
    ("text_columns",),
    ("text_columns", 0),
    ("text_columns", 1),
    ("format",),
    ("label_column",),
    ("labels",),
    ("labels", 0),
    ("labels", 1),
    ("regression",),
    ("metrics",),
    ("metrics", 0),
    ("unknown",),
]


@st.composite
def broken_decls(draw, base: dict):
    decl = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        put(
            decl,
            draw(st.sampled_from(DECL_PATHS)),
            draw(
                values
                | st.sampled_from(
                    [
                        "easy",
                        "rte",
                        "csv",
                        "tsv",
                        "json",
                        "parquet",
                        "f1",
                        "pearson",
                        "accuracy",
                        "text",
                        "label",
                        "../x",
                    ]
                )
            ),
        )
    return decl, draw(st.booleans())  # inline in the suite, or a task file beside it


def test_task_declarations(tmp_path_factory, glue_dir, cache_dir):
    from tests.conftest import write_easy_task

    work = tmp_path_factory.mktemp("decls")
    base = write_easy_task(work / "easy", train=8, dev=8)

    @settings(max_examples=400 * SCALE, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(broken_decls(base))
    def check(case):
        decl, in_file = case
        entry = decl
        if in_file:
            (work / "task.yaml").write_text(yaml.dump(decl, allow_unicode=True))
            entry = str(work / "task.yaml")
        (work / "suite.yaml").write_text(yaml.dump({"name": "f", "model": None, "tasks": [entry]}, allow_unicode=True))
        refused_or_accepted("task declaration", lambda: check_data(load_suite(work / "suite.yaml")))

    check()


# --- data files ------------------------------------------------------------------------------------------------

CELLS = st.sampled_from(
    [
        "good",
        "bad",
        "",
        "neutral",
        "0",
        "1",
        "2",
        "-1",
        "1.5",
        "nan",
        "NULL",
        "ü",
        "\x00",
        '"',
        "a,b",
        "a\tb",
        "é\u2028",
        "\ufeff",
        "  ",
    ]
) | st.text(max_size=6)


@st.composite
def data_files(draw):
    fmt = draw(st.sampled_from(["csv", "tsv", "jsonl"]))
    columns = draw(st.lists(st.sampled_from(["text", "label", "other", "Text", ""]), min_size=0, max_size=3))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=4), min_size=0, max_size=5))  # ragged rows
    if fmt == "jsonl":
        lines = [json.dumps(dict(zip(columns, row + draw(st.lists(values, max_size=2)))), default=str) for row in rows]
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["{", "[1, 2]", "null", '{"text": ["a"], "label": {"x": 1}}', "\x00"])))
        text = "\n".join(lines)
    else:
        sep = "," if fmt == "csv" else "\t"
        text = "\n".join(sep.join(r) for r in [columns, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):  # bytes no encoding decodes: a truncated multi-byte sequence, a stray continuation
        data += draw(st.sampled_from([b"\xff\xfe\xfd", b"\xc3", b"\x80\x80", b"\xe2\x82"]))
    return fmt, data


def test_data_files(tmp_path_factory, cache_dir):
    work = tmp_path_factory.mktemp("data")
    good = "text,label\nthe film was good,good\nthe plot was bad,bad\n"

    @settings(max_examples=100 * SCALE, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(data_files(), st.sampled_from(["train", "validation"]))
    def check(case, broken_split):
        fmt, data = case
        suffix = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl"}[fmt]
        folder = Path(work / f"case{TRIED['data file']}")
        folder.mkdir()
        files = {}
        for split in ("train", "validation"):
            path = folder / f"{split}{suffix}"
            if split == broken_split:
                path.write_bytes(data)
            elif fmt == "jsonl":
                path.write_text('{"text": "the film was good", "label": "good"}\n{"text": "bad", "label": "bad"}\n')
            else:
                path.write_text(good if fmt == "csv" else good.replace(",", "\t"))
            files[split] = str(path)
        decl = {"name": "fuzz", **files, "text_columns": ["text"], "labels": ["bad", "good"]}
        (folder / "suite.yaml").write_text(yaml.safe_dump({"name": "f", "model": None, "tasks": [decl]}))
        error = refused_or_accepted("data file", lambda: check_data(load_suite(folder / "suite.yaml")))
        if error is None:  # accepted: then it was text, with at least a header and one row
            try:
                lines = data.decode("utf-8").splitlines()
            except UnicodeDecodeError:
                pytest.fail(f"undecodable {fmt} accepted: {data[:80]!r}")
            assert len([line for line in lines if line.strip()]) >= (1 if fmt == "jsonl" else 2), data[:80]
        shutil.rmtree(folder)

    check()


# --- model folders ---------------------------------------------------------------------------------------------

FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
CONFIG_KEYS = [
    "model_type",
    "hidden_size",
    "num_attention_heads",
    "max_position_embeddings",
    "vocab_size",
    "architectures",
    "num_hidden_layers",
    "unknown",
]


@st.composite
def model_damage(draw):
    """(file, how, detail): how is delete | garbage | truncate | empty | config-value | pickle-only."""
    how = draw(st.sampled_from(["delete", "garbage", "truncate", "empty", "config-value", "pickle-only"]))
    target = "config.json" if how == "config-value" else draw(st.sampled_from(FILES))
    detail = None
    if how == "garbage":
        detail = draw(st.binary(min_size=1, max_size=64) | st.sampled_from([b"{", b"[]", b"null", b'{"a": 1}']))
    elif how == "truncate":
        detail = draw(st.floats(0.01, 0.99))
    elif how == "config-value":
        detail = (draw(st.sampled_from(CONFIG_KEYS)), draw(values))
    return target, how, detail


# These break a folder for sure: each must be refused, not merely not crash.
MUST_REFUSE = {
    ("config.json", "delete"),
    ("config.json", "empty"),
    ("model.safetensors", "delete"),
    ("model.safetensors", "garbage"),
    ("model.safetensors", "truncate"),
    ("model.safetensors", "empty"),
    ("tokenizer.json", "garbage"),
    ("tokenizer.json", "empty"),
    ("tokenizer.json", "truncate"),
    ("model.safetensors", "pickle-only"),
}


def test_model_folders(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("models")

    @settings(max_examples=100 * SCALE, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(model_damage())
    def check(damage):
        target, how, detail = damage
        folder = work / f"m{TRIED['model folder']}"
        shutil.copytree(tiny_model, folder)
        path = folder / target
        if how == "delete":
            path.unlink()
        elif how == "garbage":
            path.write_bytes(detail)
        elif how == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * detail)])
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "config-value":
            config = json.loads(path.read_text())
            config[detail[0]] = detail[1]
            path.write_text(json.dumps(config, default=str))
        elif how == "pickle-only":  # a folder in the old format: weights as a pickle
            (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
        error = refused_or_accepted("model folder", lambda: resolve_model(str(folder)))
        if (target, how) in MUST_REFUSE:
            assert error is not None, f"{target} {how} was accepted"
        if how == "pickle-only":
            assert "bench never loads pickles" in str(error)
        shutil.rmtree(folder)

    check()


# --- the CLI: exit code 2, one line on stderr, no traceback -----------------------------------------------------


def test_cli_refuses_a_truncated_model_folder(tiny_model, tmp_path):
    # One `bench run` in a fresh process (each costs seconds of imports); the in-process checks above cover the rest.
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump({"name": "f", "model": str(model), "tasks": ["rte"], "output": str(tmp_path / "run")})
    )
    proc = bench("run", path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a readable safetensors file" in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()  # refused before anything started
