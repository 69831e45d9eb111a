"""data.glue_dev: test — validation held out of GLUE's training set, GLUE's dev set scored once as test."""

import json

import numpy as np
import pytest
import yaml

from benchmark.common.errors import InputError
from benchmark.config.suite import load_suite
from tasks.glue import DEV_AS_TEST, GLUE_TASKS
from tasks.loading import holdout_record, load_split
from tests.conftest import bench


def _suite(tmp_path, tiny_model, **data):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "gd", "model": str(tiny_model), "tasks": ["rte", "stsb"], "data": data}))
    return path


def test_glue_dev_test_holds_validation_out_of_train_and_reads_dev_as_test(tiny_model, glue_dir, cache_dir, tmp_path):
    suite = load_suite(_suite(tmp_path, tiny_model, glue_dev="test", holdout={"validation": 0.1, "seed": 3}))
    rte, stsb = suite.tasks
    assert rte.final_test == DEV_AS_TEST and rte.holdout == {"validation": 0.1} and rte.holdout_seed == 3
    assert stsb.eval_splits == {"validation": ""} and stsb.final_test == DEV_AS_TEST
    splits = {s: load_split(rte, s, glue_dir, cache_dir) for s in ("train", "validation", DEV_AS_TEST)}
    full_train = load_split(GLUE_TASKS["rte"], "train", glue_dir, cache_dir)
    dev = load_split(GLUE_TASKS["rte"], "validation", glue_dir, cache_dir)
    assert len(splits["train"]) + len(splits["validation"]) == len(full_train) == 2490
    assert len(splits["validation"]) == 249  # round(0.1 x class size) per class
    # Disjoint rows of the training file, together all of it; the test split is GLUE's dev set, unchanged.
    record = holdout_record(rte, cache_dir, glue_dir)
    assert record["sizes"] == {"train": 2241, "validation": 249} and record["source_sha256"]
    held = record["rows"]["validation"]
    assert full_train.select(held)["sentence1"] == splits["validation"]["sentence1"]
    kept = sorted(set(range(len(full_train))) - set(held))
    assert full_train.select(kept)["sentence2"] == splits["train"]["sentence2"]
    assert splits[DEV_AS_TEST]["sentence1"] == dev["sentence1"] and splits[DEV_AS_TEST]["label"] == dev["label"]
    # Stratified: validation keeps the training set's label balance.
    assert np.mean(splits["validation"]["label"]) == pytest.approx(np.mean(full_train["label"]), abs=0.01)
    # The default is GLUE's convention: the dev set is validation, and there is no test split.
    plain = load_suite(_suite(tmp_path, tiny_model)).tasks[0]
    assert plain.final_test is None and not plain.holdout and plain == GLUE_TASKS["rte"]


def test_bad_glue_dev_settings_are_refused_at_validate(tiny_model, glue_dir, cache_dir, tmp_path):
    cases = [
        ({"glue_dev": "dev"}, "data.glue_dev: must be one of validation, test"),
        ({"glue_dev": "test", "holdout": {"validation": 0}}, "data.holdout.validation: is 0"),
        ({"glue_dev": "test", "holdout": {"validation": 0.0001}}, "data.holdout.validation: holds no row of class"),
    ]
    for data, message in cases:
        proc = bench("validate", _suite(tmp_path, tiny_model, **data))
        assert proc.returncode == 2, (data, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    with pytest.raises(InputError, match="data.glue_dev"):
        load_suite(_suite(tmp_path, tiny_model, glue_dev="Test"))


def test_a_glue_dev_test_run_scores_the_chosen_checkpoints_once_on_glue_dev(tiny_model, glue_dir, cache_dir, tmp_path):
    suite = {
        "name": "gdrun",
        "model": str(tiny_model),
        "tasks": ["rte", "stsb"],
        "data": {"glue_dev": "test", "max_train_samples": 48, "max_eval_samples": 24},
        "training": {"epochs": 1, "batch_size": 16, "max_seq_length": 48},
        "search": {"grid": {"learning_rate": [1e-3, 3e-4]}, "seeds": [1]},
        "output": str(tmp_path / "run"),
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "run"
    board = json.loads((run / "leaderboard.json").read_text())
    (row,) = [r for r in board["rows"] if r["kind"] == "single"]
    assert board["test_tasks"] == ["rte", "stsb"] and "GLUE's dev set" in board["test_note"]
    # The columns without "test" are validation, which chose: the convention under the table says so.
    assert board["convention"].startswith("Validation scores") and "selected on validation" in board["convention"]
    assert set(row["test"]["task_scores"]) == {"rte", "stsb"} and row["test"]["average"] is not None
    # Test scores carry intervals like dev's, from the test predictions the row names.
    for task, (low, high) in row["test"]["ci"]["task_scores"].items():
        assert low <= row["test"]["task_scores"][task] <= high and row["test"]["ci"]["examples"][task] == 24
    assert row["test"]["predictions"]["rte"] == [f"test_predictions/{row['trial_ids']['rte'][0]}.safetensors"]
    # Only the chosen grid point's checkpoint ran on test; the other was never scored there.
    # (the floors write their own test predictions beside them)
    trials = [p.stem for p in (run / "test_predictions").glob("*.safetensors") if not p.stem.startswith("floor-")]
    assert sorted(trials) == sorted(i for ids in row["trial_ids"].values() for i in ids)
    splits = json.loads((run / "splits.json").read_text())
    assert set(splits) == {"rte", "stsb"} and splits["rte"]["sizes"]["validation"] == 249
    table = bench("table", run)
    assert table.returncode == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if line.startswith("| system"))
    assert "rte (acc)" in header and "rte test (acc)" in header and "stsb test" in header
