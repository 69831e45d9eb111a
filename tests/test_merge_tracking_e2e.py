"""`bench run` end to end (real Ray Tune and DeepSpeed) with merges and MLflow tracking: the merged rows and the
calibration in leaderboard.json, the MLflow runs, and a resumed run that adds to them instead of duplicating."""

import json
import shutil

import yaml

from tests.conftest import bench


def test_a_run_with_merges_and_tracking_then_resumed(tiny_model, glue_dir, cache_dir, tmp_path):
    import os

    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.tracking import MlflowClient

    uri = f"file:{tmp_path / 'mlruns'}"
    shutil.copytree(tiny_model, tmp_path / "tiny")
    suite = {
        "name": "mt",
        "model": str(tmp_path / "tiny"),
        "tasks": ["rte", "mrpc"],
        "data": {"max_train_samples": 48, "max_eval_samples": 32},
        "training": {"epochs": 1, "batch_size": 16, "max_seq_length": 64, "learning_rate": 1e-3},
        "search": {"seeds": [1, 2]},
        "merge": {"methods": ["ties"], "scales": [0.5, 1.0]},
        "tracking": {"mlflow_uri": uri, "experiment": "mt"},
        "output": str(tmp_path / "run"),
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    rows = {r["system"]: r for r in board["rows"]}
    merged = rows["tiny ties"]
    assert merged["kind"] == "merged" and merged["seeds"] == 2 and set(merged["scores"]) == {"rte", "mrpc"}
    for row in (merged, rows["tiny (single)"]):
        assert set(row["calibration"]) == {"rte", "mrpc"}
        assert {"ece", "nll", "brier", "temperature", "ece_scaled"} <= set(row["calibration"]["rte"])

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("mt").experiment_id
    runs = client.search_runs([experiment])
    parent = [r for r in runs if r.data.tags.get("bench.role") == "parent"]
    trials = [r for r in runs if "bench.trial_id" in r.data.tags]
    assert len(parent) == 1 and len(trials) == 4 and len(runs) == 5
    assert {a.path for a in client.list_artifacts(parent[0].info.run_id)} >= {
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.json",
        "report.html",
    }
    one = trials[0]
    assert one.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
    assert one.data.params["training.learning_rate"] == "0.001" and "dev/score" in one.data.metrics
    steps = [m.step for m in client.get_metric_history(one.info.run_id, "dev/score")]
    assert len(steps) == 1

    # A trial whose record is gone runs again (as after an interruption): it reports into its own run again.
    (tmp_path / "run" / "trials" / one.data.tags["bench.trial_id"] / "record.json").unlink()
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 to run" in proc.stdout
    runs = client.search_runs([experiment])
    assert len(runs) == 5  # no new parent, no new trial run
    assert [m.step for m in client.get_metric_history(one.info.run_id, "dev/score")] == steps
