"""Finding the candidates of each task in a run directory, from hand-made checkpoint folders."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from benchmark.common.errors import InputError
from benchmark.records.store import RunStore
from ensembles.candidates import find_candidates
from tasks.glue import GLUE_TASKS

LABELS = np.asarray([0, 1, 1, 0])


def add_checkpoint(store: RunStore, trial_id: str, task: str, subfolder: str = "checkpoint", labels=LABELS) -> None:
    folder = store.trial_dir(trial_id) / subfolder
    folder.mkdir(parents=True)
    save_file(
        {"validation/logits": np.zeros((len(labels), 2), np.float32), "validation/labels": labels},
        str(folder / "dev_predictions.safetensors"),
    )
    (folder / "trial.json").write_text(json.dumps({"task": GLUE_TASKS[task].to_dict(), "model_path": "/m"}))


def add_record(store: RunStore, trial_id: str, status: str = "finished", kind: str = "single") -> None:
    store.save_record({"trial_id": trial_id, "status": status, "kind": kind, "model": "m", "fingerprint": "f"})


def test_checkpoints_of_finished_trials_by_task_single_and_multitask(tmp_path):
    store = RunStore(tmp_path)
    for trial_id in ("rte_lr=1_seed=2", "rte_lr=1_seed=1"):
        add_record(store, trial_id)
        add_checkpoint(store, trial_id, "rte")
    # A multi-task trial exports one checkpoint per task; the task comes from each one's trial.json.
    add_record(store, "mt_seed=1", kind="multitask")
    add_checkpoint(store, "mt_seed=1", "rte", "checkpoint/rte")
    add_checkpoint(store, "mt_seed=1", "mrpc", "checkpoint/mrpc")
    add_record(store, "rte_failed", status="failed")
    add_checkpoint(store, "rte_failed", "rte")
    found = find_candidates(store)
    assert [c.trial_id for c in found["rte"]] == ["mt_seed=1", "rte_lr=1_seed=1", "rte_lr=1_seed=2"]
    assert [c.kind for c in found["rte"]] == ["multitask", "single", "single"]
    assert [c.relpath for c in found["mrpc"]] == ["trials/mt_seed=1/checkpoint/mrpc"]
    np.testing.assert_array_equal(found["rte"][0].labels["validation"], LABELS)


def test_leftovers_of_an_interrupted_atomic_write_are_not_candidates(tmp_path):
    store = RunStore(tmp_path)
    add_record(store, "a")
    add_checkpoint(store, "a", "rte")
    add_checkpoint(store, "a", "rte", ".checkpoint.x1y2.tmp")
    assert [c.relpath for c in find_candidates(store)["rte"]] == ["trials/a/checkpoint"]


def test_a_run_without_checkpoints_is_refused(tmp_path):
    store = RunStore(tmp_path)
    add_record(store, "a", status="failed")
    with pytest.raises(InputError, match="no checkpoints to ensemble: no finished trial kept one"):
        find_candidates(store)


def test_checkpoints_of_one_task_must_share_the_dev_set(tmp_path):
    store = RunStore(tmp_path)
    add_record(store, "a")
    add_checkpoint(store, "a", "rte")
    add_record(store, "b")
    add_checkpoint(store, "b", "rte", labels=np.asarray([0, 1, 1, 1]))
    with pytest.raises(InputError, match="its dev labels differ from those of trials/a/checkpoint") as err:
        find_candidates(store)
    assert err.value.where == "trials/b/checkpoint"
