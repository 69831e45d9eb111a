"""Cluster-grade search with real Ray: schedulers, PBT, faults, resume and a two-node cluster (tiny BERTs)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import bench as run_bench, write_easy_task

REPO = Path(__file__).resolve().parents[1]


def bench(*args):
    return run_bench(*args, timeout=2400)   # a whole scheduler study


def write(tmp_path: Path, tiny_model, **suite) -> Path:
    # fp32: bf16 is too coarse for a 32-wide random BERT to learn the easy task in a few steps.
    base = {"name": "s", "model": str(tiny_model), "tasks": [write_easy_task(tmp_path / "easy", train=256)],
            # No test split held out of train: these runs test the search, on all 256 training rows.
            "data": {"max_train_samples": 256, "max_eval_samples": 64, "holdout": {"test": 0}},
            "training": {"epochs": 2, "batch_size": 16, "max_seq_length": 32, "zero_stage": 0, "warmup_ratio": 0.0,
                         "precision": "fp32"},
            "output": str(tmp_path / "run")}
    for key, value in suite.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def records(run: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in run.glob("trials/*/record.json")}


@pytest.fixture(autouse=True)
def _env(glue_dir, cache_dir):
    return glue_dir


def test_asha_stops_weak_trials_early(tiny_model, tmp_path):
    # Strong learning rates come first in the plan, so they fill ASHA's rungs before the weak ones arrive.
    path = write(tmp_path, tiny_model, training={"epochs": 4},
                 search={"grid": {"learning_rate": [5e-3, 4e-3, 1e-7, 2e-7]},
                         "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 2}})
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = records(tmp_path / "run")
    epochs = {r["grid_point"]["learning_rate"]: len(r["epochs"]) for r in recs.values()}
    assert max(epochs[5e-3], epochs[4e-3]) == 4
    assert epochs[1e-7] < 4 and epochs[2e-7] < 4
    stopped = [r for r in recs.values() if r["status"] == "stopped"]
    assert stopped and all(len(r["epochs"]) < 4 and r["checkpoint"] for r in stopped)
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    assert board["trials"]["stopped"] == len(stopped)
    assert board["compute"]["trial_epochs"] == sum(epochs.values()) < 16
    assert "stopped early by the scheduler" in (tmp_path / "run" / "leaderboard.md").read_text()


def test_pbt_exploit_continues_from_the_donors_state(tiny_model, tmp_path):
    path = write(tmp_path, tiny_model, training={"epochs": 5},
                 search={"grid": {"learning_rate": [5e-3, 1e-7]},
                         "scheduler": {"type": "pbt", "perturbation_interval": 1, "quantile_fraction": 0.5,
                                       "resample_probability": 0.0}})
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = records(tmp_path / "run")
    exploited = [r for r in recs.values() if r["exploits"]]
    assert exploited, [(r["trial_id"], [e["score"] for e in r["epochs"]]) for r in recs.values()]
    steps_per_epoch = 256 // 16
    for r in exploited:
        for n, exploit in enumerate(r["exploits"]):
            donor, first = recs[exploit["donor"]], r["epochs"][exploit["at_index"]]
            # The restored trial continued from a state the donor saved, not from step zero and not from its own.
            assert exploit["from_step"] in [e["optimizer_steps"] for e in donor["epochs"]]
            # (A state saved at the last step has nothing left to train: the trial reports that evaluation again.)
            assert first["optimizer_steps"] == min(exploit["from_step"] + steps_per_epoch, 5 * steps_per_epoch)
            assert first["epoch"] == first["optimizer_steps"] // steps_per_epoch
            # Explore: a grid value moves to a neighbouring grid value (Ray's PBT on a list; clamped at the ends).
            grid = [5e-3, 1e-7]
            i = grid.index(_learning_rate_at(donor, exploit["from_step"]))
            assert exploit["training"]["learning_rate"] in {grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]}
            # Between exploits the trial's own evaluations go forward one interval at a time.
            end = r["exploits"][n + 1]["at_index"] if n + 1 < len(r["exploits"]) else len(r["epochs"])
            steps = [e["optimizer_steps"] for e in r["epochs"][exploit["at_index"]:end]]
            assert steps == list(range(steps[0], steps[0] + steps_per_epoch * len(steps), steps_per_epoch))
    # The weak trial took over the strong one's state and learned the task.
    weak = recs["easy_lr=1e-07_seed=1"]
    assert weak["exploits"] and max(e["score"] for e in weak["epochs"]) == 100.0


def _learning_rate_at(record: dict, step: int) -> float:
    """A trial's learning rate when it saved the state at `step` (the last exploit before that state)."""
    earlier = [e for e in record["exploits"] if record["epochs"][e["at_index"]]["optimizer_steps"] <= step]
    return earlier[-1]["training"]["learning_rate"] if earlier else record["grid_point"]["learning_rate"]


