"""Leaderboard rows for ensembles and for the best single checkpoint they are compared with, and the state file
that keeps them in the run directory, so `bench table` merges them from the directory alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ensembles.candidates import Candidate

ENSEMBLES_DIR = "ensembles"
STATE_FILE = "ensembles.json"


@dataclass
class TaskOutcome:
    """One system on one task: who is in it, what it costs, and how it scores on the report half."""

    members: list[Candidate]
    weights: list[float]  # one per member, summing to 1
    passes: int  # forward passes per example: members, or 1 for a soup
    metrics: dict[str, float]  # 0-1, on the report half
    score: float  # 0-100, on the report half
    predictions: str  # report-half prediction file, relative to the run directory
    soup: str | None = None  # the soup's checkpoint folder, relative to the run directory
    temperature: float | None = None  # temperature scaling fitted on the selection half (None: regression)


def make_row(
    system: str,
    kind: str,
    outcomes: dict[str, TaskOutcome],
    all_tasks: list[str],
    config: dict,
    protocol: dict,
    trained: dict | None = None,
) -> dict:
    """A row with the leaderboard's keys, plus members, weights, inference passes, protocol and prediction files.

    One replicate: no std over seeds. The average needs every task of the run, as for any row. `trained`: the
    samples and optimizer steps of every candidate the row chose among (what producing it trained)."""
    models = sorted({c.model for o in outcomes.values() for c in o.members})
    task_scores = {t: o.score for t, o in outcomes.items()}
    complete = all(t in task_scores for t in all_tasks)
    row = {
        "system": system,
        "kind": kind,
        "model": "+".join(models),
        "scores": {t: {k: 100.0 * v for k, v in o.metrics.items()} for t, o in outcomes.items()},
        "task_scores": task_scores,
        "average": float(np.mean(list(task_scores.values()))) if complete and task_scores else None,
        "std": {"scores": {}, "task_scores": {}, "average": None},
        "seeds": 1,
        "config": config,
        "trials": len({c.relpath for o in outcomes.values() for c in o.members}),
        "members": {t: [c.trial_id for c in o.members] for t, o in outcomes.items()},
        "member_weights": {t: o.weights for t, o in outcomes.items()},
        # What using the row costs, and what its candidates trained; their hours are in the trials' rows.
        "compute": {
            "device": None,
            "device_hours": None,
            **(trained or {}),
            "train_samples_per_s": None,
            "parameters": None,
            "inference_passes": float(np.mean([o.passes for o in outcomes.values()])),
        },
        "protocol": protocol,
        "predictions": {t: [o.predictions] for t, o in outcomes.items()},
    }
    row["temperature"] = {t: o.temperature for t, o in outcomes.items() if o.temperature is not None}
    soups = {t: o.soup for t, o in outcomes.items() if o.soup}
    if soups:
        row["soups"] = soups
    return row


def read_state(run_dir: Path) -> dict | None:
    path = Path(run_dir) / ENSEMBLES_DIR / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_ensemble_rows(run_dir: Path) -> list[dict]:
    """The ensemble rows (and their best-single row) a run directory holds; none before `bench ensemble` ran."""
    state = read_state(run_dir)
    return state["rows"] if state else []
