"""The candidates of each task: every kept checkpoint in a run directory, with the dev logits saved beside it.

A checkpoint is any folder under `trials/<id>/` that holds `dev_predictions.safetensors` and `trial.json`; the
task comes from trial.json. So single-task checkpoints (`trials/<id>/checkpoint/`) and the per-task
checkpoints a multi-task trial exports are found the same way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.common.errors import InputError
from benchmark.common.paths import check_name
from benchmark.records.store import RunStore
from benchmark.train.checkpoints import (
    PREDICTIONS_FILE,
    TRIAL_FILE,
    checkpoint_problem,
    load_predictions,
    load_trial_meta,
)
from benchmark.train.hyperparams import init_seed_of
from tasks.spec import TaskSpec


@dataclass(frozen=True)
class Candidate:
    trial_id: str
    kind: str  # the trial's kind: "single" or "multitask"
    model: str  # the model's name in tables
    folder: Path  # the checkpoint folder
    relpath: str  # the folder, relative to the run directory
    task: TaskSpec
    logits: dict[str, np.ndarray]  # dev split -> logits, every dev example in file order
    labels: dict[str, np.ndarray]
    meta: dict  # trial.json: base model path, training, seed, epoch
    fingerprint: str | None  # the trial's fingerprint: changes when its settings change
    init_seed: int | None  # the seed its head started from (hyperparams.init_seed_of); None: trial.json has no seed


def find_candidates(store: RunStore) -> dict[str, list[Candidate]]:
    """Every finished trial's checkpoints, by task, in trial-id order."""
    by_task: dict[str, list[Candidate]] = {}
    for trial_id, record in sorted(store.finished().items()):
        trial_dir = store.trial_dir(trial_id)
        for predictions in sorted(trial_dir.rglob(PREDICTIONS_FILE)):
            folder = predictions.parent
            hidden = any(part.startswith(".") for part in folder.relative_to(trial_dir).parts)
            if hidden or not (folder / TRIAL_FILE).is_file():  # hidden: an atomic write's leftover
                continue
            problem = checkpoint_problem(folder)
            if problem:  # reported and left out: a damaged checkpoint is never combined silently
                print(f"warning: skipping checkpoint {folder.relative_to(store.root)}: {problem}", file=sys.stderr)
                continue
            meta = load_trial_meta(folder)
            task = TaskSpec.from_dict(meta["task"])
            check_name(task.name, str(folder.relative_to(store.root) / TRIAL_FILE), "task name")  # a file name
            logits, labels = load_predictions(folder)
            candidate = Candidate(
                trial_id,
                record.get("kind", "single"),
                record["model"],
                folder,
                str(folder.relative_to(store.root)),
                task,
                logits,
                labels,
                meta,
                record.get("fingerprint"),
                init_seed_of(meta.get("training", {}), meta.get("seed")),
            )
            same_task = by_task.setdefault(task.name, [])
            if any(c.trial_id == trial_id for c in same_task):
                raise InputError(candidate.relpath, f"trial {trial_id} holds a second checkpoint for task {task.name}")
            _check_same_dev_set(candidate, same_task)
            same_task.append(candidate)
    if not by_task:
        raise InputError(str(store.root), "no checkpoints to ensemble: no finished trial kept one")
    return by_task


def _check_same_dev_set(candidate: Candidate, others: list[Candidate]) -> None:
    """Combining logits row by row only makes sense when every checkpoint saw the same dev examples."""
    if not others:
        return
    first = others[0]
    same = set(candidate.labels) == set(first.labels) and all(
        np.array_equal(candidate.labels[s], first.labels[s]) for s in first.labels
    )
    if not same:
        raise InputError(
            candidate.relpath,
            f"its dev labels differ from those of {first.relpath}: "
            "the checkpoints were not evaluated on the same dev set",
        )
