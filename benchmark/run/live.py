"""What `bench run` shows while it works: a rich live panel on a terminal, plain log lines elsewhere (CI, nohup).

`Progress` keeps the counts, the throughput and the time estimate, and knows nothing of Ray or rich, so that it
is tested on its own; `LiveDisplay` is the Tune callback that feeds it and draws it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ray import tune
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from benchmark.run.recorder import error_text
from tasks.metrics import OBJECTIVE

PROGRESS_LINE_EVERY_S = 60.0  # off a terminal: one progress line at most this often


@dataclass
class Progress:
    total: int  # trials this run starts
    epochs_per_trial: int
    started: float
    skipped: int = 0  # finished trials kept from an earlier run
    running: dict = field(default_factory=dict)  # trial -> {"task", "epoch", "epochs", "score", "sps"}
    done: int = 0  # ran every epoch
    stopped: int = 0  # ended before its last epoch (a scheduler stopped it)
    diverged: int = 0  # its loss became NaN or inf
    failed: int = 0
    epochs_done: int = 0  # over all trials: the rate the estimate extrapolates
    best: dict = field(default_factory=dict)  # task -> (dev score, trial)

    def start(self, trial: str, task: str, epochs: int) -> None:
        self.running[trial] = {"task": task, "epoch": 0, "epochs": epochs, "score": None, "sps": None}

    def result(self, trial: str, task: str, epoch: int, score: float | None, samples_per_s: float | None) -> None:
        state = self.running.setdefault(trial, {"task": task, "epochs": self.epochs_per_trial})
        state.update(epoch=epoch, score=score, sps=samples_per_s)
        self.epochs_done += 1
        self.offer_best(task, score, trial)

    def offer_best(self, task: str, score: float | None, trial: str) -> None:
        """A dev score, kept as the task's best so far if it beats it."""
        if score is not None and score > self.best.get(task, (float("-inf"), ""))[0]:
            self.best[task] = (score, trial)

    def step(self, trial: str, info: dict) -> None:
        """Where a running trial stands within its epoch (`train.trainer.step_progress`)."""
        if trial in self.running:
            self.running[trial]["step"] = info

    def complete(self, trial: str) -> str:
        """Record a trial that ended without error: finished, stopped (ended early) or diverged."""
        state = self.running.pop(trial, None)
        if state and state.get("diverged"):
            self.diverged += 1
            return "diverged"
        if state and (state.get("epoch") or 0) < state["epochs"]:
            self.stopped += 1
            return "stopped"
        self.done += 1
        return "finished"

    def diverge(self, trial: str) -> None:
        self.running.setdefault(trial, {"task": None, "epochs": self.epochs_per_trial})["diverged"] = True

    def fail(self, trial: str) -> None:
        self.running.pop(trial, None)
        self.failed += 1

    @property
    def pending(self) -> int:
        return self.total - self.done - self.stopped - self.diverged - self.failed - len(self.running)

    def throughput(self) -> float | None:
        """Training samples per second, summed over the running trials' last epochs."""
        rates = [s["sps"] for s in self.running.values() if s.get("sps")]
        return sum(rates) if rates else None

    def seconds_left(self, now: float) -> float | None:
        """Epochs still to run over the rate of epochs so far (which counts trials running side by side)."""
        if not self.epochs_done or now <= self.started:
            return None
        rate = self.epochs_done / (now - self.started)
        remaining = sum(max(0, s["epochs"] - (s.get("epoch") or 0)) for s in self.running.values())
        remaining += self.pending * self.epochs_per_trial
        return remaining / rate

    def summary(self, now: float) -> str:
        parts = [f"{len(self.running)} running", f"{self.done} done"]
        parts += [f"{self.stopped} stopped early"] if self.stopped else []
        parts += [f"{self.diverged} diverged"] if self.diverged else []
        parts += [f"{self.failed} failed", f"{self.pending} pending"]
        parts += [f"{self.skipped} kept from before"] if self.skipped else []
        parts.append(f"{clock(now - self.started)} elapsed")
        if self.throughput() is not None:
            parts.append(f"{self.throughput():.0f} samples/s")
        left = self.seconds_left(now)
        if left is not None:
            parts.append(f"about {clock(left)} left")
        return " · ".join(parts)


