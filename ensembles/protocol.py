"""The selection protocol: no method selects on the data its score is reported on.

Each dev set is split once, by a seeded permutation, into a selection half and a disjoint report half.
Everything that chooses (ranking candidates for the top-k pool, greedy selection, greedy soups, and the
best single checkpoint) looks only at the selection half; every reported score is computed on the report
half alone. The same halves serve every method, and the best single checkpoint, so rows compare fairly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from benchmark.common.errors import InputError
from tasks.metrics import compute_metrics, task_score
from tasks.spec import TaskSpec

NAME = "split-half"
MIN_DEV_EXAMPLES = 4  # two per half, or a metric such as a correlation is undefined


@dataclass(frozen=True)
class DevHalves:
    selection: dict[str, np.ndarray]  # dev split -> sorted example indices
    report: dict[str, np.ndarray]


def split_dev(task: TaskSpec, sizes: dict[str, int], seed: int) -> DevHalves:
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
    task: TaskSpec, logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], indices: dict[str, np.ndarray]
) -> tuple[dict[str, float], float]:
    """Metrics (0-1) and task score (0-100) of `logits` on the examples `indices` names, split by split."""
    metrics = compute_metrics(
        task, {s: logits[s][i] for s, i in indices.items()}, {s: labels[s][i] for s, i in indices.items()}
    )
    return metrics, task_score(metrics)


def describe(seed: int) -> dict:
    """What the leaderboard says about the protocol, beside the rows it applies to."""
    return {
        "name": NAME,
        "split_seed": seed,
        "description": (
            f"Ensemble rows and the best-single row beside them are scored on the report half of each "
            f"dev set (split-half protocol, seed {seed}): members, pools and the best single checkpoint "
            "are chosen on the disjoint selection half only."
        ),
    }
