"""Bootstrap statistics over dev examples: a row's confidence interval, and a paired test between two rows.

The resampling unit is a dev example. One resample draws, with replacement, as many examples as the scored
predictions share. Every seed of a row is scored on the same draw, and the row's value for that resample is
the mean over seeds of each metric (0-100), then of the task's metrics: the quantity the table reports.
Two rows compared with each other are scored on the same draws (paired). Each dev split is drawn on its
own (MNLI's matched and mismatched sets, and the dev sets of different tasks), and the average's resample
is the mean of the tasks' resamples.

Draws are seeded by the task, the split and the examples drawn from, so a row's interval does not change
when other rows are added to the table, and the same command prints the same table.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from tasks.metrics import predictions_from_logits
from tasks.metrics.resampled import RESAMPLED
from tasks.spec import TaskSpec

RESAMPLES = 1000
CONFIDENCE = 0.95
ALPHA = 0.05
SEED = 0
_CHUNK_ELEMENTS = 4_000_000  # resampled values held in memory at once, per metric


@dataclass(frozen=True)
class SplitPredictions:
    """One seed's predictions on one dev split: `indices` are the positions in the dev split they cover."""

    logits: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    def select(self, indices: np.ndarray) -> "SplitPredictions":
        """These predictions on `indices` (all of them covered), in that order."""
        order = np.argsort(self.indices, kind="stable")
        rows = order[np.minimum(np.searchsorted(self.indices[order], indices), len(order) - 1)]
        if not np.array_equal(self.indices[rows], indices):
            raise ValueError("asked for dev examples these predictions do not cover")
        return SplitPredictions(self.logits[rows], self.labels[rows], np.asarray(indices))


# One seed's predictions for one task: split -> predictions. A row's task is a list of them, one per seed.
SeedPredictions = dict[str, SplitPredictions]


@dataclass
class TaskSample:
    """A row's task scored on fixed examples: the point values and the resampled ones, per metric key (0-100)."""

    point: dict[str, float]
    replicates: dict[str, np.ndarray]
    examples: int

    @property
    def score(self) -> float:
        return float(np.mean(list(self.point.values())))

    @property
    def score_replicates(self) -> np.ndarray:
        return np.mean(list(self.replicates.values()), axis=0)


class LabelMismatch(ValueError):
    """Predictions that should cover the same dev examples hold different gold labels: different dev sets."""


def common_examples(*rows: list[SeedPredictions]) -> dict[str, np.ndarray]:
    """Per dev split, the examples that every seed of every given row covers (sorted positions)."""
    out = {}
    seeds = [seed for row in rows for seed in row]
    for split in seeds[0]:
        sets = [seed[split].indices for seed in seeds]
        common = sets[0]
        for s in sets[1:]:
            common = np.intersect1d(common, s)
        out[split] = np.unique(common)
    return out


def score_task(
    task: TaskSpec,
    seeds: list[SeedPredictions],
    examples: dict[str, np.ndarray],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> TaskSample:
    """Score one row's task on `examples` (per split): the point value and `resamples` bootstrap values."""
    check_same_labels(seeds, examples)
    point, replicates = {}, {}
    for split, suffix in task.eval_splits.items():
        chosen = [s[split].select(examples[split]) for s in seeds]
        labels = chosen[0].labels.astype(np.float64) if task.is_regression else chosen[0].labels
        draws = resample_draws(task.name, split, examples[split], resamples, seed)
        identity = np.arange(len(labels))[None, :]
        for metric in task.metrics:
            key = f"{metric}_{suffix}" if suffix else metric
            per_seed_point, per_seed_reps = [], []
            for s in chosen:
                preds = predictions_from_logits(task, s.logits)
                per_seed_point.append(_metric_rows(metric, preds, labels, identity)[0])
                per_seed_reps.append(_metric_rows(metric, preds, labels, draws))
            point[key] = 100.0 * float(np.mean(per_seed_point))
            replicates[key] = 100.0 * np.mean(per_seed_reps, axis=0)
    return TaskSample(point, replicates, sum(len(e) for e in examples.values()))


def check_same_labels(seeds: list[SeedPredictions], examples: dict[str, np.ndarray]) -> None:
    """Raise LabelMismatch unless all the predictions hold the same gold labels for `examples`."""
    for split, indices in examples.items():
        first = seeds[0][split].select(indices).labels
        for other in seeds[1:]:
            if not np.array_equal(other[split].select(indices).labels, first):
                raise LabelMismatch(f"{split}: the predictions hold different labels for the same examples")


def resample_draws(task: str, split: str, examples: np.ndarray, resamples: int, seed: int = SEED) -> np.ndarray:
    """`resamples` rows of positions into `examples`, drawn with replacement; the same for the same inputs."""
    key = [
        seed,
        zlib.crc32(task.encode()),
        zlib.crc32(split.encode()),
        zlib.crc32(np.ascontiguousarray(examples, dtype=np.int64).tobytes()),
    ]
    rng = np.random.default_rng(key)
    return rng.integers(0, len(examples), size=(resamples, len(examples)))


def interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> list[float]:
    """The percentile interval: the middle `confidence` of the bootstrap values."""
    tail = 100.0 * (1.0 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return [float(low), float(high)]


def paired_difference(
    point_a: float,
    replicates_a: np.ndarray,
    point_b: float,
    replicates_b: np.ndarray,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
) -> dict:
    """A minus B, with its percentile interval and a two-sided bootstrap p-value.

    p = 2 x the share of resampled differences on the far side of zero (each count + 1, over resamples + 1,
    so that p is never 0): the difference is significant at `alpha` exactly when the (1 - alpha) interval of
    the difference excludes zero. Identical systems give p = 1.
    """
    deltas = replicates_a - replicates_b
    at_or_below, at_or_above = int((deltas <= 0).sum()), int((deltas >= 0).sum())
    p = min(1.0, 2.0 * (min(at_or_below, at_or_above) + 1) / (len(deltas) + 1))
    return {"delta": float(point_a - point_b), "ci": interval(deltas, confidence), "p": p, "significant": p < alpha}


def _metric_rows(metric: str, preds: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The metric on each row of example positions, a chunk of rows at a time to bound memory."""
    step = max(1, _CHUNK_ELEMENTS // max(1, rows.shape[1]))
    return np.concatenate(
        [RESAMPLED[metric](preds[rows[i : i + step]], labels[rows[i : i + step]]) for i in range(0, len(rows), step)]
    )
