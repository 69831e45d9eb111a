"""A leaderboard's statistics: per row, 95% bootstrap intervals; per row and task, a paired test against a baseline.

Rows carry `predictions`, {task: [prediction files, one per seed]}; `add_statistics` reads them through a
`load` function and adds, without changing any existing key:

    row["ci"]           {"scores": {task: {metric: [lo, hi]}}, "task_scores": {task: [lo, hi]},
                         "average": [lo, hi] or None, "examples": {task: dev examples scored},
                         "example_set": {task: fingerprint of those examples (splits, positions, gold labels)},
                         "method": {"task_scores": {task: "bootstrap" or "t"}, "average": ...}}
    row["significance"] None when the row has no test, else
                        {"task_scores": {task: {"delta", "ci", "p", "p_adjusted", "significant", "method",
                                                "seeds", "seed_std", "verdict", "seeds_needed", "examples",
                                                "baseline"[, "tost_p", "tost_p_adjusted", "equivalent"]}
                                         or {"comparable": False, "reason", "baseline"}},
                         "average": the same but "examples", or None}
    row["test"]["ci"], row["test"]["significance"]
                        the same on the row's test predictions (`row["test"]["predictions"]`), where it has them
    board["statistics"] {"baseline": [systems some row was tested against], "baseline_rule": "named" or
                         "best single on the same examples", "correction", "tests", "test_tests",
                         "bootstrap_level", "resamples", "resamples_rule" ("given" or "sized to the tests"),
                         "smallest_adjusted_p", "equivalence_margin", "confidence", "alpha", "seed", "missing"}

Each row's baseline, per task and for the average: the row named by `baseline` (compared on the dev examples
both cover), else the best row of kind "single" (by that task's score, or by average) among the rows scored on
the same dev examples (same `example_set`); rows of no other kind fall back to the best row there. So an
ensemble scored on a report half of dev is tested against the best single checkpoint on that half, and a
trial row against the best single trial row on all of dev. Every test of the table forms one family for the
correction (`holm`, `bh` or `none`); `significant` is p_adjusted < alpha. On test, each row is tested against
the row it is tested against on dev (so nothing, the baseline included, is chosen on test), and the test
comparisons form a family of their own. Without `resamples`, the table sizes them from its number of tests
(bootstrap.auto_resamples). With an equivalence `margin`, every test also gets a TOST on the same resampled
differences, its p-values corrected as a family of their own; each test's `verdict` is "better" or "worse"
(significant), "equivalent" (TOST significant), "inconclusive" (neither, with a margin; `seeds_needed` per row
where the seeds' spread sizes it) or "no difference shown" (neither, without a margin).
Bootstrap definitions: benchmark.results.bootstrap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import defaultdict
from statistics import NormalDist
from typing import Callable

import numpy as np

from benchmark.common.errors import InputError
from benchmark.results.bootstrap import (
    ALPHA,
    CONFIDENCE,
    LEVEL,
    LEVELS,
    SEED,
    LabelMismatch,
    SeedPredictions,
    TaskSample,
    auto_resamples,
    check_same_labels,
    common_examples,
    covering,
    interval,
    paired_difference,
    score_task,
    smallest_adjusted_p,
    t_interval,
)
from benchmark.results.leaderboard import sort_rows, test_side
from benchmark.results.tables import example_group
from benchmark.train.floors import FLOOR_KINDS
from tasks.spec import TaskSpec

# path as the row gives it -> that file's predictions, or None when the file is gone
Loader = Callable[[str], "SeedPredictions | None"]

CORRECTIONS = ("holm", "bh", "none")
CORRECTION = "holm"
NAMED, SAME_EXAMPLES = "named", "best single on the same examples"
GIVEN, SIZED = "given", "sized to the tests"
BETTER, WORSE, EQUIVALENT, INCONCLUSIVE = "better", "worse", "equivalent", "inconclusive"  # a test's verdict
NO_DIFFERENCE = "no difference shown"  # the verdict of a test that is not significant, without a margin
Z_POWER = NormalDist().inv_cdf(0.9)  # seeds_needed: power 90%


def add_statistics(
    board: dict,
    task_specs: dict[str, TaskSpec],
    load: Loader,
    baseline: str | None = None,
    resamples: int | None = None,
    seed: int = SEED,
    correction: str = CORRECTION,
    level: str = LEVEL,
    margin: float | None = None,
) -> dict:
    """The board with intervals on every row, paired tests against each row's baseline, corrected as one family;
    `resamples` None: as many as the table's tests need (auto_resamples); `margin`: equivalence tests (TOST)."""
    if correction not in CORRECTIONS or level not in LEVELS:
        raise ValueError(f"correction {correction!r} or bootstrap level {level!r} unknown")
    rule = GIVEN
    if resamples is None:
        # Which tests the table makes does not depend on the resamples: one resample counts them, cheaply.
        counted = _statistics(board, task_specs, load, baseline, 1, seed, correction, level, margin)["statistics"]
        resamples, rule = auto_resamples(max(counted["tests"], counted["test_tests"]), correction), SIZED
    out = _statistics(board, task_specs, load, baseline, resamples, seed, correction, level, margin)
    out["statistics"]["resamples_rule"] = rule
    return out


