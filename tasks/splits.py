"""Validation and test data split off a user task's training file, when the task gives no file for them.

The split is a pure function of the labels, the fractions and the seed: the same rows go to the same split on
every machine and in every trial. Classification tasks are split per class (stratified), so each split keeps the
training file's label balance; regression tasks are split by one permutation.
"""

from __future__ import annotations

import hashlib

import numpy as np

HELD_OUT = ("validation", "test")  # the order in which each class's shuffled rows are dealt out


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
