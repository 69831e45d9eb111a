"""How the driver's bookkeeping grows with a study's size: 100, 1,000 and 10,000 trials.

    python -m benchmark.measure.scale --out results/scale

First one real `bench run` (a tiny random BERT, one seed of a user task with 872 dev examples, as SST-2's dev set)
gives a record and a checkpoint folder of the real schema. Then, per size N, a run directory of N finished trials
is written from them: a suite of N/10 learning rates x 10 seeds, its plan made by bench (trial ids and
fingerprints as a run makes them), each record the real one with that trial's id, seed, settings and score, and
each checkpoint folder its dev predictions (logits of a per-configuration skill plus per-seed noise; no weights,
which nothing timed here reads). What is timed, each in a fresh process as a user runs it (wall time, and the
process's peak resident memory):
- `bench table RUN` (the leaderboard with its bootstrap statistics, auto-sized resamples);
- `bench report RUN` (the HTML report with its plots and statistics);
- the driver's bookkeeping at a resume: reading the records and finding the pending trials (`pending_trials`);
- the live panel: one refresh after N trials went through it (its cost is the running trials', not N's).
Figures go to `<out>/scale.json` (the rows the issue's contract names, plus the rest) and README.md; the plot
`scale.svg` draws each against N on log-log axes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from benchmark.common.atomic import atomic_write_text
from benchmark.common.hardware import machine_description
from benchmark.config.suite import load_suite
from benchmark.measure import code_line, write_report
from benchmark.measure.tiny import make_tiny_bert, write_easy_task
from benchmark.plan.trials import make_plan
from benchmark.records.store import RunStore
from benchmark.train.checkpoints import PREDICTIONS_FILE, load_predictions, prediction_bytes, write_hashes

SIZES = (100, 1000, 10_000)
SEEDS = 10
DEV = 872  # SST-2's dev set
GOAL_TABLE_S = 30.0  # `bench table` on 10,000 trials


def base_suite(work: Path, grid: list[float] | None = None) -> dict:
    search = {"seeds": list(range(1, SEEDS + 1)), "grid": {"learning_rate": grid}} if grid else {"seeds": [1]}
    return {
        "name": "scale",
        "model": str(work / "tiny"),
        "tasks": [write_easy_task(work / "easy", train=64, dev=DEV)],
        "data": {"max_train_samples": 64, "max_eval_samples": DEV, "holdout": {"test": 0}},
        "training": {"epochs": 1, "batch_size": 16, "max_seq_length": 32, "precision": "fp32", "zero_stage": 0},
        "search": search,
        "floors": {"zero_shot": False, "probe": False},
        "output": str(work / ("run" if grid is None else f"run-{len(grid) * SEEDS}")),
    }  # fmt: skip


def template(work: Path) -> tuple[dict, Path]:
    """One real trial's record and checkpoint folder."""
    make_tiny_bert(work / "tiny")
    path = work / "template.yaml"
    path.write_text(yaml.safe_dump(base_suite(work)))
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "benchmark.cli", "run", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the template run failed:\n{proc.stderr[-3000:]}")
    (trial,) = (run / "trials").iterdir()
    return json.loads((trial / "record.json").read_text()), trial / "checkpoint"


