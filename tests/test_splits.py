"""Train/validation/test splits of user tasks, and the final test score beside validation in the leaderboard."""

import json

import numpy as np
import pytest
import yaml

from benchmark.common.errors import InputError
from benchmark.config.suite import load_suite
from benchmark.results.leaderboard import build_leaderboard
from benchmark.results.tables import FORMATTERS
from tasks.loading import holdout_record, load_split
from tasks.splits import holdout_partition
from tests.conftest import write_easy_task


def test_holdout_partition_is_seeded_disjoint_complete_and_stratified():
    labels = np.array([0] * 60 + [1] * 140)
    fractions = {"validation": 0.1, "test": 0.2}
    first = holdout_partition(labels, fractions, seed=3, stratify=True)
    again = holdout_partition(labels, fractions, seed=3, stratify=True)
    other = holdout_partition(labels, fractions, seed=4, stratify=True)
    assert all(np.array_equal(first[s], again[s]) for s in first)
    assert not np.array_equal(first["test"], other["test"])
    assert sorted(np.concatenate(list(first.values()))) == list(range(200))  # disjoint, and every row once
    assert {s: np.bincount(labels[rows]).tolist() for s, rows in first.items()} == {
        "validation": [6, 14],
        "test": [12, 28],
        "train": [42, 98],
    }
    plain = holdout_partition(np.linspace(0, 5, 50), {"validation": 0.2}, seed=0, stratify=False)
    assert len(plain["validation"]) == 10 and len(plain["train"]) == 40 and "test" not in plain


def _suite(tmp_path, task: dict, **data) -> object:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "tasks": [task], "data": data}))
    return load_suite(path)


def test_a_task_with_train_only_gets_disjoint_validation_and_test_splits(tmp_path):
    easy = write_easy_task(tmp_path / "easy", train=200, dev=10)
    del easy["validation"]
    (task,) = _suite(tmp_path, easy, holdout={"validation": 0.1, "test": 0.15, "seed": 7}).tasks
    assert task.holdout == {"validation": 0.1, "test": 0.15} and task.final_test == "test" and not task.test_splits
    splits = {s: load_split(task, s, None, tmp_path / "cache") for s in ("train", "validation", "test")}
    record = holdout_record(task, tmp_path / "cache")
    assert record["sizes"] == {s: len(ds) for s, ds in splits.items()} and sum(record["sizes"].values()) == 200
    assert not set(record["rows"]["validation"]) & set(record["rows"]["test"])
    lines = (tmp_path / "easy" / "train.csv").read_text().splitlines()[1:]
    assert [lines[i].rsplit(",", 1)[0] for i in record["rows"]["test"]] == splits["test"]["text"]
    # The same seed gives the same rows; a labelled test file is scored, an unlabelled one is for `bench predict`.
    assert holdout_record(task, tmp_path / "cache")["rows_sha256"] == record["rows_sha256"]
    (tmp_path / "unlabelled.csv").write_text("text\nthe film was good\n")
    labelled = _suite(tmp_path, {**easy, "test": str(tmp_path / "easy" / "dev.csv")}).tasks[0]
    unlabelled = _suite(tmp_path, {**easy, "test": str(tmp_path / "unlabelled.csv")}).tasks[0]
    assert labelled.final_test == "test" and labelled.holdout == {"validation": 0.1}
    assert unlabelled.final_test is None and unlabelled.test_splits == {"test": "easy"}
    with pytest.raises(InputError, match="validation"):
        _suite(tmp_path, easy, holdout={"validation": 0})


def _record(trial_id, lr, seed, dev, test=None):
    r = {
        "trial_id": trial_id,
        "task": "easy",
        "model": "m",
        "kind": "single",
        "status": "finished",
        "seed": seed,
        "grid_point": {"learning_rate": lr},
        "metric_keys": ["accuracy"],
        "best_score": 100 * dev,
        "best_metrics": {"accuracy": dev},
        "checkpoint": None,
        "wall_seconds": 1.0,
        "train_samples": 1,
        "epochs": [{"epoch": 1}],
    }
    return {**r, "test_metrics": {"accuracy": test}} if test is not None else r


def test_the_leaderboard_shows_the_chosen_configurations_test_score_beside_validation():
    # lr 1e-3 is better on validation, so its checkpoints are the ones scored on test, though 1e-4's test is higher.
    records = [
        _record("a1", 1e-3, 1, 0.80, 0.70),
        _record("a2", 1e-3, 2, 0.90, 0.76),
        _record("b1", 1e-4, 1, 0.60),
        _record("b2", 1e-4, 2, 0.60),
    ]
    board = build_leaderboard("t", records)
    (row,) = board["rows"]
    assert board["test_tasks"] == ["easy"] and row["trial_ids"] == {"easy": ["a1", "a2"]}
    assert row["test"]["task_scores"]["easy"] == pytest.approx(73.0) and row["test"]["average"] == pytest.approx(73.0)
    assert row["test"]["std"]["task_scores"]["easy"] == pytest.approx(np.std([70, 76], ddof=1))
    board["statistics"] = None
    md = FORMATTERS["md"](board)
    assert "| system | easy (acc) | easy test (acc) | average | average test | seeds |" in md
    assert "| m (single) | 85.0 ± 7.1 | 73.0 ± 4.2 | 85.0 ± 7.1 | 73.0 | 2 |" in md and "scored once" in md
    assert "easy/test_score" in FORMATTERS["csv"](board).splitlines()[0]
    assert "easy test (acc)" in FORMATTERS["latex"](board) and "easy test (acc)" in FORMATTERS["html"](board)
    assert json.loads(FORMATTERS["json"](board))["rows"][0]["test"]["scores"]["easy"]["accuracy"] == pytest.approx(73.0)
    # Without test scores (GLUE tasks) the table has no test column.
    assert "test" not in FORMATTERS["md"]({**build_leaderboard("t", records[2:]), "statistics": None}).split("\n")[2]
