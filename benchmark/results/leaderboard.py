"""Leaderboard rows from trial records: pure. Statistics are added by benchmark.results.statistics,
text by benchmark.results.tables.

A row is one system (a model trained one way: single, multitask or ensemble). Besides its scores it carries
`predictions`, {task: [dev prediction files, one per seed, relative to the run directory]}, which the
statistics read, and `compute`, what producing the row cost and what using it costs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TypedDict

import numpy as np

from benchmark.common.hashing import canonical
from benchmark.records.store import TrialRecord
from benchmark.train.checkpoints import PREDICTIONS_FILE
from benchmark.train.floors import FLOOR_KINDS
from tasks.glue import DEV_AS_TEST, GLUE_TASKS
from tasks.spec import TaskSpec, TaskType

EPOCHS_ON_DEV = "Epochs and grid points are selected on the same dev sets that are reported."
# With ensembles or merges in the suite and no test split, trials keep the epoch best on the selection half.
EPOCHS_ON_SELECTION_HALF = (
    "Epochs are selected on the selection half of each dev set (split-half protocol, seed {seed}: the suite builds "
    "ensembles or merges, which report on the other half), grid points on the whole dev set, which is reported."
)

GLUE_SCORES = (
    "GLUE convention: a task's score is the unweighted mean of its metrics (MRPC and QQP: F1 and accuracy; STS-B: "
    "Pearson and Spearman; MNLI: matched and mismatched accuracy, both counting), and the average is the unweighted "
    "mean of the task scores (over all nine GLUE tasks, the GLUE score)."
)
SCORES = "A task's score is the unweighted mean of its metrics, and the average the unweighted mean of the task scores."
CONVENTION = (
    "Dev-set scores, 0-100: mean ± sample std over seeds, for the grid point with the best mean dev "
    f"score per task. {GLUE_SCORES} {EPOCHS_ON_DEV}"
)
# Where tasks have a test split, the unlabelled columns are validation: it chose, and test reports.
CONVENTION_WITH_TEST = (
    CONVENTION.replace("Dev-set scores", "Validation scores", 1)
    .replace("best mean dev score", "best mean validation score", 1)
    .replace(
        EPOCHS_ON_DEV,
        "Epochs and grid points are selected on validation, the columns without 'test'; test columns report.",
    )
)


def convention(records: list[TrialRecord], test_tasks: list[str]) -> str:
    """What chose and what reported, as the records say (`selection_seed`: what chose each kept epoch); GLUE's
    conventions only where a GLUE task is among the rows."""
    text = CONVENTION_WITH_TEST if test_tasks else CONVENTION
    if not any(r.get("task") in GLUE_TASKS for r in records):
        text = text.replace(GLUE_SCORES, SCORES, 1)
    seeds = sorted({r["selection_seed"] for r in records if r.get("selection_seed") is not None})
    if test_tasks or not seeds:
        return text
    return text.replace(EPOCHS_ON_DEV, EPOCHS_ON_SELECTION_HALF.format(seed="/".join(map(str, seeds))))


class Row(TypedDict, total=False):
    """One leaderboard row: a system (a model and a way of training, or an ensemble, soup or merge) over its seeds.
    Scores are 0-100: a metric's mean over seeds per task, the task score (the mean of its metrics) and the average
    of the task scores (None unless every task has one)."""

    system: str
    kind: str  # single, multitask, two-stage, chain, merged, ensemble, zero-shot, probe
    chain: str
    model: str
    scores: dict[str, dict[str, float]]  # task -> metric -> mean over seeds
    task_scores: dict[str, float]
    average: float | None
    std: dict  # the same keys: sample standard deviations over seeds
    seeds: int
    config: dict  # task -> the chosen grid point
    trial_ids: dict[str, list[str]]  # task -> the chosen trials, one per seed
    test: dict  # the same scores on test, their prediction files, and (after statistics) intervals and tests
    trials: int
    predictions: dict[str, list[str]]  # task -> the dev prediction files of the chosen trials
    compute: dict  # device-hours, samples trained, samples/s, precision, parameters, peak memory, passes
    calibration: dict  # task -> ECE, NLL, Brier, temperature
    ci: dict  # after statistics: intervals of scores, task scores and the average
    significance: dict | None  # after statistics: the tests against the row's baseline
    members: dict  # ensemble rows: their members, weights, protocol, temperatures and soups
    member_weights: dict
    protocol: dict
    temperature: dict
    soups: dict
    below_floor: dict[str, list[str]]  # task -> the floors of its model that score above it (test: in `test`)


TEST_NOTE = (
    "test: the checkpoints of the grid point chosen on validation (one per seed), each scored once on "
    "the task's labelled test split; mean ± std over seeds. Nothing is chosen on test."
)
GLUE_DEV_NOTE = (
    " GLUE tasks (data.glue_dev: test): validation is held out of GLUE's training set (stratified, seeded, "
    "rows in splits.json) and chooses everything; test is GLUE's dev set."
)


def build_leaderboard(
    suite_name: str, records: list[TrialRecord], task_order: list[str] = (), extra_rows: list[Row] = ()
) -> dict:
    """`task_order`: the suite's order of tasks; tasks only the records know follow it. `extra_rows`: rows built
    elsewhere (ensembles), sorted in with the rest."""
    # Trials a scheduler stopped early are results too (worse ones); diverged and failed trials are counted only.
    finished = [r for r in records if r.get("status") in ("finished", "stopped") and r.get("best_score") is not None]
    task_order = list(dict.fromkeys([*task_order, *(r["task"] for r in records)]))
    task_order = [t for t in task_order if any(r["task"] == t for r in records)]
    metric_keys = {r["task"]: r["metric_keys"] for r in records}
    metric_keys.update({r["task"]: r["metric_keys"] for r in finished})
    systems = defaultdict(list)
    for r in finished:  # each chain (`mrpc→rte`) and each merge method is a system of its own
        systems[(r["model"], r.get("kind", "single"), r.get("chain"), r.get("system"))].append(r)
    by_id = {r["trial_id"]: r for r in records}
    rows = sort_rows(
        [
            *(
                _row(model, kind, recs, task_order, metric_keys, chain, system, by_id)
                for (model, kind, chain, system), recs in systems.items()
            ),
            *extra_rows,
        ]
    )
    test_tasks = [t for t in task_order if any(t in r.get("test", {}).get("task_scores", {}) for r in rows)]
    mark_below_floors(rows)
    trials = [r for r in records if r.get("kind") not in FLOOR_KINDS]  # a floor trains no encoder
    return {
        "suite": suite_name,
        "tasks": task_order,
        "metrics": metric_keys,
        "rows": rows,
        "trials": trial_counts([r for r in trials if r.get("kind") != "merged"]),  # a merge trains nothing
        "compute": {
            "trial_hours": sum(r.get("wall_seconds", 0.0) for r in trials) / 3600,
            "trial_epochs": trial_epochs(trials),
            "train_samples": sum(r.get("train_samples", 0) for r in trials),
            "optimizer_steps": sum(r.get("optimizer_steps", 0) for r in trials),
        },
        "convention": convention(finished, test_tasks)
        + (TAGGING_NOTE if any(r.get("task_spec", {}).get("type") == TaskType.TAGGING.value for r in records) else "")
        + (FLOORS_NOTE if any(r["kind"] in FLOOR_KINDS for r in rows) else ""),
        "test_tasks": test_tasks,
        "test_note": TEST_NOTE
        + (GLUE_DEV_NOTE if any(r.get("task_spec", {}).get("final_test") == DEV_AS_TEST for r in records) else ""),
    }


TAGGING_NOTE = (
    " A tagging task's score is its entity-level F1 alone (seqeval, micro-averaged over entities), with its "
    "precision and recall shown beside it; its constant prediction is `O` for every word (F1 0), its probe tags "
    "each word from the frozen encoder's state at the word's first sub-token, and its statistics resample sentences."
)
FLOORS_NOTE = (
    " Floors: the zero-shot row scores the untrained encoder by the cosine of its pooled embeddings of the two "
    "texts (similarity tasks); the probe row trains only a linear head on the frozen encoder's pooled embeddings, "
    "once per seed, its epoch chosen as a trial's is. A row learns only where it beats the constant prediction and "
    "these floors; ‡ marks a score below one of its model's floors on the same examples (a row scored on a report "
    "half of dev: the floors rescored on that half)."
)


def mark_below_floors(rows: list[Row]) -> None:
    """`below_floor` on every other row (and its test side): task -> the floors of the same model that score above
    it there; the tables mark those cells."""
    floors = [r for r in rows if r["kind"] in FLOOR_KINDS]
    for row in rows:
        if row["kind"] in FLOOR_KINDS:
            continue
        for on_test in (False, True):
            side = _side(row, on_test)
            below = {}
            for task, score in (side.get("task_scores") or {}).items():
                above = [
                    f["kind"]
                    for f in floors
                    if f["model"] == row["model"] and _side(f, on_test).get("task_scores", {}).get(task, score) > score
                ]
                if above:
                    below[task] = above
            if side:
                side["below_floor"] = below


def _side(row: Row, on_test: bool) -> dict:
    return (row.get("test") or {}) if on_test else row


TEST_SIDE = ("scores", "task_scores", "average", "predictions", "ci", "significance", "below_floor")


def test_side(row: Row) -> Row | None:
    """The row as its test split shows it: the same row with its test scores, prediction files, intervals and tests
    in place of validation's, for statistics and tables to treat like any row; None where it has no test scores."""
    test = row.get("test") or {}
    if not test.get("task_scores"):
        return None
    return {**row, **{k: test.get(k) for k in TEST_SIDE}}


