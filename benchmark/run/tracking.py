"""Experiment tracking in MLflow (`tracking:`; the optional extra `pip install -e ".[mlflow]"`).

One parent run per run directory holds the leaderboard files and the report as artifacts; each trial is a child
run with its hyperparameters as params, each evaluation's metrics and the training-curve points (training loss
and learning rate per logging step) against the optimizer step, as the TensorBoard curves have them.

Runs are found again by their tags (`bench.run_key`, the run directory's path hashed; `bench.trial_id`), so a
resumed `bench run` adds to the same runs instead of making new ones, and a point already logged at a step (a
trial resumed from its saved state repeats an evaluation) is not logged twice.

Ray Tune's own `MLflowLoggerCallback` is not used: it starts a new MLflow run every time a trial starts, so a
resumed run would duplicate its trials' runs, and it has no parent run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from urllib.parse import urlparse

from benchmark.config.tracking import TrackingSettings
from benchmark.results.report import write_report
from benchmark.train.curves import CURVE_KEY
from tasks.metrics import OBJECTIVE

PARAM_CHARS = 500  # a param's value is text; long lists are cut rather than refused by the server


class MlflowTracker:
    """The MLflow runs of one run directory: its parent run and a child run per trial, found again on resume."""

    def __init__(self, settings: TrackingSettings, run_dir: Path):
        if (urlparse(settings.mlflow_uri).scheme or "file") == "file":
            # MLflow 3 keeps its file store in maintenance mode behind this switch; the suite asked for one.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        # mlflow: an optional dependency, imported only where it is used.
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=settings.mlflow_uri)
        found = self.client.get_experiment_by_name(settings.experiment)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(settings.experiment)
        self.run_key = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
        self.parent = self._run(
            {"bench.role": "parent"},
            {"mlflow.runName": Path(run_dir).name, "bench.run_dir": str(Path(run_dir).resolve())},
        )
        self.trial_runs: dict[str, str] = {}
        self.logged: dict[tuple[str, str], set[int]] = {}  # (run id, metric) -> steps already in the store

    def _run(self, identity: dict[str, str], extra_tags: dict[str, str]) -> str:
        """The run with these tags in this run directory, or a new one; (re)opened as running."""
        tags = {"bench.run_key": self.run_key, **identity}
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], query, max_results=1)
        if runs:
            self.client.update_run(runs[0].info.run_id, status="RUNNING")
            return runs[0].info.run_id
        return self.client.create_run(self.experiment_id, tags={**tags, **extra_tags}).info.run_id

    def trial_run(self, trial_id: str, params: dict) -> str:
        if trial_id not in self.trial_runs:
            # mlflow: an optional dependency, imported only where it is used.
            from mlflow.entities import Param

            before = self._existing(trial_id)
            run_id = self._run(
                {"bench.trial_id": trial_id}, {"mlflow.runName": trial_id, "mlflow.parentRunId": self.parent}
            )
            if before is None:  # params are written once: a resumed trial has the same settings (its fingerprint)
                self.client.log_batch(
                    run_id, params=[Param(k, str(v)[:PARAM_CHARS]) for k, v in sorted(params.items())]
                )
            self.trial_runs[trial_id] = run_id
        return self.trial_runs[trial_id]

    def _existing(self, trial_id: str) -> str | None:
        query = f"tags.`bench.run_key` = '{self.run_key}' and tags.`bench.trial_id` = '{trial_id}'"
        runs = self.client.search_runs([self.experiment_id], query, max_results=1)
        return runs[0].info.run_id if runs else None

    def log_report(self, run_id: str, report: dict) -> int:
        """One evaluation's report: its metrics and its curve points, each at its step once. Returns points logged."""
        # mlflow: an optional dependency, imported only where it is used.
        from mlflow.entities import Metric

        metrics = [
            Metric(key, float(value), 0, step)
            for key, value, step in report_points(report)
            if step not in self._steps(run_id, key)
        ]
        for m in metrics:
            self.logged[(run_id, m.key)].add(m.step)
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
        return len(metrics)

    def _steps(self, run_id: str, key: str) -> set[int]:
        if (run_id, key) not in self.logged:
            self.logged[(run_id, key)] = {m.step for m in self.client.get_metric_history(run_id, key)}
        return self.logged[(run_id, key)]

    def end_trial(self, trial_id: str, status: str) -> None:
        if trial_id in self.trial_runs:
            self.client.set_terminated(self.trial_runs[trial_id], status)

    def finish(self, files: list[Path]) -> None:
        """The parent run's artifacts (leaderboard files, report), then the parent run ends."""
        for path in files:
            if Path(path).is_file():
                self.client.log_artifact(self.parent, str(path))
        self.client.set_terminated(self.parent, "FINISHED")