def synthetic_run(work: Path, n: int, record: dict, checkpoint: Path) -> Path:
    """A run directory of `n` finished trials of the real schema (see the module's docstring)."""
    grid = [float(f"{1e-5 * (1 + i):.6g}") for i in range(n // SEEDS)]
    path = work / f"suite-{n}.yaml"
    path.write_text(yaml.safe_dump(base_suite(work, grid)))
    suite = load_suite(path)
    store = RunStore(suite.output)
    shutil.rmtree(store.root, ignore_errors=True)
    store.write_suite(suite.to_dict())
    _, labels = load_predictions(checkpoint)
    gold = labels["validation"]
    rng = np.random.default_rng(0)
    skill = {lr: rng.uniform(0.5, 2.0) for lr in grid}  # each configuration's signal; seeds add noise
    for spec in make_plan(suite):
        lr = spec.training["learning_rate"]
        logits = rng.normal(size=(len(gold), 2)).astype(np.float32)
        logits[np.arange(len(gold)), gold] += skill[lr] + rng.normal(0, 0.2)
        accuracy = float((logits.argmax(-1) == gold).mean())
        folder = store.root / "trials" / spec.trial_id / "checkpoint"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "trial.json"):
            shutil.copy(checkpoint / name, folder / name)
        (folder / PREDICTIONS_FILE).write_bytes(prediction_bytes({"validation": logits}, labels))
        write_hashes(folder)
        epochs = [{**e, "score": 100 * accuracy, "selection_score": 100 * accuracy, "accuracy": accuracy}
                  for e in record["epochs"]]  # fmt: skip
        rec = {
            **record,
            "trial_id": spec.trial_id,
            "seed": spec.seed,
            "init_seed": spec.seed,
            "grid_point": dict(spec.point),
            "training": {**record["training"], **spec.training},
            "final_training": {**record["final_training"], **spec.training},
            "fingerprint": spec.fingerprint,
            "checkpoint": f"trials/{spec.trial_id}/checkpoint",
            "best_score": 100 * accuracy,
            "best_metrics": {"accuracy": accuracy},
            "epochs": epochs,
        }
        (folder.parent / "record.json").write_text(json.dumps(rec))
    return store.root


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of `command` in a fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr.read()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


BOOKKEEPING = """
import json, sys, time
t0 = time.perf_counter()
from benchmark.config.suite import load_suite
from benchmark.plan.trials import make_plan
from benchmark.records.store import RunStore
from benchmark.run.runner import pending_trials
suite = load_suite(sys.argv[1])
plan = make_plan(suite)
pending = pending_trials(RunStore(suite.output), plan)
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "pending": len(pending), "planned": len(plan)}))
"""


def bookkeeping(work: Path, n: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", BOOKKEEPING, str(work / f"suite-{n}.yaml")], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout)


def panel_refresh(n: int) -> float:
    """Seconds of one live-panel refresh after `n` trials went through it (two running at the end)."""
    # Imported here for start-up speed (rich, ray): only this figure needs them.
    from rich.console import Console

    # Imported here for start-up speed (ray).
    from benchmark.run.live import LiveDisplay

    display = LiveDisplay(Console(file=io.StringIO(), force_terminal=False), total=n, skipped=0, epochs_per_trial=1)
    for i in range(n):
        display.progress.start(f"t{i}", "easy", 1)
        display.progress.result(f"t{i}", "easy", 1, 50 + (i % 97) / 10, 100.0)
        if i < n - 2:
            display.progress.complete(f"t{i}")
    console = Console(file=io.StringIO(), width=120)
    started = time.perf_counter()
    for _ in range(20):
        console.print(display._render())
    return (time.perf_counter() - started) / 20


def measure(work: Path, sizes: tuple[int, ...]) -> dict:
    record, checkpoint = template(work)
    rows = []
    for n in sizes:
        run = synthetic_run(work, n, record, checkpoint)
        disk = sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) / 2**20
        table_s, table_mb = timed([sys.executable, "-m", "benchmark.cli", "table", str(run)])
        report_s, report_mb = timed([sys.executable, "-m", "benchmark.cli", "report", str(run)])
        book = bookkeeping(work, n)
        assert book["pending"] == 0 and book["planned"] == n, book
        rows.append({
            "trials": n, "table_s": table_s, "report_s": report_s, "peak_rss_mb": max(table_mb, report_mb),
            "table_peak_rss_mb": table_mb, "report_peak_rss_mb": report_mb, "bookkeeping_s": book["seconds"],
            "panel_refresh_ms": 1000 * panel_refresh(n), "run_dir_mb": disk,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(run)
    return {"rows": rows}


def growth(rows: list[dict], key: str) -> float | None:
    """The exponent of the fitted power law over the sizes (1: linear)."""
    xs = [r["trials"] for r in rows]
    ys = [r[key] for r in rows]
    if len(xs) < 2 or min(ys) <= 0:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def plot(rows: list[dict], path: Path) -> None:
    # Imported here for start-up speed (matplotlib).
    import matplotlib

    matplotlib.use("Agg")
    # Imported here for start-up speed (matplotlib), after choosing its backend.
    import matplotlib.pyplot as plt

    xs = [r["trials"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, label in (("table_s", "bench table"), ("report_s", "bench report"), ("bookkeeping_s", "pending_trials")):
        left.loglog(xs, [r[key] for r in rows], marker="o", label=label)
    left.loglog(xs, [rows[0]["table_s"] * x / xs[0] for x in xs], "k:", label="linear from 100")
    left.set_xlabel("trials")
    left.set_ylabel("seconds")
    left.legend(fontsize=8)
    right.loglog(xs, [r["peak_rss_mb"] for r in rows], marker="o", label="peak RSS (table, report)")
    right.loglog(xs, [r["run_dir_mb"] for r in rows], marker="s", label="run directory (no weights)")
    right.set_xlabel("trials")
    right.set_ylabel("MB")
    right.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    atomic_write_text(path, buffer.getvalue())


def report(out: Path, figures: dict) -> str:
    rows, m = figures["rows"], figures["machine"]
    lines = [
        "# Cost as a study grows",
        "",
        "Written by `benchmark/measure/scale.py` from `scale.json` beside it: `python -m benchmark.measure.scale "
        "--out results/scale` measures and writes both; `--from-json` rebuilds this file from the json.",
        "",
        f"{figures['code']} Date {figures['date']}; CPU {m['cpu']} ({', '.join(m['cpu_flags'])}), "
        f"{figures['cpus']} CPUs, load average {figures['load_before']} before; nothing else running. No training is "
        "timed, so no precision applies (the template trial ran in fp32).",
        "",
        f"Each run: N finished trials (N/10 learning rates x {SEEDS} seeds) of one task with {DEV} dev examples, "
        "written from one real trial's record and checkpoint folder (dev predictions, no weights). Each command in a "
        "fresh process, as a user runs it.",
        "",
        "| trials | `bench table` (s) | `bench report` (s) | peak RSS (MB) | pending_trials (s) | panel refresh (ms) "
        "| run dir, no weights (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['trials']:,} | {r['table_s']:.1f} | {r['report_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{r['bookkeeping_s']:.2f} | {r['panel_refresh_ms']:.1f} | {r['run_dir_mb']:.0f} |"
        )
    small, big = sorted(rows, key=lambda r: r["trials"])[-2:] if len(rows) > 1 else (None, None)
    lines += [
        "",
        "Growth: the exponent of a power law fitted over the sizes (1 is linear; fixed costs such as imports pull it "
        "below 1), and the factor from the two largest sizes"
        + (f" ({small['trials']:,} to {big['trials']:,} trials, x{big['trials'] / small['trials']:g})" if big else "")
        + ":",
        "",
    ]
    for key, label in (("table_s", "`bench table`"), ("report_s", "`bench report`"), ("peak_rss_mb", "peak RSS"),
                       ("bookkeeping_s", "pending_trials")):  # fmt: skip
        exponent = growth(rows, key)
        factor = f", x{big[key] / small[key]:.1f}" if big and small[key] > 0 else ""
        lines.append(f"- {label}: {'—' if exponent is None else f'{exponent:.2f}'}{factor}")
    biggest = max(rows, key=lambda r: r["trials"])
    met = biggest["table_s"] < GOAL_TABLE_S
    lines += [
        "",
        f"Goal: `bench table` on {biggest['trials']:,} trials under {GOAL_TABLE_S:.0f} s: "
        f"{biggest['table_s']:.1f} s ({'met' if met else 'missed'}). One model on one task makes one single-model "
        "row, chosen over all configurations on the selection half of dev, so the statistics' cost is one row's; "
        "what grows with N is the rest (reading the records and predictions; the report's plots), not profiled "
        "further.",
        "",
        "![cost against trials](scale.svg)",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/scale")
    parser.add_argument("--work", default="/tmp/bench-scale")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--from-json", action="store_true", help="rebuild README.md and the plot from scale.json")
    args = parser.parse_args()
    out = Path(args.out)
    if args.from_json:
        figures = json.loads((out / "scale.json").read_text())
    else:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("BENCH_CACHE_DIR", str(work / "cache"))
        load = f"{os.getloadavg()[0]:.2f}"
        figures = {
            **measure(work, tuple(args.sizes)),
            "machine": machine_description(),
            "cpus": os.cpu_count(),
            "load_before": load,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "code": code_line(),
        }
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "scale.json", json.dumps(figures, indent=1) + "\n")
    plot(figures["rows"], out / "scale.svg")
    write_report(str(out), report(out, figures))


if __name__ == "__main__":
    sys.exit(main())
