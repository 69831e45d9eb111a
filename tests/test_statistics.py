"""Bootstrap intervals and paired tests on synthetic predictions whose properties are known."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from benchmark.common.errors import InputError
from benchmark.results.bootstrap import SplitPredictions, common_examples, interval, paired_difference, score_task
from benchmark.results.statistics import add_statistics
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


def row(system, files: dict, average=50.0, kind="single"):
    """A leaderboard row as build_leaderboard makes it, reduced to what the statistics read."""
    return {
        "system": system,
        "kind": kind,
        "model": system,
        "average": average,
        "predictions": files,
        "scores": {t: {k: 50.0 for k in SPECS[t].metric_keys()} for t in files},
        "task_scores": {t: 50.0 for t in files},
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
    assert board["statistics"]["baseline"] == "worse" and by["worse"]["significance"] is None
    good = by["good"]["significance"]["task_scores"]["rte"]
    expected = 100 * (
        accuracy_score(LABELS, np.where(GOOD, LABELS, 1 - LABELS))
        - accuracy_score(LABELS, np.where(WORSE, LABELS, 1 - LABELS))
    )
    assert good["delta"] == pytest.approx(expected) and good["delta"] > 10
    assert good["significant"] and good["p"] == pytest.approx(2 / 1001)  # no resample at or below zero
    assert good["ci"][0] > 0 and good["examples"] == 300
    assert by["good"]["significance"]["average"]["significant"]
    same = by["copy"]["significance"]["task_scores"]["rte"]
    assert same["delta"] == 0.0 and same["p"] == 1.0 and not same["significant"] and same["ci"] == [0.0, 0.0]


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
    both = score_task(SPECS["rte"], [{"validation": seed_a}, {"validation": seed_b}], examples, 200)
    one_a = score_task(SPECS["rte"], [{"validation": seed_a}], examples, 200)
    one_b = score_task(SPECS["rte"], [{"validation": seed_b}], examples, 200)
    assert both.score == pytest.approx((one_a.score + one_b.score) / 2)
    np.testing.assert_allclose(both.score_replicates, (one_a.score_replicates + one_b.score_replicates) / 2)
    twice = score_task(SPECS["rte"], [{"validation": seed_a}, {"validation": seed_a}], examples, 200)
    np.testing.assert_allclose(twice.score_replicates, one_a.score_replicates)


def test_rows_covering_part_of_dev_are_compared_on_the_common_examples():
    half = np.arange(0, 300, 2)
    part = classification(LABELS[half], GOOD[half], indices=half)
    files = {"ensemble": {"validation": part}, "single": {"validation": classification(LABELS, WORSE)}}
    board = board_of(
        [row("ensemble", {"rte": ["ensemble"]}, 80.0, kind="ensemble"), row("single", {"rte": ["single"]}, 60.0)], files
    )
    by = {r["system"]: r for r in board["rows"]}
    assert board["statistics"]["baseline"] == "single"  # the default: the best single-model row
    test = by["ensemble"]["significance"]["task_scores"]["rte"]
    assert test["examples"] == 150 and by["ensemble"]["ci"]["examples"]["rte"] == 150
    on_half = 100 * (GOOD[half].mean() - WORSE[half].mean())
    assert test["delta"] == pytest.approx(on_half)
    from benchmark.results.tables import format_markdown

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
    assert alone["statistics"]["baseline"] is None and alone["rows"][0]["significance"] is None


def test_baseline_by_name_or_unique_part_and_a_wrong_name_is_an_input_error():
    files = {"a": {"validation": classification(LABELS, GOOD)}, "b": {"validation": classification(LABELS, WORSE)}}
    rows = [row("bert-base (single)", {"rte": ["a"]}, 70.0), row("bert-large (single)", {"rte": ["b"]}, 60.0)]
    assert board_of(rows, files, baseline="large")["statistics"]["baseline"] == "bert-large (single)"
    with pytest.raises(InputError, match="matches several rows"):
        board_of(rows, files, baseline="bert")
    with pytest.raises(InputError, match="matches no row"):
        board_of(rows, files, baseline="roberta")


def test_common_examples_intersects_every_seed_and_row():
    a = {"validation": classification(LABELS[:10], GOOD[:10], indices=np.arange(10))}
    b = {"validation": classification(LABELS[5:15], GOOD[5:15], indices=np.arange(5, 15))}
    assert common_examples([a], [b])["validation"].tolist() == [5, 6, 7, 8, 9]
