"""Fine-tuning options against full fine-tuning: freezing, gradual unfreezing and layer-wise lr decay; or data
augmentation with an equal-optimizer-steps control.

    python -m benchmark.measure.finetuning --study freezing --out results/freezing
    python -m benchmark.measure.finetuning --study augmentation --out results/augmentation

Each arm is configs/finetuning.yaml (or --suite) with the arm's training keys set, run by `bench run` (Ray Tune,
DeepSpeed) into a run directory of its own (`<output>-<name>-<arm>`; a run resumes where it stopped, and the
two studies share their baseline arm's run). The arms share
tasks, slices, seeds and every other key. The runs are merged into one leaderboard (`bench table` does the same):
a row per arm, each tested against full fine-tuning with Holm's correction, test columns with data.glue_dev: test,
and the compute each arm spent, with its training samples/s. Nothing chooses between arms: each is reported as
its own fixed configuration.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from benchmark.common.hardware import machine_description
from benchmark.common.quiet import quiet_libraries
from benchmark.config.suite import load_suite
from benchmark.measure import write_report
from benchmark.measure.study import against_baseline, learning_lines
from benchmark.results.board import leaderboard_from_runs
from benchmark.results.tables import format_markdown
from benchmark.run.runner import run_suite

BASELINE = "full"


def arms(study: str, epochs: int) -> dict[str, list[str]]:
    """Each arm's --set overrides of the base suite."""
    if study == "freezing":
        return {
            BASELINE: [],
            "bottom-half-frozen": ["training.freeze_embeddings=true", "training.freeze_layers=3"],
            "gradual-unfreezing": ["training.head_only_epochs=1", "training.gradual_unfreezing=true"],
            "llrd-0.8": ["training.layer_lr_decay=0.8"],
        }
    eda = ["training.augment_copies=1", "training.augment_swap=0.1", "training.augment_delete=0.1",
           "training.augment_insert=0.1"]  # fmt: skip
    # One copy per example doubles an epoch's steps: the control trains as many steps without augmentation.
    return {BASELINE: [], "eda-1-copy": eda, "equal-steps": [f"training.epochs={2 * epochs}"]}


def verdict(arm: str, row: dict, base: dict) -> str:
    speed, base_speed = row["compute"].get("train_samples_per_s"), base["compute"].get("train_samples_per_s")
    ratio = f"; {speed / base_speed:.2f}x full fine-tuning's training samples/s" if speed and base_speed else ""
    return f"- {arm}: {against_baseline(row, base, BASELINE)}{ratio}."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", choices=["freezing", "augmentation"], required=True)
    p.add_argument("--suite", default="configs/finetuning.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of every arm")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    quiet_libraries()
    base = load_suite(args.suite, args.set)
    started, runs = time.perf_counter(), {}
    for arm, overrides in arms(args.study, base.config.training.epochs).items():
        name = f"{base.config.name}-{arm}"  # both studies share their baseline arm: one run, trained once
        suite = load_suite(args.suite, [*args.set, *overrides, f"name={name}"], output=f"{base.output}-{name}")
        print(f"{arm}: {' '.join(overrides) or 'the suite as it is'} -> {suite.output}", flush=True)
        run_suite(suite)
        runs[arm] = Path(suite.output)
    wall = time.perf_counter() - started
    board, records = leaderboard_from_runs(list(runs.values()), baseline=f", {base.config.name}-{BASELINE})")
    by_arm = {arm: next(r for r in board["rows"] if r["system"].endswith(f"-{arm})")) for arm in runs}
    machine = machine_description()
    command = "python -m benchmark.measure.finetuning " + " ".join(sys.argv[1:] if argv is None else argv)
    cfg = base.config
    arm_list = "; ".join(
        f"{arm}: {' '.join(o) or 'as the suite'}" for arm, o in arms(args.study, cfg.training.epochs).items()
    )
    precision = "/".join(sorted({str(r.get("precision")) for r in records}))
    lines = [
        f"# Fine-tuning options: {args.study}",
        "",
        f"Command: `{command}`",
        "",
        f"Suite `{args.suite}` ({', '.join(t.name for t in base.tasks)}; {cfg.data.max_train_samples} training "
        f"examples per task; data.glue_dev: {cfg.data.glue_dev}; seeds {cfg.search.seeds}; {cfg.training.epochs} "
        f"epochs), one run per arm ({arm_list}). CPU {machine['cpu']}, {torch.get_num_threads()} threads, precision "
        f"that ran {precision}; nothing else running; wall time {wall / 60:.1f} min for this command (an arm run "
        f"before is not trained again); date {time.strftime('%Y-%m-%d')}.",
        "",
        format_markdown(board, compute=True),
        "## What it shows",
        "",
        "Every arm against full fine-tuning; validation differences carry the table's Holm correction, test "
        "differences are point estimates on GLUE's dev set. Samples/s: one trial's training throughput, two trials "
        "sharing the machine's CPUs, so compare arms of this run only.",
        "",
        *(verdict(arm, by_arm[arm], by_arm[BASELINE]) for arm in runs if arm != BASELINE),
        *(
            [
                f"- eda-1-copy against equal-steps (as many optimizer steps, no augmentation): validation average "
                f"{by_arm['eda-1-copy']['average'] - by_arm['equal-steps']['average']:+.2f} (a point estimate; the "
                "table tests each arm against full only)."
            ]
            if args.study == "augmentation"
            else []
        ),
        "",
        *learning_lines(board, runs[BASELINE], system=by_arm[BASELINE]["system"]),
    ]
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
