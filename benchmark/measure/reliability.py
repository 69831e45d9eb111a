"""Reliability: a soak of injected faults and a load test of many tiny trials, with counts checked.

    python -m benchmark.measure.reliability soak --kills 12 --seed 1 --out results/reliability
    python -m benchmark.measure.reliability load --trials 200 --out results/reliability

Both drive `bench run` as a user does, in a fresh process, on a tiny random BERT.

soak: one suite whose trials meet every fault class: a model whose weights do not fit its config (an exception
inside those trials), a task whose loss overflows (a diverging trial), the driver killed with SIGKILL at seeded
random points (each time the same command resumes), one Ctrl-C (a clean stop), two Ctrl-C (an immediate exit),
then a last run to the end. After each fault it checks that no finished record was lost or rewritten; at the end,
that every trial has exactly one record with the expected status.

load: a suite of N one-epoch trials on a few examples; it samples the RSS of the driver process and, apart, of
the Ray processes below it, and checks that every trial was recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from benchmark.measure.tiny import make_tiny_bert, write_easy_task
from benchmark.records.lock import run_lock
from benchmark.records.store import DONE_STATUSES

RECORDS = "trials/*/record.json"


def driver_command(suite_path: Path) -> list[str]:
    return [sys.executable, "-m", "benchmark.cli", "run", str(suite_path)]


def start_driver(suite_path: Path, log: Path) -> subprocess.Popen:
    """`bench run` in its own process group, as a terminal starts it: Ctrl-C reaches the whole group. (A shell
    starts background jobs with SIGINT ignored, and children inherit that: the driver gets it back.)"""
    with open(log, "ab") as out:
        return subprocess.Popen(
            driver_command(suite_path),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )


def finished_records(run: Path) -> dict[str, bytes]:
    """Each finished (or stopped, or diverged) trial's record, as bytes: a record rewritten later shows."""
    out = {}
    for path in run.glob(RECORDS):
        data = path.read_bytes()
        if json.loads(data)["status"] in DONE_STATUSES:
            out[path.parent.name] = data
    return out


