"""A multi-task suite end to end through `bench run`: single, joint and two-stage trials through Ray Tune, Ray Train
and DeepSpeed, on GLUE slices, and their leaderboard rows side by side."""

import json

import pytest
import yaml

from benchmark.train.checkpoints import load_predictions, load_trial_meta
from tasks.glue import GLUE_TASKS
from tasks.metrics import compute_metrics, task_score
from tests.conftest import bench


@pytest.fixture(scope="module")
def mt_run(tiny_model, glue_dir, cache_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mt-e2e")
    suite = {
        "name": "mt-e2e",
        "model": str(tiny_model),
        "tasks": ["rte", "stsb"],
        "data": {"max_train_samples": 64, "max_eval_samples": 32},
        "training": {"epochs": 2, "batch_size": 16, "max_seq_length": 64, "learning_rate": 1e-3},
        "search": {"seeds": [1]},
        "multitask": {
            "tasks": ["rte", "stsb"],
            "sampler": "temperature",
            "temperature": 2.0,
            "two_stage": {"enabled": True, "training": {"epochs": 1, "learning_rate": 3e-4}},
        },
        "chains": ["rte -> stsb"],
        "ensemble": {"methods": ["mean_prob"]},
        "output": str(folder / "run"),
    }
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return path, folder / "run"


def test_leaderboard_has_single_multitask_and_two_stage_rows(mt_run):
    _, run = mt_run
    board = json.loads((run / "leaderboard.json").read_text())
    rows = {r["kind"]: r for r in board["rows"] if r["kind"] in ("single", "multitask", "two-stage")}
    assert set(rows) == {"single", "multitask", "two-stage"}
    for row in rows.values():
        assert set(row["task_scores"]) == {"rte", "stsb"} and row["average"] is not None
        assert all((run / p).is_file() for files in row["predictions"].values() for p in files)
    assert board["trials"]["finished"] == 7  # 2 single, 2 records of the joint trial, 2 two-stage, 1 chain


def test_the_joint_trial_records_each_task_with_its_export(mt_run):
    _, run = mt_run
    records = {
        json.loads(p.read_text())["trial_id"]: json.loads(p.read_text()) for p in run.glob("trials/*/record.json")
    }
    for task in ("rte", "stsb"):
        r = records[f"multitask-{task}_seed=1"]
        assert r["kind"] == "multitask" and r["status"] == "finished" and r["joint_trial"] == "multitask_seed=1"
        assert len(r["epochs"]) == 2 and r["wall_seconds"] == pytest.approx(r["joint_wall_seconds"] / 2)
        folder = run / r["checkpoint"]
        meta = load_trial_meta(folder)
        assert meta["epoch"] == r["best_epoch"] and meta["task"]["name"] == task
        logits, labels = load_predictions(folder)
        assert task_score(compute_metrics(GLUE_TASKS[task], logits, labels)) == pytest.approx(r["best_score"])
        # Stage two started from this export.
        second = records[f"two-stage-{task}_seed=1"]
        assert second["kind"] == "two-stage" and second["model_path"] == str(folder)
        assert second["training"]["learning_rate"] == 3e-4 and len(second["epochs"]) == 1
    assert not (run / "trials" / "multitask_seed=1").exists()  # the per-task records replaced its progress
    assert not list(run.glob("trials/*/progress.json"))


def test_the_same_command_again_reruns_nothing(mt_run):
    path, run = mt_run
    before = {p: p.stat().st_mtime_ns for p in run.glob("trials/*/record.json")}
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in run.glob("trials/*/record.json")} == before


def test_compute_adds_up_for_joint_two_stage_chain_and_ensemble_rows(mt_run):
    from benchmark.config.suite import load_suite

    path, run = mt_run
    board = json.loads((run / "leaderboard.json").read_text())
    records = {r["trial_id"]: r for r in (json.loads(p.read_text()) for p in run.glob("trials/*/record.json"))}
    joint = [records[f"multitask-{t}_seed=1"] for t in ("rte", "stsb")]
    # The joint trial's records carry each task's share: the batches of that task it trained on, all full here.
    steps = 2 * load_suite(path).mixture.epoch_steps({"rte": 64, "stsb": 64}, 16)
    assert sum(r["optimizer_steps"] for r in joint) == steps and all(r["optimizer_steps"] > 0 for r in joint)
    assert [r["train_samples"] for r in joint] == [16 * r["optimizer_steps"] for r in joint]
    samples = {kind: [r["train_samples"] for r in records.values() if r["kind"] == kind] for kind in
               ("single", "multitask", "two-stage", "chain")}  # fmt: skip
    assert samples["single"] == [128, 128] and samples["two-stage"] == [64, 64] and samples["chain"] == [128]
    rows = {r["system"]: r["compute"]["train_samples"] for r in board["rows"]}
    by_kind = {r["kind"]: r["compute"]["train_samples"] for r in board["rows"] if r["kind"] != "ensemble"}
    assert by_kind["multitask"] == 16 * steps  # the joint trial once, not once per task
    assert by_kind["two-stage"] == 128 + 16 * steps  # its own trials and its stage-one share
    assert by_kind["chain"] == 128
    # Ensemble rows chose among every candidate checkpoint: what those trained, each once.
    ensembles = [v for k, v in rows.items() if "mean_prob" in k or "best single" in k]
    assert len(ensembles) == 2 and set(ensembles) == {sum(sum(v) for v in samples.values())}
    # The run's total counts every trial once.
    assert board["compute"]["train_samples"] == 256 + 16 * steps + 128 + 128
    assert board["compute"]["trial_epochs"] == 2 + 2 + 2 + 1 + 1 + 2
