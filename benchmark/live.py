"""What `bench run` shows while it works: a rich live panel on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import time

from ray import tune
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from tasks.metrics import OBJECTIVE


class LiveDisplay(tune.Callback):
    def __init__(self, console: Console, total: int, skipped: int, epochs_per_trial: int):
        self.console = console
        self.total, self.skipped, self.epochs = total, skipped, epochs_per_trial
        self.running: dict[str, dict] = {}
        self.done = self.failed = 0
        self.best: dict[str, tuple[float, str]] = {}
        self.start = time.time()
        # get_renderable: redrawn on every refresh, so the clock and estimate keep moving between events.
        self.live = (Live(get_renderable=self._render, console=console, refresh_per_second=2, transient=False)
                     if console.is_terminal else None)
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
        name = str(trial)
        self.running[name] = {"task": trial.config["trial"]["task"], "epoch": 0, "score": None, "sps": None}
        self._log(f"started  {name}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = str(trial)
        state = self.running.setdefault(name, {"task": trial.config["trial"]["task"]})
        score = result.get(OBJECTIVE)
        if score is None:   # a diverged trial's last word
            self._log(f"DIVERGED {name}: {result.get('error', '')}")
            return
        state.update(epoch=result.get("epoch"), score=score, sps=result.get("train_samples_per_s"))
        if score is not None and score > self.best.get(state["task"], (float("-inf"), ""))[0]:
            self.best[state["task"]] = (score, name)
        self._log(f"epoch {result.get('epoch')}/{self.epochs}  {name}  score {score:.2f}  "
                  f"{result.get('train_samples_per_s', 0):.1f} samples/s")

    def on_trial_complete(self, iteration, trials, trial, **info):
        name = str(trial)
        self.running.pop(name, None)
        self.done += 1
        self._log(f"finished {name}")

    def on_trial_error(self, iteration, trials, trial, **info):
        name = str(trial)
        self.running.pop(name, None)
        self.failed += 1
        self._log(f"FAILED   {name}")

    def _log(self, line: str) -> None:
        if self.live:
            self.live.refresh()
        else:
            self.console.print(f"[{time.strftime('%H:%M:%S')}] {line}", highlight=False)

    def _render(self):
        elapsed = time.time() - self.start
        finished = self.done + self.failed
        pending = self.total - finished - len(self.running)
        eta = ""
        if finished:
            eta = f" · about {_clock(elapsed / finished * (pending + len(self.running) / 2))} left"
        head = (f"[bold]{len(self.running)} running[/] · {self.done} done · [red]{self.failed} failed[/] · "
                f"{pending} pending" + (f" · {self.skipped} kept from before" if self.skipped else "")
                + f" · {_clock(elapsed)} elapsed{eta}")
        running = Table(title="running", title_justify="left", expand=False)
        for col in ("trial", "epoch", "dev score", "samples/s"):
            running.add_column(col)
        for name, s in self.running.items():
            running.add_row(name, f"{s.get('epoch') or 0}/{self.epochs}", _fmt(s.get("score")), _fmt(s.get("sps")))
        best = Table(title="best so far", title_justify="left", expand=False)
        for col in ("task", "dev score", "trial"):
            best.add_column(col)
        for task, (score, name) in self.best.items():
            best.add_row(task, f"{score:.2f}", name)
        return Group(head, running, best)


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.2f}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
