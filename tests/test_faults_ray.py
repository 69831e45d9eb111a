"""Faults with real Ray, on both trial paths: a driver killed or interrupted at random points resumes to the
uninterrupted result; a killed worker is retried from its last state; a raising and a diverging trial are recorded
(tiny BERTs)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.config.ensemble import METHODS as ENSEMBLE_METHODS
from benchmark.measure.reliability import (
    ENSEMBLE_BUILD_WRITES,
    check_final,
    fault_suite,
    interrupt_after,
    random_kills,
    records,
    run_to_end,
)
from tests.conftest import bench, write_easy_task, write_search_suite

# Every test runs `bench` in a subprocess, which finds the data and the cache through these fixtures' variables.
pytestmark = pytest.mark.usefixtures("glue_dir", "cache_dir")


def test_driver_killed_at_random_points_and_interrupted_resumes_to_the_uninterrupted_result(tiny_model, tmp_path):
    # Enough work that each fault in training finds the run unfinished (two trials at once, 4 epochs each): those
    # kills fall 1-2 writes (an epoch's progress or checkpoint) after a start, then 0-1 s later. Four more fall
    # 1-12 writes into the build of the ensembles and soups (about 36 files staged in a folder), where a restart
    # needs no Ray and so costs CI seconds, not a minute.
    path = write_search_suite(
        tmp_path,
        tiny_model,
        training={"epochs": 4, "learning_rate": 2e-3, "init_seed": 0},  # soups need one init
        search={"seeds": [1, 2]},
        ensemble={"methods": list(ENSEMBLE_METHODS), "k": [2, None]},
        floors={"zero_shot": True, "probe": True},  # kills may fall into their writes too
    )
    run, log = tmp_path / "run", tmp_path / "driver.log"
    in_training = random_kills(path, run, kills=1, seed=8, log=log, max_writes=2, max_delay=1.0)
    calm = interrupt_after(path, run, new_writes=1, presses=1, log=log)
    hurried = interrupt_after(path, run, new_writes=1, presses=2, log=log)
    at_the_end = random_kills(
        path, run, kills=4, seed=9, log=log, max_writes=12, max_delay=0.2, watch=ENSEMBLE_BUILD_WRITES
    )
    last = run_to_end(path, run, log)
    for event in (*in_training, calm, hurried, *at_the_end, last):  # no finished record was lost or written again
        assert event["lost"] == [], event
    kills = [k for k in (*in_training, *at_the_end) if k["injected"]]
    assert len(kills) == 5 and {k["returncode"] for k in kills} == {-9}, (in_training, at_the_end)
    for stop in (calm, hurried):  # Ctrl-C: exit 130 and one line, no traceback, the lock free for the next command
        assert stop["injected"] and stop["returncode"] == 130 and stop["lock_released"] and not stop["traceback"], stop
        assert stop["last_line"].startswith("bench: interrupted; finished trials are kept"), stop
    assert hurried["exit_seconds"] < 5, hurried  # the second press skips Ray's shutdown
    assert calm["lingering_after_10s"] == hurried["lingering_after_10s"] == 0  # and leaves no Ray process behind
    assert last["returncode"] == 0, log.read_text()[-3000:]
    after = records(run)
    assert sorted(after) == [f"easy_seed={s}" for s in (1, 2)]
    assert all(r["status"] == "finished" and [e["epoch"] for e in r["epochs"]] == [1, 2, 3, 4] for r in after.values())
    board = json.loads((run / "leaderboard.json").read_text())
    assert board["trials"]["finished"] == 2
    # Kills fell inside the ensembles' build, and the next start deleted what they left; nothing half-written
    # remains, and the ensembles equal ones built in one go from the same checkpoints.
    assert "(an unfinished write)" in log.read_text()
    assert not [p for p in run.rglob(".*") if p.name.endswith((".tmp", ".old")) and not p.is_relative_to(run / "ray")]
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("ensembles", "ray"))
    proc = bench("ensemble", copy)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ensemble_rows(run) == ensemble_rows(copy) and len(ensemble_rows(run)) == 1 + 2 * len(ENSEMBLE_METHODS)
    # Trial for trial, what an uninterrupted run of the same trials records.
    reference = uninterrupted_scores(path, tmp_path / "reference")
    assert {name: [e["score"] for e in r["epochs"]] for name, r in after.items()} == reference


def ensemble_rows(run: Path) -> dict[str, dict]:
    state = json.loads((run / "ensembles" / "ensembles.json").read_text())
    return {row["system"]: row for row in state["rows"]}


def uninterrupted_scores(path: Path, output: Path) -> dict[str, list[float]]:
    """Each planned trial trained in this process, start to end (one thread, as a one-CPU Ray worker)."""
    import torch

    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import data_key, make_plan
    from benchmark.run.runner import prepare_data
    from benchmark.train.hyperparams import TrainingConfig
    from benchmark.train.local import run_local_trial

    suite = load_suite(path)
    plan = make_plan(suite)
    data = prepare_data(suite, plan)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            spec.trial_id: [
                e["score"]
                for e in run_local_trial(
                    TrainingConfig(**spec.training),
                    spec.model_path,
                    spec.seed,
                    data[data_key(spec.model_name, spec.task, spec.training)],
                    output / spec.trial_id,
                    log=lambda _: None,
                ).epochs
            ]
            for spec in plan
        }
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "workers, process, train",
    # The trial's own actor; a Ray Train worker. Each trial long enough to be killed after its first epoch's state:
    # a one-worker trial starts in a second, so its epochs after the kill need 10 s or more (4096 rows); two
    # ranks over gloo take seconds an epoch on 1024 rows, and a kill follows the state by under a second.
    [(1, "ray::ImplicitFunc", 4096), (2, "RayTrainWorker", 1024)],
    ids=["one-worker-trial", "ray-train-workers"],
)
def test_a_killed_worker_is_retried_from_its_last_state(tiny_model, tmp_path, workers, process, train):
    import psutil

    path = write_search_suite(
        tmp_path,
        tiny_model,
        tasks=[write_easy_task(tmp_path / "long", train=train)],
        data={"max_train_samples": 4096},
        training={"epochs": 3},
        search={"max_failures": 1},
        resources={"workers_per_trial": workers, "cpus_per_worker": 1},
    )
    run = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "benchmark.cli", "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    progress = run / "trials" / "easy_seed=1" / "progress.json"
    deadline = time.time() + 900
    while time.time() < deadline and not (progress.is_file() and json.loads(progress.read_text())["state"]):
        time.sleep(0.5)
    killed = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any(process in part for part in (proc.info["cmdline"] or [])) and _descends_from(proc, driver.pid):
            proc.kill()
            killed += 1
            if workers > 1:
                break  # one rank of two: the Train run fails, and Tune retries the whole trial
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


def test_a_trial_that_raises_and_a_diverging_trial_are_recorded(tmp_path):
    # A model whose weights do not fit its config raises inside its trial; a task whose targets overflow float32
    # squared error diverges on the first step. Two trials, one round of start-ups (that the rest of a run
    # finishes beside such trials is shown by the soak, benchmark/measure/reliability.py).
    path, expected = fault_suite(tmp_path, seeds=1)
    suite = yaml.safe_load(path.read_text())
    suite["tasks"] = [t for t in suite["tasks"] if t["name"] == "huge"]
    path.write_text(yaml.safe_dump(suite))
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    final = check_final(tmp_path / "run", {k: v for k, v in expected.items() if k[1] == "huge"}, seeds=1)
    assert final["wrong"] == {} and final["records"] == 2, final
    recs = records(tmp_path / "run")
    assert "loss became inf" in recs["huge_tiny_seed=1"]["error"]
    assert "ignore_mismatched_sizes" in recs["huge_broken_seed=1"]["error"]
    # The run's log says why the trial failed, as its record does (rich wraps the line at the console's width).
    log = " ".join(proc.stdout.split())
    reason = re.search(r"FAILED huge_broken_seed=1: (.*?) \(\d+ running", log)
    assert reason and reason[1] == " ".join(recs["huge_broken_seed=1"]["error"].split())
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    assert (board["trials"]["finished"], board["trials"]["diverged"], board["trials"]["failed"]) == (0, 1, 1)
