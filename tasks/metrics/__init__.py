"""Metric declarations and scoring. Each metric declares here, once, whether higher is better."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.spec import TaskSpec

MODULE_PATH = str(Path(__file__).parent / "bench_metrics")


@dataclass(frozen=True)
class MetricDef:
    name: str
    higher_is_better: bool
    regression: bool  # applies to regression tasks (else to classification)
    binary_only: bool = False


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef("accuracy", True, False),
        MetricDef("f1", True, False, binary_only=True),
        MetricDef("f1_macro", True, False),
        MetricDef("matthews_correlation", True, False),
        MetricDef("pearson", True, True),
        MetricDef("spearmanr", True, True),
    )
}

# The objective every trial reports: the task score, mean of its metrics on a 0-100 scale. Averaging metrics is
# only meaningful when they point the same way; every one here is higher-is-better, so the score is maximised
# everywhere (schedulers, kept epochs, grid points, pools, bold marks). A lower-is-better metric would have to be
# negated in task_score first: refuse it here rather than let a table silently reward the worse model.
if not all(m.higher_is_better for m in METRICS.values()):
    raise AssertionError("task_score averages metrics: declare only higher-is-better ones, or negate the others")
OBJECTIVE = "score"
OBJECTIVE_MODE = "max"


@functools.lru_cache(maxsize=None)
def _module(config: str):
    # Imported here for start-up speed (evaluate).
    import evaluate

    return evaluate.load(MODULE_PATH, config, keep_in_memory=True)


def compute_metrics(
    task: TaskSpec, split_logits: dict[str, np.ndarray], split_labels: dict[str, np.ndarray]
) -> dict[str, float]:
    """Metrics on a 0-1 scale, keyed as `task.metric_keys()` names them."""
    config = "regression" if task.is_regression else "classification"
    out = {}
    for split, suffix in task.eval_splits.items():
        preds = predictions_from_logits(task, split_logits[split])
        values = _module(config).compute(predictions=preds, references=split_labels[split], metrics=list(task.metrics))
        for name, value in values.items():
            out[f"{name}_{suffix}" if suffix else name] = value
    return out


def predictions_from_logits(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    if task.is_regression:
        return logits.reshape(-1).astype(np.float64)
    return logits.argmax(axis=-1)


def task_score(metrics: dict[str, float]) -> float:
    """GLUE convention: a task's score is the mean of its metrics, on a 0-100 scale."""
    return 100.0 * float(np.mean(list(metrics.values())))
