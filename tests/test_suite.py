import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.config.suite import load_suite
from benchmark.plan.trials import make_plan


def write_suite(tmp_path: Path, **overrides) -> Path:
    suite = {
        "name": "t",
        "model": None,
        "tasks": ["rte"],
        "data": {"max_train_samples": 16, "max_eval_samples": 8},
        "training": {"epochs": 1, "batch_size": 8},
        "search": {"grid": {"learning_rate": [1e-3]}, "seeds": [1]},
        "output": str(tmp_path / "run"),
    }
    for key, value in overrides.items():
        node = suite
        parts = key.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def validate(path, capsys, *extra) -> tuple[int, str]:
    code = main(["validate", str(path), *extra])
    err = capsys.readouterr().err
    return code, err


@pytest.fixture(autouse=True)
def _glue(glue_dir, cache_dir):
    return glue_dir


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"modle": "x"}, "modle: unknown key (did you mean 'model'?)"),
        ({"training__learnig_rate": 1e-3}, "training.learnig_rate: unknown key (did you mean 'learning_rate'?)"),
        ({"training__epochs": "three"}, "training.epochs: expected an integer, got string 'three'"),
        ({"training__epochs": True}, "training.epochs: expected an integer, got boolean true"),
        ({"training__epochs": 0}, "training.epochs: must be at least 1"),
        ({"training__learning_rate": -1.0}, "training.learning_rate: must be at least"),
        (
            {"training__precision": "bf61"},
            "training.precision: must be one of auto, fp32, bf16, fp16; got 'bf61' (did you mean 'bf16'?)",
        ),
        ({"training__zero_stage": 3}, "training.zero_stage: must be one of 0, 1, 2"),
        ({"tasks": ["rtee"]}, "tasks[0]: unknown task 'rtee' (did you mean 'rte'?)"),
        ({"tasks": []}, "tasks: must not be empty"),
        ({"tasks": ["rte", "rte"]}, "task 'rte' is listed twice"),
        ({"search__grid": {"learning_rate": []}}, "search.grid.learning_rate: the grid has no values"),
        ({"search__grid": {"learnng_rate": [1e-3]}}, "not a training hyperparameter (did you mean 'learning_rate'?)"),
        ({"search__grid": {"learning_rate": [1e-3, "fast"]}}, "search.grid.learning_rate[1]: expected a number"),
        ({"search__grid": {"batch_size": [8, 8]}}, "search.grid.batch_size: repeats a value"),
        ({"search__seeds": []}, "search.seeds: must not be empty"),
        ({"training__batch_size": 9, "resources": {"workers_per_trial": 2}}, "9 is not divisible by workers_per_trial"),
        ({"training__precision": "fp16"}, "fp16 needs GPUs"),
        ({"model": "./no/such/model"}, "model: model folder not found"),
        ({"training__max_seq_length": 4096}, "4096 exceeds the 512 positions of model all-MiniLM-L6-v2"),
        ({"training__head_only_epochs": 2}, "training.head_only_epochs: 2 is more than the trial's 1 epochs"),
        (
            {"search__grid": {"freeze_layers": [3, 7]}},
            "training.freeze_layers: 7 layers, but model all-MiniLM-L6-v2 has 6",
        ),
        ({"training__layer_lr_decay": 1.5}, "training.layer_lr_decay: must be at most 1.0"),
        (
            {"tasks": ["rte", "mrpc"], "multitask__tasks": ["rte", "mrpc"], "training__freeze_embeddings": True},
            "training.freeze_embeddings: freezing applies to single-task trials",
        ),
        ({"data__glue_dir": "/nonexistent/glue"}, "data.glue_dir: folder not found"),
        ({"name": "bad name!"}, "name: use letters"),
        ({"output": 5}, "output: expected a string, got number 5"),
        ({"data__max_train_samples": {"rtee": 8}}, "data.max_train_samples.rtee: names no task of the suite"),
        ({"data__max_train_samples": {"rte": 0}}, "data.max_train_samples.rte: must be at least 1, got 0"),
        ({"data__max_train_samples": {"rte": "all"}}, "data.max_train_samples.rte: expected an integer"),
    ],
)
def test_bad_suites_fail_with_one_line_and_exit_2(tmp_path, capsys, overrides, message):
    code, err = validate(write_suite(tmp_path, **overrides), capsys)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("bench: error: ") and "Traceback" not in err