def _statistics(
    board: dict,
    task_specs: dict[str, TaskSpec],
    load: Loader,
    baseline: str | None,
    resamples: int,
    seed: int,
    correction: str,
    level: str,
    margin: float | None,
) -> dict:
    rows = sort_rows([dict(row) for row in board["rows"]])
    tasks = board["tasks"]
    named = choose_baseline(rows, baseline)
    scorer = _Scorer(task_specs, resamples, seed, level, margin)
    predictions, missing = _load_predictions(rows, tasks, load)
    for row in rows:
        row["ci"] = _intervals(row, tasks, predictions[row["system"]], scorer)
    bases = row_baselines(rows, tasks, named)
    for row in rows:
        row["significance"] = _compare(row, bases, tasks, predictions, scorer)
    tests = correct_tests(rows, correction, margin=margin)
    test_tests, test_missing = _test_statistics(rows, tasks, bases, load, scorer, correction)
    return {
        **board,
        "rows": rows,
        "statistics": {
            "baseline": baselines_used(rows),
            "baseline_rule": NAMED if named else SAME_EXAMPLES,
            "correction": correction,
            "tests": tests,
            "test_tests": test_tests,
            "bootstrap_level": level,
            "resamples": resamples,
            "smallest_adjusted_p": smallest_adjusted_p(resamples, max(tests, test_tests), correction),
            "equivalence_margin": margin,
            "confidence": CONFIDENCE,
            "alpha": ALPHA,
            "seed": seed,
            "missing": missing + test_missing,
        },
    }


def _test_statistics(
    rows: list[dict], tasks: list[str], bases: dict, load: Loader, scorer: _Scorer, correction: str
) -> tuple[int, list[str]]:
    """Intervals and tests on test, into each row's `test`: the rows' test sides, shaped as rows, go through the same
    steps as on dev, against the same baselines; returns how many tests there are and what is missing."""
    views = {row["system"]: view for row in rows if (view := test_side(row)) and view["predictions"]}
    predictions, missing = _load_predictions(list(views.values()), tasks, load)
    specs = {t: dataclasses.replace(spec, eval_splits={"test": ""}) for t, spec in scorer.task_specs.items()}
    scorer = _Scorer(specs, scorer.resamples, scorer.seed, scorer.level, scorer.margin)  # one split, "test"
    for view in views.values():
        view["ci"] = _intervals(view, tasks, predictions[view["system"]], scorer)
    test_bases = {key: views[b["system"]] for key, b in bases.items() if key[0] in views and b["system"] in views}
    for view in views.values():
        view["significance"] = _compare(view, test_bases, tasks, predictions, scorer)
    tests = correct_tests(list(views.values()), correction, margin=scorer.margin)
    for row in rows:
        if row["system"] in views:
            row["test"] = {**row["test"], "ci": views[row["system"]]["ci"]}
            row["test"]["significance"] = views[row["system"]]["significance"]
    return tests, [f"{m} (test)" for m in missing]


