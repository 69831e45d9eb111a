"""ASHA against the full grid on the same search space: best dev score, trial-epochs and wall time.

    python -m benchmark.measure.asha --out results/asha

Both searches run through `bench run` (Ray Tune + Ray Train + DeepSpeed) on the embedded model and a GLUE
slice; the grid runs every point to the last epoch (FIFO), ASHA stops weak points at its rungs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmark.measure.suites import run_suite_command

LEARNING_RATES = [1e-5, 2e-5, 4e-5, 8e-5, 1.6e-4, 3.2e-4, 6.4e-4, 1.28e-3]


def suite(name: str, args, scheduler: dict) -> dict:
    return {
        "name": name,
        "model": args.model,
        "tasks": [args.task],
        "data": {"max_train_samples": args.train_samples, "max_eval_samples": args.eval_samples},
        "training": {"epochs": args.epochs, "max_seq_length": args.max_seq_length, "zero_stage": 0},
        "search": {"grid": grid_of(args), "seeds": [args.seed], "scheduler": scheduler, "save_state": False},
        "output": str(Path(args.work) / name),
    }


def grid_of(args) -> dict:
    return {"learning_rate": args.learning_rates, "batch_size": args.batch_sizes}


def run(config: dict, work: Path) -> dict:
    wall, records = run_suite_command(config, work)
    best = max(records, key=lambda r: r["best_score"])
    return {
        "best_score": best["best_score"],
        "best_point": best["grid_point"],
        "trial_epochs": sum(r["epochs"][-1]["epoch"] for r in records),
        "stopped": sum(r["status"] == "stopped" for r in records),
        "trials": len(records),
        "wall_seconds": wall,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="stsb")
    p.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-samples", type=int, default=500)
    p.add_argument("--eval-samples", type=int, default=300)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--learning-rates", type=float, nargs="+", default=LEARNING_RATES)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    p.add_argument("--reduction-factor", type=float, default=3)
    p.add_argument("--grace-period", type=int, default=1, help="epochs before ASHA may stop a trial")
    p.add_argument("--work", default="/tmp/bench-asha")
    p.add_argument("--out", default="results/asha")
    args = p.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    grid = run(suite("grid", args, {"type": "fifo"}), work)
    asha = run(
        suite(
            "asha", args, {"type": "asha", "grace_period": args.grace_period, "reduction_factor": args.reduction_factor}
        ),
        work,
    )
    command = "python -m benchmark.measure.asha " + " ".join(sys.argv[1:] if argv is None else argv)
    grid_space = grid_of(args)
    points = len(args.learning_rates) * len(args.batch_sizes)
    lines = [
        "# ASHA against the full grid",
        "",
        f"Command: `{command}`",
        "",
        f"Task {args.task} ({args.train_samples} training / {args.eval_samples} dev examples, seeded slice), "
        f"embedded all-MiniLM-L6-v2, {args.epochs} epochs, max length {args.max_seq_length}, seed {args.seed}; "
        f"grid of {points} points: learning_rate {grid_space['learning_rate']} x batch_size {grid_space['batch_size']}. "
        f"ASHA: grace period {args.grace_period} epoch(s), reduction factor {args.reduction_factor:g}, same grid, same order. "
        f"Date {time.strftime('%Y-%m-%d')}.",
        "",
        "| search | best dev score | best point | trials stopped early | trial-epochs | wall time (s) |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, r in (("full grid (FIFO)", grid), ("ASHA", asha)):
        lines.append(
            f"| {name} | {r['best_score']:.2f} | {r['best_point']} | {r['stopped']} of {r['trials']} | "
            f"{r['trial_epochs']:g} | {r['wall_seconds']:.0f} |"
        )
    gap = grid["best_score"] - asha["best_score"]
    share = asha["trial_epochs"] / grid["trial_epochs"]
    lines += [
        "",
        f"ASHA's best is {gap:.2f} points below the grid's (target: within 0.5) using {share:.0%} of its "
        f"trial-epochs (target: at most 40%) and {asha['wall_seconds'] / grid['wall_seconds']:.0%} of its wall time.",
    ]
    report = "\n".join(lines) + "\n"
    (out / "README.md").write_text(report)
    (out / "figures.json").write_text(json.dumps({"grid": grid, "asha": asha}, indent=2))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
