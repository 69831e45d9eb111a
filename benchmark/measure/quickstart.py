"""The quickstart as a new user runs it: its wall time, whether each task learns, and its leaderboard and report.

    BENCH_GLUE_DIR=../shared/data/glue python -m benchmark.measure.quickstart --out results/report

Runs `bench run configs/quickstart.yaml` (default precision, no `--set`) into a fresh run directory, then
`bench report`. Writes into `--out` the run's leaderboard files, `report.html`, and README.md: the wall time, the
machine (CPU model, flags, load before) and the precision that ran, and per task the best single row's dev score
against the constant prediction's (majority class for accuracy and F1; 0 for MCC and correlations), with the
goals: at most 10 minutes, and every task at least 5 points above its constant prediction.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.common.hardware import machine_description
from benchmark.measure import code_line, write_report
from benchmark.measure.records import board_from_records, table_markdown
from benchmark.measure.study import learning_lines
from benchmark.records.store import RunStore

GOAL_MINUTES = 10.0
GOAL_MARGIN = 5.0  # points above the constant prediction


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="configs/quickstart.yaml")
    p.add_argument("--out", default="results/report")
    p.add_argument("--run", default=None, help="run directory (default: a fresh temporary one)")
    args = p.parse_args(argv)

    run = Path(args.run or tempfile.mkdtemp(prefix="quickstart-")) / "run"
    bench = [sys.executable, "-m", "benchmark.cli"]
    load = os.getloadavg()
    started = time.perf_counter()
    proc = subprocess.run([*bench, "run", args.suite, "--output", str(run)], capture_output=True, text=True)
    minutes = (time.perf_counter() - started) / 60
    if proc.returncode != 0:
        print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json"):
        shutil.copyfile(run / name, out / name)
    report = subprocess.run([*bench, "report", str(run), "--output", str(out / "report.html")], capture_output=True)
    board, _, copies = board_from_records(out, "leaderboard", {"quickstart": run}, compute=False)
    records = RunStore(copies["quickstart"]).records()  # the trials (the board's records hold its floors too)
    precisions = sorted({r.get("precision") for r in records})
    machine = machine_description()
    lines = [
        "# The quickstart: wall time, learning, leaderboard and report",
        "",
        f"Written by `python -m benchmark.measure.quickstart {' '.join(sys.argv[1:] if argv is None else argv)}`, "
        f"which runs `bench run {args.suite}` (default precision, no `--set`) and `bench report`.",
        "",
        code_line(),
        "",
        f"Date {time.strftime('%Y-%m-%d %H:%M')}; CPU {machine['cpu']} ({os.cpu_count()} cores; flags "
        f"{', '.join(machine['cpu_flags']) or 'none of AVX-512/AMX'}; native bf16: {machine['native_bf16']}); "
        f"load average before {load[0]:.2f}, nothing else running; precision that ran: {', '.join(precisions)}.",
        "",
        f"Wall time of `bench run`: **{minutes:.1f} min** (goal ≤ {GOAL_MINUTES:.0f}: "
        f"{'met' if minutes <= GOAL_MINUTES else 'MISSED'}); {len(records)} trials, "
        f"{board['compute']['trial_hours']:.2f} trial-hours.",
        "",
    ]
    lines += learning_lines(board, copies["quickstart"], GOAL_MARGIN)
    lines += [
        "",
        "Files: `leaderboard.md`, `.csv`, `.json` as `bench run` wrote them (prediction paths are relative to the run "
        "directory, which is not kept: it holds the checkpoints); `report.html` from `bench report`"
        + ("" if report.returncode == 0 else f" (FAILED: exit {report.returncode})")
        + ". No rendered screenshot: this machine has no headless browser.",
        "",
        "The leaderboard:",
        "",
        table_markdown(board, compute=False),
    ]
    write_report(str(out), "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