def choose_baseline(rows: list[dict], name: str | None) -> dict | None:
    """The row named `name` (exactly, else the one whose name contains it); None without a name."""
    if not name:
        return None
    matches = [r for r in rows if r["system"] == name] or [r for r in rows if name.lower() in r["system"].lower()]
    if len(matches) > 1 and len(trained := [r for r in matches if r["kind"] not in FLOOR_KINDS]) == 1:
        matches = trained  # a run's name matches its floors' rows too; name a floor in full to test against it
    if len(matches) != 1:
        found = "matches several rows" if matches else "matches no row"
        raise InputError("--baseline", f"'{name}' {found}; rows: {', '.join(r['system'] for r in rows)}")
    return matches[0]


def row_baselines(rows: list[dict], tasks: list[str], named: dict | None) -> dict[tuple, dict]:
    """(system, task, or None for the average) -> the row it is tested against; rows absent have no test there."""
    if named is not None:
        return {(r["system"], t): named for r in rows if r is not named for t in [*tasks, None]}
    out = {}
    for task in [*tasks, None]:
        groups = defaultdict(list)
        for row in rows:
            key = example_group(row, task, tasks)
            if key is not None:
                groups[key].append(row)
        for group in groups.values():
            base = _best_single(group, task)
            out.update({(r["system"], task): base for r in group if base is not None and r is not base})
    return out


def _best_single(group: list[dict], task: str | None) -> dict | None:
    """The best row of kind "single" in `group` (else the best row), by the task's score or the average."""
    if len(group) < 2:
        return None
    singles = [r for r in group if r["kind"] == "single"] or group
    return max(singles, key=lambda r: r["average"] if task is None else r["task_scores"][task])  # first of ties


def baselines_used(rows: list[dict]) -> list[str]:
    """The rows some test was against, in the board's order."""
    used = set()
    for row in rows:
        sig = row["significance"] or {"task_scores": {}, "average": None}
        used |= {t["baseline"] for t in [*sig["task_scores"].values(), sig["average"]] if t}
    return [r["system"] for r in rows if r["system"] in used]


def adjust_p(p_values: list[float], correction: str) -> list[float]:
    """Adjusted p-values of one family of tests: Holm (step-down), Benjamini-Hochberg (step-up) or none."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if correction == "none" or m == 0:
        return p.tolist()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if correction == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    elif correction == "bh":
        adjusted = np.minimum(1.0, np.minimum.accumulate((m / np.arange(1, m + 1) * ranked)[::-1])[::-1])
    else:
        raise ValueError(f"unknown correction {correction!r}; one of {', '.join(CORRECTIONS)}")
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def correct_tests(rows: list[dict], correction: str, alpha: float = ALPHA, margin: float | None = None) -> int:
    """Set p_adjusted and significant on every test of the table, one family; with a margin, the TOSTs'
    tost_p_adjusted and equivalent, a family of their own; then each test's verdict. Returns how many tests."""
    tests = []
    for row in rows:
        sig = row["significance"] or {"task_scores": {}, "average": None}
        tests += [t for t in [*sig["task_scores"].values(), sig["average"]] if t and "p" in t]
    for test, adjusted in zip(tests, adjust_p([t["p"] for t in tests], correction)):
        test["p_adjusted"] = adjusted
        test["significant"] = adjusted < alpha
    if margin is not None:
        for test, adjusted in zip(tests, adjust_p([t["tost_p"] for t in tests], correction)):
            test["tost_p_adjusted"] = adjusted
            test["equivalent"] = adjusted < alpha
    for test in tests:
        test["verdict"] = verdict(test, margin)
        test["seeds_needed"] = seeds_needed(test, margin) if test["verdict"] == INCONCLUSIVE else None
    return len(tests)


