"""Training throughput: the bench trainer against Hugging Face `Trainer`, side by side, on the same work.

    python -m benchmark.measure.throughput --tasks rte sst2 --out results/throughput

Each (task, system) runs in a fresh process, so peak RSS is that system's alone. With `--repeats R` the
systems run R rounds in turn (each round starting with the next system), and the table gives each figure's
median with the range of training samples/s, so that drift in the machine's speed touches all of them alike.
Systems:
- `bench`: the bench trainer (DeepSpeed engine, no Ray), length-grouped batches, dynamic padding;
- `trainer`: `Trainer` with its defaults (random batches, dynamic padding by DataCollatorWithPadding);
- `trainer_grouped`: `Trainer` with `train_sampling_strategy="group_by_length"`;
- `trainer_max_length` (with --run-glue-padding): `Trainer` fed batches padded to max_seq_length, as
  `run_glue.py` does by default (`pad_to_max_length=True`).
Same model, data slice, hyperparameters (lr, epochs, batch, warm-up, decay, clipping, seed) and precision
(bench: DeepSpeed bf16; Trainer: bf16 autocast). Prints and writes training and eval samples/s, peak RSS and
the dev score of each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.common.hardware import machine_description, resolve_precision
from benchmark.common.quiet import quiet_libraries
from benchmark.measure import write_report
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.modeling import embedded_model_path
from tasks.glue import GLUE_TASKS
from tasks.loading import resolve_glue_dir

SYSTEMS = ("bench", "trainer", "trainer_grouped")


def run_one(system: str, task_name: str, args) -> dict:
    """One system on one task, in this process."""
    # Imported here for start-up speed (torch).
    import torch

    # Imported here for start-up speed (torch).
    from benchmark.measure.parity import run_bench, run_hf_trainer

    quiet_libraries()
    torch.set_num_threads(args.threads)
    hp = TrainingConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        precision=args.precision,
        zero_stage=args.zero_stage,
    )
    task, model = GLUE_TASKS[task_name], args.model or embedded_model_path()
    common = dict(max_train=args.max_train_samples, max_eval=args.max_eval_samples)
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as work:
        where = (task, model, hp, args.seed, resolve_glue_dir(args.glue_dir), Path(args.cache_dir), Path(work))
        if system == "bench":
            result = run_bench(*where, **common)
        else:
            result = run_hf_trainer(
                *where,
                group_by_length=system == "trainer_grouped",
                pad_to_max_length=system == "trainer_max_length",
                **common,
            )
    best = max(result["epochs"], key=lambda e: e["score"])
    return {
        "system": system,
        "task": task_name,
        "train_samples_per_s": result["train_samples_per_s"],
        "eval_samples_per_s": result["eval_samples_per_s"],
        "best_score": best["score"],
        "last_score": result["epochs"][-1]["score"],
        "wall_seconds": result["wall_seconds"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "precision": args.precision,
        **machine_description(),
    }


def run_in_child(system: str, task: str, argv: list[str]) -> dict:
    cmd = [sys.executable, "-m", "benchmark.measure.throughput", *argv, "--single", system, task]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} on {task} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in reversed(proc.stdout.splitlines()) if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def median_rows(runs: list[dict]) -> list[dict]:
    """One row per (task, system): the median of each figure over its repeats, and the throughput's range."""
    rows = []
    for key in dict.fromkeys((r["task"], r["system"]) for r in runs):
        mine = [r for r in runs if (r["task"], r["system"]) == key]
        row = {k: statistics.median(r[k] for r in mine) for k in mine[0] if isinstance(mine[0][k], float)}
        row.update({k: mine[0][k] for k in ("precision", "cpu") if k in mine[0]})
        speeds = [r["train_samples_per_s"] for r in mine]
        rows.append(
            {"task": key[0], "system": key[1], **row, "repeats": len(mine), "train_range": (min(speeds), max(speeds))}
        )
    return rows


def summarize(rows: list[dict], command: str, args) -> str:
    # Imported here for start-up speed (torch).
    import torch

    machine = machine_description()
    flags = ", ".join(machine["cpu_flags"]) or "none of avx2/avx512/amx"
    lines = [
        "# Training throughput: bench trainer vs Hugging Face Trainer",
        "",
        f"Command: `{command}`",
        "",
        f"Date {time.strftime('%Y-%m-%d')}; CPU: {machine['cpu']} (flags: {flags}; "
        f"native bf16: {'yes' if machine['native_bf16'] else 'no'}); precision {args.precision}; "
        f"{args.threads} torch threads, torch {torch.__version__}; model "
        f"{args.model or 'all-MiniLM-L6-v2 (embedded)'}; lr {args.learning_rate:g}, {args.epochs} epoch(s), "
        f"batch {args.batch_size}, max length {args.max_seq_length}, seed {args.seed}; "
        f"bench ZeRO-{args.zero_stage} (one rank runs stage 0); train slice {args.max_train_samples}, "
        f"dev slice {args.max_eval_samples}; "
        f"medians of {args.repeats} round(s).",
        "",
        "| task | system | CPU | precision | train samples/s (range) | vs Trainer | vs Trainer grouped | "
        "eval samples/s | "
        "peak RSS MB | dev score best / last epoch |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = {r["system"]: r for r in rows if r["task"] == task}
        for system, r in mine.items():
            ratios = [
                f"{r['train_samples_per_s'] / mine[base]['train_samples_per_s']:.2f}x" if base in mine else "-"
                for base in ("trainer", "trainer_grouped")
            ]
            low, high = r["train_range"]
            lines.append(
                f"| {task} | {system} | {r.get('cpu', '?')} | {r.get('precision', '?')} | "
                f"{r['train_samples_per_s']:.1f} ({low:.1f}-{high:.1f}) | {ratios[0]} | {ratios[1]} | "
                f"{r['eval_samples_per_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                f"{r['best_score']:.1f} / {r['last_score']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["rte", "sst2"])
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=[*SYSTEMS, "trainer_max_length"])
    p.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="auto: bf16 where this device computes it natively, else fp32 (benchmark/common/hardware.py)",
    )
    p.add_argument("--zero-stage", type=int, default=2, choices=[0, 1, 2], help="the bench trainer's ZeRO stage")
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeats", type=int, default=1, help="rounds over the systems; medians are reported")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    p.add_argument("--glue-dir", default=None)
    p.add_argument("--cache-dir", default=str(Path("~/.cache/bench").expanduser()))
    p.add_argument("--out", default="results/throughput")
    p.add_argument("--single", nargs=2, metavar=("SYSTEM", "TASK"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    args.precision = resolve_precision(args.precision)  # both systems run what `auto` picks here
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0))
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.single:
        print("RESULT " + json.dumps(run_one(*args.single, args)), flush=True)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for task in args.tasks:
        for round_ in range(args.repeats):
            turn = round_ % len(args.systems)
            for system in args.systems[turn:] + args.systems[:turn]:
                print(f"{task}: {system} (round {round_ + 1})", flush=True)
                runs.append(run_in_child(system, task, argv))
                print("  " + json.dumps(runs[-1]), flush=True)
                (out / "runs.json").write_text(json.dumps(runs, indent=2))
    report = summarize(median_rows(runs), "python -m benchmark.measure.throughput " + " ".join(argv), args)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