def trial_epochs(records: list[dict]) -> float:
    """Epochs trained, summed over trials; a joint trial's per-task records count its epochs once."""
    epochs = {r.get("joint_trial") or r["trial_id"]: r["epochs"][-1]["epoch"] for r in records if r.get("epochs")}
    return sum(epochs.values())


def trial_counts(records: list[dict]) -> dict:
    finished = sum(r.get("status") in ("finished", "stopped") and r.get("best_score") is not None for r in records)
    return {
        "finished": finished,
        **{s: sum(r.get("status") == s for r in records) for s in ("stopped", "diverged", "failed")},
        "total": len(records),
    }


def sort_rows(rows: list[Row]) -> list[Row]:
    """Best average first; rows without an average (tasks missing) last, in their given order."""
    return sorted(rows, key=lambda row: -row["average"] if row["average"] is not None else np.inf)


def _row(
    model: str,
    kind: str,
    records: list[TrialRecord],
    task_order: list[str],
    metric_keys: dict,
    chain: str | None = None,
    system: str | None = None,
    by_id: dict | None = None,
) -> Row:
    """`system`: the name records give their row (merges: `model method`); `by_id`: every record, for the trials
    a merged row's compute counts."""
    scores, std, task_scores, task_std, config, per_seed, predictions, chosen = {}, {}, {}, {}, {}, {}, {}, []
    trial_ids, test_scores, test_std, test_task_scores, test_task_std, test_files = {}, {}, {}, {}, {}, {}
    for task in task_order:
        by_point = defaultdict(list)
        for r in records:
            if r["task"] == task:
                by_point[canonical(r["grid_point"])].append(r)
        if not by_point:
            continue
        # The grid point with the best mean dev score over its seeds (ties: the first in the plan's order).
        best = max(by_point.values(), key=lambda recs: np.mean([r["best_score"] for r in recs]))
        keys = metric_keys[task]
        values = {k: [100.0 * r["best_metrics"][k] for r in best] for k in keys}
        scores[task] = {k: float(np.mean(v)) for k, v in values.items()}
        std[task] = {k: _std(v) for k, v in values.items()}
        task_scores[task] = float(np.mean([r["best_score"] for r in best]))
        task_std[task] = _std([r["best_score"] for r in best])
        config[task] = best[0]["grid_point"]
        per_seed[task] = {r["seed"]: r["best_score"] for r in best}
        trial_ids[task] = [r["trial_id"] for r in best]
        if all("test_metrics" in r for r in best):  # the chosen checkpoints, scored once on test
            test_values = {k: [100.0 * r["test_metrics"][k] for r in best] for k in keys}
            test_scores[task] = {k: float(np.mean(v)) for k, v in test_values.items()}
            test_std[task] = {k: _std(v) for k, v in test_values.items()}
            spec = best[0].get("task_spec")
            score_keys = TaskSpec.from_dict(spec).score_keys() if spec else keys  # a tagging task's: F1 alone
            seed_scores = [float(np.mean([test_values[k][i] for k in score_keys])) for i in range(len(best))]
            test_task_scores[task], test_task_std[task] = float(np.mean(seed_scores)), _std(seed_scores)
            if all(r.get("test_predictions") for r in best):
                test_files[task] = [r["test_predictions"] for r in best]
        if all(r.get("checkpoint") or r.get("predictions_file") for r in best):
            # A merged record's own file: the report half its scores are on (its checkpoint's covers all of dev).
            predictions[task] = [r.get("predictions_file") or f"{r['checkpoint']}/{PREDICTIONS_FILE}" for r in best]
        chosen += best
    complete = len(task_scores) == len(task_order)
    average = float(np.mean(list(task_scores.values()))) if complete and task_scores else None
    seeds = sorted(set.intersection(*(set(s) for s in per_seed.values()))) if per_seed else []
    seed_averages = [np.mean([per_seed[t][s] for t in per_seed]) for s in seeds]
    return {
        "system": system or (f"{model} [{chain}]" if chain else f"{model} ({kind})"),
        "kind": kind,
        **({"chain": chain} if chain else {}),
        "model": model,
        "scores": scores,
        "task_scores": task_scores,
        "average": average,
        "std": {"scores": std, "task_scores": task_std, "average": _std(seed_averages) if complete else None},
        "seeds": len(seeds),
        "config": config,
        "trial_ids": trial_ids,
        "test": {
            "scores": test_scores,
            "task_scores": test_task_scores,
            "std": {"scores": test_std, "task_scores": test_task_std},
            "average": float(np.mean(list(test_task_scores.values())))
            if test_task_scores and len(test_task_scores) == len(task_order)
            else None,
            "predictions": test_files,
        },
        "trials": len(records),
        "predictions": predictions,
        "compute": _compute(records, chosen, by_id or {}),
    }