def verdict(test: dict, margin: float | None) -> str:
    """What a corrected test shows: a significant difference first, then equivalence within the margin."""
    if test["significant"]:
        return BETTER if test["delta"] > 0 else WORSE
    if margin is None:
        return NO_DIFFERENCE
    return EQUIVALENT if test["equivalent"] else INCONCLUSIVE


def seeds_needed(test: dict, margin: float, alpha: float = ALPHA) -> int | None:
    """Seeds per row for a TOST at `margin` to pass with 90% power, from the rows' pooled seed std s and the observed
    difference d: 2 (z_{1-alpha} + z_0.9)^2 s^2 / (margin - |d|)^2, at least 2 (`alpha`: each one-sided test's
    level). None where it cannot be sized: one seed (no spread), or |d| >= margin (equivalence cannot be shown at
    this margin)."""
    s, gap = test["seed_std"], margin - abs(test["delta"])
    if s is None or gap <= 0:
        return None
    return max(2, math.ceil(2 * (NormalDist().inv_cdf(1 - alpha) + Z_POWER) ** 2 * s**2 / gap**2))


def example_set_key(seeds: list[SeedPredictions], examples: dict[str, np.ndarray]) -> str:
    """A fingerprint of the dev examples scored: their splits, positions and gold labels."""
    digest = hashlib.sha256()
    for split in sorted(examples):
        labels = seeds[0][split].select(examples[split]).labels
        digest.update(split.encode() + b"\0")
        digest.update(np.ascontiguousarray(examples[split], dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(labels, dtype=np.float64).tobytes())  # int32 or int64 alike
    return digest.hexdigest()[:16]


class _Scorer:
    """Scores a row's task on given examples once, however many comparisons need it."""

    def __init__(self, task_specs: dict[str, TaskSpec], resamples: int, seed: int, level: str, margin: float | None):
        self.task_specs, self.resamples, self.seed, self.level = task_specs, resamples, seed, level
        self.margin = margin  # the equivalence margin every comparison's TOST takes, or None
        self.cache: dict[tuple, TaskSample] = {}

    def __call__(
        self, system: str, task: str, seeds: list[SeedPredictions], examples: dict[str, np.ndarray]
    ) -> TaskSample:
        key = (system, task, *((s, e.tobytes()) for s, e in sorted(examples.items())))
        if key not in self.cache:
            spec = self.task_specs[task]
            self.cache[key] = score_task(spec, seeds, examples, self.resamples, self.seed, self.level, system)
        return self.cache[key]


def _load_predictions(rows: list[dict], tasks: list[str], load: Loader) -> tuple[dict, list[str]]:
    """{system: {task: one SeedPredictions per seed}} where every file is there, and what is missing."""
    predictions, missing = {}, []
    for row in rows:
        predictions[row["system"]] = {}
        for task in tasks:
            files = row.get("predictions", {}).get(task, [])
            loaded = [load(path) for path in files]
            if files and all(p is not None for p in loaded):
                predictions[row["system"]][task] = loaded
            elif task in row["scores"]:
                missing.append(f"{row['system']}: {task}")
    return predictions, missing


def _intervals(row: dict, tasks: list[str], predictions: dict, scorer: _Scorer) -> dict:
    ci = {"scores": {}, "task_scores": {}, "average": None, "examples": {}, "example_set": {}}
    ci["method"] = {"task_scores": {}, "average": None}
    samples = {}
    for task, seeds in predictions.items():
        examples = common_examples(seeds)
        try:
            samples[task] = scorer(row["system"], task, seeds, examples)
        except LabelMismatch as e:
            raise InputError(row["system"], f"its seeds' prediction files disagree: {e}") from None
        ci["scores"][task] = {k: interval(v) for k, v in samples[task].replicates.items()}
        bounds, t = _seed_interval(samples[task].score_replicates, samples[task].seed_scores)
        ci["task_scores"][task], ci["method"]["task_scores"][task] = bounds, t
        ci["examples"][task] = samples[task].examples
        ci["example_set"][task] = example_set_key(seeds, examples)
    if row["average"] is not None and all(t in samples for t in tasks):
        replicates = np.mean([samples[t].score_replicates for t in tasks], axis=0)
        ci["average"], ci["method"]["average"] = _seed_interval(replicates, _seed_averages([samples[t] for t in tasks]))
    return ci


def _seed_interval(replicates: np.ndarray, seed_scores: np.ndarray | None) -> tuple[list[float], str]:
    """The bootstrap interval, or where the t-interval over a row's 2-5 seeds is wider, the one covering both."""
    bounds, widened = covering(interval(replicates), t_interval(seed_scores) if seed_scores is not None else None)
    return bounds, "t" if widened else "bootstrap"


def _seed_averages(samples: list[TaskSample]) -> np.ndarray | None:
    """Each seed's average over the tasks (the i-th prediction file of each); None where the tasks' seeds differ."""
    if len({len(s.seed_scores) for s in samples}) != 1:
        return None
    return np.mean([s.seed_scores for s in samples], axis=0)


class _NotComparable(ValueError):
    """Two rows' predictions of a task cannot be compared; the message says why."""


def _compare(row: dict, bases: dict, tasks: list[str], predictions: dict, scorer: _Scorer) -> dict | None:
    """The row's tests against its baselines: per task, and on the average; None when it has none."""
    out = {"task_scores": {}, "average": None}
    for task in tasks:
        base = bases.get((row["system"], task))
        if base is None or task not in predictions[row["system"]] or task not in predictions[base["system"]]:
            continue
        try:
            a, b = _paired(row, base, task, predictions, scorer)
        except _NotComparable as e:
            out["task_scores"][task] = {"comparable": False, "reason": str(e), "baseline": base["system"]}
            continue
        test = paired_difference(
            a.score,
            a.score_replicates,
            b.score,
            b.score_replicates,
            margin=scorer.margin,
            seed_scores=(a.seed_scores, b.seed_scores),
        )
        out["task_scores"][task] = {**test, "examples": a.examples, "baseline": base["system"]}
    base = bases.get((row["system"], None))
    if base is not None and row["average"] is not None and base["average"] is not None:
        out["average"] = _average_test(row, base, tasks, predictions, scorer)
    return out if out["task_scores"] or out["average"] else None


def _paired(row: dict, base: dict, task: str, predictions: dict, scorer: _Scorer) -> tuple[TaskSample, TaskSample]:
    """Both rows' task scored on the dev examples both cover (the same example draws)."""
    mine, theirs = predictions[row["system"]][task], predictions[base["system"]][task]
    examples = common_examples(mine, theirs)
    if any(len(e) == 0 for e in examples.values()):
        raise _NotComparable("no dev examples in common")
    try:
        check_same_labels(mine + theirs, examples)
    except LabelMismatch:
        raise _NotComparable("different dev sets (the gold labels differ)") from None
    return scorer(row["system"], task, mine, examples), scorer(base["system"], task, theirs, examples)


def _average_test(row: dict, base: dict, tasks: list[str], predictions: dict, scorer: _Scorer) -> dict | None:
    """The difference of the averages, each task on the examples both rows cover; None unless every task is."""
    if not all(t in predictions[row["system"]] and t in predictions[base["system"]] for t in tasks):
        return None
    try:
        pairs = [_paired(row, base, t, predictions, scorer) for t in tasks]
    except _NotComparable:
        return None
    mine, theirs = _seed_averages([a for a, _ in pairs]), _seed_averages([b for _, b in pairs])
    test = paired_difference(
        np.mean([a.score for a, _ in pairs]),
        np.mean([a.score_replicates for a, _ in pairs], axis=0),
        np.mean([b.score for _, b in pairs]),
        np.mean([b.score_replicates for _, b in pairs], axis=0),
        margin=scorer.margin,
        seed_scores=None if mine is None or theirs is None else (mine, theirs),
    )
    return {**test, "baseline": base["system"]}
