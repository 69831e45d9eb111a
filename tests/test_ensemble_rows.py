"""Ensemble rows: their keys, and how the leaderboard shows them beside the trials' rows."""

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from benchmark.results.leaderboard import build_leaderboard
from benchmark.results.tables import format_csv, format_markdown
from ensembles.candidates import Candidate
from ensembles.protocol import describe
from ensembles.rows import TaskOutcome, make_row
from tasks.glue import GLUE_TASKS


def candidate(trial_id, task="rte"):
    return Candidate(
        trial_id,
        "single",
        "m",
        Path("/run/trials") / trial_id,
        f"trials/{trial_id}/checkpoint",
        GLUE_TASKS[task],
        {},
        {},
        {},
        None,
        1,
    )


def record(task, seed, metrics):
    return {
        "trial_id": f"{task}-{seed}",
        "status": "finished",
        "kind": "single",
        "task": task,
        "model": "m",
        "metric_keys": list(metrics),
        "grid_point": {"learning_rate": 1e-4},
        "seed": seed,
        "best_metrics": metrics,
        "best_score": 100 * float(np.mean(list(metrics.values()))),
        "wall_seconds": 60.0,
        "train_samples": 100,
    }


RECORDS = [
    record("rte", 1, {"accuracy": 0.60}),
    record("rte", 2, {"accuracy": 0.62}),
    record("mrpc", 1, {"f1": 0.80, "accuracy": 0.70}),
    record("mrpc", 2, {"f1": 0.82, "accuracy": 0.72}),
]


def greedy_row():
    outcomes = {
        "rte": TaskOutcome(
            [candidate("rte-1"), candidate("rte-2")],
            [2 / 3, 1 / 3],
            2,
            {"accuracy": 0.7},
            70.0,
            "ensembles/predictions/greedy-all/rte.safetensors",
        ),
        "mrpc": TaskOutcome(
            [candidate("mrpc-2", "mrpc")],
            [1.0],
            1,
            {"f1": 0.9, "accuracy": 0.8},
            85.0,
            "ensembles/predictions/greedy-all/mrpc.safetensors",
        ),
    }
    return make_row(
        "m greedy (all)",
        "ensemble",
        outcomes,
        ["rte", "mrpc"],
        {"rte": {"method": "greedy", "pool": 2}, "mrpc": {"method": "greedy", "pool": 2}},
        describe(3),
    )


def test_an_ensemble_row_has_the_leaderboard_keys_and_its_own():
    row = greedy_row()
    assert row["kind"] == "ensemble" and row["model"] == "m" and row["seeds"] == 1 and row["trials"] == 3
    assert row["scores"] == {
        "rte": {"accuracy": pytest.approx(70.0)},
        "mrpc": {"f1": pytest.approx(90.0), "accuracy": pytest.approx(80.0)},
    }
    assert row["task_scores"] == {"rte": 70.0, "mrpc": 85.0} and row["average"] == pytest.approx(77.5)
    assert row["members"] == {"rte": ["rte-1", "rte-2"], "mrpc": ["mrpc-2"]}
    assert row["member_weights"]["rte"] == pytest.approx([2 / 3, 1 / 3])
    assert row["compute"]["inference_passes"] == 1.5  # 2 on rte, 1 on mrpc
    assert row["protocol"]["name"] == "split-half" and row["protocol"]["split_seed"] == 3
    assert row["predictions"]["rte"] == ["ensembles/predictions/greedy-all/rte.safetensors"]
    assert row["std"]["average"] is None and "soups" not in row


def test_a_row_missing_a_task_of_the_run_has_no_average():
    row = greedy_row()
    partial = make_row(
        "x",
        "ensemble",
        {"rte": TaskOutcome([candidate("rte-1")], [1.0], 1, {"accuracy": 0.5}, 50.0, "p")},
        ["rte", "mrpc"],
        {},
        row["protocol"],
    )
    assert partial["average"] is None


def test_the_leaderboard_sorts_ensemble_rows_in_and_says_how_they_were_scored():
    board = build_leaderboard("demo", RECORDS, ["rte", "mrpc"], extra_rows=[greedy_row()])
    assert [r["system"] for r in board["rows"]] == ["m greedy (all)", "m (single)"]
    md = format_markdown(board)
    assert "| system | rte (acc) | mrpc (F1/acc) | average | seeds | passes |" in md
    assert "| m greedy (all) | **70.0** | **90.0/80.0** | **77.5** | 1 | 1.5 |" in md
    assert "| m (single) | 61.0 ± 1.4 | 81.0/71.0 ± 1.4 | 68.5 ± 1.4 | 2 | 1 |" in md
    assert "scored on the report half of each dev set (split-half protocol, seed 3)" in md
    assert "Members, m greedy (all): rte: rte-1 (0.67), rte-2 (0.33); mrpc: mrpc-2" in md
    assert "Chosen grid points, m (single): rte: learning_rate=0.0001" in md
    rows = list(csv.DictReader(io.StringIO(format_csv(board))))
    assert [r["inference_passes"] for r in rows] == ["1.5", "1"]


def test_without_ensembles_the_leaderboard_is_unchanged():
    md = format_markdown(build_leaderboard("demo", RECORDS, ["rte", "mrpc"]))
    assert "| system | rte (acc) | mrpc (F1/acc) | average | seeds |\n" in md and "passes" not in md
    assert "inference_passes" not in format_csv(build_leaderboard("demo", RECORDS))
