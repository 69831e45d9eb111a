"""GLUE's metrics on many resamples at once: row b of `preds` and of `labels` is one resample of a dev set.

The bootstrap scores thousands of resamples; one sklearn call per resample would dominate its time. Each
function here equals bench_metrics (sklearn and scipy) on every row, with the same conventions: binary F1 is
for class 1, macro-F1 averages the classes that occur in labels or predictions, and a correlation or MCC
with constant input is 0. tests/test_metrics.py checks them against sklearn and scipy to 1e-9.
"""

from __future__ import annotations

import numpy as np


def accuracy(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (preds == labels).mean(axis=1)


def f1(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    tp = ((preds == 1) & (labels == 1)).sum(axis=1)
    fp = ((preds == 1) & (labels != 1)).sum(axis=1)
    fn = ((preds != 1) & (labels == 1)).sum(axis=1)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def f1_macro(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    confusion = _confusion(preds, labels)
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    fp = confusion.sum(axis=1) - tp
    fn = confusion.sum(axis=2) - tp
    present = (tp + fp + fn) > 0
    per_class = _ratio(2 * tp, 2 * tp + fp + fn)
    return (per_class * present).sum(axis=1) / present.sum(axis=1)


def matthews_correlation(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    # sklearn's multi-class formula, from the confusion matrix of each row.
    confusion = _confusion(preds, labels).astype(np.float64)
    true_counts, pred_counts = confusion.sum(axis=2), confusion.sum(axis=1)
    correct = np.trace(confusion, axis1=1, axis2=2)
    n = confusion.sum(axis=(1, 2))
    cov_true_pred = correct * n - (true_counts * pred_counts).sum(axis=1)
    cov_pred = n**2 - (pred_counts**2).sum(axis=1)
    cov_true = n**2 - (true_counts**2).sum(axis=1)
    return _ratio(cov_true_pred, np.sqrt(cov_true * cov_pred))


def pearson(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = preds - preds.mean(axis=1, keepdims=True)
    y = labels - labels.mean(axis=1, keepdims=True)
    return _ratio((x * y).sum(axis=1), np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1)))


def spearmanr(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    # Imported here for start-up speed (scipy): scipy.stats costs 0.7 s to import; `bench --help` must not pay it.
    from scipy.stats import rankdata

    # Spearman = Pearson of the ranks (ties get their average rank), ranked within each resample.
    return pearson(rankdata(preds, axis=1), rankdata(labels, axis=1))


RESAMPLED = {
    "accuracy": accuracy,
    "f1": f1,
    "f1_macro": f1_macro,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearmanr,
}


# Tagging: entity-level micro precision, recall and F1 are ratios of sums over sentences (no entity crosses one),
# so a resample of sentences sums their counts. `preds`: per sentence (predicted entities, correct ones), the
# counts `tasks.metrics.entity_counts` makes; `labels`: per sentence, gold entities. Equal to seqeval on every row.
def entity_precision(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return _ratio(preds[..., 1].sum(axis=1), preds[..., 0].sum(axis=1))


def entity_recall(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return _ratio(preds[..., 1].sum(axis=1), labels.sum(axis=1))


def entity_f1(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return _ratio(2 * preds[..., 1].sum(axis=1), preds[..., 0].sum(axis=1) + labels.sum(axis=1))


ENTITY_RESAMPLED = {"precision": entity_precision, "recall": entity_recall, "f1": entity_f1}


def _confusion(preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """counts[b, true, predicted] for every row b."""
    rows, k = preds.shape[0], int(max(preds.max(), labels.max())) + 1
    codes = (np.arange(rows)[:, None] * k + labels) * k + preds
    return np.bincount(codes.ravel(), minlength=rows * k * k).reshape(rows, k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, and 0 where den is 0 (the metrics' convention for undefined values)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


# Extractive QA: exact match and F1 are means over questions, so a resample of questions averages their values.
# `preds`: per question (exact match, F1), `tasks.metrics.squad.per_question`'s; `labels` is not read.
QUESTION_RESAMPLED = {
    "exact_match": lambda preds, labels: preds[..., 0].mean(axis=1),
    "f1": lambda preds, labels: preds[..., 1].mean(axis=1),
}
