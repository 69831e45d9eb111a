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


def _trial(name, task="rte", epochs=2, error_file=None):
    config = {"trial": {"trial_id": name, "task": task, "training": {"epochs": epochs}}}
    return _Trial(name=name, config=config, error_file=error_file)


def test_plain_log_lines_when_not_a_terminal(tmp_path):
    error = tmp_path / "error.txt"
    error.write_text("Traceback (most recent call last):\n  ...\nValueError: the batch size is 0\n")
    out = io.StringIO()
    display = LiveDisplay(Console(file=out, force_terminal=False, width=200), total=2, skipped=0, epochs_per_trial=2)
    assert display.live is None
    display.on_trial_start(0, [], _trial("rte_seed=1"))
    display.on_trial_result(0, [], _trial("rte_seed=1"), {"epoch": 1, "score": 61.5, "train_samples_per_s": 18.0})
    display.on_trial_complete(0, [], _trial("rte_seed=1"))
    display.on_trial_start(0, [], _trial("rte_seed=2"))
    display.on_trial_error(0, [], _trial("rte_seed=2", error_file=str(error)))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("started  rte_seed=1")
    assert lines[1].endswith("epoch 1/2  rte_seed=1  score 61.50  18.0 samples/s")
    assert "stopped  rte_seed=1  (0 running · 0 done · 1 stopped early · 0 failed · 1 pending" in lines[2]
    assert (
        "FAILED   rte_seed=2: ValueError: the batch size is 0  "
        "(0 running · 0 done · 1 stopped early · 1 failed · 0 pending" in lines[4]
    )


def test_in_epoch_progress_off_a_terminal_is_one_line_at_most_once_a_minute(monkeypatch):
    out = io.StringIO()
    display = LiveDisplay(Console(file=out, force_terminal=False, width=200), total=1, skipped=0, epochs_per_trial=2)
    display.on_trial_start(0, [], _trial("rte_seed=1"))
    clock = [display.last_progress_line + 61]
    monkeypatch.setattr("benchmark.run.live.time.time", lambda: clock[0])
    info = {"epoch": 1, "epochs": 2, "step": 40, "steps": 120, "samples_per_s": 32.14, "seconds_left": 130.0}
    display.progress_update({"rte_seed=1": info})
    clock[0] += 30  # half a minute later: nothing more
    display.progress_update({"rte_seed=1": {**info, "step": 60}})
    lines = out.getvalue().splitlines()
    assert lines[-1].endswith("progress rte_seed=1 epoch 1/2 step 40/120 32.1 samples/s 0:02:10 left")
    assert len(lines) == 2
    assert display.progress.running["rte_seed=1"]["step"]["step"] == 60  # the panel still shows the latest
    clock[0] += 31
    display.progress_update({"rte_seed=1": {**info, "step": 80}})
    assert out.getvalue().splitlines()[-1].split("] ")[1].startswith("progress rte_seed=1 epoch 1/2 step 80/120")


def test_the_driver_polls_the_progress_board_without_waiting_on_it():
    """Tune's loop calls on_step_begin many times a second: a read in flight is checked, never waited on, and
    what it brings reaches the display."""
    import ray

    from benchmark.run.trial import ProgressBoard
    from benchmark.run.tune import PollProgress

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)  # never another test's Ray
    try:
        board, seen = ProgressBoard.remote(), []
        poll = PollProgress(board, [SimpleNamespace(progress_update=seen.append)])
        ray.get(board.update.remote("rte_seed=1", {"step": 3}))
        poll.on_step_begin(0, [])  # sends the first read
        assert poll.pending is not None and seen == []
        ray.wait([poll.pending])
        poll.on_step_begin(1, [])  # the read is back: the display gets it
        assert poll.pending is None and seen[0]["rte_seed=1"]["step"] == 3
        poll.on_step_begin(2, [])  # within the poll interval: no new read
        assert poll.pending is None and len(seen) == 1
    finally:
        ray.shutdown()


def test_best_so_far_after_a_resume_holds_the_kept_trials():
    kept = [
        {"trial_id": "rte_seed=1", "task": "rte", "best_score": 61.5},
        {"trial_id": "rte_seed=2", "task": "rte", "best_score": 64.0},
        {"trial_id": "sst2_seed=1", "task": "sst2", "best_score": None},  # diverged: no score
    ]
    display = LiveDisplay(Console(file=io.StringIO(), force_terminal=False), 1, 3, 2, kept=kept)
    assert display.progress.best == {"rte": (64.0, "rte_seed=2")}
    display.on_trial_start(0, [], _trial("rte_seed=3"))
    display.on_trial_result(0, [], _trial("rte_seed=3"), {"epoch": 1, "score": 63.0, "train_samples_per_s": 18.0})
    assert display.progress.best == {"rte": (64.0, "rte_seed=2")}  # a lower new score does not replace it