def test_driver_killed_then_the_same_command_resumes(tiny_model, tmp_path):
    path = write(tmp_path, tiny_model, training={"epochs": 3},
                 search={"grid": {"learning_rate": [1e-3, 3e-4]}, "seeds": [1, 2, 3]})
    run = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", str(path)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ})
    deadline = time.time() + 900
    while time.time() < deadline and len(records(run)) < 2:
        time.sleep(1)
    os.killpg(driver.pid, signal.SIGKILL)   # the driver and the Ray cluster it started
    driver.wait()
    before = {name: (run / "trials" / name / "record.json").stat().st_mtime_ns for name in records(run)}
    assert 2 <= len(before) < 6
    in_progress = {p.parent.name: json.loads(p.read_text()) for p in run.glob("trials/*/progress.json")
                   if p.parent.name not in before}
    time.sleep(2)
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = records(run)
    assert len(after) == 6 and all(r["status"] == "finished" for r in after.values())
    for name, mtime in before.items():   # finished trials were kept, not run again
        assert (run / "trials" / name / "record.json").stat().st_mtime_ns == mtime
    for r in after.values():             # each trial's history counts each epoch once
        assert [e["epoch"] for e in r["epochs"]] == [1, 2, 3]
    for name, progress in in_progress.items():   # a trial cut off mid-run kept the epochs it had finished
        if progress.get("state"):
            kept = progress["history"]
            assert after[name]["epochs"][:len(kept)] == kept
    assert f"{len(before)} finished trials kept" in proc.stdout


def test_a_killed_worker_is_retried_from_its_last_state(tiny_model, tmp_path):
    import psutil

    path = write(tmp_path, tiny_model, training={"epochs": 3}, search={"max_failures": 1})
    run = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "run", str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ})
    progress = run / "trials" / "easy_seed=1" / "progress.json"
    deadline = time.time() + 900
    while time.time() < deadline and not (progress.is_file() and json.loads(progress.read_text())["state"]):
        time.sleep(0.5)
    killed = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any("RayTrainWorker" in part for part in (proc.info["cmdline"] or [])) and _descends_from(proc, driver.pid):
            proc.kill()
            killed += 1
    assert killed == 1
    out, _ = driver.communicate(timeout=900)
    assert driver.returncode == 0, out[-3000:]
    (record,) = records(run).values()
    assert record["status"] == "finished" and record["failures"] == 1
    assert [e["epoch"] for e in record["epochs"]] == [1, 2, 3]


def _descends_from(proc, pid: int) -> bool:
    try:
        return any(parent.pid == pid for parent in proc.parents())
    except Exception:
        return False


def test_a_diverging_trial_is_recorded_and_the_rest_finish(tiny_model, tmp_path):
    # Targets near 1e30 make the squared error overflow float32 on the first step: the loss is inf.
    huge = tmp_path / "huge"
    huge.mkdir()
    for split in ("train", "dev"):
        rows = ["text,label", *(f"sample {i},{(i % 3 + 1) * 1e30}" for i in range(64))]
        (huge / f"{split}.csv").write_text("\n".join(rows) + "\n")
    overflow = {"name": "huge", "train": str(huge / "train.csv"), "validation": str(huge / "dev.csv"),
                "text_columns": ["text"], "regression": True}
    path = write(tmp_path, tiny_model, tasks=[write_easy_task(tmp_path / "easy", train=256), overflow])
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    by_task = {r["task"]: r for r in records(tmp_path / "run").values()}
    assert by_task["huge"]["status"] == "diverged" and "loss became inf" in by_task["huge"]["error"]
    assert by_task["easy"]["status"] == "finished"
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    assert board["trials"]["diverged"] == 1 and board["trials"]["finished"] == 1


def test_two_node_cluster_runs_trials_on_both_nodes(tiny_model, tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    from benchmark.runner import run_suite
    from benchmark.suite import load_suite

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        path = write(tmp_path, tiny_model, training={"epochs": 1},
                     search={"seeds": [1, 2, 3, 4]}, storage=str(tmp_path / "shared-storage"))
        run_suite(load_suite(path), address=cluster.address)
        recs = records(tmp_path / "run")
        assert len(recs) == 4 and all(r["status"] == "finished" for r in recs.values())
        nodes = {n for r in recs.values() for n in r["node_ids"]}
        assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]} and len(nodes) == 2
        for r in recs.values():   # checkpoints reached the driver's run directory
            assert (tmp_path / "run" / r["checkpoint"] / "model.safetensors").is_file()
    finally:
        ray.shutdown()
        cluster.shutdown()
