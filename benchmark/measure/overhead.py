"""Orchestration overhead of `bench run`: what a trial costs besides its training and evaluation, and how long
`bench run` takes to start its first trial.

    python -m benchmark.measure.overhead --label after --trials 8 32 --out results/overhead
    python -m benchmark.measure.overhead --label before --repo OLD_CHECKOUT --python OLD_CHECKOUT/.venv/bin/python

Each suite is N seeds of one small task on the embedded all-MiniLM-L6-v2 (or `--model tiny`), 1 worker x 1 CPU
per trial, two trials at a time on a 2-CPU machine, run by `bench run` in a fresh process as a user runs it
(`--repo`/`--python`: the checkout and interpreter whose `bench` runs, to measure an earlier version). Per N:
- per-trial overhead: each trial's lifetime as the driver saw it (its start event to its record) minus its
  train and eval time; the median and the range over trials;
- fixed start-up: from the command's start to the first trial's `started` line on its output;
- wall time, and the overhead share a trial of 60 s of training and evaluation would have at the median.
All runs share a fresh cache folder (BENCH_CACHE_DIR under --work). Before the measured runs, a warm-up run of
WARMUP_TRIALS trials pays the one-time costs that the goals exclude (the data encoded once per task, model and
length, the model folder and data checked once, and the DeepSpeed op compiled once per environment where that has
not happened yet); its start-up and its slowest trial are reported apart, as a first run's cost.
First, Ray's own share of the start-up, measured apart in fresh processes (medians of RAY_STEP_RUNS): importing
Ray, `ray.init` as bench calls it, and a new actor process that imports Ray Tune, as a trial's actor does to unpickle
the trainable (Ray's two prestarted workers held by two other actors first, as other actors take them in `bench run`).
Each label's figures go to `<out>/<label>.json`; README.md is rebuilt from every label there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmark.common.atomic import atomic_write_text
from benchmark.common.hardware import machine_description, resolve_precision
from benchmark.measure import check_label, commit_line, machine_line, write_report
from benchmark.measure.tiny import make_tiny_bert

GOALS = {"overhead_median": 3.0, "startup": 5.0, "share_60": 0.10}


def suite(n: int, args, model: str | None, out: Path) -> dict:
    return {
        "name": f"overhead-{n}",
        "model": model,
        "tasks": [args.task],
        "data": {"max_train_samples": args.train_samples, "max_eval_samples": args.eval_samples},
        # An explicit precision: earlier versions defaulted to bf16, 14x slower on a CPU without native bf16.
        "training": {
            "epochs": args.epochs,
            "batch_size": 16,
            "max_seq_length": args.max_seq_length,
            "precision": args.precision,
        },  # fmt: skip
        "search": {"seeds": list(range(1, n + 1))},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1},
        "output": str(out),
    }


def run(config: dict, work: Path, python: str, repo: Path) -> dict:
    """`bench run` in a fresh process; times the first `started` line as it is printed."""
    path = work / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_worker_niceness")}
    env["BENCH_CACHE_DIR"] = str(work / "cache")
    started, first = time.perf_counter(), None
    proc = subprocess.Popen([python, "-m", "benchmark.cli", "run", str(path)], cwd=repo, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    log = []
    for line in proc.stdout:
        log.append(line)
        if first is None and "] started " in line:
            first = time.perf_counter() - started
    wall = time.perf_counter() - started
    if proc.wait() != 0:
        raise SystemExit(f"{config['name']} failed:\n{''.join(log)[-3000:]}")
    records = [json.loads(p.read_text()) for p in sorted(Path(config["output"]).glob("trials/*/record.json"))]
    overheads = [r["wall_seconds"] - sum(e["train_seconds"] + e["eval_seconds"] for e in r["epochs"]) for r in records]
    in_trial = [sum(e["train_seconds"] + e["eval_seconds"] for e in r["epochs"]) for r in records]
    return {
        "n": len(config["search"]["seeds"]), "finished": sum(r["status"] == "finished" for r in records),
        "wall": wall, "startup": first, "overheads": overheads, "in_trial": in_trial,
        "precision": sorted({r.get("precision") or "?" for r in records}),
    }  # fmt: skip


# Run in a fresh process in the measured checkout: Ray's fixed steps on the way to a first trial, one at a time.
RAY_STEPS = """
import json, time
t0 = time.perf_counter()
import ray
from benchmark.run.cluster import connect
t1 = time.perf_counter()
connect(None)
t2 = time.perf_counter()

