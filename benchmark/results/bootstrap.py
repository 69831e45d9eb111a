"""Bootstrap statistics over dev examples and seeds: a row's confidence interval, and a paired test between two rows.

The resampling unit is a dev example, and, for a row with several seeds, also a seed (two-level bootstrap, the
default "seeds+examples"; "examples" keeps the seeds fixed). One resample draws, with replacement, as many
examples as the scored predictions share; every seed of a row is scored on that draw. Its value for the row is
the mean (of each metric, 0-100, then of the task's metrics) over the row's seeds: under "examples" over all of
them, under "seeds+examples" over as many seeds drawn with replacement, drawn afresh for every resample. With
one seed the two levels are the same. Two rows compared with each other are scored on the same example draws
(paired); their seed draws are independent. Each dev split is drawn on its own (MNLI's matched and mismatched
sets, and the dev sets of different tasks); a seed draw holds for all of a task's splits (one trained model
per seed predicts both of MNLI's). The average's resample is the mean of the tasks' resamples.

Intervals are inverted-CDF order statistics of the resampled values, and the paired test's two-sided p is
2 x the share of resampled differences on the far side of zero (at most 1): the difference's (1 - alpha)
interval excludes zero exactly when p < alpha.

Example draws are seeded by the task, the split and the examples drawn from; seed draws by the task and the
row's name. So a row's interval does not change when other rows are added to the table, and the same command
prints the same table.
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
LEVELS = ("seeds+examples", "examples")  # what a resample draws: seeds and examples (two-level), or examples
LEVEL = "seeds+examples"
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
    level: str = "examples",
    system: str = "",
) -> TaskSample:
    """Score one row's task on `examples` (per split): the point value and `resamples` bootstrap values.

    `level` "seeds+examples" also draws the row's seeds per resample, seeded by `system` (the row's name); the
    default here, "examples", keeps them fixed (tables use LEVEL, through add_statistics)."""
    check_same_labels(seeds, examples)
    seed_draws = resample_seeds(task.name, system, len(seeds), resamples, seed) if level == "seeds+examples" else None
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
            replicates[key] = 100.0 * mean_over_seeds(np.asarray(per_seed_reps), seed_draws)
    return TaskSample(point, replicates, sum(len(e) for e in examples.values()))


def mean_over_seeds(per_seed: np.ndarray, seed_draws: np.ndarray | None) -> np.ndarray:
    """Each resample's mean over seeds (`per_seed`: seeds x resamples): all of them, or the seeds drawn for it."""
    if seed_draws is None:
        return per_seed.mean(axis=0)
    return np.take_along_axis(per_seed, seed_draws.T, axis=0).mean(axis=0)


def resample_seeds(task: str, system: str, seeds: int, resamples: int, seed: int = SEED) -> np.ndarray | None:
    """`resamples` rows of `seeds` seed positions drawn with replacement; None for one seed (nothing to draw)."""
    if seeds < 2:
        return None
    # Keyed by the row's name, not by the examples: a row's seed draws are the same in every comparison.
    rng = np.random.default_rng([seed, zlib.crc32(task.encode()), zlib.crc32(system.encode()), zlib.crc32(b"seeds")])
    return rng.integers(0, seeds, size=(resamples, seeds))


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


def interval(replicates: np.ndarray, alpha: float = ALPHA) -> list[float]:
    """The (1 - alpha) interval: inverted-CDF order statistics at alpha/2 from each end of the bootstrap values.

    As numpy's quantile(method="inverted_cdf") at alpha/2 (and its mirror for the upper end), with the rank
    computed as `paired_difference` computes p, so that the interval excludes 0 exactly when p < alpha."""
    ordered = np.sort(np.asarray(replicates, dtype=np.float64))
    k = tail_rank(len(ordered), alpha)
    return [float(ordered[k - 1]), float(ordered[len(ordered) - k])]


def tail_rank(resamples: int, alpha: float) -> int:
    """The rank of the interval's lower end: the smallest count c >= 1 with 2c / resamples >= alpha."""
    p_at = 2.0 * np.arange(resamples + 1) / resamples  # the p of each count on the far side of zero
    return min(resamples, max(1, int(np.searchsorted(p_at, alpha, side="left"))))


def p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p: 2 x the share of resampled differences on the far side of zero, at most 1."""
    far_side = min(int((deltas <= 0).sum()), int((deltas >= 0).sum()))
    return min(1.0, 2.0 * far_side / len(deltas))


def paired_difference(
    point_a: float,
    replicates_a: np.ndarray,
    point_b: float,
    replicates_b: np.ndarray,
    alpha: float = ALPHA,
) -> dict:
    """A minus B, with its (1 - alpha) interval and a two-sided bootstrap p-value, from the same resampled differences.

    The difference is significant (p < alpha) exactly when its interval excludes zero; identical systems give
    p = 1. p is 0 when no resample falls on the far side of zero: below what `resamples` can resolve (2 / resamples).
    """
    deltas = np.asarray(replicates_a) - np.asarray(replicates_b)
    p = p_value(deltas)
    return {"delta": float(point_a - point_b), "ci": interval(deltas, alpha), "p": p, "significant": p < alpha}


def _metric_rows(metric: str, preds: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The metric on each row of example positions, a chunk of rows at a time to bound memory."""
    step = max(1, _CHUNK_ELEMENTS // max(1, rows.shape[1]))
    return np.concatenate(
        [RESAMPLED[metric](preds[rows[i : i + step]], labels[rows[i : i + step]]) for i in range(0, len(rows), step)]
    )
