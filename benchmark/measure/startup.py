"""How fast the CLI answers: `bench --help` and `bench validate` on a suite, each in a fresh process.

    python -m benchmark.measure.startup --out results/startup

Median and worst of `--repeats` runs; the console script `bench` as a user types it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from benchmark.measure import write_report


def timed(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="configs/quickstart.yaml")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="results/startup")
    args = p.parse_args(argv)
    bench = shutil.which("bench") or f"{sys.executable} -m benchmark.cli"
    commands = {
        "bench --help": [*bench.split(), "--help"],
        f"bench validate {args.suite}": [*bench.split(), "validate", args.suite],
    }
    lines = [
        "# CLI start-up",
        "",
        "Command: `python -m benchmark.measure.startup " + " ".join(sys.argv[1:] if argv is None else argv) + "`",
        "",
        f"Date {time.strftime('%Y-%m-%d')}; {args.repeats} runs each, fresh process each time.",
        "",
        "| command | median (s) | worst (s) |",
        "|---|---:|---:|",
    ]
    for label, command in commands.items():
        times = timed(command, args.repeats)
        lines.append(f"| `{label}` | {statistics.median(times):.2f} | {max(times):.2f} |")
    report = "\n".join(lines) + "\n"
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
