"""Checkpoint content hashes: recorded when a checkpoint is installed, checked wherever one is used.

A damaged file (one flipped byte) is reported in one line and the checkpoint is skipped, never used silently.
"""

import json

import numpy as np
from safetensors.numpy import save_file

import benchmark.results.board
import benchmark.results.submission
from benchmark.records.store import RunStore
from benchmark.train.checkpoints import HASH_FILE, checkpoint_problem
from ensembles.candidates import find_candidates
from tasks.glue import GLUE_TASKS

LABELS = np.asarray([0, 1, 1, 0])


def fill(folder, task="rte", seed=0):
    """What a trial's best checkpoint holds, small: weights, dev predictions, trial.json."""
    rng = np.random.default_rng(seed)
    save_file({"classifier.weight": rng.standard_normal((2, 8)).astype(np.float32)}, str(folder / "model.safetensors"))
    save_file(
        {"validation/logits": rng.standard_normal((4, 2)).astype(np.float32), "validation/labels": LABELS},
        str(folder / "dev_predictions.safetensors"),
    )
    (folder / "trial.json").write_text(json.dumps({"task": GLUE_TASKS[task].to_dict(), "model_path": "/m"}))


def flip_byte(path, offset=-5):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def install(store, trial_id, seed=0, score=60.0):
    folder = store.install_checkpoint(trial_id, lambda f: fill(f, seed=seed))
    store.save_record(
        {
            "trial_id": trial_id,
            "status": "finished",
            "kind": "single",
            "model": "m",
            "fingerprint": "f",
            "task": "rte",
            "task_spec": GLUE_TASKS["rte"].to_dict(),
            "seed": seed,
            "grid_point": {"learning_rate": 1e-4},
            "best_score": score,
            "training": {"max_seq_length": 32, "eval_batch_size": 8},
            "checkpoint": str(folder.relative_to(store.root)),
        }
    )
    return folder


def test_install_records_hashes_and_a_flipped_byte_is_detected(tmp_path):
    store = RunStore(tmp_path)
    folder = install(store, "a")
    hashes = json.loads((folder / HASH_FILE).read_text())["files"]
    assert set(hashes) == {"model.safetensors", "dev_predictions.safetensors", "trial.json"}
    assert checkpoint_problem(folder) is None
    flip_byte(folder / "model.safetensors")
    assert "model.safetensors does not match its recorded sha256" in checkpoint_problem(folder)
    (folder / "model.safetensors").unlink()
    assert checkpoint_problem(folder) == "model.safetensors is missing"
    (folder / HASH_FILE).write_text("{not json")
    assert "unreadable" in checkpoint_problem(folder)


def test_a_damaged_checkpoint_is_no_ensemble_candidate(tmp_path, capsys):
    store = RunStore(tmp_path)
    install(store, "a", seed=1)
    damaged = install(store, "b", seed=2)
    flip_byte(damaged / "dev_predictions.safetensors")
    found = find_candidates(store)
    assert [c.trial_id for c in found["rte"]] == ["a"]
    err = capsys.readouterr().err
    assert err == (
        "warning: skipping checkpoint trials/b/checkpoint: dev_predictions.safetensors does not match "
        "its recorded sha256 (the file is damaged)\n"
    )


def test_predict_passes_over_a_damaged_best_checkpoint(tmp_path, capsys, monkeypatch, glue_dir, cache_dir):
    store = RunStore(tmp_path / "run")
    install(store, "best", seed=1, score=70.0)
    install(store, "second", seed=2, score=65.0)
    store.write_suite({"name": "t", "tasks": ["rte"], "data": {}})
    flip_byte(store.checkpoint_dir("best") / "model.safetensors", offset=-1)
    board = {
        "rows": [{"system": "m (single)", "kind": "single", "model": "m", "config": {"rte": {"learning_rate": 1e-4}}}]
    }
    monkeypatch.setattr(
        benchmark.results.submission, "leaderboard_from_runs", lambda dirs, resamples: (board, store.records())
    )
    used = []

    def fake_logits(folder, task, ds, *args):
        used.append(folder.parent.name)
        return np.zeros((len(ds), 2), np.float32), np.zeros(len(ds))

    monkeypatch.setattr(benchmark.results.submission, "predict", fake_logits)
    folder, written = benchmark.results.submission.write_submission(store.root)
    assert used == ["second"] and written == ["RTE.tsv"]
    assert "warning: skipping the checkpoint of best: model.safetensors does not match" in capsys.readouterr().err
    assert json.loads((folder / "submission.json").read_text())["files"]["RTE.tsv"]["trial"] == "second"


def test_a_finished_trial_with_a_damaged_checkpoint_runs_again_on_resume(tmp_path, capsys, glue_dir, cache_dir):
    import yaml

    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import make_plan
    from benchmark.run.runner import pending_trials

    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump({"name": "t", "tasks": ["rte"], "search": {"seeds": [1, 2]}, "output": str(tmp_path / "run")})
    )
    plan = make_plan(load_suite(path))
    store = RunStore(tmp_path / "run")
    for spec in plan:
        folder = store.install_checkpoint(spec.trial_id, fill)
        store.save_record(
            {
                "trial_id": spec.trial_id,
                "status": "finished",
                "fingerprint": spec.fingerprint,
                "checkpoint": str(folder.relative_to(store.root)),
            }
        )
    assert pending_trials(store, plan) == []
    flip_byte(store.checkpoint_dir(plan[1].trial_id) / "model.safetensors")
    assert pending_trials(store, plan) == [plan[1]]
    assert capsys.readouterr().err == (
        f"warning: {plan[1].trial_id} runs again: its checkpoint "
        f"trials/{plan[1].trial_id}/checkpoint: model.safetensors does not match its "
        "recorded sha256 (the file is damaged)\n"
    )