def _throughput(record: dict) -> float | None:
    """Training samples/s of a trial. A joint trial's task record counts that task's share of the samples over the
    whole trial's seconds; the trial's own throughput is in its epoch rows (every task's samples)."""
    if not record.get("joint_trial"):
        return record.get("train_samples_per_s")
    timed = [(e["train_samples_per_s"], e["train_seconds"]) for e in record.get("epochs", []) if e.get("train_seconds")]
    seconds = sum(t for _, t in timed)
    return sum(v * t for v, t in timed) / seconds if seconds else None


def _compute(records: list[dict], chosen: list[dict], by_id: dict) -> dict:
    """Cost of the row: device-hours, samples and optimizer steps of every trial behind it (the whole grid, every
    seed; for a merge, the single-task trials it merged; for two-stage rows, their task's share of each joint trial
    they started from); training throughput of one trial at the chosen grid points; parameters of one model; forward
    passes per example."""
    sources = {s for r in records for s in r.get("source_trials", [])}
    stage_one = {(r["stage_one"], r["task"]) for r in records if r.get("stage_one")}
    sources |= {i for i, r in by_id.items() if (r.get("joint_trial"), r["task"]) in stage_one}
    records = records + [by_id[s] for s in sorted(sources) if s in by_id]
    resources = [r.get("resources") for r in records]
    device_hours = None
    if records and all(resources):
        device_hours = sum(r["wall_seconds"] * devices_held(res) for r, res in zip(records, resources)) / 3600
    throughput = [t for t in map(_throughput, chosen) if t]
    parameters = [r["parameters"] for r in chosen if r.get("parameters")]
    # Trained at some epoch (gradual unfreezing adds layers; LoRA: adapters and head).
    trainable = [e.get("trainable_parameters") or 0 for r in chosen for e in r.get("epochs", [])]
    memory = [r["peak_memory_mb"] for r in chosen if r.get("peak_memory_mb")]
    precisions = sorted({r["precision"] for r in chosen if r.get("precision")})
    return {
        "device": "GPU" if any(res and res["gpus_per_worker"] > 0 for res in resources) else "CPU",
        "device_hours": device_hours,
        "train_samples": sum(r.get("train_samples", 0) for r in records),
        "optimizer_steps": sum(r.get("optimizer_steps", 0) for r in records),
        "train_samples_per_s": float(np.mean(throughput)) if throughput else None,
        "parameters": max(parameters) if parameters else None,  # heads differ by task; the largest model
        "trainable_parameters": max(trainable) or None if trainable else None,
        "peak_memory_mb": max(memory) if memory else None,
        "inference_passes": 1,
        "precision": "/".join(precisions) or None,  # what the chosen trials ran in
    }


def devices_held(resources: dict) -> float:
    """GPUs a trial held, or CPUs when it held no GPU."""
    per_worker = resources["gpus_per_worker"] or resources["cpus_per_worker"]
    return resources["workers_per_trial"] * per_worker


def _std(values) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def best_source_checkpoint(records: list[dict], model: str, source: str) -> dict | None:
    """The source task's best checkpoint of `model` in this run: its single-task row's chosen grid point (best mean
    validation score over seeds), and of its seeds the one with the best validation score; None without one."""
    rows = [r for r in build_leaderboard("", records)["rows"] if r["kind"] == "single" and r["model"] == model]
    by_id = {r["trial_id"]: r for r in records}
    chosen = [by_id[i] for row in rows for i in row.get("trial_ids", {}).get(source, []) if by_id[i].get("checkpoint")]
    return max(chosen, key=lambda r: r["best_score"]) if chosen else None
