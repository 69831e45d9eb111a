"""Calibration: ECE against a hand-computed case, temperature scaling, and which data fits T and which reports."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from benchmark.records import final_predictions
from benchmark.results.tables import format_csv, format_markdown
from benchmark.train.checkpoints import PREDICTIONS_FILE
from ensembles.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    measure,
    negative_log_likelihood,
    trial_calibration,
)
from tasks.glue import GLUE_TASKS
from tasks.splits import split_dev

RTE = GLUE_TASKS["rte"]

# Five examples: (probability of class 0, label). Confidences 0.9, 0.93, 0.75, 0.7, 0.55 fall in the 15 bins
# 13, 13, 11, 10 and 8 (bin i is (i/15, (i+1)/15]); correct: yes, no, yes, no, yes.
HAND = [(0.90, 0), (0.07, 0), (0.25, 1), (0.70, 1), (0.45, 1)]


def hand_case():
    probs = np.array([[p, 1 - p] for p, _ in HAND])
    return probs, np.array([y for _, y in HAND])


def test_ece_equals_the_hand_computed_value():
    probs, labels = hand_case()
    # bin 13: two examples, accuracy 1/2, confidence (0.9 + 0.93)/2 -> 2/5 x 0.415
    # bin 11: 1/5 x |1 - 0.75|; bin 10: 1/5 x |0 - 0.7|; bin 8: 1/5 x |1 - 0.55|
    expected = 2 / 5 * 0.415 + 1 / 5 * 0.25 + 1 / 5 * 0.7 + 1 / 5 * 0.45
    assert expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.446)
    p_true = np.array([0.90, 0.07, 0.75, 0.30, 0.55])
    assert negative_log_likelihood(probs, labels) == pytest.approx(-np.log(p_true).mean())
    assert brier_score(probs, labels) == pytest.approx((2 * (1 - p_true) ** 2).mean())  # both classes count
    # From logits, at T = 1, the same numbers; the bins say where each example went.
    result = measure(np.log(probs), labels, 1.0)
    assert result.ece == pytest.approx(expected) and result.ece_scaled == pytest.approx(expected)
    assert [i for i, n in enumerate(result.reliability.counts) if n] == [8, 10, 11, 13]
    assert result.reliability.counts[13] == 2 and result.reliability.accuracy[13] == 0.5


def test_a_perfectly_confident_right_answer_has_no_calibration_error():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == 0.0
    assert expected_calibration_error(probs, np.array([1, 0])) == 1.0


def test_temperature_scaling_recovers_the_temperature_of_overconfident_logits():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, size=(20000, 3))
    labels = np.array([rng.choice(3, p=np.exp(r) / np.exp(r).sum()) for r in z])  # calibrated at z
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z / 2, labels) == pytest.approx(0.5, rel=0.05)
    hot = measure(3 * z, labels, fit_temperature(3 * z, labels))
    assert hot.ece_scaled < 0.02 < hot.ece


def write_checkpoint(root: Path, trial_id: str, logits: np.ndarray, labels: np.ndarray) -> dict:
    folder = root / "trials" / trial_id / "checkpoint"
    folder.mkdir(parents=True)
    save_file(
        {"validation/logits": logits.astype(np.float32), "validation/labels": labels}, str(folder / PREDICTIONS_FILE)
    )
    task = GLUE_TASKS["stsb"] if logits.shape[-1] == 1 else RTE
    (folder / "trial.json").write_text(json.dumps({"task": task.to_dict(), "training": {}}))
    return {"trial_id": trial_id, "checkpoint": f"trials/{trial_id}/checkpoint"}


def random_predictions(seed: int, n: int = 200, label_seed: int | None = None):
    rng = np.random.default_rng(seed)
    labels = np.random.default_rng(seed if label_seed is None else label_seed).integers(0, 2, n)
    logits = rng.normal(0, 1, (n, 2)) + 1.5 * np.eye(2)[labels]
    return logits, labels


def test_without_a_test_split_t_is_fitted_on_the_selection_half_and_reported_on_the_other(tmp_path):
    logits, labels = random_predictions(1)
    halves = split_dev(RTE, {"validation": len(labels)}, seed=7)
    sel, rep = halves.selection["validation"], halves.report["validation"]
    base = trial_calibration(write_checkpoint(tmp_path / "a", "t", logits, labels), tmp_path / "a", RTE, 7, False)
    assert base.temperature == pytest.approx(fit_temperature(logits[sel], labels[sel]))
    assert base.ece == pytest.approx(measure(logits[rep], labels[rep], 1.0).ece)
    assert base.examples == len(rep)

    changed_report = logits.copy()
    changed_report[rep] *= 4  # the reported half: its numbers move, T does not
    record = write_checkpoint(tmp_path / "b", "t", changed_report, labels)
    other = trial_calibration(record, tmp_path / "b", RTE, 7, False)
    assert other.temperature == base.temperature and other.ece != pytest.approx(base.ece)

    changed_selection = logits.copy()
    changed_selection[sel] *= 4  # the selection half: T moves, the reported ECE does not
    third = trial_calibration(
        write_checkpoint(tmp_path / "c", "t", changed_selection, labels), tmp_path / "c", RTE, 7, False
    )
    assert third.temperature == pytest.approx(4 * base.temperature, rel=1e-3) and third.ece == base.ece


def test_with_a_test_split_t_is_fitted_on_validation_and_test_is_only_reported(tmp_path):
    logits, labels = random_predictions(2)
    test_logits, test_labels = random_predictions(3, n=120)
    record = write_checkpoint(tmp_path, "t", logits, labels)
    path = final_predictions.test_prediction_path(tmp_path, "t")
    path.parent.mkdir(parents=True)
    save_file({"test/logits": test_logits.astype(np.float32), "test/labels": test_labels}, str(path))
    single = trial_calibration(record, tmp_path, RTE, 0, False)
    assert single.temperature == pytest.approx(fit_temperature(logits, labels))  # all of validation
    assert single.ece == pytest.approx(measure(test_logits, test_labels, 1.0).ece) and single.examples == 120
    # A merged row chose λ on the selection half: its T is fitted there too.
    sel = split_dev(RTE, {"validation": len(labels)}, 0).selection["validation"]
    merged = trial_calibration(record, tmp_path, RTE, 0, True)
    assert merged.temperature == pytest.approx(fit_temperature(logits[sel], labels[sel]))

    save_file({"test/logits": (5 * test_logits).astype(np.float32), "test/labels": test_labels}, str(path))
    again = trial_calibration(record, tmp_path, RTE, 0, False)
    assert again.temperature == single.temperature and again.ece != pytest.approx(single.ece)


def run_with_two_seeds(root: Path) -> Path:
    """A run directory of two finished single-task RTE trials (prediction files and records, no weights needed for
    the leaderboard), and one STS-B trial (regression: no calibration)."""
    import yaml

    from benchmark.records.store import RunStore

    store = RunStore(root)
    store.write_suite({"name": "cal", "tasks": ["rte", "stsb"], "ensemble": {"split_seed": 3}})
    for seed in (1, 2):
        logits, labels = random_predictions(seed, label_seed=0)  # one dev set, two models
        record = write_checkpoint(root, f"rte-{seed}", logits, labels)
        store.save_record(
            {
                **record,
                "status": "finished",
                "kind": "single",
                "task": "rte",
                "model": "m",
                "task_spec": RTE.to_dict(),
                "metric_keys": ["accuracy"],
                "grid_point": {},
                "seed": seed,
                "best_score": 60.0,
                "best_metrics": {"accuracy": 0.6},
                "wall_seconds": 1.0,
            }
        )
    rng = np.random.default_rng(0)
    stsb = write_checkpoint(root, "stsb-1", rng.normal(size=(20, 1)), rng.uniform(0, 5, 20).astype(np.float32))
    store.save_record(
        {
            **stsb,
            "status": "finished",
            "kind": "single",
            "task": "stsb",
            "model": "m",
            "task_spec": GLUE_TASKS["stsb"].to_dict(),
            "metric_keys": ["pearson", "spearmanr"],
            "grid_point": {},
            "seed": 1,
            "best_score": 10.0,
            "best_metrics": {"pearson": 0.1, "spearmanr": 0.1},
            "wall_seconds": 1.0,
        }
    )
    assert yaml.safe_load((root / "suite.yaml").read_text())["ensemble"]["split_seed"] == 3
    return root


def test_leaderboard_rows_carry_the_mean_over_seeds_and_tables_show_it(tmp_path):
    from benchmark.results.board import leaderboard_from_runs

    root = run_with_two_seeds(tmp_path / "run")
    board, _ = leaderboard_from_runs([root], resamples=50)
    row = board["rows"][0]
    assert set(row["calibration"]) == {"rte"}  # STS-B is regression
    seeds = [
        trial_calibration({"trial_id": f"rte-{s}", "checkpoint": f"trials/rte-{s}/checkpoint"}, root, RTE, 3, False)
        for s in (1, 2)
    ]
    cal = row["calibration"]["rte"]
    for key in ("ece", "nll", "brier", "temperature", "ece_scaled"):
        assert cal[key] == pytest.approx((getattr(seeds[0], key) + getattr(seeds[1], key)) / 2)
    assert sum(cal["reliability"]["counts"]) == cal["examples"] == seeds[0].examples + seeds[1].examples
    json.dumps(board)  # leaderboard.json holds it as plain numbers

    md = format_markdown(board, calibration=True)
    assert "rte (ECE/ECE-T/NLL/Brier)" in md and f"{100 * cal['ece']:.1f}/{100 * cal['ece_scaled']:.1f}/" in md
    assert "ECE" not in format_markdown(board)
    header, line = format_csv(board, calibration=True).splitlines()[:2]
    values = dict(zip(header.split(","), line.split(",")))
    assert float(values["rte/temperature"]) == pytest.approx(cal["temperature"], abs=1e-4)
    assert "stsb/ece" not in values


def test_the_report_draws_a_reliability_diagram_for_the_best_rows(tmp_path):
    from benchmark.results.board import leaderboard_from_runs
    from benchmark.results.plots import reliability_diagram

    board, records = leaderboard_from_runs([run_with_two_seeds(tmp_path / "run")], resamples=50)
    figure = reliability_diagram(board, records)
    assert figure.anchor == "reliability" and figure.png.startswith(b"\x89PNG")
    board["rows"] = [{**r, "calibration": {}} for r in board["rows"]]
    assert reliability_diagram(board, records) is None


def test_an_ensemble_fits_t_on_the_selection_half_and_reports_on_the_report_half(tmp_path, tiny_model):
    import yaml

    from benchmark.config.suite import load_suite
    from benchmark.records.store import RunStore
    from benchmark.results.board import leaderboard_from_runs
    from ensembles.build import build_ensembles
    from ensembles.combine import mean_prob

    root = run_with_two_seeds(tmp_path / "run")
    (tmp_path / "suite.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "cal",
                "model": str(tiny_model),
                "tasks": ["rte", "stsb"],
                "search": {"seeds": [1, 2]},
                "ensemble": {"methods": ["mean_prob"], "split_seed": 3},
                "output": str(root),
            }
        )
    )
    suite = load_suite(tmp_path / "suite.yaml")
    build_ensembles(RunStore(root), suite, suite.ensemble, log=lambda *_: None)
    board, _ = leaderboard_from_runs([root], resamples=50)
    row = next(r for r in board["rows"] if r["kind"] == "ensemble")
    dev = [random_predictions(seed, label_seed=0) for seed in (1, 2)]
    labels = dev[0][1]
    logits = mean_prob(RTE, [{"validation": d[0].astype(np.float32)} for d in dev])["validation"]
    halves = split_dev(RTE, {"validation": len(labels)}, 3)
    sel, rep = halves.selection["validation"], halves.report["validation"]
    assert row["temperature"]["rte"] == pytest.approx(fit_temperature(logits[sel], labels[sel]), rel=1e-6)
    expected = measure(logits[rep], labels[rep], row["temperature"]["rte"])
    assert row["calibration"]["rte"]["ece"] == pytest.approx(expected.ece, abs=1e-6)
    assert row["calibration"]["rte"]["ece_scaled"] == pytest.approx(expected.ece_scaled, abs=1e-6)
    assert set(row["calibration"]) == {"rte"}


def test_bench_table_calibration_adds_the_columns(tmp_path, capsys):
    from benchmark.cli import main

    root = run_with_two_seeds(tmp_path / "run")
    assert main(["table", str(root), "--calibration", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "rte (ECE/ECE-T/NLL/Brier)" in out and "Calibration (classification tasks)" in out
    assert main(["table", str(root), "--format", "csv", "--calibration", "--bootstrap", "50"]) == 0
    assert "rte/ece_scaled" in capsys.readouterr().out
