"""The Tune callback that reports trials to MLflow (benchmark/run/tracking.py); apart, so that checking a suite's
`tracking:` section imports no Ray."""

from __future__ import annotations

import sys

from ray import tune

from benchmark.run.tracking import MlflowTracker, trial_params


class MlflowCallback(tune.Callback):
    """Each Tune trial as an MLflow run: opened (or found again) when it starts, a point per report, closed when
    it ends. Tracking only watches: a store that fails mid-run is reported once, and the trials go on."""

    def __init__(self, tracker: MlflowTracker):
        self.tracker = tracker
        self.failed = False

    def _safely(self, action, *args) -> None:
        if self.failed:
            return
        try:
            action(*args)
        except Exception as e:  # MLflow raises its own and the HTTP client's errors
            self.failed = True
            print(f"warning: MLflow tracking stopped: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)

    def _log(self, trial, result: dict) -> None:
        self.tracker.log_report(self.tracker.trial_run(str(trial), trial_params(trial.config)), result)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._safely(self.tracker.trial_run, str(trial), trial_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "epoch" in result:
            self._safely(self._log, trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._safely(self.tracker.end_trial, str(trial), "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._safely(self.tracker.end_trial, str(trial), "FAILED")


def tracking_callbacks(tracker: MlflowTracker | None) -> list:
    if tracker is None:
        return []
    return [MlflowCallback(tracker)]
