"""How fast the CLI answers: `bench --help` and `bench validate` on a suite, each in a fresh process.

    python -m benchmark.measure.startup --out results/startup

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


def timed(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True)  # the hub id's exit code is 2 by design
        times.append(time.perf_counter() - started)
    return times


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
    report = "\n".join(lines) + "\n"
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
