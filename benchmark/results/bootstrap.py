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

Intervals are order statistics of the resampled values, and the paired test's two-sided p is 2 (k + 1) / (B + 1)
(at most 1), k of the B resampled differences on the far side of zero: never 0, and the difference's (1 - alpha)
interval excludes zero exactly when p < alpha (from 40 resamples on; with fewer no p is below 0.05). The
equivalence test (TOST) at a margin M takes the larger of the one-sided p's of d <= -M and d >= +M, each
(k + 1) / (B + 1), on the same resampled differences.

A row of 2-5 seeds also gets a t-interval over its per-seed scores (mean ± t s / sqrt(n)), and a difference
between two such rows a Welch t-interval over their seeds; where one is wider than the bootstrap's, the
reported interval is the smallest covering both, and the p (and the TOST's) the larger of the two tests'.

Example draws are seeded by the task, the split and the examples drawn from; seed draws by the task and the
row's name. So a row's interval does not change when other rows are added to the table, and the same command
prints the same table.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from tasks.metrics import entity_counts, predictions_from_logits, qa_answers
from tasks.metrics.resampled import ENTITY_RESAMPLED, QUESTION_RESAMPLED, RESAMPLED
from tasks.metrics.squad import per_question
from tasks.spec import TaskSpec, TaskType

RESAMPLES = 1000  # the fewest a table sizes itself (auto_resamples); --bootstrap N sets it
MAX_RESAMPLES = 20_000  # the most it sizes itself, for cost
RESOLVE = 0.01  # the smallest adjusted p a sized table resolves is below this
CONFIDENCE = 0.95
ALPHA = 0.05
SEED = 0
LEVELS = ("seeds+examples", "examples")  # what a resample draws: seeds and examples (two-level), or examples
LEVEL = "seeds+examples"
FEW_SEEDS = range(2, 6)  # rows of this many seeds also get a t-interval over their seeds
_CHUNK_ELEMENTS = 4_000_000  # resampled values held in memory at once, per metric


@dataclass(frozen=True)
class SplitPredictions:
    """One seed's predictions on one dev split: `indices` are the positions in the dev split they cover."""

    logits: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    def select(self, indices: np.ndarray) -> "SplitPredictions":
        """These predictions on `indices` (all of them covered), in that order."""
        rows = self._rows(indices)
        return SplitPredictions(self.logits[rows], self.labels[rows], np.asarray(indices))

    def entity_counts(self, tags: tuple[str, ...], indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A tagging split's per-sentence entity counts (`tasks.metrics.entity_counts`) on `indices`: found once
        for all rows, since every comparison of a row scores them again."""
        cache = self.__dict__.setdefault("_entity_counts", {})  # not a field: equality stays the predictions'
        if tags not in cache:
            cache[tags] = entity_counts(tags, self.logits.argmax(axis=-1), self.labels)
        rows = self._rows(indices)
        return cache[tags][0][rows], cache[tags][1][rows]

    def _rows(self, indices: np.ndarray) -> np.ndarray:
        order = np.argsort(self.indices, kind="stable")
        rows = order[np.minimum(np.searchsorted(self.indices[order], indices), len(order) - 1)]
        if not np.array_equal(self.indices[rows], indices):
            raise ValueError("asked for dev examples these predictions do not cover")
        return rows


# One seed's predictions for one task: split -> predictions. A row's task is a list of them, one per seed.
SeedPredictions = dict[str, SplitPredictions]


@dataclass
class TaskSample:
    """A row's task scored on fixed examples: the point values and the resampled ones, per metric key (0-100)."""

    point: dict[str, float]
    replicates: dict[str, np.ndarray]
    examples: int
    seed_scores: np.ndarray  # each seed's task score on the examples (the mean of its metrics)

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
    point, replicates, per_seed = {}, {}, {}
    for split, suffix in task.eval_splits.items():
        resampled = RESAMPLED
        if task.type is TaskType.TAGGING:  # the unit is a sentence: its entity counts (entity F1 is no mean)
            counts = [s[split].entity_counts(task.label_names, examples[split]) for s in seeds]
            preds, labels, resampled = [found for found, _ in counts], counts[0][1], ENTITY_RESAMPLED
        else:
            chosen = [s[split].select(examples[split]) for s in seeds]
            labels = chosen[0].labels.astype(np.float64) if task.is_regression else chosen[0].labels
            if task.type is TaskType.EXTRACTIVE_QA:  # the unit is a question: its exact match and F1
                preds, resampled = [question_values(s.logits, labels) for s in chosen], QUESTION_RESAMPLED
                labels = np.zeros(len(labels))
            else:
                preds = [predictions_from_logits(task, s.logits) for s in chosen]
        chunks = {metric: [[] for _ in preds] for metric in task.metrics}  # metric -> per seed, chunks of values
        for draws in resample_draws(task.name, split, examples[split], resamples, seed):
            drawn_labels = labels[draws]
            for i, p in enumerate(preds):
                drawn = p[draws]  # gathered once for all metrics
                for metric in task.metrics:
                    chunks[metric][i].append(resampled[metric](drawn, drawn_labels))
        identity = np.arange(len(labels))[None, :]
        for metric in task.metrics:
            key = f"{metric}_{suffix}" if suffix else metric
            seed_points = np.array([resampled[metric](p[identity], labels[identity])[0] for p in preds])
            per_seed[key] = 100.0 * seed_points
            point[key] = 100.0 * float(np.mean(seed_points))
            per_seed_reps = np.array([np.concatenate(values) for values in chunks[metric]])
            replicates[key] = 100.0 * mean_over_seeds(per_seed_reps, seed_draws)
    seed_scores = np.mean([per_seed[k] for k in task.score_keys()], axis=0)  # the task score's metrics
    return TaskSample(point, replicates, sum(len(e) for e in examples.values()), seed_scores)


def question_values(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """An extractive QA split's per-question exact match and F1 (questions x 2), what its resamples average."""
    values = per_question(*qa_answers(logits, labels))
    return np.stack([values["exact_match"], values["f1"]], axis=-1)


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


def resample_draws(task: str, split: str, examples: np.ndarray, resamples: int, seed: int = SEED):
    """`resamples` rows of positions into `examples`, drawn with replacement, in chunks of rows (to bound memory);
    the same for the same inputs."""
    key = [
        seed,
        zlib.crc32(task.encode()),
        zlib.crc32(split.encode()),
        zlib.crc32(np.ascontiguousarray(examples, dtype=np.int64).tobytes()),
    ]
    rng = np.random.default_rng(key)
    step = max(1, _CHUNK_ELEMENTS // max(1, len(examples)))
    for start in range(0, resamples, step):
        yield rng.integers(0, len(examples), size=(min(step, resamples - start), len(examples)))


def interval(replicates: np.ndarray, alpha: float = ALPHA) -> list[float]:
    """The (1 - alpha) interval: the order statistics of rank `tail_rank` from each end of the bootstrap values,
    so that a difference's interval excludes 0 exactly when its p (`p_value`) < alpha."""
    ordered = np.sort(np.asarray(replicates, dtype=np.float64))
    k = tail_rank(len(ordered), alpha)
    return [float(ordered[k - 1]), float(ordered[len(ordered) - k])]


def tail_rank(resamples: int, alpha: float) -> int:
    """The rank of the interval's lower end: the smallest count c with 2 (c + 1) / (resamples + 1) >= alpha (the
    p of c resamples on the far side of zero), at least 1 (with fewer than 40 resamples: the whole range)."""
    p_at = 2.0 * (np.arange(resamples + 1) + 1) / (resamples + 1)  # the p of each count on the far side of zero
    return min(resamples, max(1, int(np.searchsorted(p_at, alpha, side="left"))))


def p_value(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p: 2 (k + 1) / (B + 1), k of the B differences on the far side of zero; at most 1."""
    far_side = min(int((deltas <= 0).sum()), int((deltas >= 0).sum()))
    return min(1.0, 2.0 * (far_side + 1) / (len(deltas) + 1))


def tost_p(deltas: np.ndarray, margin: float) -> float:
    """The equivalence test's p at `margin`: the larger of (k + 1) / (B + 1) for d <= -margin and for d >= margin."""
    below, above = int((deltas <= -margin).sum()), int((deltas >= margin).sum())
    return (max(below, above) + 1) / (len(deltas) + 1)


def smallest_p(resamples: int) -> float:
    """The smallest two-sided p that `resamples` resamples give (none on the far side of zero)."""
    return min(1.0, 2.0 / (resamples + 1))


def smallest_adjusted_p(resamples: int, tests: int, correction: str) -> float:
    """The smallest adjusted p a table of `tests` tests can show: Holm multiplies the smallest p by the number of
    tests; Benjamini-Hochberg's and the uncorrected can reach the smallest p itself."""
    return min(1.0, smallest_p(resamples) * (max(1, tests) if correction == "holm" else 1))


def auto_resamples(tests: int, correction: str) -> int:
    """Resamples enough for the table's smallest adjusted p to fall below RESOLVE (2 m / (B + 1) < 0.01 under
    Holm), in thousands, from RESAMPLES up to MAX_RESAMPLES."""
    needed = int(2 * (max(1, tests) if correction == "holm" else 1) / RESOLVE)  # B + 1 > needed: B = needed
    return min(MAX_RESAMPLES, max(RESAMPLES, -(-needed // 1000) * 1000))


def t_interval(scores: np.ndarray, alpha: float = ALPHA) -> list[float] | None:
    """mean ± t_{1 - alpha/2, n-1} s / sqrt(n) over a row's per-seed scores; None unless it has 2-5 seeds."""
    n = len(scores)
    if n not in FEW_SEEDS:
        return None
    half = float(_t_quantile(1 - alpha / 2, n - 1) * np.std(scores, ddof=1) / np.sqrt(n))
    return [float(np.mean(scores)) - half, float(np.mean(scores)) + half]


@dataclass(frozen=True)
class Welch:
    """Welch's t over two rows' per-seed scores: the difference's standard error and degrees of freedom."""

    delta: float
    se: float
    df: float

    def interval(self, alpha: float = ALPHA) -> list[float]:
        half = float(_t_quantile(1 - alpha / 2, self.df) * self.se)
        return [self.delta - half, self.delta + half]

    def p(self) -> float:
        return float(min(1.0, 2 * _t_tail(abs(self.delta) / self.se, self.df)))

    def tost_p(self, margin: float) -> float:
        return max(_t_tail((self.delta + margin) / self.se, self.df), _t_tail((margin - self.delta) / self.se, self.df))


def _t_quantile(q: float, df: float) -> float:
    # Imported here for start-up speed (scipy): every `bench` command imports this module for its flags.
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def _t_tail(x: float, df: float) -> float:
    """P(T > x) for Student's t with `df` degrees of freedom."""
    # Imported here for start-up speed (scipy): every `bench` command imports this module for its flags.
    from scipy.special import stdtr

    return float(stdtr(df, -x))


def welch(scores_a: np.ndarray, scores_b: np.ndarray) -> Welch | None:
    """Welch's t of a minus b over seeds; None unless both rows have 2+ seeds and one of them 2-5, or with no
    spread at all (nothing to widen)."""
    if len(scores_a) not in FEW_SEEDS and len(scores_b) not in FEW_SEEDS:
        return None
    return welch_t(scores_a, scores_b)


def welch_t(scores_a: np.ndarray, scores_b: np.ndarray) -> Welch | None:
    """Welch's t of a minus b over any number of seeds; None unless both sides have 2+ seeds and some spread."""
    n_a, n_b = len(scores_a), len(scores_b)
    if min(n_a, n_b) < 2:
        return None
    v_a, v_b = np.var(scores_a, ddof=1) / n_a, np.var(scores_b, ddof=1) / n_b
    if v_a + v_b == 0:
        return None
    df = (v_a + v_b) ** 2 / (v_a**2 / (n_a - 1) + v_b**2 / (n_b - 1))
    return Welch(float(np.mean(scores_a) - np.mean(scores_b)), float(np.sqrt(v_a + v_b)), float(df))


def seed_std(scores_a: np.ndarray, scores_b: np.ndarray) -> float | None:
    """The two rows' pooled seed std, sqrt((s_a^2 + s_b^2) / 2); None unless both have 2+ seeds."""
    if min(len(scores_a), len(scores_b)) < 2:
        return None
    return float(np.sqrt((np.var(scores_a, ddof=1) + np.var(scores_b, ddof=1)) / 2))


def covering(bootstrap: list[float], other: list[float] | None) -> tuple[list[float], bool]:
    """The bootstrap interval, or where `other` is wider the smallest interval covering both; and whether it was."""
    if other is None or other[1] - other[0] <= bootstrap[1] - bootstrap[0]:
        return bootstrap, False
    return [min(bootstrap[0], other[0]), max(bootstrap[1], other[1])], True


def paired_difference(
    point_a: float,
    replicates_a: np.ndarray,
    point_b: float,
    replicates_b: np.ndarray,
    alpha: float = ALPHA,
    margin: float | None = None,
    seed_scores: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """A minus B, with its (1 - alpha) interval and a two-sided p-value, from the same resampled differences.

    The difference is significant (p < alpha) exactly when its interval excludes zero; identical systems give
    p = 1, and p is never below 2 / (resamples + 1). With `seed_scores` (each row's per-seed scores) of rows of
    2-5 seeds, a Welch t-interval wider than the bootstrap's widens the interval, and p (and the TOST's p) is
    the larger of the bootstrap's and Welch's (`method` says which interval: "bootstrap" or "welch-t"). With a
    `margin`: `tost_p`, the equivalence test's p on the same resampled differences."""
    deltas = np.asarray(replicates_a) - np.asarray(replicates_b)
    ci, p = interval(deltas, alpha), p_value(deltas)
    t = welch(*seed_scores) if seed_scores is not None else None
    ci, widened = covering(ci, t.interval(alpha) if t else None)
    if widened:
        p = max(p, t.p())
    out = {"delta": float(point_a - point_b), "ci": ci, "p": p, "significant": p < alpha}
    out["method"] = "welch-t" if widened else "bootstrap"
    out["seeds"] = min(len(s) for s in seed_scores) if seed_scores is not None else 1
    out["seed_std"] = seed_std(*seed_scores) if seed_scores is not None else None
    if margin is not None:
        out["tost_p"] = max(tost_p(deltas, margin), t.tost_p(margin)) if widened else tost_p(deltas, margin)
    return out
