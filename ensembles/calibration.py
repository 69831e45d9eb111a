"""Calibration of classification rows: ECE (15 equal-width bins), NLL, Brier, and temperature scaling.

Which data does what (nothing reported is fitted on):
- the temperature T is fitted on validation only: a trial row's whole dev set when its task has a labelled test
  split (test then reports), else the selection half of the split-half protocol (ensembles/protocol.py, the
  suite's `ensemble.split_seed`); ensemble rows and merged rows always fit on the selection half, the data that
  chose their members, weights or λ;
- ece, nll, brier and ece_scaled (the ECE of softmax(logits / T)) are measured on the reported split: test when
  the row has test predictions for the task, else the report half of dev.

A row with several seeds fits one T per seed (each seed is its own model); the row shows the mean over seeds of
every number, and its reliability bins pool the seeds' reported predictions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmark.records.final_predictions import ensemble_test_path, read_test_file, test_prediction_path
from benchmark.records.store import run_trial_id
from benchmark.train.checkpoints import PREDICTIONS_FILE, read_prediction_file
from ensembles.combine import TINY, probabilities
from tasks.splits import MIN_DEV_EXAMPLES, split_dev
from tasks.words import IGNORE

BINS = 15
# 1/T is searched in this range; NLL is convex in 1/T, so a bounded scalar search finds the optimum.
INVERSE_TEMPERATURE_RANGE = (1e-3, 100.0)


@dataclass(frozen=True)
class Reliability:
    """Per equal-width confidence bin: examples, their mean confidence and their accuracy (0 where empty)."""

    counts: list[int]
    confidence: list[float]
    accuracy: list[float]


@dataclass(frozen=True)
class Calibration:
    ece: float  # 0-1
    nll: float  # nats per example
    brier: float  # sum over classes of (p_k - y_k)^2, mean over examples
    temperature: float
    ece_scaled: float  # ECE of the probabilities at temperature T
    examples: int  # reported examples (of all seeds)
    reliability: Reliability

    def to_dict(self) -> dict:
        return asdict(self)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> Reliability:
    """Bin i holds the examples whose confidence (top probability) lies in (i/bins, (i+1)/bins]; 0 goes to bin 0."""
    confidence = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    safe = np.maximum(counts, 1)
    return Reliability(
        counts.tolist(),
        (np.bincount(which, confidence, bins) / safe).tolist(),
        (np.bincount(which, correct, bins) / safe).tolist(),
    )


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Sum over bins of (share of examples) x |accuracy - mean confidence|."""
    return _ece_of(reliability(probs, labels, bins))


def _ece_of(r: Reliability) -> float:
    counts = np.asarray(r.counts, dtype=np.float64)
    gaps = np.abs(np.asarray(r.accuracy) - np.asarray(r.confidence))
    return float((counts * gaps).sum() / counts.sum())


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], TINY)).mean())


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    onehot = np.eye(probs.shape[-1])[labels]
    return float(((probs - onehot) ** 2).sum(axis=-1).mean())


def scaled(logits: np.ndarray, temperature: float) -> np.ndarray:
    return probabilities(np.asarray(logits, dtype=np.float64) / temperature)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on the given (validation) examples."""
    # Imported here for start-up speed (scipy).
    from scipy.optimize import minimize_scalar

    z, y = words(np.asarray(logits, dtype=np.float64), labels)

    def nll(inverse: float) -> float:
        return negative_log_likelihood(probabilities(z * inverse), y)

    found = minimize_scalar(nll, bounds=INVERSE_TEMPERATURE_RANGE, method="bounded", options={"xatol": 1e-6})
    return float(1.0 / found.x)


def measure(logits: np.ndarray, labels: np.ndarray, temperature: float) -> Calibration:
    """Every number on the reported examples, with T fitted elsewhere."""
    logits, labels = words(logits, labels)
    probs = probabilities(logits)
    bins = reliability(probs, labels)
    return Calibration(
        _ece_of(bins),
        negative_log_likelihood(probs, labels),
        brier_score(probs, labels),
        float(temperature),
        expected_calibration_error(scaled(logits, temperature), labels),
        len(labels),
        bins,
    )


def mean_over_seeds(seeds: list[Calibration]) -> Calibration:
    """The row's numbers: each the mean over seeds; reliability bins pooled over the seeds' examples."""
    counts = np.sum([s.reliability.counts for s in seeds], axis=0)
    safe = np.maximum(counts, 1)

    def pooled(name: str) -> list[float]:
        return (
            np.sum([np.multiply(getattr(s.reliability, name), s.reliability.counts) for s in seeds], axis=0) / safe
        ).tolist()

    return Calibration(
        *(float(np.mean([getattr(s, k) for s in seeds])) for k in ("ece", "nll", "brier", "temperature", "ece_scaled")),
        int(sum(s.examples for s in seeds)),
        Reliability(counts.tolist(), pooled("confidence"), pooled("accuracy")),
    )


def concat(
    logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], indices: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The dev splits' rows (those `indices` names, else all) as one array: a task's splits share one T."""
    splits = sorted(logits)
    pick = (lambda s, a: a[indices[s]]) if indices is not None else (lambda s, a: a)
    scored = [words(pick(s, logits[s]), pick(s, labels[s])) for s in splits]
    return np.concatenate([z for z, _ in scored]), np.concatenate([y for _, y in scored])


