"""Bootstrap intervals and paired tests on synthetic predictions whose properties are known."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from benchmark.common.errors import InputError
from benchmark.results.bootstrap import (
    SplitPredictions,
    common_examples,
    interval,
    paired_difference,
    resample_seeds,
    score_task,
)
from benchmark.results.statistics import add_statistics, adjust_p
from benchmark.results.tables import format_markdown
from tasks.glue import GLUE_TASKS

SPECS = {name: GLUE_TASKS[name] for name in ("rte", "stsb", "mnli")}


def classification(labels, correct, indices=None, classes=2):
    """Logits that predict the label where `correct`, and the next class elsewhere."""
    preds = np.where(correct, labels, (labels + 1) % classes)
    logits = np.eye(classes, dtype=np.float32)[preds]
    return SplitPredictions(logits, labels, np.arange(len(labels)) if indices is None else indices)


def regression(labels, noise, rng):
    return SplitPredictions(
        (labels + noise * rng.normal(size=len(labels)))[:, None].astype(np.float32), labels, np.arange(len(labels))
    )


def row(system, files: dict, average=50.0, kind="single", scores=None):
    """A leaderboard row as build_leaderboard makes it, reduced to what the statistics read; `scores`: per task
    (default: the average on every task)."""
    scores = scores or {t: average for t in files}
    return {
        "system": system,
        "kind": kind,
        "model": system,
        "average": average,
        "predictions": files,
        "scores": {t: {k: scores[t] for k in SPECS[t].metric_keys()} for t in files},
        "task_scores": dict(scores),
        "std": {"scores": {}, "task_scores": {}, "average": None},
        "seeds": 1,
        "config": {},
    }


def board_of(rows, files, tasks=("rte",), **kw):
    board = {
        "suite": "synthetic",
        "tasks": list(tasks),
        "metrics": {t: SPECS[t].metric_keys() for t in tasks},
        "rows": rows,
        "trials": {"finished": 0, "failed": 0, "total": 0},
        "compute": {"trial_hours": 0.0, "train_samples": 0},
        "convention": "",
    }
    return add_statistics(board, SPECS, files.get, **kw)


RNG = np.random.default_rng(7)
LABELS = RNG.integers(0, 2, 300)
GOOD = RNG.random(300) < 0.8
WORSE = GOOD & (RNG.random(300) < 0.75)  # right only where GOOD is right: never better on any example


def test_a_system_never_worse_and_often_better_is_significant_and_identical_systems_are_not():
    files = {
        "good": {"validation": classification(LABELS, GOOD)},
        "worse": {"validation": classification(LABELS, WORSE)},
        "copy": {"validation": classification(LABELS, WORSE)},
    }
    board = board_of(
        [
            row("good", {"rte": ["good"]}, 80.0),
            row("worse", {"rte": ["worse"]}, 60.0),
            row("copy", {"rte": ["copy"]}, 59.0),
        ],
        files,
        baseline="worse",
    )
    by = {r["system"]: r for r in board["rows"]}
    assert board["statistics"]["baseline"] == ["worse"] and by["worse"]["significance"] is None
    good = by["good"]["significance"]["task_scores"]["rte"]
    expected = 100 * (
        accuracy_score(LABELS, np.where(GOOD, LABELS, 1 - LABELS))
        - accuracy_score(LABELS, np.where(WORSE, LABELS, 1 - LABELS))
    )
    assert good["delta"] == pytest.approx(expected) and good["delta"] > 10
    # No resample at or below 0: p is (0 + 1) x 2 / (1000 + 1), never 0 (it was 0 before p became (k + 1) / (B + 1));
    # 4 tests: the table sized itself to 1000 resamples, Holm's smallest adjusted p 4 x 2 / 1001 < 0.01.
    assert board["statistics"]["resamples"] == 1000 and board["statistics"]["resamples_rule"] == "sized to the tests"
    assert good["significant"] and good["p"] == 2 / 1001 and good["p_adjusted"] == pytest.approx(8 / 1001)
    assert good["baseline"] == "worse" and board["statistics"]["tests"] == 4  # good and copy: rte, average
    assert good["ci"][0] > 0 and good["examples"] == 300
    assert by["good"]["significance"]["average"]["significant"]
    same = by["copy"]["significance"]["task_scores"]["rte"]
    assert same["delta"] == 0.0 and same["p"] == 1.0 and not same["significant"] and same["ci"] == [0.0, 0.0]
    assert same["p_adjusted"] == 1.0


def test_the_paired_test_rejects_about_five_percent_of_true_nulls():
    """Two systems of the same accuracy with independent errors: the test should reject about alpha = 5%."""
    rng = np.random.default_rng(0)
    rejected = 0
    for trial in range(300):
        labels = rng.integers(0, 2, 100)
        a, b = (
            score_task(
                SPECS["rte"],
                [{"validation": classification(labels, rng.random(100) < 0.7)}],
                {"validation": np.arange(100)},
                resamples=300,
                seed=trial,
            )
            for _ in range(2)
        )
        rejected += paired_difference(a.score, a.score_replicates, b.score, b.score_replicates)["significant"]
    assert 0.02 <= rejected / 300 <= 0.09


def test_the_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered, widths = 0, []
    for trial in range(300):
        labels = rng.integers(0, 2, 200)
        sample = score_task(
            SPECS["rte"],
            [{"validation": classification(labels, rng.random(200) < 0.7)}],
            {"validation": np.arange(200)},
            resamples=400,
            seed=trial,
        )
        low, high = interval(sample.score_replicates)
        covered += low <= 70.0 <= high
        widths.append(high - low)
    assert 0.90 <= covered / 300 <= 0.99
    # The normal approximation's width for a proportion: 2 x 1.96 x sqrt(0.7 x 0.3 / 200).
    assert np.mean(widths) == pytest.approx(2 * 1.96 * np.sqrt(0.21 / 200) * 100, rel=0.1)


def test_seeds_are_scored_on_the_same_draws_and_averaged():
    seed_a, seed_b = classification(LABELS, GOOD), classification(LABELS, WORSE)
    examples = {"validation": np.arange(300)}
    both = score_task(SPECS["rte"], [{"validation": seed_a}, {"validation": seed_b}], examples, 200, level="examples")
    one_a = score_task(SPECS["rte"], [{"validation": seed_a}], examples, 200)
    one_b = score_task(SPECS["rte"], [{"validation": seed_b}], examples, 200)
    assert both.score == pytest.approx((one_a.score + one_b.score) / 2)
    np.testing.assert_allclose(both.score_replicates, (one_a.score_replicates + one_b.score_replicates) / 2)
    twice = score_task(SPECS["rte"], [{"validation": seed_a}, {"validation": seed_a}], examples, 200, level="examples")
    np.testing.assert_allclose(twice.score_replicates, one_a.score_replicates)


def test_a_named_baseline_is_compared_on_the_examples_both_rows_cover():
    half = np.arange(0, 300, 2)
    part = classification(LABELS[half], GOOD[half], indices=half)
    files = {"ensemble": {"validation": part}, "single": {"validation": classification(LABELS, WORSE)}}
    board = board_of(
        [row("ensemble", {"rte": ["ensemble"]}, 80.0, kind="ensemble"), row("single", {"rte": ["single"]}, 60.0)],
        files,
        baseline="single",
    )
    by = {r["system"]: r for r in board["rows"]}
    assert board["statistics"]["baseline"] == ["single"] and board["statistics"]["baseline_rule"] == "named"
    test = by["ensemble"]["significance"]["task_scores"]["rte"]
    assert test["examples"] == 150 and by["ensemble"]["ci"]["examples"]["rte"] == 150 and test["baseline"] == "single"
    on_half = 100 * (GOOD[half].mean() - WORSE[half].mean())
    assert test["delta"] == pytest.approx(on_half)
    md = format_markdown(board)
    assert "(n=150)" in md and "every compared prediction covers" in md


def test_different_dev_sets_are_not_compared_and_missing_files_give_no_interval():
    shuffled = classification(LABELS[::-1].copy(), GOOD)
    files = {"a": {"validation": classification(LABELS, GOOD)}, "b": {"validation": shuffled}}
    board = board_of(
        [row("a", {"rte": ["a"]}, 70.0), row("b", {"rte": ["b"]}, 60.0), row("c", {"rte": ["gone"]}, 50.0)],
        files,
        baseline="a",
    )
    by = {r["system"]: r for r in board["rows"]}
    assert by["b"]["significance"]["task_scores"]["rte"] == {
        "comparable": False,
        "reason": "different dev sets (the gold labels differ)",
        "baseline": "a",
    }
    assert by["c"]["ci"]["task_scores"] == {} and board["statistics"]["missing"] == ["c: rte"]


def test_regression_and_mnli_two_dev_sets():
    rng = np.random.default_rng(2)
    y = rng.uniform(0, 5, 400)
    close, far = regression(y, 0.5, rng), regression(y, 2.0, rng)
    m, mm = rng.integers(0, 3, 150), rng.integers(0, 3, 120)
    nli = {
        "validation_matched": classification(m, rng.random(150) < 0.8, classes=3),
        "validation_mismatched": classification(mm, rng.random(120) < 0.8, classes=3),
    }
    files = {"close": {"validation": close}, "far": {"validation": far}, "nli": nli}
    board = board_of(
        [
            row("close", {"stsb": ["close"], "mnli": ["nli"]}, 70.0),
            row("far", {"stsb": ["far"], "mnli": ["nli"]}, 60.0),
        ],
        files,
        tasks=("stsb", "mnli"),
        baseline="far",
    )
    close_row = board["rows"][0]
    assert set(close_row["ci"]["scores"]["stsb"]) == {"pearson", "spearmanr"}
    assert set(close_row["ci"]["scores"]["mnli"]) == {"accuracy_matched", "accuracy_mismatched"}
    assert close_row["ci"]["examples"] == {"stsb": 400, "mnli": 270}
    assert close_row["significance"]["task_scores"]["stsb"]["significant"]
    assert close_row["significance"]["task_scores"]["mnli"]["p"] == 1.0  # the same predictions


def test_intervals_are_reproducible_and_do_not_depend_on_the_other_rows():
    files = {
        "good": {"validation": classification(LABELS, GOOD)},
        "worse": {"validation": classification(LABELS, WORSE)},
    }
    alone = board_of([row("good", {"rte": ["good"]}, 80.0)], files)
    together = board_of([row("good", {"rte": ["good"]}, 80.0), row("worse", {"rte": ["worse"]}, 60.0)], files)
    assert alone["rows"][0]["ci"] == together["rows"][0]["ci"]
    assert alone["statistics"]["baseline"] == [] and alone["rows"][0]["significance"] is None


def test_baseline_by_name_or_unique_part_and_a_wrong_name_is_an_input_error():
    files = {"a": {"validation": classification(LABELS, GOOD)}, "b": {"validation": classification(LABELS, WORSE)}}
    rows = [row("bert-base (single)", {"rte": ["a"]}, 70.0), row("bert-large (single)", {"rte": ["b"]}, 60.0)]
    assert board_of(rows, files, baseline="large")["statistics"]["baseline"] == ["bert-large (single)"]
    with pytest.raises(InputError, match="matches several rows"):
        board_of(rows, files, baseline="bert")
    with pytest.raises(InputError, match="matches no row"):
        board_of(rows, files, baseline="roberta")


def test_common_examples_intersects_every_seed_and_row():
    a = {"validation": classification(LABELS[:10], GOOD[:10], indices=np.arange(10))}
    b = {"validation": classification(LABELS[5:15], GOOD[5:15], indices=np.arange(5, 15))}
    assert common_examples([a], [b])["validation"].tolist() == [5, 6, 7, 8, 9]


def test_holm_and_benjamini_hochberg_against_hand_computed_values():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running maximum.
    assert adjust_p(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted times 4/1, 4/2, 4/3, 4/4 = 0.02, 0.02, 0.04, 0.04; running minimum from the largest.
    assert adjust_p(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_p(p, "none") == p
    assert adjust_p([0.5, 0.6], "holm") == [1.0, 1.0] and adjust_p([0.5, 0.6], "bh") == pytest.approx([0.6, 0.6])
    assert adjust_p([], "holm") == []


def test_interval_excludes_zero_exactly_when_p_is_below_alpha():
    """Over many replicate arrays, with ties and zeros: the interval and p come from the same order statistics
    (from 40 resamples on; with fewer, no p is below 0.05: 2 (0 + 1) / (39 + 1) = 0.05)."""
    rng = np.random.default_rng(3)
    for trial in range(3000):
        resamples = int(rng.choice([1, 2, 7, 38, 39, 40, 41, 100, 199, 500, 1000, 1001, 2000]))
        shift = rng.integers(-3, 4)
        deltas = (rng.integers(-4, 5, resamples) + shift) * rng.choice([1.0, 0.1, 1e-9])  # ties, many zeros
        test = paired_difference(float(deltas.mean()), deltas, 0.0, np.zeros(resamples))
        low, high = test["ci"]
        far = min((deltas <= 0).sum(), (deltas >= 0).sum())
        assert test["p"] == min(1.0, 2 * (far + 1) / (resamples + 1)) and test["p"] > 0
        if resamples < 40:
            assert test["p"] >= 0.05 and not test["significant"]
            continue
        assert (low > 0 or high < 0) == (test["p"] < 0.05) == test["significant"], (trial, test)
        rank = next(c for c in range(resamples) if 2 * (c + 1) / (resamples + 1) >= 0.05)  # (B + 1) x 2.5%, - 1
        assert low == np.sort(deltas)[rank - 1] and high == np.sort(deltas)[resamples - rank]
        if resamples in (1000, 2000):  # there the rank is the one the inverted-CDF quantile takes
            assert low == np.quantile(deltas, 0.025, method="inverted_cdf")
            assert high == -np.quantile(-deltas, 0.025, method="inverted_cdf")


def test_the_case_where_a_percentile_interval_and_p_disagreed():
    """25 of 1000 resampled differences at or below zero: p = (25 + 1) x 2 / 1001 = 0.052, not significant, and the
    interval holds 0 (the interpolated percentile excluded 0). With 24: p = 0.04995, significant, the interval
    excludes 0. (Before p became (k + 1) / (B + 1) these p were 0.05 and 0.048, with the same verdicts.)"""
    deltas = np.array([-1.0] * 24 + [0.0] + [1.0] * 975)
    test = paired_difference(1.0, deltas, 0.0, np.zeros(1000))
    assert test["p"] == pytest.approx(52 / 1001) and not test["significant"] and test["ci"][0] == 0.0
    assert np.percentile(deltas, 2.5) > 0  # what the old interval said
    fewer = paired_difference(1.0, np.array([-1.0] * 24 + [1.0] * 976), 0.0, np.zeros(1000))
    assert fewer["p"] == pytest.approx(50 / 1001) and fewer["significant"] and fewer["ci"][0] > 0


def test_two_level_bootstrap_widens_the_interval_when_seeds_disagree_and_equals_one_level_with_one_seed():
    examples = {"validation": np.arange(300)}
    good, worse = {"validation": classification(LABELS, GOOD)}, {"validation": classification(LABELS, WORSE)}
    spec = SPECS["rte"]
    one_level = score_task(spec, [good, worse], examples, 1000, level="examples", system="m")
    two_level = score_task(spec, [good, worse], examples, 1000, level="seeds+examples", system="m")
    assert two_level.score == one_level.score  # the point value is the mean over all seeds either way
    low1, high1 = interval(one_level.score_replicates)
    low2, high2 = interval(two_level.score_replicates)
    assert high2 - low2 > 1.5 * (high1 - low1)
    # A resample that draws the same seed twice scores that seed alone: the resampled values spread to either seed.
    draws = resample_seeds("rte", "m", 2, 1000)
    alone = draws.min(axis=1) == draws.max(axis=1)
    good_alone = score_task(spec, [good], examples, 1000).score_replicates
    both_good = alone & (draws[:, 0] == 0)
    np.testing.assert_allclose(two_level.score_replicates[both_good], good_alone[both_good])
    # One seed: nothing to draw, the same values as the one-level bootstrap.
    single = score_task(spec, [good], examples, 1000, level="seeds+examples", system="m")
    np.testing.assert_array_equal(single.score_replicates, score_task(spec, [good], examples, 1000).score_replicates)
    again = score_task(spec, [good, worse], examples, 1000, level="seeds+examples", system="m")
    np.testing.assert_array_equal(again.score_replicates, two_level.score_replicates)  # reproducible


def test_the_board_records_the_bootstrap_level_and_a_rows_interval_does_not_depend_on_other_rows():
    files = {
        "good": {"validation": classification(LABELS, GOOD)},
        "worse": {"validation": classification(LABELS, WORSE)},
    }
    # Six seeds: more than FEW_SEEDS, so the interval is the bootstrap's (two seeds would get the far wider t-interval).
    two_seeds = row("m (single)", {"rte": ["good", "worse"] * 3}, 70.0)
    alone = board_of([two_seeds], files)
    together = board_of([two_seeds, row("other (single)", {"rte": ["worse", "good"] * 3}, 60.0)], files)
    assert alone["rows"][0]["ci"] == together["rows"][0]["ci"]
    assert alone["statistics"]["bootstrap_level"] == "seeds+examples"
    fixed = board_of([two_seeds], files, level="examples")
    assert fixed["statistics"]["bootstrap_level"] == "examples"
    assert _width(alone) > _width(fixed)


def _width(board) -> float:
    low, high = board["rows"][0]["ci"]["task_scores"]["rte"]
    return high - low


def _slightly_better(base: np.ndarray, up: int, down: int) -> np.ndarray:
    """`base`, right on `up` more examples it got wrong and wrong on `down` it got right."""
    out = base.copy()
    out[np.flatnonzero(~base)[:up]] = True
    out[np.flatnonzero(base)[:down]] = False
    return out


def test_holm_correction_takes_the_arrow_from_a_comparison_significant_only_before_it():
    base = np.random.default_rng(8).random(300) < 0.7
    files = {
        "base": {"validation": classification(LABELS, base)},
        "slight": {"validation": classification(LABELS, _slightly_better(base, 12, 3))},
        "same1": {"validation": classification(LABELS, _slightly_better(base, 4, 4))},
        "same2": {"validation": classification(LABELS, _slightly_better(base, 3, 3))},
    }
    rows = [
        row("slight", {"rte": ["slight"]}, 73.0),
        row("same1", {"rte": ["same1"]}, 70.0),
        row("same2", {"rte": ["same2"]}, 69.0),
        row("base", {"rte": ["base"]}, 70.0, kind="single"),
    ]
    holm = board_of(rows, files, baseline="base")
    raw = board_of(rows, files, baseline="base", correction="none")
    test = {r["system"]: r for r in holm["rows"]}["slight"]["significance"]["task_scores"]["rte"]
    assert test["p"] < 0.05 <= test["p_adjusted"] and not test["significant"]
    assert holm["statistics"]["correction"] == "holm" and holm["statistics"]["tests"] == 6  # 3 rows x (rte, avg)
    assert test["p_adjusted"] == pytest.approx(min(1.0, 6 * test["p"]))  # the smallest p of the six
    assert {r["system"]: r for r in raw["rows"]}["slight"]["significance"]["task_scores"]["rte"]["significant"]
    holm_md, raw_md = format_markdown(holm), format_markdown(raw)
    slight_line = next(line for line in holm_md.splitlines() if line.startswith("| slight | "))
    assert "↑" not in slight_line and "Holm-corrected over 6 tests" in holm_md
    assert "↑" in next(line for line in raw_md.splitlines() if line.startswith("| slight | "))
    assert "uncorrected for multiple comparisons" in raw_md and "(adj. p" not in raw_md
    assert "(adj. p=" in holm_md and "uncorrected 95% intervals" in holm_md
    bh = board_of(rows, files, baseline="base", correction="bh")
    assert "Benjamini-Hochberg (false discovery rate)-corrected over 6 tests" in format_markdown(bh)


HALF = np.arange(0, 300, 2)


def _on_half(correct):
    return {"validation": classification(LABELS[HALF], correct[HALF], indices=HALF)}


def test_each_row_is_tested_against_the_best_single_row_scored_on_the_same_examples():
    worse2 = GOOD & (np.random.default_rng(9).random(300) < 0.85)
    files = {
        "a": {"validation": classification(LABELS, GOOD)},
        "b": {"validation": classification(LABELS, WORSE)},
        "multi": {"validation": classification(LABELS, worse2)},
        "best": _on_half(worse2),
        "vote": _on_half(GOOD),
        "greedy": _on_half(WORSE),
    }
    board = board_of(
        [
            row("a (single)", {"rte": ["a"]}, 70.0),
            row("b (single)", {"rte": ["b"]}, 60.0),
            row("a (multitask)", {"rte": ["multi"]}, 65.0, kind="multitask"),
            row("best single checkpoint", {"rte": ["best"]}, 68.0),
            row("vote (top 3)", {"rte": ["vote"]}, 72.0, kind="ensemble"),
            row("greedy (all)", {"rte": ["greedy"]}, 66.0, kind="ensemble"),
        ],
        files,
    )
    by = {r["system"]: r for r in board["rows"]}
    stats = board["statistics"]
    assert stats["baseline"] == ["a (single)", "best single checkpoint"]  # in row order: best average first
    assert stats["baseline_rule"] == "best single on the same examples"
    assert by["a (single)"]["significance"] is None and by["best single checkpoint"]["significance"] is None
    for name, base, n in [
        ("b (single)", "a (single)", 300),
        ("a (multitask)", "a (single)", 300),
        ("vote (top 3)", "best single checkpoint", 150),
        ("greedy (all)", "best single checkpoint", 150),
    ]:
        sig = by[name]["significance"]
        assert sig["task_scores"]["rte"]["baseline"] == sig["average"]["baseline"] == base
        assert sig["task_scores"]["rte"]["examples"] == n
    vote = by["vote (top 3)"]["significance"]["task_scores"]["rte"]
    assert vote["delta"] == pytest.approx(100 * (GOOD[HALF].mean() - worse2[HALF].mean()))
    assert by["vote (top 3)"]["ci"]["example_set"] == by["best single checkpoint"]["ci"]["example_set"]
    assert by["vote (top 3)"]["ci"]["example_set"] != by["a (single)"]["ci"]["example_set"]
    md = format_markdown(board)
    assert "## Differences from each row's baseline" in md and "| system | baseline | rte | average |" in md
    assert "| vote (top 3) | best single checkpoint | " in md and "| b (single) | a (single) | " in md


def test_per_task_baselines_follow_each_tasks_best_single_row():
    rng = np.random.default_rng(5)
    y = rng.uniform(0, 5, 300)
    files = {
        "a": {"validation": classification(LABELS, GOOD)},
        "b": {"validation": classification(LABELS, WORSE)},
        "a_sts": {"validation": regression(y, 2.0, rng)},
        "b_sts": {"validation": regression(y, 0.5, rng)},
    }
    board = board_of(
        [
            row("A", {"rte": ["a"], "stsb": ["a_sts"]}, 60.0, scores={"rte": 80.0, "stsb": 40.0}),
            row("B", {"rte": ["b"], "stsb": ["b_sts"]}, 70.0, scores={"rte": 60.0, "stsb": 80.0}),
        ],
        files,
        tasks=("rte", "stsb"),
    )
    by = {r["system"]: r for r in board["rows"]}
    assert set(by["B"]["significance"]["task_scores"]) == {"rte"} and by["B"]["significance"]["average"] is None
    assert by["B"]["significance"]["task_scores"]["rte"]["baseline"] == "A"
    a = by["A"]["significance"]
    assert set(a["task_scores"]) == {"stsb"} and a["task_scores"]["stsb"]["baseline"] == a["average"]["baseline"] == "B"
    assert board["statistics"]["baseline"] == ["B", "A"] and board["statistics"]["tests"] == 3
    md = format_markdown(board)
    assert "| B | A | " in md and "| A | B | baseline | " in md  # A is B's baseline on rte


def test_test_columns_get_intervals_and_tests_against_the_baseline_chosen_on_validation():
    """On validation `a` is the best single row, so it is every row's baseline; on test `b` is far better. The test
    family compares `b` with `a` (a baseline chosen on test would be `b` itself, and `b` would have no test)."""
    test_labels = RNG.integers(0, 2, 300)

    def with_test(r, test_score, name):
        r["test"] = {
            "scores": {"rte": {"accuracy": test_score}},
            "task_scores": {"rte": test_score},
            "std": {"scores": {}, "task_scores": {}},
            "average": test_score,
            "predictions": {"rte": [name]},
        }
        return r

    files = {
        "a": {"validation": classification(LABELS, GOOD)},
        "b": {"validation": classification(LABELS, WORSE)},
        "a-test": {"test": classification(test_labels, RNG.random(300) < 0.55)},
        "b-test": {"test": classification(test_labels, np.ones(300, dtype=bool))},
    }
    rows = [
        with_test(row("a", {"rte": ["a"]}, 80.0), 55.0, "a-test"),
        with_test(row("b", {"rte": ["b"]}, 60.0), 100.0, "b-test"),
    ]
    board = board_of(rows, files)
    by = {r["system"]: r for r in board["rows"]}
    assert by["a"]["test"].get("significance") is None
    on_test = by["b"]["test"]["significance"]["task_scores"]["rte"]
    assert on_test["baseline"] == "a" and on_test["delta"] > 30 and on_test["significant"]
    assert by["b"]["significance"]["task_scores"]["rte"]["delta"] < 0  # on validation b is below a
    assert board["statistics"]["tests"] == 2 and board["statistics"]["test_tests"] == 2  # rte and average each
    low, high = by["b"]["test"]["ci"]["task_scores"]["rte"]
    assert low == high == 100.0 and by["a"]["test"]["ci"]["examples"]["rte"] == 300
    md = format_markdown({**board, "test_tasks": ["rte"], "test_note": "test: the chosen checkpoints."})
    b_line = next(line for line in md.splitlines() if line.startswith("| b |"))
    assert b_line.count("↑") == 2 and "↓" in b_line  # test rte and test average above a; validation below
    assert "Test columns: ↑/↓ the same test on the test split" in md and "these 2 tests" in md
    on_test = md.split("## Differences from the baseline, a, on test")[1]
    # b minus a: about 100 - 55; no resample at or below 0: p = 2 / 1001, adjusted over the 2 test tests (it printed
    # as p<0.002 when p was 0).
    assert "| b | a | +4" in on_test and "p=0.002 (adj. p=0.004)↑" in on_test
    assert "## 95% confidence intervals of the task scores, on test" in md and "| b | 100.0 [100.0, 100.0] |" in md
    # Every format renders the same tables (one table model): LaTeX and HTML have the test side too, their arrows
    # in the format's own markup.
    from benchmark.results.tables import format_html, format_latex

    shown = {**board, "test_tasks": ["rte"], "test_note": "test: the chosen checkpoints."}
    latex, page = format_latex(shown), format_html(shown)
    assert "\\label{tab:synthetic-diff-test}" in latex and "\\label{tab:synthetic-ci-test}" in latex
    assert "↑" not in latex and "Differences from the baseline, a, on test</caption>" in page
    in_cells = sum(line.count("↑") for line in md.splitlines() if line.startswith("|"))
    assert in_cells == 4 and page.count('<span class="up">↑</span>') == in_cells


# ---- resolvable p-values, seed-level intervals, equivalence tests (issue 39, items 3 and 7) ----


def test_p_is_never_zero_and_is_k_plus_one_over_b_plus_one():
    from benchmark.results.bootstrap import p_value, tost_p

    # 3 of 1000 resampled differences at or below zero: two-sided p = 2 (3 + 1) / 1001.
    deltas = np.array([-0.5, 0.0, -2.0] + [1.0] * 997)
    assert p_value(deltas) == 2 * 4 / 1001
    assert p_value(np.ones(1000)) == 2 / 1001 > 0  # none on the far side: the smallest p, not 0
    assert p_value(np.zeros(1000)) == 1.0  # identical systems
    # TOST at margin 1: 1 difference at or below -1, 998 at or above +1 (those at 1.0): the larger side.
    assert tost_p(deltas, 1.0) == (997 + 1) / 1001
    assert tost_p(np.zeros(500), 1.0) == 1 / 501  # all within the margin: the smallest one-sided p


def test_the_default_resamples_resolve_an_adjusted_p_below_one_percent():
    from benchmark.results.bootstrap import MAX_RESAMPLES, auto_resamples, smallest_adjusted_p

    for m in (1, 3, 5, 6, 12, 37, 99, 100):
        b = auto_resamples(m, "holm")
        assert 1000 <= b <= MAX_RESAMPLES and b % 1000 == 0
        assert m * 2 / (b + 1) < 0.01 and smallest_adjusted_p(b, m, "holm") == pytest.approx(m * 2 / (b + 1))
    assert auto_resamples(150, "holm") == MAX_RESAMPLES and smallest_adjusted_p(MAX_RESAMPLES, 150, "holm") > 0.01
    assert auto_resamples(150, "none") == 1000  # uncorrected: the smallest p itself is 2 / 1001
    # A table of 6 tests (3 rows x rte and average) sizes itself to 2000; a clearly better row reaches below 0.01.
    base = np.random.default_rng(8).random(300) < 0.7
    files = {"base": {"validation": classification(LABELS, base)}}
    files.update({n: {"validation": classification(LABELS, base | (RNG.random(300) < 0.5))} for n in "abc"})
    rows = [row(n, {"rte": [n]}, 80.0) for n in "abc"] + [row("base", {"rte": ["base"]}, 70.0)]
    board = board_of(rows, files, baseline="base")
    assert board["statistics"]["tests"] == 6 and board["statistics"]["resamples"] == 2000
    adjusted = [r["significance"]["task_scores"]["rte"]["p_adjusted"] for r in board["rows"] if r["significance"]]
    assert min(adjusted) == pytest.approx(6 * 2 / 2001) and min(adjusted) < 0.01
    assert board["statistics"]["smallest_adjusted_p"] == pytest.approx(6 * 2 / 2001)
    assert "the smallest adjusted p this table can show" not in format_markdown(board)  # resolved: nothing to say


def test_a_few_seeds_with_a_large_spread_get_the_wider_t_interval():
    from scipy import stats

    from benchmark.results.bootstrap import t_interval

    spread = [GOOD, WORSE, RNG.random(300) < 0.3]  # three seeds: about 80, 60 and 42% right
    files = {f"s{i}": {"validation": classification(LABELS, c)} for i, c in enumerate(spread)}
    files["same"] = {"validation": classification(LABELS, GOOD)}
    rows = [row("spread", {"rte": ["s0", "s1", "s2"]}, 60.0), row("steady", {"rte": ["same"] * 3}, 80.0)]
    board = board_of(rows, files, baseline="steady")
    by = {r["system"]: r for r in board["rows"]}
    scores = np.array([100 * (np.where(c, LABELS, 1 - LABELS) == LABELS).mean() for c in spread])
    half = stats.t.ppf(0.975, 2) * scores.std(ddof=1) / np.sqrt(3)
    assert t_interval(scores) == pytest.approx([scores.mean() - half, scores.mean() + half])
    ci = by["spread"]["ci"]
    assert ci["method"]["task_scores"]["rte"] == "t" and ci["method"]["average"] == "t"
    sample = score_task(SPECS["rte"], [files[f"s{i}"] for i in range(3)], {"validation": np.arange(300)}, 1000,
                        level="seeds+examples", system="spread")  # fmt: skip
    bootstrap = interval(sample.score_replicates)
    assert ci["task_scores"]["rte"] == pytest.approx(
        [min(bootstrap[0], scores.mean() - half), max(bootstrap[1], scores.mean() + half)]
    )
    assert ci["task_scores"]["rte"][1] - ci["task_scores"]["rte"][0] > 2 * half - 1e-9 > bootstrap[1] - bootstrap[0]
    # Three identical seeds: no spread, the bootstrap's interval.
    assert by["steady"]["ci"]["method"]["task_scores"]["rte"] == "bootstrap"
    # The difference: Welch over the two rows' seeds, wider than the bootstrap's; p the larger of the two.
    test = by["spread"]["significance"]["task_scores"]["rte"]
    assert test["method"] == "welch-t" and test["seeds"] == 3
    welch_half = stats.t.ppf(0.975, 2) * scores.std(ddof=1) / np.sqrt(3)  # the steady row has no spread: df = 2
    assert test["ci"][1] - test["ci"][0] >= 2 * welch_half - 1e-9
    welch_p = 2 * stats.t.sf(abs(test["delta"]) / (scores.std(ddof=1) / np.sqrt(3)), 2)
    assert test["p"] == pytest.approx(max(welch_p, test["p"])) and test["p"] >= welch_p - 1e-12
    assert "(t)" in format_markdown(board)


def test_tost_says_equivalent_for_identical_rows_and_inconclusive_for_noisy_different_ones():
    files = {"a": {"validation": classification(LABELS, GOOD)}, "twin": {"validation": classification(LABELS, GOOD)}}
    # Three seeds around the baseline: one 20 examples better, one 20 worse, one even: d = 0, a wide seed spread.
    noisy = [_slightly_better(GOOD, 20, 0), _slightly_better(GOOD, 0, 20), _slightly_better(GOOD, 3, 3)]
    files.update({f"n{i}": {"validation": classification(LABELS, c)} for i, c in enumerate(noisy)})
    rows = [
        row("a", {"rte": ["a", "a"]}, 80.0),
        row("twin", {"rte": ["twin"]}, 80.0),
        row("noisy", {"rte": ["n0", "n1", "n2"]}, 65.0),
    ]
    board = board_of(rows, files, baseline="a", margin=2.0)
    by = {r["system"]: r for r in board["rows"]}
    twin = by["twin"]["significance"]["task_scores"]["rte"]
    # Identical predictions: every resampled difference is 0, inside ±2 on both sides; Holm over the 4 TOSTs.
    assert twin["tost_p"] == 1 / 1001 and twin["tost_p_adjusted"] == pytest.approx(4 / 1001)
    assert twin["equivalent"] and twin["verdict"] == "equivalent" and not twin["significant"]
    assert board["statistics"]["equivalence_margin"] == 2.0
    # The noisy row is not significantly different (its seeds disagree: Welch's interval) nor shown equivalent.
    noisy_test = by["noisy"]["significance"]["task_scores"]["rte"]
    assert noisy_test["delta"] == 0.0 and noisy_test["method"] == "welch-t"
    assert not noisy_test["significant"] and not noisy_test["equivalent"] and noisy_test["verdict"] == "inconclusive"
    seed_scores = np.array([100 * c.mean() for c in noisy])
    pooled = np.sqrt((seed_scores.var(ddof=1) + 0.0) / 2)  # the baseline's two seeds agree
    z = 1.6448536269514722 + 1.2815515655446004
    assert noisy_test["seed_std"] == pytest.approx(pooled)
    assert noisy_test["seeds_needed"] == int(np.ceil(2 * z**2 * pooled**2 / 2.0**2)) > 3
    md = format_markdown(board)
    assert "| twin | a | equivalent within ±2 | equivalent within ±2 |" in md
    expected = f"inconclusive (would need about {noisy_test['seeds_needed']} seeds per row)"
    assert f"| noisy | a | {expected} |" in md and "## Verdicts" in md
    import json

    from benchmark.results.tables import format_json

    saved = json.loads(format_json(board))
    assert {r["system"]: r for r in saved["rows"]}["twin"]["significance"]["average"]["verdict"] == "equivalent"
    # Without a margin the same comparison shows no difference, never equivalence.
    plain = board_of(rows, files, baseline="a")
    test = {r["system"]: r for r in plain["rows"]}["twin"]["significance"]["task_scores"]["rte"]
    assert test["verdict"] == "no difference shown" and "tost_p" not in test
    assert "equivalent within" not in format_markdown(plain) and "no difference shown" in format_markdown(plain)


def test_seeds_needed_follows_the_formula_and_says_when_the_margin_cannot_be_reached():
    from benchmark.results.statistics import seeds_needed

    z = 1.6448536269514722 + 1.2815515655446004  # z_0.95 + z_0.9
    assert seeds_needed({"seed_std": 3.0, "delta": 0.5}, 2.0) == int(np.ceil(2 * z**2 * 9 / 1.5**2))
    assert seeds_needed({"seed_std": 3.0, "delta": -2.5}, 2.0) is None  # |d| >= M: cannot be shown
    assert seeds_needed({"seed_std": None, "delta": 0.0}, 2.0) is None  # one seed: no spread
    assert seeds_needed({"seed_std": 0.0, "delta": 0.0}, 2.0) == 2
    from benchmark.results.tables import verdict_text

    base = {"verdict": "inconclusive", "seeds": 3, "delta": 0.5}
    assert verdict_text({**base, "seeds_needed": 40}, 2.0) == "inconclusive (would need about 40 seeds per row)"
    assert "cannot be shown at this margin" in verdict_text({**base, "delta": -2.5, "seeds_needed": None}, 2.0)
