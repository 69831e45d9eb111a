"""The run-directory lock, with real processes: a second command is refused and told who holds the directory;
a lock left by a killed process is taken over; of several processes racing for it, exactly one wins."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO, bench

from benchmark.records.lock import LOCK_FILE, RunLocked, run_lock

HOLD = """
import sys, time
from benchmark.records.lock import run_lock
with run_lock(sys.argv[1], command="holder-test"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""

RACE = """
import sys, time
from benchmark.records.lock import RunLocked, run_lock
while time.time() < float(sys.argv[2]):   # start together
    time.sleep(0.001)
try:
    with run_lock(sys.argv[1]):
        print("won", flush=True)
        time.sleep(6)   # longer than the slowest start, so no late process finds it free
except RunLocked:
    print("refused", flush=True)
"""


def start_holder(folder, seconds=120) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_held_directory_is_refused_naming_the_holder(tmp_path):
    holder = start_holder(tmp_path / "run")
    try:
        with pytest.raises(RunLocked) as err:
            with run_lock(tmp_path / "run"):
                pass
        message = str(err.value)
        assert f"pid {holder.pid} on host " in message and "(holder-test)" in message and "\n" not in message
    finally:
        holder.kill()
        holder.wait()


def test_bench_run_on_a_locked_directory_fails_fast_with_one_line(tmp_path, glue_dir, cache_dir):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "tasks": ["rte"],
                "data": {"max_train_samples": 16, "max_eval_samples": 8},
                "training": {"epochs": 1, "batch_size": 8},
            }
        )
    )
    run = tmp_path / "run"
    holder = start_holder(run)
    try:
        proc = bench("run", suite, "--output", run, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"bench: error: {run}: in use by another bench command: pid {holder.pid} ")
    assert not (run / "suite.yaml").exists() and not (run / "ray").exists()  # refused before anything started


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (tmp_path / LOCK_FILE).read_text()  # the dead holder's file is still there
    with run_lock(tmp_path) as info:
        assert info["pid"] == os.getpid()
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()
    assert not (tmp_path / LOCK_FILE).exists()


def test_released_on_exceptions_and_no_empty_folder_left(tmp_path):
    with pytest.raises(ValueError):
        with run_lock(tmp_path / "new"):
            raise ValueError("boom")
    assert not (tmp_path / "new").exists()  # created by the lock, nothing written into it: removed
    with run_lock(tmp_path / "new"):
        (tmp_path / "new" / "kept").write_text("x")
    assert (tmp_path / "new" / "kept").is_file() and not (tmp_path / "new" / LOCK_FILE).exists()


def test_of_processes_racing_for_the_lock_exactly_one_wins(tmp_path):
    start = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(tmp_path), str(start)], stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        for _ in range(6)
    ]
    outcomes = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outcomes == ["refused"] * 5 + ["won"]


def test_bench_ensemble_on_a_locked_run_is_refused(tmp_path, capsys, glue_dir, cache_dir):
    from benchmark.cli import main
    from benchmark.records.store import RunStore

    run = tmp_path / "run"
    RunStore(run).write_suite({"name": "t", "tasks": ["rte"], "output": str(run)})
    holder = start_holder(run)
    try:
        assert main(["ensemble", str(run)]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert err.startswith(f"bench: error: {run}: in use by another bench command: pid {holder.pid} ")
    assert err.count("\n") == 1