def words(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What calibration counts: examples, or a tagging task's words (its rows are sentences, IGNORE past their
    ends): logits (n x classes) and labels (n), int64."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        kept = labels != IGNORE
        return np.asarray(logits)[kept], labels[kept].astype(np.int64)
    return np.asarray(logits), labels.astype(np.int64)


def read_dev(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    splits = read_prediction_file(path)
    return {s: v["logits"] for s, v in splits.items()}, {s: v["labels"] for s, v in splits.items()}


# ---- the calibration of leaderboard rows ----


def trial_calibration(
    record: dict, root: Path, task, split_seed: int, fit_on_selection_half: bool
) -> Calibration | None:
    """One checkpoint (one seed of a row): T fitted on validation, the numbers on the reported split. None when the
    checkpoint kept no predictions or its dev set is too small to halve."""
    path = Path(root) / record["checkpoint"] / PREDICTIONS_FILE if record.get("checkpoint") else None
    if path is None or not path.is_file():
        return None
    logits, labels = read_dev(path)
    if any(len(v) < MIN_DEV_EXAMPLES for v in labels.values()):
        return None
    halves = split_dev(task, {s: len(v) for s, v in labels.items()}, split_seed)
    test = read_test_file(test_prediction_path(root, run_trial_id(record["trial_id"])))
    if test is not None:  # validation fits (all of it, unless the row chose on its selection half), test reports
        fit = concat(logits, labels, halves.selection if fit_on_selection_half else None)
        reported = test["logits"], np.asarray(test["labels"], dtype=np.int64)
    else:  # dev reports: the selection half fits, the report half reports
        fit, reported = concat(logits, labels, halves.selection), concat(logits, labels, halves.report)
    return measure(*reported, fit_temperature(*fit))


def add_trial_calibration(
    rows: list[dict], records: dict[str, dict], roots: dict[str, Path], split_seeds: dict[str, int], tasks: dict
) -> None:
    """`calibration` on every row built from trial records (single, multitask, two-stage, chain, merged): the
    mean over its seeds, per classification task whose every chosen checkpoint has predictions."""
    for row in rows:
        if "trial_ids" not in row:
            continue
        calibration = {}
        for task, ids in row["trial_ids"].items():
            if not tasks[task].has_classes:
                continue
            seeds = [
                trial_calibration(records[i], roots[i], tasks[task], split_seeds[i], row["kind"] == "merged")
                for i in ids
            ]
            if seeds and all(seeds):
                calibration[task] = mean_over_seeds(seeds).to_dict()
        row["calibration"] = calibration


def ensemble_calibration(row: dict, root: Path, tasks: dict, state_key: str | None) -> dict:
    """An ensemble row's calibration: T was fitted on the selection half when the ensembles were built; the numbers
    are on test where the row was scored there, else on the report half its prediction files hold."""
    calibration = {}
    for task, files in row.get("predictions", {}).items():
        temperature = (row.get("temperature") or {}).get(task)
        if not tasks[task].has_classes or temperature is None:
            continue
        test = read_test_file(ensemble_test_path(root, state_key, files[0])) if state_key else None
        if test is not None:
            logits, labels = test["logits"], np.asarray(test["labels"], dtype=np.int64)
        else:
            logits, labels = concat(*read_dev(Path(root) / files[0]))
        calibration[task] = measure(logits, labels, temperature).to_dict()
    return calibration
