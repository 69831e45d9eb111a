"""The live display's counts and estimates, and its plain log lines when the output is not a terminal."""

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from benchmark.run.live import LiveDisplay, Progress


def test_counts_throughput_and_time_left():
    p = Progress(total=4, epochs_per_trial=3, started=0.0)
    p.start("a", "rte", 3)
    p.start("b", "mrpc", 3)
    assert p.pending == 2 and p.seconds_left(10.0) is None and p.throughput() is None
    p.result("a", "rte", 1, 55.0, 20.0)
    p.result("b", "mrpc", 1, 70.0, 30.0)
    # Two epochs in 100 s; still to run: 2 + 2 epochs of the running trials, 3 + 3 of the pending ones.
    assert p.seconds_left(100.0) == pytest.approx(10 / (2 / 100))
    assert p.throughput() == 50.0
    p.result("a", "rte", 2, 60.0, 22.0)
    p.result("a", "rte", 3, 58.0, 22.0)
    assert p.complete("a") == "finished"
    assert p.best == {"rte": (60.0, "a"), "mrpc": (70.0, "b")}
    assert p.complete("b") == "stopped"  # ended after epoch 1 of 3: a scheduler stopped it
    p.start("c", "rte", 3)
    p.fail("c")
    assert (p.done, p.stopped, p.failed, p.pending) == (1, 1, 1, 1)
    # 4 epochs in 200 s; one pending trial of 3 epochs left.
    assert p.seconds_left(200.0) == pytest.approx(3 / (4 / 200))
    assert p.summary(200.0) == (
        "0 running · 1 done · 1 stopped early · 1 failed · 1 pending · 0:03:20 elapsed · about 0:02:30 left"
    )


class _Trial(SimpleNamespace):
    def __str__(self):  # as Tune's Trial: its name
        return self.name


def _trial(name, task="rte", epochs=2):
    return _Trial(name=name, config={"trial": {"trial_id": name, "task": task, "training": {"epochs": epochs}}})


def test_plain_log_lines_when_not_a_terminal():
    out = io.StringIO()
    display = LiveDisplay(Console(file=out, force_terminal=False, width=200), total=2, skipped=0, epochs_per_trial=2)
    assert display.live is None
    display.on_trial_start(0, [], _trial("rte_seed=1"))
    display.on_trial_result(0, [], _trial("rte_seed=1"), {"epoch": 1, "score": 61.5, "train_samples_per_s": 18.0})
    display.on_trial_complete(0, [], _trial("rte_seed=1"))
    display.on_trial_start(0, [], _trial("rte_seed=2"))
    display.on_trial_error(0, [], _trial("rte_seed=2"))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("started  rte_seed=1")
    assert lines[1].endswith("epoch 1/2  rte_seed=1  score 61.50  18.0 samples/s")
    assert "stopped  rte_seed=1  (0 running · 0 done · 1 stopped early · 0 failed · 1 pending" in lines[2]
    assert "FAILED   rte_seed=2  (0 running · 0 done · 1 stopped early · 1 failed · 0 pending" in lines[4]
