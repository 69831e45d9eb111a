"""How long CI takes: `.ci/run` on a fresh clone of a commit, as CI runs it, timed in its parts.

    python -m benchmark.measure.ci --out results/ci

Clones the checkout's HEAD into --work, puts the shared folder beside the clone (CI's layout: `../shared`), runs
`.ci/run` there (a fresh venv and install, ruff, then the README's test command) and writes its figures to
`<out>/<label>.json`: the install, the pytest and the whole wall time, the test counts, and the slowest tests as
pytest printed them. The label defaults to the CPU's kind (native bf16 or not), whose speed differs most; README.md
is rebuilt from every label there. Run it on an idle machine: the figures are wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchmark.common.atomic import atomic_write_text
from benchmark.common.hardware import machine_description
from benchmark.measure import check_label, commit_line, machine_line, write_report

GOAL_SECONDS = 15 * 60
SLOWEST_SHOWN = 10


def parse_log(text: str) -> dict:
    """The figures `.ci/run` and pytest print: install and total seconds, the summary counts, the slowest tests."""
    installed = re.search(r"^installed after (\d+) s$", text, re.M)
    total = re.search(r"^CI took (\d+) s$", text, re.M)
    summary = re.search(r"^=*\s*(\d+ (?:passed|failed|error).*?) in ([\d.]+)s", text, re.M)
    slowest = [
        {"seconds": float(m[1]), "phase": m[2], "test": m[3]}
        for m in re.finditer(r"^\s*([\d.]+)s (call|setup|teardown)\s+(\S+)$", text, re.M)
    ]
    return {
        "install_seconds": int(installed[1]) if installed else None,
        "total_seconds": int(total[1]) if total else None,
        "pytest_summary": summary[1].strip(" =") if summary else None,
        "pytest_seconds": float(summary[2]) if summary else None,
        "slowest": slowest,
    }


def report(out: Path) -> str:
    lines = ["# How long CI takes", "", "Written by `benchmark/measure/ci.py` from the figures in this folder's json "
             f"files (one per label): `.ci/run` on a fresh clone, install included. Goal: at most {GOAL_SECONDS // 60} "
             "minutes on a 2-core machine.", ""]  # fmt: skip
    for path in sorted(out.glob("*.json")):
        m = json.loads(path.read_text())
        total = m["total_seconds"]
        verdict = "met" if total <= GOAL_SECONDS else f"missed by {(total - GOAL_SECONDS) / 60:.1f} min"
        lines += [
            f"## {path.stem}: {m['version']}", "", f"Command: `{m['command']}`", "",
            f"{machine_line(m)}; exit status {m['returncode']}.", "",
            "| install (s) | pytest (s) | CI in all (s) | CI in all (min) | pytest's summary |",
            "|---:|---:|---:|---:|---|",
            f"| {m['install_seconds']} | {m['pytest_seconds'] or 0:.0f} | {total} | {total / 60:.1f} | "
            f"{m['pytest_summary'] or 'no summary: see the log'} |",
            "", f"Goal at most {GOAL_SECONDS // 60} min: {verdict}.", "",
            "The slowest tests (pytest's `--durations`, two workers beside each other):", "",
            "| seconds | phase | test |", "|---:|---|---|",
        ]  # fmt: skip
        lines += [f"| {s['seconds']:.1f} | {s['phase']} | `{s['test']}` |" for s in m["slowest"][:SLOWEST_SHOWN]]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=".", help="the checkout whose HEAD is cloned")
    p.add_argument("--shared", default="../shared", help="the shared folder (data), put beside the clone")
    p.add_argument("--work", default="/tmp/bench-ci", help="a folder that does not exist yet")
    p.add_argument("--label", default=None, help="default: native-bf16 or no-native-bf16, by this CPU")
    p.add_argument("--out", default="results/ci")
    args = p.parse_args(argv)
    machine = machine_description()
    label = args.label or ("native-bf16" if machine["native_bf16"] else "no-native-bf16")
    check_label(p, label)
    work, shared = Path(args.work), Path(args.repo, args.shared).resolve()
    if work.exists():
        p.error(f"--work {work}: exists; give a fresh folder")
    if not (shared / "data").is_dir():
        p.error(f"--shared {shared}: no data folder there")
    work.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", str(Path(args.repo).resolve()), str(work / "main")], check=True)
    (work / "shared").symlink_to(shared)
    load = os.getloadavg()[0]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "BENCH_GLUE_DIR", "BENCH_CACHE_DIR")}
    started = time.perf_counter()
    proc = subprocess.run(["bash", ".ci/run"], cwd=work / "main", env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    log = proc.stdout + proc.stderr
    atomic_write_text(work / "ci.log", log)
    figures = {
        "command": "python -m benchmark.measure.ci " + " ".join(sys.argv[1:] if argv is None else argv),
        "version": commit_line(work / "main"), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine,
        "cpus": len(os.sched_getaffinity(0)), "load_before": round(load, 2), "returncode": proc.returncode,
        "wall_seconds": round(wall, 1), **parse_log(log),
    }  # fmt: skip
    if figures["total_seconds"] is None:  # a failed run prints no total: its wall time stands in
        figures["total_seconds"] = round(wall)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{label}.json", json.dumps(figures, indent=2) + "\n")
    write_report(str(out), report(out))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