def lost_or_rewritten(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return sorted(t for t, data in before.items() if after.get(t) != data)


def end_group(proc: subprocess.Popen) -> int:
    """Wait for the driver, then kill what is left of its process group (Ray's processes); how many were left."""
    proc.wait()
    left = _group_members(proc.pid)
    if left:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


def _group_members(pgid: int) -> list[int]:
    members = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                members.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


TRIAL_WRITES = ("trials/*/*.json", "trials/*/checkpoint")  # records, progress files, checkpoints
# After the trials: the ensembles' files, while they are being built in their staging folder (a start whose
# ensembles were built before writes none, so kills placed by these land inside a build).
ENSEMBLE_BUILD_WRITES = (".ensembles.*/**/*",)


def writes(run: Path, watch: tuple[str, ...] = TRIAL_WRITES) -> dict[str, int]:
    """What the driver has written so far to the paths `watch` matches in the run directory."""
    while True:
        try:
            paths = [p for pattern in watch for p in run.glob(pattern)]
            break
        except FileNotFoundError:  # a staging folder was renamed away in the middle of the walk: walk again
            continue
    out = {}
    for path in paths:
        try:
            out[str(path)] = path.stat().st_mtime_ns
        except FileNotFoundError:
            continue
    return out


def wait_for_writes(
    proc: subprocess.Popen, run: Path, new_writes: int, timeout: float, watch: tuple[str, ...] = TRIAL_WRITES
) -> None:
    seen, deadline, count = writes(run, watch), time.time() + timeout, 0
    while count < new_writes and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
        now = writes(run, watch)
        count += sum(1 for path, mtime in now.items() if seen.get(path) != mtime)
        seen = now


def kill_after(
    suite_path: Path,
    run: Path,
    new_writes: int,
    delay: float,
    log: Path,
    timeout: float = 900,
    watch: tuple[str, ...] = TRIAL_WRITES,
) -> dict:
    """Start the run; after its `new_writes`-th write to what `watch` matches and then `delay` seconds more,
    SIGKILL the driver and its Ray cluster (unless the run ended first). Kills so land anywhere in a run, but each
    one after some progress."""
    before = finished_records(run)
    proc = start_driver(suite_path, log)
    wait_for_writes(proc, run, new_writes, timeout, watch)
    try:
        rc, killed = proc.wait(timeout=delay), False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc, killed = proc.wait(), True
    after = finished_records(run)
    end_group(proc)  # the group was killed whole; a run that ended by itself may leave Ray's processes
    return {
        "fault": "SIGKILL of the driver",
        "after_writes": new_writes,
        "delay_s": round(delay, 2),
        "injected": killed,
        "returncode": rc,
        "finished_before": len(before),
        "finished_after": len(after),
        "lost": lost_or_rewritten(before, after),
    }


def random_kills(
    suite_path: Path,
    run: Path,
    kills: int,
    seed: int,
    log: Path,
    max_writes: int = 3,
    max_delay: float = 3.0,
    watch: tuple[str, ...] = TRIAL_WRITES,
) -> list[dict]:
    """`kills` SIGKILLs at seeded random points, the same command started again after each. A start that ends
    before its kill point is kept as an event (injected: False) and another point drawn, up to `kills` more."""
    rng, events = random.Random(seed), []
    while sum(e["injected"] for e in events) < kills and len(events) < 2 * kills:
        events.append(
            kill_after(suite_path, run, rng.randint(1, max_writes), rng.uniform(0.0, max_delay), log, watch=watch)
        )
    return events


def interrupt_after(
    suite_path: Path, run: Path, new_writes: int, presses: int, log: Path, timeout: float = 900
) -> dict:
    """Start the run; after its `new_writes`-th write to the run directory, press Ctrl-C `presses` times (0.5 s
    apart) on the process group; time how long the driver takes to exit, and check that the lock was released."""
    before = finished_records(run)
    start = log.stat().st_size if log.exists() else 0
    proc = start_driver(suite_path, log)
    wait_for_writes(proc, run, new_writes, timeout)
    injected = proc.poll() is None
    pressed, pressed_at = time.perf_counter(), log.stat().st_size  # what failing trials printed before is theirs
    for press in range(presses if injected else 0):
        if press:
            time.sleep(0.5)
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            break
    rc = proc.wait()
    exit_seconds = time.perf_counter() - pressed
    leftover = len(_group_members(proc.pid))  # Ray's processes still ending as the driver exits
    deadline = time.time() + 10
    while _group_members(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    lingering = end_group(proc)  # still there 10 s later (then killed)
    try:
        with run_lock(run):
            released = True
    except Exception:
        released = False
    after = finished_records(run)
    text = log.read_bytes()[start:].decode(errors="replace")
    tail = text.strip().splitlines()
    after_press = log.read_bytes()[pressed_at:].decode(errors="replace")
    return {
        "fault": f"Ctrl-C x{presses}",
        "injected": injected,
        "returncode": rc,
        "exit_seconds": round(exit_seconds, 1),
        "lock_released": released,
        "leftover_processes": leftover,
        "lingering_after_10s": lingering,
        "last_line": tail[-1] if tail else "",
        "traceback": "Traceback (most recent call last)" in after_press,
        "finished_before": len(before),
        "finished_after": len(after),
        "lost": lost_or_rewritten(before, after),
    }


def run_to_end(suite_path: Path, run: Path, log: Path) -> dict:
    before = finished_records(run)
    proc = start_driver(suite_path, log)
    rc = proc.wait()
    end_group(proc)
    after = finished_records(run)
    return {
        "fault": "none (run to the end)",
        "injected": False,
        "returncode": rc,
        "finished_before": len(before),
        "finished_after": len(after),
        "lost": lost_or_rewritten(before, after),
    }


def records(run: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in run.glob(RECORDS)}


# --- the soak's suite ---------------------------------------------------------------------------------------


def mismatched_model(folder: Path, config_from: Path) -> Path:
    """A model folder whose weights are 48 wide while its config.json says 32: it passes the up-front checks
    (config and safetensors headers are sound) and fails when a trial loads the weights."""
    make_tiny_bert(folder, hidden=48)
    shutil.copy(config_from / "config.json", folder / "config.json")
    return folder


def overflow_task(folder: Path, rows: int = 32) -> dict:
    """Regression targets near 1e30: the squared error overflows float32 on the first step (a diverging trial)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev"):
        lines = ["text,label", *(f"sample {i},{(i % 3 + 1) * 1e30}" for i in range(rows))]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return {
        "name": "huge",
        "train": str(folder / "train.csv"),
        "validation": str(folder / "dev.csv"),
        "text_columns": ["text"],
        "regression": True,
    }


def fault_suite(work: Path, seeds: int, epochs: int = 2, train: int = 64) -> tuple[Path, dict]:
    """The soak's suite: (tiny, mismatched) x (easy, huge) x seeds. Expected statuses by (model, task)."""
    tiny = make_tiny_bert(work / "tiny")
    broken = mismatched_model(work / "broken", tiny)
    suite = {
        "name": "faults",
        "model": [str(tiny), str(broken)],
        "tasks": [write_easy_task(work / "easy", train=train, dev=32), overflow_task(work / "huge")],
        "data": {"max_train_samples": train, "max_eval_samples": 32},
        "training": {
            "epochs": epochs,
            "batch_size": 16,
            "max_seq_length": 32,
            "zero_stage": 0,
            "warmup_ratio": 0.0,
            "precision": "fp32",
            "learning_rate": 1e-3,
        },
        "search": {"seeds": list(range(1, seeds + 1)), "max_failures": 0},
        "output": str(work / "run"),
    }
    path = work / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    expected = {
        ("tiny", "easy"): "finished",
        ("tiny", "huge"): "diverged",
        ("broken", "easy"): "failed",
        ("broken", "huge"): "failed",
    }
    return path, expected


@dataclass
class Soak:
    events: list[dict] = field(default_factory=list)

    def table(self) -> list[dict]:
        """Per fault class: injections, runs that survived it (exit as expected, nothing lost), records lost."""
        rows: dict[str, dict] = {}
        for e in self.events:
            row = rows.setdefault(e["fault"], {"fault": e["fault"], "injections": 0, "survived": 0, "lost": 0})
            row["injections"] += bool(e["injected"])
            row["lost"] += len(e["lost"])
            row["survived"] += (
                bool(e["injected"]) and not e["lost"] and e.get("lock_released", True) and not e.get("traceback", False)
            )
        return list(rows.values())


def soak(work: Path, kills: int, seed: int, seeds: int, max_delay: float) -> tuple[Soak, dict]:
    """Kill the driver at `kills` seeded random points, then one Ctrl-C, then two, then run to the end.
    Returns the events and the final records, checked against the expected statuses."""
    work.mkdir(parents=True, exist_ok=True)
    suite_path, expected = fault_suite(work, seeds)
    run, log, result = work / "run", work / "driver.log", Soak()
    result.events += random_kills(suite_path, run, kills, seed, log, max_delay=max_delay)
    result.events.append(interrupt_after(suite_path, run, 2, 1, log))
    result.events.append(interrupt_after(suite_path, run, 1, 2, log))
    result.events.append(run_to_end(suite_path, run, log))
    return result, check_final(run, expected, seeds)


def check_final(run: Path, expected: dict, seeds: int) -> dict:
    """Every planned trial has one record with the expected status; failed ones carry the trial's error."""
    recs = records(run)
    wrong = {}
    for (model, task), status in expected.items():
        for s in range(1, seeds + 1):
            name = f"{task}_{model}_seed={s}"
            got = recs.get(name, {}).get("status")
            if got != status:
                wrong[name] = got
    counts = {status: sum(r["status"] == status for r in recs.values()) for status in set(expected.values())}
    return {
        "records": len(recs),
        "planned": len(expected) * seeds,
        "counts": counts,
        "wrong": wrong,
        "errors": sorted({r["error"] for r in recs.values() if r["status"] == "failed"}),
    }


# --- the load test --------------------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Peak RSS of one process and, apart, the sum over its descendants (Ray's processes), every `interval` s."""

    def __init__(self, pid: int, run: Path, interval: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.run_dir, self.interval = pid, run, interval
        self.driver_peak = self.children_peak = 0
        self.trace: list[tuple[float, int, int, int]] = []  # seconds, driver MiB, children MiB, records
        self.stop = threading.Event()

    def run(self) -> None:
        start = time.time()
        proc = psutil.Process(self.pid)
        while not self.stop.is_set():
            try:
                driver = proc.memory_info().rss
                children = 0
                for child in proc.children(recursive=True):
                    try:
                        children += child.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.driver_peak, self.children_peak = max(self.driver_peak, driver), max(self.children_peak, children)
            if not self.trace or time.time() - start - self.trace[-1][0] >= 10:
                done = len(list(self.run_dir.glob(RECORDS)))
                self.trace.append((round(time.time() - start, 1), driver >> 20, children >> 20, done))
            self.stop.wait(self.interval)


def load_suite_file(work: Path, trials: int) -> Path:
    tiny = make_tiny_bert(work / "tiny")
    suite = {
        "name": "load",
        "model": str(tiny),
        "tasks": [write_easy_task(work / "easy", train=16, dev=8)],
        "data": {"max_train_samples": 16, "max_eval_samples": 8},
        "training": {"epochs": 1, "batch_size": 8, "max_seq_length": 16, "zero_stage": 0, "precision": "fp32"},
        "search": {"seeds": list(range(1, trials + 1)), "save_state": False},
        "output": str(work / "run"),
    }
    path = work / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def load(work: Path, trials: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    suite_path = load_suite_file(work, trials)
    started = time.perf_counter()
    proc = start_driver(suite_path, work / "driver.log")
    sampler = RssSampler(proc.pid, work / "run")
    sampler.start()
    rc = proc.wait()
    sampler.stop.set()
    sampler.join()
    recs = records(work / "run")
    return {
        "trials": trials,
        "returncode": rc,
        "records": len(recs),
        "finished": sum(r["status"] == "finished" for r in recs.values()),
        "wall_seconds": round(time.perf_counter() - started),
        "driver_peak_rss_mib": sampler.driver_peak >> 20,
        "ray_processes_peak_rss_mib": sampler.children_peak >> 20,
        "trace": sampler.trace,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("soak")
    s.add_argument("--kills", type=int, default=12)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--seeds", type=int, default=3, help="seeds per (model, task): 4 x this many trials")
    s.add_argument(
        "--max-delay",
        type=float,
        default=3.0,
        help="each kill falls 1-3 run-directory writes after a start, then uniformly 0-this many s later",
    )
    load = sub.add_parser("load")
    load.add_argument("--trials", type=int, default=200)
    for q in (s, load):
        q.add_argument("--work", default=None, help="default: /tmp/bench-reliability-<mode>")
        q.add_argument("--out", default="results/reliability")
    args = p.parse_args(argv)
    work = Path(args.work or f"/tmp/bench-reliability-{args.mode}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmark.measure.reliability " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()}-core CPU",
    }
    if args.mode == "soak":
        result, final = soak(work, args.kills, args.seed, args.seeds, args.max_delay)
        figures = {**meta, "table": result.table(), "final": final, "events": result.events}
    else:
        figures = {**meta, **load(work, args.trials)}
    (out / f"{args.mode}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k not in ("events", "trace")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
