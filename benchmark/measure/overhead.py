"""Orchestration overhead: the wall time of `bench run` for N trials against the time spent inside them.

    python -m benchmark.measure.overhead --trials 1 8 32 --out results/overhead

Each suite is N seeds of one task on a tiny random BERT (or `--model embedded` for trials of realistic
length), run by `bench run` in a fresh process, as a user runs it. For each N it reports:
- wall: the command's wall time, start to exit (validation, Ray, every trial, store, leaderboard);
- in-trial: the sum over trials of their train and eval time (what a trial is for);
- ideal: in-trial over the trial slots the machine holds at once; overhead = wall - ideal, and its share;
- start-up inside trials: their own wall time minus train and eval (model load, DeepSpeed initialize).
A least-squares line through (N / slots, overhead) splits the overhead into a fixed start-up (intercept)
and a cost per trial slot-round (slope); from them, the overhead share for trials of 60 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmark.measure import write_report
from benchmark.measure.suites import run_suite_command


def suite(n: int, args, model: str, out: Path) -> dict:
    return {
        "name": f"overhead-{n}",
        "model": model,
        "tasks": [args.task],
        "data": {"max_train_samples": args.train_samples, "max_eval_samples": args.eval_samples},
        "training": {"epochs": args.epochs, "batch_size": 16, "max_seq_length": args.max_seq_length, "zero_stage": 0},
        "search": {"seeds": list(range(1, n + 1))},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1},
        "output": str(out),
    }


def run_suite(config: dict, work: Path) -> dict:
    wall, records = run_suite_command(config, work)
    in_trial = sum(e["train_seconds"] + e["eval_seconds"] for r in records for e in r["epochs"])
    return {
        "trials": len(records),
        "finished": sum(r["status"] == "finished" for r in records),
        "wall": wall,
        "in_trial": in_trial,
        "trial_wall": sum(r["wall_seconds"] for r in records),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--model", default="tiny", help="tiny (a random 2-layer BERT, hidden 32), embedded, or a folder")
    p.add_argument("--task", default="sst2")
    p.add_argument("--train-samples", type=int, default=256)
    p.add_argument("--eval-samples", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--work", default="/tmp/bench-overhead")
    p.add_argument("--out", default="results/overhead")
    args = p.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if args.model == "tiny":
        from benchmark.measure.tiny import make_tiny_bert

        model = str(make_tiny_bert(work / "tiny-bert"))
    else:
        model = None if args.model == "embedded" else args.model
    cpus = len(os.sched_getaffinity(0))
    rows = []
    for n in args.trials:
        target = work / f"run-{n}"
        if target.exists():
            raise SystemExit(f"{target} exists: give a fresh --work")
        print(f"N={n}", flush=True)
        r = run_suite(suite(n, args, model, target), work)
        r.update(n=n, slots=min(n, cpus))
        r["ideal"] = r["in_trial"] / r["slots"]
        r["overhead"] = r["wall"] - r["ideal"]
        rows.append(r)
        print("  " + json.dumps(r), flush=True)
        (out / "rows.json").write_text(json.dumps(rows, indent=2))

    rounds = np.array([r["n"] / r["slots"] for r in rows])
    overheads = np.array([r["overhead"] for r in rows])
    if len(rows) >= 2:
        per_round, fixed = np.polyfit(rounds, overheads, 1)
    else:
        per_round, fixed = math.nan, math.nan
    share_60 = per_round / (60 + per_round) if per_round == per_round else math.nan
    command = "python -m benchmark.measure.overhead " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# Orchestration overhead of `bench run`",
        "",
        f"Command: `{command}`",
        "",
        f"Date {time.strftime('%Y-%m-%d')}; machine: {platform.processor() or platform.machine()}, {cpus} CPUs "
        f"(trial slots = min(N, {cpus}): 1 worker x 1 CPU per trial); model {args.model}; task {args.task}, "
        f"{args.train_samples} training / {args.eval_samples} dev examples, {args.epochs} epoch(s), "
        f"max length {args.max_seq_length}; N seeds of the same configuration.",
        "",
        "| N | trials recorded | wall (s) | in-trial train+eval (s) | ideal wall (s) | overhead (s) | overhead share | "
        "start-up inside trials (s/trial) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']} | {r['finished']}/{r['trials']} | {r['wall']:.1f} | {r['in_trial']:.1f} | "
            f"{r['ideal']:.1f} | {r['overhead']:.1f} | {r['overhead'] / r['wall']:.0%} | "
            f"{(r['trial_wall'] - r['in_trial']) / r['trials']:.1f} |"
        )
    lines += [
        "",
        f"Least-squares split of the overhead: fixed {fixed:.1f} s per command, {per_round:.1f} s per "
        f"round of trial slots. For trials of 60 s of training and evaluation, the per-trial share is "
        f"{share_60:.0%} (target: at most 10%); fixed start-up target: at most 5 s.",
    ]
    report = "\n".join(lines) + "\n"
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
