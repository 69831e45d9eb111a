"""Validation and test data split off a training file, when a task gives no file for them; and the split-half
protocol's two halves of a dev set.

The split is a pure function of the labels, the fractions and the seed: the same rows go to the same split on
every machine and in every trial. Classification tasks are split per class (stratified), so each split keeps the
training file's label balance; regression tasks are split by one permutation.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from benchmark.common.errors import InputError
from tasks.metrics import compute_metrics, task_score

HELD_OUT = ("validation", "test")  # the order in which each class's shuffled rows are dealt out
MIN_DEV_EXAMPLES = 4  # two per half, or a metric such as a correlation is undefined


@dataclass(frozen=True)
class DevHalves:
    """The split-half protocol's halves of a dev set (ensembles/protocol.py): one selects, the other reports."""

    selection: dict[str, np.ndarray]  # dev split -> sorted example indices
    report: dict[str, np.ndarray]


def split_dev(task, sizes: dict[str, int], seed: int) -> DevHalves:
    """Half of each dev split (rounded down) selects, the rest reports; the seed and the task fix which half."""
    selection, report = {}, {}
    for split, n in sizes.items():
        if n < MIN_DEV_EXAMPLES:
            raise InputError(
                f"task {task.name}",
                f"its {split} set has {n} examples; the split-half protocol needs at least {MIN_DEV_EXAMPLES}",
            )
        # Keyed by task and split, so adding a task to a run does not reshuffle the others.
        rng = np.random.default_rng([seed, zlib.crc32(f"{task.name}/{split}".encode())])
        order = rng.permutation(n)
        selection[split] = np.sort(order[: n // 2])
        report[split] = np.sort(order[n // 2 :])
    return DevHalves(selection, report)


def score_on(
    task, logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], indices: dict[str, np.ndarray]
) -> tuple[dict[str, float], float]:
    """Metrics (0-1) and task score (0-100) of `logits` on the examples `indices` names, split by split."""
    metrics = compute_metrics(
        task, {s: logits[s][i] for s, i in indices.items()}, {s: labels[s][i] for s, i in indices.items()}
    )
    return metrics, task_score(metrics, task)


def holdout_partition(labels, fractions: dict[str, float], seed: int, stratify: bool) -> dict[str, np.ndarray]:
    """Row indices of the training file for "train" and each held-out split in `fractions` (split -> fraction of
    the rows), disjoint and together every row, each sorted. Per class, a split takes round(fraction x class
    size) rows; "train" keeps the rest."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(len(labels))]
    parts: dict[str, list[np.ndarray]] = {s: [] for s in ("train", *fractions)}
    for rows in groups:
        rows = rng.permutation(rows)
        start = 0
        for split in (s for s in HELD_OUT if s in fractions):
            take = int(round(fractions[split] * len(rows)))
            parts[split].append(rows[start : start + take])
            start += take
        parts["train"].append(rows[start:])
    return {s: np.sort(np.concatenate(p)).astype(np.int64) for s, p in parts.items()}


def describe_partition(
    partition: dict[str, np.ndarray],
    fractions: dict[str, float],
    seed: int,
    stratified: bool,
    source: str,
    source_sha256: str,
) -> dict:
    """What `splits.json` records for one task: enough to rebuild the split (the held-out rows themselves, the
    seed, the fractions) and to check it (the training file's hash, each split's size and the hash of its rows)."""
    return {
        "source": source,
        "source_sha256": source_sha256,
        "seed": seed,
        "fractions": fractions,
        "stratified_by_label": stratified,
        "sizes": {s: int(len(rows)) for s, rows in partition.items()},
        "rows_sha256": {s: hashlib.sha256(rows.astype("<i8").tobytes()).hexdigest() for s, rows in partition.items()},
        "rows": {s: rows.tolist() for s, rows in partition.items() if s != "train"},  # 0-based data rows of the file
    }
