"""Metric declarations and scoring. Each metric declares here, once, whether higher is better."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.metrics.resampled import ENTITY_RESAMPLED
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
    tagging: bool = False  # an entity-level metric of tagging tasks (by seqeval's rules, `entity_metrics`)
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
    """Entity-level precision, recall and F1, micro-averaged over entities by seqeval's rules (its default mode,
    conlleval's), from one pass of `entity_counts` (seqeval's own scores read the entities again for each;
    tests/test_tagging.py checks they are equal). `predicted` and `labels`: tag ids, a row per sentence, `labels`
    IGNORE past its end."""
    counts, gold = entity_counts(tags, predicted, labels)
    return {name: float(score(counts[None], gold[None])[0]) for name, score in ENTITY_RESAMPLED.items()}


def entity_counts(tags: tuple[str, ...], predicted: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sentence, (predicted entities, correct ones) and gold entities, by seqeval's rules (its default mode):
    what the bootstrap sums over resampled sentences (tasks/metrics/resampled.py). `get_entities` of seqeval read
    in arrays: whether a chunk ends or starts at a word depends only on its tag and the one before, so seqeval's
    own `end_of_chunk` and `start_of_chunk` fill two tables over tag pairs once (seqeval's per-word Python loop
    took most of a tagging table's time)."""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    words = labels != IGNORE
    true_keys, true_rows = _entities(tags, np.where(words, labels, 0), words)
    found_keys, found_rows = _entities(tags, np.where(words, predicted, 0), words)
    correct_rows = found_rows[np.isin(found_keys, true_keys)]
    n = len(labels)
    counts = np.stack([np.bincount(found_rows, minlength=n), np.bincount(correct_rows, minlength=n)], axis=1)
    return counts.astype(np.int64), np.bincount(true_rows, minlength=n).astype(np.int64)


@functools.lru_cache(maxsize=16)
def _chunk_tables(tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """seqeval's chunk ends and starts between a previous tag (row; the last row is a sentence's start, seqeval's
    initial 'O' of type '') and a tag (column; the last column is the 'O' seqeval appends), and each tag's type."""
    # Imported here for start-up speed (seqeval).
    from seqeval.metrics.sequence_labeling import end_of_chunk, start_of_chunk

    parts = [(tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_") for tag in tags]  # seqeval's split, prefix tags
    rows, columns = [*parts, ("O", "")], [*parts, ("O", "_")]
    ends = np.array([[end_of_chunk(p, t, pt, tt) for t, tt in columns] for p, pt in rows])
    starts = np.array([[start_of_chunk(p, t, pt, tt) for t, tt in columns] for p, pt in rows])
    types = np.unique([t for _, t in rows], return_inverse=True)[1]
    return ends, starts, types


def _entities(tags: tuple[str, ...], ids: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sentence's entities as seqeval's get_entities finds them on its words: a unique key per (sentence,
    type, first word, last word), and the sentence of each."""
    ends, starts, types = _chunk_tables(tags)
    sentences, width = ids.shape
    # Each sentence's words packed left, then seqeval's closing 'O' (column `len(tags)`), then padding.
    order = np.argsort(~words, axis=1, kind="stable")
    packed = np.take_along_axis(ids, order, axis=1)
    lengths = words.sum(axis=1)
    position = np.arange(width + 1)[None, :]
    current = np.concatenate([packed, np.zeros((sentences, 1), dtype=packed.dtype)], axis=1)
    current = np.where(position == lengths[:, None], len(tags), current)
    previous = np.concatenate([np.full((sentences, 1), len(tags)), current[:, :-1]], axis=1)
    inside = position <= lengths[:, None]  # the words and the closing 'O'
    end = ends[previous, current] & inside
    start = starts[previous, current] & inside
    # A chunk that ends at position i began at the last start before i (seqeval's begin_offset, 0 before any).
    begin = np.maximum.accumulate(np.where(start, position, 0), axis=1)
    row, i = np.nonzero(end)
    first, last, kind = begin[row, i - 1], i - 1, types[previous[row, i]]
    keys = ((row * (width + 1) + first) * (width + 1) + last) * (len(tags) + 1) + kind
    return keys, row


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