class LiveDisplay(tune.Callback):
    def __init__(self, console: Console, total: int, skipped: int, epochs_per_trial: int, kept: list[dict] = ()):
        """`kept`: the records of finished trials kept from an earlier run, whose scores start "best so far"."""
        self.console = console
        self.last_progress_line = time.time()
        self.progress = Progress(total, epochs_per_trial, time.time(), skipped)
        for record in kept:
            self.progress.offer_best(record["task"], record.get("best_score"), record["trial_id"])
        # get_renderable: redrawn on every refresh, so the clock and estimate keep moving between events.
        self.live = (
            Live(get_renderable=self._render, console=console, refresh_per_second=2, transient=False)
            if console.is_terminal
            else None
        )
        if self.live:
            self.live.start()

    def __getstate__(self):
        # Tune pickles its callbacks into the experiment state; a terminal handle does not pickle.
        return {**self.__dict__, "live": None, "console": None}

    def close(self) -> None:
        if self.live:
            self.live.refresh()
            self.live.stop()
            self.live = None

    def on_trial_start(self, iteration, trials, trial, **info):
        spec = trial.config["trial"]
        self.progress.start(str(trial), spec["task"], spec["training"]["epochs"])
        self._log(f"started  {trial}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        spec = trial.config["trial"]
        if result.get("diverged"):
            self.progress.diverge(str(trial))
            self._log(f"DIVERGED {trial}: {result.get('error', '')}")
            return
        score, sps = result.get(OBJECTIVE), result.get("train_samples_per_s")
        self.progress.result(str(trial), spec["task"], result.get("epoch"), score, sps)
        self._log(
            f"epoch {result.get('epoch')}/{spec['training']['epochs']}  {trial}  "
            f"score {_fmt(score)}  {_fmt(sps, 1)} samples/s"
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        how = self.progress.complete(str(trial))
        self._log(f"{how:8s} {trial}  ({self.progress.summary(time.time())})")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress.fail(str(trial))
        # The reason, as the trial's record keeps it: a failed study's log says why without opening the records.
        self._log(f"FAILED   {trial}: {error_text(trial.error_file)}  ({self.progress.summary(time.time())})")

    def progress_update(self, latest: dict[str, dict]) -> None:
        """The running trials' in-epoch progress (read from the trials' board by `run.tune.PollProgress`). On a
        terminal the panel shows it; elsewhere one line, at most once a minute."""
        for trial, info in latest.items():
            self.progress.step(trial, info)
        now = time.time()
        if self.live or now - self.last_progress_line < PROGRESS_LINE_EVERY_S:
            return
        parts = [f"{name} {_where(s['step'])}" for name, s in self.progress.running.items() if s.get("step")]
        if parts:
            self.last_progress_line = now
            self._log("progress " + "; ".join(parts))

    def _log(self, line: str) -> None:
        if self.live:
            self.live.refresh()
        else:
            self.console.print(f"[{time.strftime('%H:%M:%S')}] {line}", highlight=False, markup=False)

    def _render(self):
        p = self.progress
        running = Table(title="running", title_justify="left", expand=False)
        for col in ("trial", "epoch", "step", "dev score", "samples/s", "left"):
            running.add_column(col)
        for name, s in p.running.items():
            step = s.get("step") or {}
            running.add_row(
                name,
                f"{step.get('epoch', (s.get('epoch') or 0))}/{s['epochs']}",
                f"{step['step']}/{step['steps']}" if step else "—",
                _fmt(s.get("score")),
                _fmt(step.get("samples_per_s", s.get("sps")), 1),
                clock(step["seconds_left"]) if step.get("seconds_left") is not None else "—",
            )
        best = Table(title="best so far", title_justify="left", expand=False)
        for col in ("task", "dev score", "trial"):
            best.add_column(col)
        for task, (score, name) in p.best.items():
            best.add_row(task, f"{score:.2f}", name)
        return Group(f"[bold]{p.summary(time.time())}[/]", running, best)


def _where(step: dict) -> str:
    """`epoch 1/3 step 40/120 32.1 samples/s 0:02:10 left`"""
    left = step.get("seconds_left")
    text = f"epoch {step['epoch']}/{step['epochs']} step {step['step']}/{step['steps']} "
    text += f"{_fmt(step.get('samples_per_s'), 1)} samples/s"
    return text + (f" {clock(left)} left" if left is not None else "")


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
