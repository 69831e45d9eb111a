"""The final test score: the checkpoints each leaderboard row chose on validation, run once on the task's labelled
test split (user tasks with a labelled test file, or test data held out of train).

Nothing is retrained and nothing is chosen on test: the rows pick their grid points on validation first, and only
those checkpoints (one per seed) are run on test. Their logits are kept in `test_predictions/<trial_id>.safetensors`
(`test/logits`, `test/labels`), so a rerun or `bench table` scores them again without running a model.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from benchmark.atomic import atomic_write_bytes
from benchmark.checkpoints import checkpoint_problem, read_prediction_file
from tasks.spec import TaskSpec

TEST_DIR = "test_predictions"


def test_prediction_path(root: Path, trial_id: str) -> Path:
    return Path(root) / TEST_DIR / f"{trial_id}.safetensors"


def score_chosen_on_test(store, log=print) -> int:
    """Run every chosen checkpoint that has no test predictions yet on its task's test split; returns how many ran."""
    from benchmark.leaderboard import build_leaderboard
    from benchmark.runner import resolve_cache_dir
    from benchmark.submission import predict_logits
    from tasks.loading import load_split, resolve_glue_dir

    suite, records = store.read_suite(), store.records()
    by_id = {r["trial_id"]: r for r in records}
    data = suite.get("data", {})
    glue_dir, cache = resolve_glue_dir(data.get("glue_dir")), resolve_cache_dir(data.get("cache_dir"))
    loaded, ran = {}, 0
    for row in build_leaderboard(suite.get("name", ""), records)["rows"]:
        for task_name, trial_ids in row.get("trial_ids", {}).items():
            for trial_id in trial_ids:
                record = by_id[trial_id]
                task = TaskSpec.from_dict(record["task_spec"])
                path = test_prediction_path(store.root, trial_id)
                if task.final_test is None or path.is_file():
                    continue
                folder = store.root / record["checkpoint"]
                if problem := checkpoint_problem(folder):
                    print(f"warning: {trial_id} has no test score: its checkpoint: {problem}", file=sys.stderr)
                    continue
                if task_name not in loaded:
                    loaded[task_name] = load_split(task, task.final_test, glue_dir, cache, data.get("max_eval_samples"),
                                                   data.get("sample_seed", 0))
                ds = loaded[task_name]
                logits = predict_logits(folder, task, ds, record["training"]["max_seq_length"],
                                        record["training"]["eval_batch_size"], suite.get("trust_remote_code", False))
                _save(path, logits, np.asarray(ds["label"], dtype=np.float32 if task.is_regression else np.int64))
                ran += 1
    if ran:
        log(f"Test: scored {ran} chosen checkpoint(s) once on their tasks' test splits ({TEST_DIR}/).")
    return ran


def _save(path: Path, logits: np.ndarray, labels: np.ndarray) -> None:
    from safetensors.numpy import save

    atomic_write_bytes(path, save({"test/logits": np.ascontiguousarray(logits, dtype=np.float32),
                                   "test/labels": np.ascontiguousarray(labels)}))


def with_test_metrics(records: list[dict], root: Path) -> list[dict]:
    """The records, each with `test_metrics` (0-1, keyed as its dev metrics) where its test predictions exist."""
    from tasks.metrics import compute_metrics

    out = []
    for record in records:
        path = test_prediction_path(root, record["trial_id"])
        if path.is_file():
            task = TaskSpec.from_dict(record["task_spec"])
            test = read_prediction_file(path)["test"]
            metrics = compute_metrics(dataclasses.replace(task, eval_splits={"test": ""}),
                                      {"test": test["logits"]}, {"test": test["labels"]})
            record = {**record, "test_metrics": metrics}
        out.append(record)
    return out
