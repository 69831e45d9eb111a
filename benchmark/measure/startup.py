"""How fast the CLI answers: `bench --help` and `bench validate` on a suite, each in a fresh process; and how long
`bench run` takes from its start to its first trial's `started` line.

    python -m benchmark.measure.startup --out results/startup

`bench run`'s suite is `--suite` cut to its first task, one seed, one epoch and 64 training examples, into a fresh
run directory each time (the cache, where the encoded data lies, stays): once starting its own Ray, as by default,
and once joining a Ray already running on the machine through RAY_ADDRESS (`ray start --head` once).

Median and worst of `--repeats` runs, and the first run's time (a model folder and a task's data are checked once,
then remembered in the cache by their files' sizes and times: `benchmark/common/checks.py`); the console script
`bench` as a user types it. A hub id without a network answers after one connection attempt: its time is the third
line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.common.hardware import machine_description
from benchmark.measure import write_report

GOALS = {"help": 0.5, "validate": 2.0, "run": 5.0}


def timed(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True)  # the hub id's exit code is 2 by design
        times.append(time.perf_counter() - started)
    return times


def first_started(command: list[str], suite: Path, output: Path, repeats: int, env: dict) -> list[float]:
    """Seconds from each `bench run`'s start to its first `started` line."""
    times = []
    for _ in range(repeats):
        shutil.rmtree(output, ignore_errors=True)
        started, first = time.perf_counter(), None
        proc = subprocess.Popen([*command, "run", str(suite)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)  # fmt: skip
        for line in proc.stdout:
            if first is None and "] started " in line:
                first = time.perf_counter() - started
        if proc.wait() != 0 or first is None:
            raise SystemExit(f"bench run {suite} failed, or started no trial")
        times.append(first)
    return times


def one_task(suite: str, folder: Path) -> tuple[Path, str]:
    """`suite` cut to its first task (see the module's docstring), and that task's name."""
    # Imported here for start-up speed (yaml).
    import yaml

    body = yaml.safe_load(Path(suite).read_text())
    first = body["tasks"][0]
    body.update(name="startup", tasks=[first], output=str(folder / "run"))
    body["data"] = {**body.get("data", {}), "max_train_samples": 64}
    body["training"] = {**body.get("training", {}), "epochs": 1}
    body["search"] = {"seeds": [1]}
    body.pop("ensemble", None)
    path = folder / "startup.yaml"
    path.write_text(yaml.safe_dump(body))
    return path, first if isinstance(first, str) else first["name"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="configs/quickstart.yaml")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="results/startup")
    args = p.parse_args(argv)
    bench = shutil.which("bench") or f"{sys.executable} -m benchmark.cli"

    hub = Path(tempfile.mkdtemp()) / "hub.yaml"
    hub.write_text("name: hub\nmodel: bert-base-uncased\ntasks: [rte]\n")
    commands = {
        "bench --help": [*bench.split(), "--help"],
        f"bench validate {args.suite}": [*bench.split(), "validate", args.suite],
        "bench validate (a hub id, no network)": [*bench.split(), "validate", str(hub)],
    }
    load = os.getloadavg()[0]
    lines = [
        "# CLI start-up",
        "",
        "Command: `python -m benchmark.measure.startup " + " ".join(sys.argv[1:] if argv is None else argv) + "`",
        "",
        f"Date {time.strftime('%Y-%m-%d %H:%M')}; CPU {machine_description()['cpu']}, load average {load:.2f} before; "
        f"{args.repeats} runs each, fresh process each time.",
        "",
        "| command | first (s) | median (s) | worst (s) |",
        "|---|---:|---:|---:|",
    ]
    for label, command in commands.items():
        times = timed(command, args.repeats)
        lines.append(f"| `{label}` | {times[0]:.2f} | {statistics.median(times):.2f} | {max(times):.2f} |")
    # Imported here for start-up speed (ray).
    from ray.cluster_utils import Cluster

    folder = Path(tempfile.mkdtemp())
    suite, task = one_task(args.suite, folder)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    label = f"`bench run` to the first trial's start ({task}, 1 seed)"
    runs = {f"{label}, its own Ray": env}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": os.cpu_count(), "include_dashboard": False})
    runs[f"{label}, a running Ray (RAY_ADDRESS)"] = {**env, "RAY_ADDRESS": cluster.address}
    try:
        for label, run_env in runs.items():
            times = first_started(bench.split(), suite, folder / "run", args.repeats, run_env)
            lines.append(f"| {label} | {times[0]:.2f} | {statistics.median(times):.2f} | {max(times):.2f} |")
    finally:
        cluster.shutdown()
    lines += ["", f"Goals: `bench --help` under {GOALS['help']} s, `bench validate` under {GOALS['validate']} s, "
              f"`bench run` to its first trial's start at most {GOALS['run']} s (medians)."]  # fmt: skip
    report = "\n".join(lines) + "\n"
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
