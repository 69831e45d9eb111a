"""Cluster-grade search with real Ray: schedulers, PBT and a two-node cluster (tiny BERTs). Faults and resume:
test_faults_ray.py."""

import json
from pathlib import Path

import pytest

from benchmark.measure.reliability import (
    records,
)
from tests.conftest import bench as run_bench
from tests.conftest import write_search_suite

REPO = Path(__file__).resolve().parents[1]


def bench(*args):
    return run_bench(*args, timeout=2400)  # a whole scheduler study


# Every test runs `bench` in a subprocess, which finds the data and the cache through these fixtures' variables.
pytestmark = pytest.mark.usefixtures("glue_dir", "cache_dir")


def test_asha_stops_weak_trials_early(tiny_model, tmp_path):
    # Strong learning rates come first in the plan, so they fill ASHA's rungs before the weak ones arrive.
    path = write_search_suite(
        tmp_path,
        tiny_model,
        training={"epochs": 4},
        search={
            "grid": {"learning_rate": [5e-3, 4e-3, 1e-7, 2e-7]},
            "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 2},
        },
    )
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


@pytest.mark.long
def test_pbt_exploit_continues_from_the_donors_state(tiny_model, tmp_path):
    path = write_search_suite(
        tmp_path,
        tiny_model,
        training={"epochs": 5},
        search={
            "grid": {"learning_rate": [5e-3, 1e-7]},
            "scheduler": {
                "type": "pbt",
                "perturbation_interval": 1,
                "quantile_fraction": 0.5,
                "resample_probability": 0.0,
            },
        },
    )
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
            steps = [e["optimizer_steps"] for e in r["epochs"][exploit["at_index"] : end]]
            assert steps == list(range(steps[0], steps[0] + steps_per_epoch * len(steps), steps_per_epoch))
    # The weak trial took over the strong one's state and learned the task.
    weak = recs["easy_lr=1e-07_seed=1"]
    assert weak["exploits"] and max(e["score"] for e in weak["epochs"]) == 100.0


def _learning_rate_at(record: dict, step: int) -> float:
    """A trial's learning rate when it saved the state at `step` (the last exploit before that state)."""
    earlier = [e for e in record["exploits"] if record["epochs"][e["at_index"]]["optimizer_steps"] <= step]
    return earlier[-1]["training"]["learning_rate"] if earlier else record["grid_point"]["learning_rate"]


def test_two_node_cluster_runs_trials_on_both_nodes(tiny_model, tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from benchmark.config.suite import load_suite
    from benchmark.run.runner import run_suite

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        path = write_search_suite(
            tmp_path,
            tiny_model,
            training={"epochs": 1},
            search={"seeds": [1, 2, 3, 4]},
            storage=str(tmp_path / "shared-storage"),
        )
        # No --address: Ray's own variable names the cluster, as `ray job submit` sets it for its entrypoint.
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        run_suite(load_suite(path))
        recs = records(tmp_path / "run")
        assert len(recs) == 4 and all(r["status"] == "finished" for r in recs.values())
        nodes = {n for r in recs.values() for n in r["node_ids"]}
        assert nodes == {n["NodeID"] for n in ray.nodes() if n["Alive"]} and len(nodes) == 2
        for r in recs.values():  # checkpoints reached the driver's run directory
            assert (tmp_path / "run" / r["checkpoint"] / "model.safetensors").is_file()
    finally:
        ray.shutdown()
        cluster.shutdown()
