"""The HTML report: self-contained, with the tables and the plots a run has something to show for."""

import base64
import re

import numpy as np

from benchmark.results.leaderboard import build_leaderboard
from benchmark.results.plots import FIGURES
from benchmark.results.report import render_report

RESOURCES = {"workers_per_trial": 1, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0}


def _record(task, lr, seed, scores):
    metric = {"rte": "accuracy", "stsb": "pearson"}[task]
    epochs = [{"epoch": i + 1, "score": s, metric: s / 100} for i, s in enumerate(scores)]
    best = int(np.argmax(scores))
    return {
        "trial_id": f"{task}_lr={lr:g}_seed={seed}",
        "status": "finished",
        "kind": "single",
        "task": task,
        "model": "tiny",
        "metric_keys": [metric],
        "grid_point": {"learning_rate": lr},
        "seed": seed,
        "epochs": epochs,
        "best_epoch": best + 1,
        "best_score": scores[best],
        "best_metrics": {metric: scores[best] / 100},
        "wall_seconds": 60.0 * (1 + lr * 1e4),
        "train_samples": 300,
        "train_samples_per_s": 20.0,
        "parameters": 1000,
        "resources": RESOURCES,
        "checkpoint": None,
    }


RECORDS = [
    _record("rte", lr, seed, [50 + seed + lr * 1e5 * k for k in range(3)]) for lr in (1e-4, 3e-4) for seed in (1, 2)
] + [_record("stsb", lr, seed, [20 * k + seed + lr * 1e4 for k in range(3)]) for lr in (1e-4, 3e-4) for seed in (1, 2)]


def _ensemble_row(board):
    single = board["rows"][0]
    return {
        **single,
        "system": "tiny (ensemble)",
        "kind": "ensemble",
        "task_scores": {t: v + 1.5 for t, v in single["task_scores"].items()},
        "average": single["average"] + 1.5,
        "members": {"rte": [r["trial_id"] for r in RECORDS if r["task"] == "rte"][:2]},
    }


def _images(page):
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_the_report_embeds_every_plot_and_the_tables():
    board = build_leaderboard("demo", RECORDS, ["rte", "stsb"])
    board["rows"].append(_ensemble_row(board))
    figures = [f for f in (make(board, RECORDS) for make in FIGURES) if f is not None]
    assert [f.anchor for f in figures] == ["epochs", "compute", "search", "ensembles"]
    page = render_report(board, RECORDS, {"/runs/demo": {"name": "demo"}}, figures, "2026-01-01 00:00")
    images = _images(page)
    assert len(images) == 4 and all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000 for png in images)
    for title in (
        "Dev score per epoch",
        "Score against compute",
        "Search space against score",
        "Ensembles: members and gains",
        "Leaderboard: demo",
        "rte_lr=0.0003_seed=2",
    ):
        assert title in page
    assert "Not shown" not in page
    # Self-contained: nothing is fetched from elsewhere.
    assert not re.search(r'(src|href)="(?!data:|#)', page)


def test_a_run_with_one_grid_point_and_no_ensemble_says_what_it_leaves_out():
    records = [r for r in RECORDS if r["grid_point"]["learning_rate"] == 1e-4]
    board = build_leaderboard("demo", records, ["rte", "stsb"])
    figures = [f for f in (make(board, records) for make in FIGURES) if f is not None]
    assert [f.anchor for f in figures] == ["epochs", "compute"]
    page = render_report(board, records, {"/runs/demo": {"name": "demo"}}, figures, "2026-01-01 00:00")
    assert len(_images(page)) == 2
    assert "Not shown: search space (the grid has one point); ensembles (none in this run)." in page


def test_trials_of_several_models_are_told_apart_by_colour():
    from benchmark.results.plots import TrialStyle, epoch_curves

    records = RECORDS + [{**r, "model": "other", "trial_id": "other_" + r["trial_id"]} for r in RECORDS]
    style = TrialStyle(records)
    first, other = records[0], records[len(RECORDS)]
    assert style.color(first) != style.color(other) and style.marker(first) == style.marker(other)
    figure = epoch_curves(build_leaderboard("demo", records, ["rte", "stsb"]), records)
    assert figure.caption.startswith("Every trial's dev score after each epoch, one panel per task. Colour: model;")