def test_missing_glue_files_are_named(tmp_path, capsys):
    (tmp_path / "glue" / "RTE").mkdir(parents=True)
    code, err = validate(write_suite(tmp_path, data__glue_dir=str(tmp_path / "glue")), capsys)
    assert code == 2 and "train file not found" in err and "RTE/train.tsv" in err


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: [unclosed", "invalid YAML at line 1"),
        ("name: !!python/object/apply:os.system ['echo hacked']\ntasks: [rte]", "invalid YAML"),
        ("- just\n- a list", "a suite must be a mapping"),
        ("", "the suite is empty"),
    ],
)
def test_malformed_yaml(tmp_path, capsys, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    code, err = validate(path, capsys)
    assert code == 2 and message in err and err.count("\n") == 1


def test_model_folders_without_config_or_with_pickles_only(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = validate(write_suite(tmp_path, model=str(empty)), capsys)
    assert code == 2 and "has no config.json" in err
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text('{"model_type": "bert"}')
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    code, err = validate(write_suite(tmp_path, model=str(pickled)), capsys)
    assert code == 2 and "no safetensors weights" in err and "pytorch_model.bin" in err


def test_overrides_and_defaults(tmp_path, capsys):
    path = write_suite(tmp_path)
    suite = load_suite(path, ["training.epochs=2", "search.seeds=[1, 2, 3]", "search.grid.batch_size=[4, 8]"])
    assert suite.config.training.epochs == 2
    assert suite.config.training.warmup_ratio == 0.1 and suite.config.training.zero_stage == 2
    assert len(make_plan(suite)) == 1 * 1 * 2 * 3
    code, err = validate(path, capsys, "--set", "training.epochs")
    assert code == 2 and "expected KEY=VALUE" in err
    # YAML reads 2e-5 (no dot) as a string; the suite accepts it as the number users mean.
    assert load_suite(path, ["training.learning_rate=2e-5"]).config.training.learning_rate == 2e-5


def test_plan_ids_are_stable_and_readable(tmp_path):
    suite = load_suite(write_suite(tmp_path, search__grid={"learning_rate": [2e-5, 5e-5]}, search__seeds=[1, 2]))
    ids = [t.trial_id for t in make_plan(suite)]
    assert ids == ["rte_lr=2e-05_seed=1", "rte_lr=2e-05_seed=2", "rte_lr=5e-05_seed=1", "rte_lr=5e-05_seed=2"]
    fingerprints = {t.fingerprint for t in make_plan(suite)}
    assert len(fingerprints) == 4
    changed = load_suite(
        write_suite(tmp_path, training__epochs=2, search__grid={"learning_rate": [2e-5, 5e-5]}, search__seeds=[1, 2])
    )
    assert not fingerprints & {t.fingerprint for t in make_plan(changed)}


def test_a_per_task_training_cap_reaches_its_task_and_retrains_only_it(tmp_path):
    """A task named in data.max_train_samples keeps that many rows, one not named keeps all; changing one task's cap
    changes only its trials' fingerprints."""
    from benchmark.run.runner import prepare_data

    suite = load_suite(write_suite(tmp_path, tasks=["rte", "wnli"], data__max_train_samples={"rte": 24}))
    assert suite.config.data.train_cap("rte") == 24 and suite.config.data.train_cap("wnli") is None
    plan = make_plan(suite)
    data = prepare_data(suite, plan)
    sizes = {key.split("/")[1]: len(d.splits["train"]) for key, d in data.items()}
    assert sizes["rte"] == 24 and sizes["wnli"] > 500  # WNLI's whole training set, less its validation holdout
    changed = make_plan(load_suite(write_suite(tmp_path, tasks=["rte", "wnli"], data__max_train_samples={"rte": 32})))
    same = {t.task: t.fingerprint == u.fingerprint for t, u in zip(plan, changed)}
    assert same == {"rte": False, "wnli": True}


def test_shipped_configs_validate(capsys):
    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "configs").glob("*.yaml")):
        suite = load_suite(path)  # glue.yaml names tasks whose data is not here: check the suite, not the data
        assert make_plan(suite), path


def test_cli_exit_code_and_single_line_in_a_real_process(tmp_path):
    path = write_suite(tmp_path, training__learnig_rate=1)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "run", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bench: error: training.learnig_rate: unknown key (did you mean 'learning_rate'?)"
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


def test_a_hub_id_without_a_network_is_one_line_and_exit_2(tmp_path):
    """No network here: the hub client would retry for about 25 s; bench answers after one connection attempt
    (benchmark/measure/startup.py times it)."""
    from tests.conftest import bench

    suite = tmp_path / "s.yaml"
    suite.write_text("name: h\nmodel: bert-base-uncased\ntasks: [rte]\n")
    proc = bench("validate", suite, timeout=60, env={**os.environ, "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("bench: error: model: 'bert-base-uncased' is not a local folder and not in the Hugging")
    assert "give a local folder or download the model first" in line
