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

from benchmark.common.atomic import atomic_write_bytes
from benchmark.common.paths import resolve_cache_dir
from benchmark.records.final_predictions import TEST_DIR, ensemble_test_path, read_test_file, test_prediction_path
from benchmark.results.leaderboard import build_leaderboard
from benchmark.train.checkpoints import checkpoint_problem, prediction_bytes
from ensembles.combine import mean_prob, vote
from ensembles.rows import read_state
from tasks.loading import load_split, resolve_glue_dir
from tasks.metrics import compute_metrics, task_score
from tasks.spec import TaskSpec


def score_chosen_on_test(store, log=print) -> int:
    """Run every chosen checkpoint that has no test predictions yet on its task's test split; returns how many ran."""
    records = store.records()
    by_id = {r["trial_id"]: r for r in records}
    ran = 0
    for row in build_leaderboard("", records)["rows"]:
        for trial_ids in row.get("trial_ids", {}).values():
            for trial_id in trial_ids:
                record = by_id[trial_id]
                if (
                    TaskSpec.from_dict(record["task_spec"]).final_test is None
                    or test_prediction_path(store.root, trial_id).is_file()
                ):
                    continue
                ran += _score_member(store, record)
    if ran:
        log(f"Test: scored {ran} chosen checkpoint(s) once on their tasks' test splits ({TEST_DIR}/).")
    return ran


def score_ensembles_on_test(store, log=print) -> int:
    """Each ensemble row (and its best-single row) on the test split of every task that has one: prediction
    ensembles combine their members' test logits with the weights chosen on validation; soups run once."""
    # Imported here for start-up speed (torch).
    from benchmark.train.inference import predict_logits

    state = read_state(store.root)
    if not state:
        return 0
    suite, by_id = store.read_suite(), {r["trial_id"]: r for r in store.records()}
    ran = 0
    for row in state["rows"]:
        for task_name, members in row["members"].items():
            task = TaskSpec.from_dict(by_id[members[0]]["task_spec"])
            path = ensemble_test_path(store.root, state["key"], row["predictions"][task_name][0])
            if task.final_test is None or path.is_file():
                continue
            if not all(
                test_prediction_path(store.root, m).is_file() or _score_member(store, by_id[m]) for m in members
            ):
                continue
            tests = [read_test_file(test_prediction_path(store.root, m)) for m in members]
            if any(t is None for t in tests):
                continue
            labels = tests[0]["labels"]
            if soup := row.get("soups", {}).get(task_name):
                ds = _test_split(suite, task)
                record = by_id[members[0]]
                logits = predict_logits(
                    store.root / soup,
                    task,
                    ds,
                    record["training"]["max_seq_length"],
                    record["training"]["eval_batch_size"],
                    suite.get("trust_remote_code", False),
                )
            elif row["config"][task_name]["method"] == "vote":
                logits = vote(task, [{"test": t["logits"]} for t in tests], {"test": labels})["test"]
            else:  # mean_prob, greedy (its bag's weights) and the best single checkpoint (one member)
                logits = mean_prob(task, [{"test": t["logits"]} for t in tests], row["member_weights"][task_name])[
                    "test"
                ]
            _save(path, logits, labels)
            ran += 1
    if ran:
        log(f"Test: scored {ran} ensemble(s) once on their tasks' test splits.")
    return ran


def _score_member(store, record: dict) -> bool:
    """Run one ensemble member that is no row's choice on test; False when its checkpoint is damaged."""
    # Imported here for start-up speed (torch).
    from benchmark.train.inference import predict

    folder = store.root / record["checkpoint"]
    if problem := checkpoint_problem(folder):
        print(f"warning: {record['trial_id']} has no test score: its checkpoint: {problem}", file=sys.stderr)
        return False
    task, suite = TaskSpec.from_dict(record["task_spec"]), store.read_suite()
    ds = _test_split(suite, task)
    logits, labels = predict(
        folder,
        task,
        ds,
        record["training"]["max_seq_length"],
        record["training"]["eval_batch_size"],
        suite.get("trust_remote_code", False),
    )
    _save(test_prediction_path(store.root, record["trial_id"]), logits, labels)
    return True


def _test_split(suite: dict, task: TaskSpec):
    data = suite.get("data", {})
    return load_split(
        task,
        task.final_test,
        resolve_glue_dir(data.get("glue_dir"), data.get("data_dir")),
        resolve_cache_dir(data.get("cache_dir")),
        data.get("max_eval_samples"),
        data.get("sample_seed", 0),
    )


def _save(path: Path, logits: np.ndarray, labels: np.ndarray) -> None:
    atomic_write_bytes(path, prediction_bytes({"test": logits}, {"test": labels}))


def with_test_metrics(records: list[dict], root: Path) -> list[dict]:
    """The records, each with `test_metrics` (0-1, keyed as its dev metrics) and `test_predictions` (the file, relative
    to `root`) where its test predictions exist."""
    out = []
    for record in records:
        path = test_prediction_path(root, record["trial_id"])
        test = read_test_file(path)
        if test is not None:
            task = TaskSpec.from_dict(record["task_spec"])
            metrics = compute_metrics(
                dataclasses.replace(task, eval_splits={"test": ""}), {"test": test["logits"]}, {"test": test["labels"]}
            )
            record = {**record, "test_metrics": metrics, "test_predictions": str(path.relative_to(root))}
        out.append(record)
    return out


def with_ensemble_test(rows: list[dict], root: Path, tasks: dict[str, TaskSpec]) -> list[dict]:
    """Ensemble rows, each with `test` (as trial rows have it; one replicate, no std; its files relative to `root`)
    where it was scored."""
    state = read_state(root)
    out = []
    for row in rows:
        scores, files_of = {}, {}
        for task_name, files in row.get("predictions", {}).items():
            path = ensemble_test_path(root, state["key"], files[0]) if state else None
            test = read_test_file(path) if path else None
            if test is not None:
                files_of[task_name] = [str(path.relative_to(root))]
                scores[task_name] = compute_metrics(
                    dataclasses.replace(tasks[task_name], eval_splits={"test": ""}),
                    {"test": test["logits"]},
                    {"test": test["labels"]},
                )
        if scores:
            task_scores = {t: task_score(m, tasks[t]) for t, m in scores.items()}
            row = {
                **row,
                "test": {
                    "scores": {t: {k: 100.0 * v for k, v in m.items()} for t, m in scores.items()},
                    "task_scores": task_scores,
                    "std": {"scores": {}, "task_scores": {}},
                    "average": float(np.mean(list(task_scores.values())))
                    if set(task_scores) >= set(row["scores"])
                    else None,
                    "predictions": files_of,
                },
            }
        out.append(row)
    return out
