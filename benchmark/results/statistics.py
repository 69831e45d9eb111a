"""A leaderboard's statistics: per row, 95% bootstrap intervals; per row against a baseline row, paired tests.

Rows carry `predictions`, {task: [prediction files, one per seed]}; `add_statistics` reads them through a
`load` function and adds, without changing any existing key:

    row["ci"]           {"scores": {task: {metric: [lo, hi]}}, "task_scores": {task: [lo, hi]},
                         "average": [lo, hi] or None, "examples": {task: dev examples scored}}
    row["significance"] None for the baseline (and when there is none), else {"baseline": system,
                         "task_scores": {task: {"delta", "ci", "p", "significant", "examples"}
                                               or {"comparable": False, "reason"}},
                         "average": {"delta", "ci", "p", "significant"} or None}
    board["statistics"] {"baseline", "resamples", "confidence", "alpha", "seed", "missing"}

Two rows are compared on the dev examples both have predictions for (an ensemble scored on part of dev is
compared with the baseline on that part); "examples" says how many. Bootstrap definitions: benchmark.results.bootstrap.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from benchmark.common.errors import InputError
from benchmark.results.bootstrap import (
    ALPHA,
    CONFIDENCE,
    RESAMPLES,
    SEED,
    LabelMismatch,
    SeedPredictions,
    TaskSample,
    check_same_labels,
    common_examples,
    interval,
    paired_difference,
    score_task,
)
from benchmark.results.leaderboard import sort_rows
from tasks.spec import TaskSpec

# path as the row gives it -> that file's predictions, or None when the file is gone
Loader = Callable[[str], "SeedPredictions | None"]


def add_statistics(
    board: dict,
    task_specs: dict[str, TaskSpec],
    load: Loader,
    baseline: str | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict:
    rows = sort_rows([dict(row) for row in board["rows"]])
    tasks = board["tasks"]
    base = choose_baseline(rows, baseline)
    scorer = _Scorer(task_specs, resamples, seed)
    predictions, missing = {}, []
    for row in rows:
        predictions[row["system"]] = {}
        for task in tasks:
            files = row.get("predictions", {}).get(task, [])
            loaded = [load(path) for path in files]
            if files and all(p is not None for p in loaded):
                predictions[row["system"]][task] = loaded
            elif task in row["scores"]:
                missing.append(f"{row['system']}: {task}")

    for row in rows:
        row["ci"] = _intervals(row, tasks, predictions[row["system"]], scorer)
    for row in rows:
        row["significance"] = None if base is None or row is base else _compare(row, base, tasks, predictions, scorer)
    return {
        **board,
        "rows": rows,
        "statistics": {
            "baseline": base["system"] if base else None,
            "resamples": resamples,
            "confidence": CONFIDENCE,
            "alpha": ALPHA,
            "seed": seed,
            "missing": missing,
        },
    }


def choose_baseline(rows: list[dict], name: str | None) -> dict | None:
    """The row named `name` (exactly, else the one whose name contains it); by default the best single row."""
    if name:
        matches = [r for r in rows if r["system"] == name] or [r for r in rows if name.lower() in r["system"].lower()]
        if len(matches) != 1:
            found = "matches several rows" if matches else "matches no row"
            raise InputError("--baseline", f"'{name}' {found}; rows: {', '.join(r['system'] for r in rows)}")
        return matches[0]
    if len(rows) < 2:
        return None
    singles = [r for r in rows if r["kind"] == "single" and r["average"] is not None]
    return singles[0] if singles else rows[0]


class _Scorer:
    """Scores a row's task on given examples once, however many comparisons need it."""

    def __init__(self, task_specs: dict[str, TaskSpec], resamples: int, seed: int):
        self.task_specs, self.resamples, self.seed = task_specs, resamples, seed
        self.cache: dict[tuple, TaskSample] = {}

    def __call__(
        self, system: str, task: str, seeds: list[SeedPredictions], examples: dict[str, np.ndarray]
    ) -> TaskSample:
        key = (system, task, *((s, e.tobytes()) for s, e in sorted(examples.items())))
        if key not in self.cache:
            self.cache[key] = score_task(self.task_specs[task], seeds, examples, self.resamples, self.seed)
        return self.cache[key]


def _intervals(row: dict, tasks: list[str], predictions: dict, scorer: _Scorer) -> dict:
    ci = {"scores": {}, "task_scores": {}, "average": None, "examples": {}}
    samples = {}
    for task, seeds in predictions.items():
        try:
            samples[task] = scorer(row["system"], task, seeds, common_examples(seeds))
        except LabelMismatch as e:
            raise InputError(row["system"], f"its seeds' prediction files disagree: {e}") from None
        ci["scores"][task] = {k: interval(v) for k, v in samples[task].replicates.items()}
        ci["task_scores"][task] = interval(samples[task].score_replicates)
        ci["examples"][task] = samples[task].examples
    if row["average"] is not None and all(t in samples for t in tasks):
        ci["average"] = interval(np.mean([samples[t].score_replicates for t in tasks], axis=0))
    return ci


def _compare(row: dict, base: dict, tasks: list[str], predictions: dict, scorer: _Scorer) -> dict:
    out = {"baseline": base["system"], "task_scores": {}, "average": None}
    pairs = {}
    for task in tasks:
        mine, theirs = predictions[row["system"]].get(task), predictions[base["system"]].get(task)
        if not mine or not theirs:
            continue
        examples = common_examples(mine, theirs)
        if any(len(e) == 0 for e in examples.values()):
            out["task_scores"][task] = {"comparable": False, "reason": "no dev examples in common"}
            continue
        try:
            check_same_labels(mine + theirs, examples)
        except LabelMismatch:
            out["task_scores"][task] = {"comparable": False, "reason": "different dev sets (the gold labels differ)"}
            continue
        a, b = scorer(row["system"], task, mine, examples), scorer(base["system"], task, theirs, examples)
        out["task_scores"][task] = {
            **paired_difference(a.score, a.score_replicates, b.score, b.score_replicates),
            "examples": a.examples,
        }
        pairs[task] = (a, b)
    if row["average"] is not None and base["average"] is not None and all(t in pairs for t in tasks):
        a_point = np.mean([pairs[t][0].score for t in tasks])
        b_point = np.mean([pairs[t][1].score for t in tasks])
        out["average"] = paired_difference(
            a_point,
            np.mean([pairs[t][0].score_replicates for t in tasks], axis=0),
            b_point,
            np.mean([pairs[t][1].score_replicates for t in tasks], axis=0),
        )
    return out