def report_points(report: dict) -> list[tuple[str, float, int]]:
    """(metric, value, step) of one evaluation's report, named as the TensorBoard curves name them."""
    step = report.get("optimizer_steps")
    if step is None:
        return []
    points = json.loads(report.get(CURVE_KEY) or "[]") or [
        {"step": step, "train_loss": report.get("train_loss"), "learning_rate": report.get("learning_rate")}
    ]
    out = [
        (f"train/{name}", p.get(key), p["step"])
        for p in points
        for name, key in (("loss", "train_loss"), ("learning_rate", "learning_rate"))
    ]
    keys = [OBJECTIVE, "epoch"] + [k for k in report if _is_metric_key(k)]
    out += [(f"dev/{k}", report.get(k), step) for k in dict.fromkeys(keys)]
    for task, values in (report.get("tasks") or {}).items():
        out += [(f"dev/{task}/{k}", v, step) for k, v in values.items() if k not in ("train_loss", "train_steps")]
    return [
        (k, v, int(s))
        for k, v, s in out
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]


def _is_metric_key(key: str) -> bool:
    """Metric names of evaluate's glue metric, with a split suffix for MNLI (accuracy_matched, ...)."""
    return key.split("_")[0] in ("accuracy", "f1", "matthews", "pearson", "spearmanr")


def trial_params(config: dict) -> dict:
    """A Tune trial's hyperparameters as flat MLflow params: its training settings (with the values a search
    sampled), task, model, seed and grid point."""
    spec = config.get("trial") or {}
    sampled = config.get("sampled") or {}
    training = {**(spec.get("training") or {}), **sampled}
    params = {f"training.{k}": v for k, v in training.items()}
    params.update(
        {
            "task": spec.get("task") or "+".join(spec.get("tasks") or []),
            "model": spec.get("model_name"),
            "model_path": spec.get("model_path"),
            "seed": spec.get("seed"),
            "kind": spec.get("kind"),
        }
    )
    params.update({f"point.{k}": v for k, v in {**(spec.get("point") or {}), **sampled}.items()})
    return {k: v for k, v in params.items() if v not in (None, "")}


# ---- what `bench run` calls ----


def open_tracker(settings: TrackingSettings | None, run_dir: Path, log=print) -> MlflowTracker | None:
    """The run's MLflow runs when the suite tracks (its parent run found again on resume); None otherwise."""
    if settings is None:
        return None
    tracker = MlflowTracker(settings, run_dir)
    log(f"Tracking: MLflow {settings.mlflow_uri}, experiment {settings.experiment}, parent run {tracker.parent}")
    return tracker


def finish_tracking(tracker: MlflowTracker, run_dir: Path, log=print) -> None:
    """The leaderboard files and the report (written now) as the parent run's artifacts."""
    report = write_report([Path(run_dir)])
    tracker.finish([Path(run_dir) / f"leaderboard.{ext}" for ext in ("md", "csv", "json")] + [report])
    log(f"Tracking: leaderboard and report logged to MLflow run {tracker.parent}")
