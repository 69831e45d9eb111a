"""Names that would write outside the run directory are refused with one line."""

import json

import numpy as np
import pytest
import yaml

import benchmark.results.board
import benchmark.results.submission
from benchmark.cli import main
from benchmark.common.errors import InputError
from benchmark.common.paths import check_name
from benchmark.records.store import RunStore
from ensembles.candidates import find_candidates
from tasks.glue import GLUE_TASKS

BAD = ["..", ".", "", "../evil", "a/b", "/etc/passwd", "a\\b", "a\0b", "x" * 256]


@pytest.mark.parametrize("name", BAD)
def test_unsafe_names_are_refused(name):
    with pytest.raises(InputError, match="not a plain file name") as err:
        check_name(name, "tasks[0]", "task name")
    assert "\n" not in str(err.value)


def test_plain_names_pass():
    for name in ("rte", "rte_lr=2e-05_seed=1", "multitask-rte_bs=16_sample=003_seed=1", "a..b", "ünïcode"):
        assert check_name(name, "x") == name


@pytest.mark.parametrize("trial_id", ["../outside", "/tmp/abs", ".."])
def test_the_store_never_joins_an_unsafe_trial_id(tmp_path, trial_id):
    with pytest.raises(InputError, match="trial id"):
        RunStore(tmp_path).save_record({"trial_id": trial_id, "status": "finished"})
    assert not (tmp_path.parent / "outside").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "/abs", "..", "a\u0000b"])
def test_user_task_names_with_paths_fail_validation(tmp_path, capsys, glue_dir, cache_dir, name):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "tasks": [
                    {
                        "name": name,
                        "train": "t.csv",
                        "validation": "d.csv",
                        "text_columns": ["text"],
                        "labels": ["a", "b"],
                    }
                ],
            }
        )
    )
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: tasks[0].name:") and err.count("\n") == 1


def test_a_run_directory_naming_a_task_outside_it_is_refused(tmp_path):
    store = RunStore(tmp_path / "run")
    store.save_record({"trial_id": "a", "status": "finished", "kind": "single", "model": "m", "fingerprint": "f"})
    folder = store.checkpoint_dir("a")
    folder.mkdir(parents=True)
    (folder / "dev_predictions.safetensors").write_bytes(b"")
    task = {**GLUE_TASKS["rte"].to_dict(), "name": "../../../evil"}  # an edited trial.json
    (folder / "trial.json").write_text(json.dumps({"task": task}))
    with pytest.raises(InputError, match=r"trials/a/checkpoint/trial.json: task name '\.\./\.\./\.\./evil'"):
        find_candidates(store)


def test_predict_refuses_a_test_file_name_outside_the_folder(tmp_path, monkeypatch, glue_dir, cache_dir):
    store = RunStore(tmp_path / "run")
    store.write_suite({"name": "t", "tasks": ["rte"], "data": {}})
    spec = {**GLUE_TASKS["rte"].to_dict(), "test_splits": {"test": "../../evil"}}
    record = {
        "trial_id": "a",
        "task": "rte",
        "task_spec": spec,
        "model": "m",
        "kind": "single",
        "status": "finished",
        "seed": 1,
        "grid_point": {},
        "best_score": 1.0,
        "checkpoint": "trials/a/checkpoint",
        "training": {"max_seq_length": 32, "eval_batch_size": 8},
    }
    board = {"rows": [{"system": "m (single)", "kind": "single", "model": "m", "config": {"rte": {}}}]}
    monkeypatch.setattr(
        benchmark.results.submission, "leaderboard_from_runs", lambda dirs, resamples: (board, [record])
    )
    monkeypatch.setattr(benchmark.results.submission, "checkpoint_problem", lambda folder: None)
    monkeypatch.setattr(benchmark.results.submission, "predict", lambda *a: (np.zeros((3, 2)), np.zeros(3)))
    with pytest.raises(InputError, match="test file name '../../evil'"):
        benchmark.results.submission.write_submission(store.root)
    assert not (tmp_path / "evil.tsv").exists()