@ray.remote(num_cpus=0)
class Other:
    def ready(self):
        return True

@ray.remote(num_cpus=1)
class Trainable:
    def ready(self):
        import ray.tune  # noqa: F401
        return True

others = [Other.remote() for _ in range(2)]
ray.get([o.ready.remote() for o in others])
t3 = time.perf_counter()
ray.get(Trainable.remote().ready.remote())
t4 = time.perf_counter()
ray.shutdown()
print(json.dumps({"import_ray": t1 - t0, "ray_init": t2 - t1, "actor_with_tune": t4 - t3}))
"""


RAY_STEP_RUNS = 3
WARMUP_TRIALS = 2


def ray_steps(python: str, repo: Path) -> dict:
    """Medians over RAY_STEP_RUNS fresh processes of Ray's own start-up steps (RAY_STEPS)."""
    runs = []
    for _ in range(RAY_STEP_RUNS):
        proc = subprocess.run([python, "-c", RAY_STEPS], cwd=repo, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"Ray's start-up steps failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def ray_steps_line(steps: dict, startup: float) -> str:
    ray_own = sum(steps.values())
    return (
        f"Ray's own start-up steps, measured apart (fresh processes, median of {RAY_STEP_RUNS}): import Ray "
        f"{steps['import_ray']:.1f} s, `ray.init` as bench calls it {steps['ray_init']:.1f} s, a new actor process "
        f"importing Ray Tune (a trial's actor) {steps['actor_with_tune']:.1f} s; together {ray_own:.1f} s of the "
        f"{startup:.1f} s start-up, leaving {startup - ray_own:.1f} s to bench and Tune's scheduling (in `bench "
        f"run`, `ray.init` overlaps reading the data). These steps follow one another, so while Ray Tune runs the "
        f"trials the start-up cannot fall below their {ray_own:.1f} s."
    )


def warmup_line(w: dict) -> str:
    return (
        f"Not in the table: a warm-up run of {w['n']} trials came first and paid the one-time costs (the DeepSpeed op "
        f"compiled once per environment if not yet, the data encoded once, the model folder and data checked once): "
        f"its first trial started after {w['startup']:.1f} s, its slowest trial's overhead was "
        f"{max(w['overheads']):.1f} s, its wall time {w['wall']:.1f} s. A user's first run on a new machine pays that."
    )


def summarize(rows: list[dict]) -> dict:
    every = [o for r in rows for o in r["overheads"]]
    median = statistics.median(every)
    return {"overhead_median": median, "overhead_range": [min(every), max(every)],
            "startup": min(r["startup"] for r in rows if r["startup"] is not None),
            "share_60": median / (60 + median)}  # fmt: skip


def _command_line(command: str) -> str:
    """The command as recorded; figures recorded before the environment went into it need BENCH_GLUE_DIR said."""
    if command.startswith("BENCH_GLUE_DIR="):
        return f"Command: `{command}`"
    return f"Command (with `BENCH_GLUE_DIR` naming the GLUE folder): `{command}`"


def report(out: Path) -> str:
    labels = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    lines = ["# Orchestration overhead of `bench run`", "", "Written by `benchmark/measure/overhead.py` from the "
             "figures in this folder's json files (one per label); the commands are in them.", ""]  # fmt: skip
    order = {"before": 0, "after": 1}
    for label, m in sorted(labels.items(), key=lambda kv: (order.get(kv[0], 2), kv[1]["date"])):
        s = m["summary"]
        lines += [
            f"## {label}: {m['version']}", "", _command_line(m["command"]), "",
            f"{machine_line(m)}; model {m['model']}; {m['setup']}.",
            "", "| N | finished | wall (s) | first trial started after (s) | per-trial overhead, median (range) (s) | "
            "train+eval per trial, median (s) | precision |", "|---:|---:|---:|---:|---:|---:|---|",
        ]  # fmt: skip
        for r in m["rows"]:
            lines.append(
                f"| {r['n']} | {r['finished']}/{r['n']} | {r['wall']:.1f} | {r['startup']:.1f} | "
                f"{statistics.median(r['overheads']):.1f} ({min(r['overheads']):.1f}-{max(r['overheads']):.1f}) | "
                f"{statistics.median(r['in_trial']):.1f} | {'/'.join(r['precision'])} |"
            )
        lines += ["", _verdict(s), ""]
        if m.get("warmup"):
            lines += [warmup_line(m["warmup"]), ""]
        if m.get("ray_steps"):
            lines += [ray_steps_line(m["ray_steps"], s["startup"]), ""]
    if {"before", "after"} <= labels.keys():
        b, a = labels["before"]["summary"], labels["after"]["summary"]
        lines += ["## Before and after", "", f"Per-trial overhead (median): {b['overhead_median']:.1f} s -> "
                  f"{a['overhead_median']:.1f} s ({b['overhead_median'] / max(a['overhead_median'], 1e-9):.1f}x less). "
                  f"Fixed start-up: {b['startup']:.1f} s -> {a['startup']:.1f} s. Overhead share of a 60-s trial: "
                  f"{b['share_60']:.0%} -> {a['share_60']:.0%}.", ""]  # fmt: skip
    return "\n".join(lines)


def _verdict(s: dict) -> str:
    parts = []
    goals = (
        ("overhead_median", "per-trial overhead (median)", "{:.1f} s"),
        ("startup", "fixed start-up", "{:.1f} s"),
        ("share_60", "share of a 60-s trial", "{:.0%}"),
    )
    for key, text, fmt in goals:
        value, goal = s[key], GOALS[key]
        met = "met" if value <= goal else f"missed by {fmt.format(value - goal)}"
        parts.append(f"{text} {fmt.format(value)} (goal at most {fmt.format(goal)}: {met})")
    return "Goals: " + "; ".join(parts) + "."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", default="after", help="before, after, or another name for a section of its own")
    p.add_argument("--trials", type=int, nargs="+", default=[8, 32])
    p.add_argument("--model", default="embedded", help="embedded, tiny (a random 2-layer BERT), or a folder")
    p.add_argument("--task", default="sst2")
    p.add_argument("--train-samples", type=int, default=160)
    p.add_argument("--eval-samples", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--precision", default="fp32", help="the trials' precision (fp32: what auto picks without bf16)")
    p.add_argument("--repo", default=".", help="the checkout whose `bench` runs (default: this one)")
    p.add_argument("--python", default=sys.executable, help="its interpreter")
    p.add_argument("--work", default="/tmp/bench-overhead")
    p.add_argument("--out", default="results/overhead")
    args = p.parse_args(argv)
    check_label(p, args.label)
    work, out = Path(args.work) / args.label, Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    model = None
    if args.model == "tiny":
        model = str(make_tiny_bert(work / "tiny-bert"))
    elif args.model != "embedded":
        model = args.model
    load = os.getloadavg()[0]
    steps = ray_steps(args.python, Path(args.repo).resolve())
    print("Ray's start-up steps: " + json.dumps(steps), flush=True)
    rows = []
    for n in [WARMUP_TRIALS, *args.trials]:
        target = work / (f"run-{n}" if rows else "warmup")
        if target.exists():
            raise SystemExit(f"{target} exists: give a fresh --work")
        print(f"{args.label}: N={n}" + ("" if rows else " (warm-up)"), flush=True)
        rows.append(run(suite(n, args, model, target), work, args.python, Path(args.repo).resolve()))
        print("  " + json.dumps({k: v for k, v in rows[-1].items() if k not in ("overheads", "in_trial")}), flush=True)
    warmup, rows = rows[0], rows[1:]
    figures = {
        "command": f"BENCH_GLUE_DIR={os.environ.get('BENCH_GLUE_DIR', '')} python -m benchmark.measure.overhead "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "version": commit_line(Path(args.repo)), "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine_description(), "cpus": len(os.sched_getaffinity(0)), "load_before": round(load, 2),
        "model": args.model, "precision_auto": resolve_precision("auto"),
        "setup": f"task {args.task}, {args.train_samples} training / {args.eval_samples} dev examples, "
                 f"{args.epochs} epoch(s), batch 16, max length {args.max_seq_length}, {args.precision}; "
                 "N seeds of one configuration, 1 worker x 1 CPU per trial",
        "rows": rows, "summary": summarize(rows), "ray_steps": steps, "warmup": warmup,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{args.label}.json", json.dumps(figures, indent=2) + "\n")
    write_report(str(out), report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
