"""MLflow tracking against a local file store: runs written, found again on resume without duplicates, and a
tracking URI that cannot work refused at validation."""

import json

import pytest
import yaml

from benchmark.cli import main
from benchmark.config.tracking import TrackingConfig, TrackingSettings, check_tracking
from benchmark.run.tracking import MlflowTracker, report_points

REPORT = {
    "epoch": 1,
    "optimizer_steps": 20,
    "score": 61.0,
    "accuracy": 0.61,
    "train_loss": 0.69,
    "learning_rate": 1e-4,
    "eval_seconds": 2.0,
    "curve": json.dumps(
        [
            {"step": 10, "train_loss": 0.70, "learning_rate": 2e-4},
            {"step": 20, "train_loss": 0.68, "learning_rate": 1e-4},
        ]
    ),
}
PARAMS = {"training.learning_rate": 1e-4, "training.epochs": 2, "task": "rte", "seed": 1}


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def all_runs(uri: str, experiment: str) -> list:
    c = client(uri)
    return c.search_runs([c.get_experiment_by_name(experiment).experiment_id])


def test_a_report_becomes_metrics_by_step():
    points = {(k, s): v for k, v, s in report_points(REPORT)}
    assert points[("train/loss", 10)] == 0.70 and points[("train/loss", 20)] == 0.68
    assert points[("train/learning_rate", 10)] == 2e-4
    assert points[("dev/accuracy", 20)] == 0.61 and points[("dev/score", 20)] == 61.0
    assert points[("dev/epoch", 20)] == 1
    assert not any(k == "dev/eval_seconds" for k, _ in points)
    joint = report_points({"optimizer_steps": 5, "score": 50.0, "tasks": {"rte": {"accuracy": 0.5, "train_steps": 3}}})
    assert ("dev/rte/accuracy", 0.5, 5) in joint and not any("train_steps" in k for k, _, _ in joint)


def test_trials_are_child_runs_and_a_resumed_run_adds_to_them(tmp_path):
    uri = f"file:{tmp_path / 'mlruns'}"
    settings = TrackingSettings(uri, "exp")
    run_dir = tmp_path / "run"
    first = MlflowTracker(settings, run_dir)
    trial = first.trial_run("rte_lr=1e-4_seed=1", PARAMS)
    assert first.log_report(trial, REPORT) == len(report_points(REPORT))
    first.end_trial("rte_lr=1e-4_seed=1", "FAILED")  # interrupted: the next `bench run` resumes it
    (run_dir / "leaderboard.md").parent.mkdir(parents=True)
    (run_dir / "leaderboard.md").write_text("| system |\n")
    first.finish([run_dir / "leaderboard.md", run_dir / "missing.html"])

    again = MlflowTracker(settings, run_dir)  # a new process, as a resumed `bench run` is
    assert again.parent == first.parent
    resumed = again.trial_run("rte_lr=1e-4_seed=1", PARAMS)
    assert resumed == trial
    assert again.log_report(resumed, REPORT) == 0  # the evaluation it repeats is not logged twice
    later = {
        **REPORT,
        "epoch": 2,
        "optimizer_steps": 40,
        "accuracy": 0.65,
        "curve": json.dumps([{"step": 30, "train_loss": 0.6, "learning_rate": 5e-5}]),
    }
    assert again.log_report(resumed, later) > 0
    again.end_trial("rte_lr=1e-4_seed=1", "FINISHED")

    runs = all_runs(uri, "exp")
    assert len(runs) == 2  # the parent and one trial: nothing duplicated
    child = next(r for r in runs if r.info.run_id == trial)
    assert child.data.tags["mlflow.parentRunId"] == first.parent and child.info.status == "FINISHED"
    assert child.data.params["training.learning_rate"] == "0.0001" and child.data.params["task"] == "rte"
    history = client(uri).get_metric_history(trial, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(10, 0.70), (20, 0.68), (30, 0.6)]
    accuracy = client(uri).get_metric_history(trial, "dev/accuracy")
    assert [(m.step, m.value) for m in accuracy] == [(20, 0.61), (40, 0.65)]
    assert [a.path for a in client(uri).list_artifacts(first.parent)] == ["leaderboard.md"]


def test_another_run_directory_gets_its_own_parent(tmp_path):
    settings = TrackingSettings(f"file:{tmp_path / 'mlruns'}", "exp")
    assert MlflowTracker(settings, tmp_path / "a").parent != MlflowTracker(settings, tmp_path / "b").parent


def test_the_experiment_defaults_to_the_suite_name(tmp_path):
    settings = check_tracking(TrackingConfig(f"file:{tmp_path / 'new' / 'mlruns'}"), "quickstart")
    assert settings.experiment == "quickstart" and not (tmp_path / "new").exists()  # checking creates nothing
    assert check_tracking(TrackingConfig(), "quickstart") is None


@pytest.fixture
def suite_file(tmp_path, glue_dir, cache_dir):
    def write(tracking):
        path = tmp_path / "suite.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "name": "t",
                    "tasks": ["rte"],
                    "training": {"epochs": 1},
                    "output": str(tmp_path / "run"),
                    "tracking": tracking,
                }
            )
        )
        return path

    return write


@pytest.mark.parametrize(
    "tracking, message",
    [
        ({"mlflow_uri": "http://127.0.0.1:9"}, "tracking.mlflow_uri: cannot reach http://127.0.0.1:9"),
        ({"mlflow_uri": "ftp://host/x"}, "tracking.mlflow_uri: scheme 'ftp:' is not supported"),
        ({"experiment": "x"}, "tracking.experiment: needs tracking.mlflow_uri"),
        ({"mlflow_uri": "file:/dev/null/mlruns"}, "tracking.mlflow_uri: cannot create /dev/null/mlruns"),
    ],
)
def test_a_tracking_uri_that_cannot_work_fails_at_validation_with_one_line(suite_file, capsys, tracking, message):
    assert main(["validate", str(suite_file(tracking))]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_reachable_store_validates(suite_file, tmp_path):
    assert main(["validate", str(suite_file({"mlflow_uri": f"file:{tmp_path / 'mlruns'}", "experiment": "e"}))]) == 0


def test_an_sqlite_store_without_sqlalchemy_fails_at_validation(monkeypatch, suite_file, capsys, tmp_path):
    # MLflow's client alone (mlflow-skinny) has no SQLAlchemy; a database store needs the full package.
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sqlalchemy" else find_spec(name, *a)
    )
    assert main(["validate", str(suite_file({"mlflow_uri": f"sqlite:///{tmp_path / 'm.db'}"}))]) == 2
    err = capsys.readouterr().err
    assert "tracking.mlflow_uri: an sqlite: store needs SQLAlchemy and Alembic" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert main(["validate", str(suite_file({"mlflow_uri": f"sqlite:///{tmp_path / 'm.db'}"}))]) == 0
