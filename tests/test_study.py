"""A study run in parts: every part's time is kept, a stopped part's too, and a part that died untimed is said."""

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmark.measure import study


def fake_suite(run, monkeypatch, action):
    monkeypatch.setattr(study, "load_suite", lambda *a, **k: SimpleNamespace(output=str(run)))
    monkeypatch.setattr(study, "run_suite", lambda suite: action())


def finished_trial(run):
    (run / "trials" / "rte_seed=1").mkdir(parents=True)
    (run / "trials" / "rte_seed=1" / "record.json").write_text("{}")


def test_parts_add_up_and_a_stopped_part_keeps_its_time(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    fake_suite(run, monkeypatch, lambda: None)
    first = study.run_study("m", "", "s.yaml", "out", [])
    assert (first.parts, first.untimed) == (1, 0)
    assert first.wall_text().startswith("wall time 0.0 min over 1 part(s)") and "plus" not in first.wall_text()

    def killed():  # kill (SIGTERM) mid-run: the part still writes its time, and the stop reaches the caller
        os.kill(os.getpid(), signal.SIGTERM)

    fake_suite(run, monkeypatch, killed)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        study.run_study("m", "", "s.yaml", "out", [])
    assert json.loads((run / "study_wall.json").read_text())["parts"] == 2
    assert signal.getsignal(signal.SIGTERM) == before  # put back as it was

    fake_suite(run, monkeypatch, lambda: None)
    assert study.run_study("m", "", "s.yaml", "out", []).parts == 3


def test_a_part_that_died_untimed_is_said(tmp_path, monkeypatch):
    run = tmp_path / "run"
    finished_trial(run)  # finished trials, no time kept: an earlier part died (kill -9) before writing it
    fake_suite(run, monkeypatch, lambda: None)
    resumed = study.run_study("m", "", "s.yaml", "out", [])
    assert (resumed.parts, resumed.untimed) == (1, 1)
    assert "plus 1 part(s) stopped before they could be timed" in resumed.wall_text()
    again = study.run_study("m", "", "s.yaml", "out", [])  # said once, not once per later part
    assert (again.parts, again.untimed) == (2, 1)


def test_merging_times_its_runs_as_every_study_does(tmp_path, monkeypatch):
    from benchmark.measure import merging

    run = tmp_path / "run"
    finished_trial(run)
    monkeypatch.setattr(merging, "load_suite", lambda *a, **k: SimpleNamespace(output=str(run)))
    monkeypatch.setattr(study, "run_suite", lambda suite: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(KeyboardInterrupt):
        merging.run({"name": "merging-main"}, tmp_path, [])
    assert json.loads((run / "study_wall.json").read_text())["untimed"] == 1  # the stopped part kept its time too
    monkeypatch.setattr(study, "run_suite", lambda suite: None)
    suite, (seconds, parts, untimed) = merging.run({"name": "merging-main"}, tmp_path, [])
    assert (parts, untimed) == (2, 1)
    assert "plus 1 part(s) stopped" in study.wall_text(seconds, parts, untimed)


@pytest.mark.parametrize("module, argv", [("finetuning", ["--study", "freezing", "--out", "o"]), ("search", [])])
def test_studies_with_a_run_per_arm_time_each_arm_as_every_study_does(tmp_path, monkeypatch, module, argv):
    """finetuning's and search's arms each run through `timed_run`: an arm stopped by SIGTERM keeps its time, and a
    resumed study's header counts every part of every arm, not only the last command's."""
    import importlib

    measure = importlib.import_module(f"benchmark.measure.{module}")

    def load(path, overrides, output=None):
        config = SimpleNamespace(name="s", training=SimpleNamespace(epochs=2))
        return SimpleNamespace(output=output or str(tmp_path / "run"), config=config)

    class Stop(Exception):
        pass

    def stop(out, name, runs, baseline):
        raise Stop(list(runs.values()))

    monkeypatch.setattr(measure, "load_suite", load)
    monkeypatch.setattr(measure, "board_from_records", stop)
    ran = []

    def second_arm_killed(suite):
        ran.append(suite.output)
        if len(ran) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(study, "run_suite", second_arm_killed)
    with pytest.raises(KeyboardInterrupt):
        measure.main(argv)
    assert [json.loads((Path(o) / "study_wall.json").read_text())["parts"] for o in ran] == [1, 1]

    monkeypatch.setattr(study, "run_suite", lambda suite: ran.append(suite.output))
    with pytest.raises(Stop) as stopped:
        measure.main(argv)
    runs = stopped.value.args[0]
    assert len(runs) >= 2 and all(str(r) in ran for r in runs)
    parts = [json.loads((r / "study_wall.json").read_text())["parts"] for r in runs]
    assert parts[:2] == [2, 2] and set(parts[2:]) <= {1}  # the first two arms ran twice, the rest once
    walls = [(1.0, 2, 0), (2.0, 1, 1)]
    assert study.walls_text(walls).startswith("wall time 0.1 min over 2 part(s), plus 1 part(s) stopped")
