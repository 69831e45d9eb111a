"""Metric declarations and scoring. Each metric declares here, once, whether higher is better."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.metrics.squad import squad_metrics
from tasks.spans import QALabels, decode_answers
from tasks.spec import TaskSpec, TaskType
from tasks.words import IGNORE

MODULE_PATH = str(Path(__file__).parent / "bench_metrics")


@dataclass(frozen=True)
class MetricDef:
    name: str
    higher_is_better: bool
    regression: bool  # applies to regression tasks (else to classification)
    binary_only: bool = False
    tagging: bool = False  # an entity-level metric of tagging tasks (computed by seqeval, `entity_metrics`)
    spans: bool = False  # extractive QA's: the official SQuAD exact match (its `f1` is SQuAD's token F1)


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef("accuracy", True, False),
        MetricDef("f1", True, False, binary_only=True),
        MetricDef("f1_macro", True, False),
        MetricDef("matthews_correlation", True, False),
        MetricDef("pearson", True, True),
        MetricDef("spearmanr", True, True),
        MetricDef("precision", True, False, tagging=True),
        MetricDef("recall", True, False, tagging=True),
        MetricDef("exact_match", True, False, spans=True),
    )
}
# A tagging task's `f1` is entity-level F1 (`entity_metrics`), an extractive QA task's SQuAD's token F1
# (tasks/metrics/squad.py), a classification task's the positive class's.

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
        if task.type is TaskType.EXTRACTIVE_QA:
            answers, golds = qa_answers(split_logits[split], split_labels[split])
            values = squad_metrics(answers, golds)
            for name, value in values.items():
                out[f"{name}_{suffix}" if suffix else name] = value
            continue
        preds = predictions_from_logits(task, split_logits[split])
        if task.type is TaskType.TAGGING:
            values = entity_metrics(task.label_names, preds, split_labels[split])
        else:
            values = _module(config).compute(
                predictions=preds, references=split_labels[split], metrics=list(task.metrics)
            )
        for name, value in values.items():
            out[f"{name}_{suffix}" if suffix else name] = value
    return out


def entity_metrics(tags: tuple[str, ...], predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Entity-level precision, recall and F1, micro-averaged over entities, as seqeval computes them (its default
    mode, conlleval's rules). `predicted` and `labels`: tag ids, a row per sentence, `labels` IGNORE past its end."""
    # Imported here for start-up speed (seqeval).
    from seqeval.metrics import f1_score, precision_score, recall_score

    true, pred = [], []
    for p, t in zip(np.asarray(predicted), np.asarray(labels)):
        words = t != IGNORE
        true.append([tags[i] for i in t[words]])
        pred.append([tags[i] for i in p[words]])
    return {
        "precision": float(precision_score(true, pred, zero_division=0)),
        "recall": float(recall_score(true, pred, zero_division=0)),
        "f1": float(f1_score(true, pred, zero_division=0)),
    }


def entity_counts(tags: tuple[str, ...], predicted: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence, (predicted entities, correct ones) and gold entities, by seqeval's rules (its default mode):
    what the bootstrap sums over resampled sentences (tasks/metrics/resampled.py)."""
    # Imported here for start-up speed (seqeval).
    from seqeval.metrics.sequence_labeling import get_entities

    counts, gold = np.zeros((len(labels), 2), dtype=np.int64), np.zeros(len(labels), dtype=np.int64)
    for s, (p, t) in enumerate(zip(np.asarray(predicted), np.asarray(labels))):
        words = t != IGNORE
        true, found = set(get_entities([tags[i] for i in t[words]])), set(get_entities([tags[i] for i in p[words]]))
        counts[s] = len(found), len(found & true)
        gold[s] = len(true)
    return counts, gold


def qa_answers(logits: np.ndarray, labels: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """An extractive QA split's decoded answers and its gold answers, from its logits and packed labels."""
    view = QALabels.unpack(labels)
    return decode_answers(np.asarray(logits), view)[0], view.golds()


def predictions_from_logits(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    if task.is_regression:
        return logits.reshape(-1).astype(np.float64)
    return logits.argmax(axis=-1)


def task_score(metrics: dict[str, float], task: TaskSpec | None = None) -> float:
    """GLUE convention: a task's score is the mean of its metrics (with `task`: of its `score_keys`, a tagging
    task's F1), on a 0-100 scale."""
    keys = task.score_keys() if task is not None else list(metrics)
    return 100.0 * float(np.mean([metrics[k] for k in keys]))
