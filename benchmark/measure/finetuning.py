"""Fine-tuning options against full fine-tuning: freezing, gradual unfreezing and layer-wise lr decay; data
augmentation with an equal-optimizer-steps control; LoRA (r = 8 and 16); or how a pair is read (pooling and pair
encoding, on configs/pooling.yaml).

    python -m benchmark.measure.finetuning --study freezing --out results/freezing
    python -m benchmark.measure.finetuning --study augmentation --out results/augmentation
    python -m benchmark.measure.finetuning --study peft --out results/peft
    python -m benchmark.measure.finetuning --study pooling --out results/pooling

Each arm is configs/finetuning.yaml (or --suite) with the arm's keys set, run by `bench run` (Ray Tune,
DeepSpeed) into a run directory of its own (`<output>-<name>-<arm>`; a run resumes where it stopped, and the
freezing and augmentation studies share their baseline arm's run). The arms share tasks, slices, seeds and every
other key; the peft study gives each arm its own small learning-rate grid (LoRA wants a higher rate), chosen on
validation like the epoch. The runs are merged into one leaderboard (`bench table` does the same): a row per arm,
each tested against the study's first arm with Holm's correction, on validation and, with data.glue_dev: test,
on test, where nothing chose; and the compute each arm spent: samples/s, trainable parameters, peak memory.
Nothing chooses between arms: each is reported as its own configuration.
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
from benchmark.measure import code_line, write_report
from benchmark.measure.records import board_from_records, table_markdown
from benchmark.measure.study import against_baseline, learning_lines, timed_run, walls_text, write_trial_scores


def arms(study: str, epochs: int) -> dict[str, list[str]]:
    """Each arm's --set overrides of the base suite; the first arm is the baseline."""
    if study == "peft":  # alpha = 2r, as is common for LoRA on GLUE
        lora = "search.grid.learning_rate=[1.0e-3,3.0e-3]"
        return {
            "full-grid": ["search.grid.learning_rate=[5.0e-5,1.0e-4]"],
            "lora-r8": ["training.lora_r=8", "training.lora_alpha=16", lora],
            "lora-r16": ["training.lora_r=16", "training.lora_alpha=32", lora],
        }
    if study == "pooling":  # the model's own reading (mean) against [CLS], as a cross- and as a bi-encoder
        return {
            "cross-cls": ["training.pooling=cls"],
            "cross-mean": ["training.pooling=mean"],
            "bi-mean": ["training.pooling=mean", "training.pair_encoding=bi"],
        }
    if study == "freezing":
        return {
            "full": [],
            "bottom-half-frozen": ["training.freeze_embeddings=true", "training.freeze_layers=3"],
            "gradual-unfreezing": ["training.head_only_epochs=1", "training.gradual_unfreezing=true"],
            "llrd-0.8": ["training.layer_lr_decay=0.8"],
        }
    eda = ["training.augment_copies=1", "training.augment_swap=0.1", "training.augment_delete=0.1",
           "training.augment_insert=0.1"]  # fmt: skip
    # One copy per example doubles an epoch's steps: the control trains as many steps without augmentation.
    return {"full": [], "eda-1-copy": eda, "equal-steps": [f"training.epochs={2 * epochs}"]}


def verdict(arm: str, row: dict, base: dict, baseline: str) -> str:
    speed, base_speed = row["compute"].get("train_samples_per_s"), base["compute"].get("train_samples_per_s")
    ratio = f"; {speed / base_speed:.2f}x {baseline}'s training samples/s" if speed and base_speed else ""
    return f"- {arm}: {against_baseline(row, base, baseline)}{ratio}."


def _difference(row: dict, other: dict) -> str:
    """`test average +x, validation average +y` of two rows."""
    test, other_test = (row.get("test") or {}).get("average"), (other.get("test") or {}).get("average")
    on_test = f"test average {test - other_test:+.2f}, " if test is not None and other_test is not None else ""
    return f"{on_test}validation average {row['average'] - other['average']:+.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", choices=["freezing", "augmentation", "peft", "pooling"], required=True)
    p.add_argument("--suite", default=None, help="default: configs/pooling.yaml for pooling, else finetuning.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of every arm")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    quiet_libraries()
    args.suite = args.suite or f"configs/{'pooling' if args.study == 'pooling' else 'finetuning'}.yaml"
    base = load_suite(args.suite, args.set)
    runs, walls = {}, []
    arm_sets = arms(args.study, base.config.training.epochs)
    baseline = next(iter(arm_sets))
    for arm, overrides in arm_sets.items():
        name = f"{base.config.name}-{arm}"  # both studies share their baseline arm: one run, trained once
        suite = load_suite(args.suite, [*args.set, *overrides, f"name={name}"], output=f"{base.output}-{name}")
        print(f"{arm}: {' '.join(overrides) or 'the suite as it is'} -> {suite.output}", flush=True)
        walls.append(timed_run(suite))
        runs[arm] = Path(suite.output)
    board, records, copies = board_from_records(args.out, "board", runs, baseline=f", {base.config.name}-{baseline})")
    trained = [r for r in board["rows"] if r["kind"] == "single"]  # the floors' rows name their run too
    by_arm = {arm: next(r for r in trained if r["system"].endswith(f"-{arm})")) for arm in runs}
    machine = machine_description()
    command = "python -m benchmark.measure.finetuning " + " ".join(sys.argv[1:] if argv is None else argv)
    cfg = base.config
    arm_list = "; ".join(f"{arm}: {' '.join(o) or 'as the suite'}" for arm, o in arm_sets.items())
    precision = "/".join(sorted({str(r.get("precision")) for r in records}))
    lines = [
        f"# Fine-tuning options: {args.study}",
        "",
        f"Command: `{command}`",
        "",
        code_line(),
        "",
        f"Suite `{args.suite}` ({', '.join(t.name for t in base.tasks)}; {cfg.data.max_train_samples} training "
        f"examples per task; data.glue_dev: {cfg.data.glue_dev}; seeds {cfg.search.seeds}; {cfg.training.epochs} "
        f"epochs), one run per arm ({arm_list}). CPU {machine['cpu']}, {torch.get_num_threads()} threads, precision "
        f"that ran {precision}; nothing else running; {walls_text(walls)}, every arm's run summed; date "
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        table_markdown(board),
        "## What it shows",
        "",
        f"Every arm against {baseline}, each difference with the table's Holm correction (test and validation "
        "are separate families). Samples/s: one trial's training throughput, two trials sharing the machine's "
        "CPUs, so compare arms of this run only.",
        "",
        *(verdict(arm, by_arm[arm], by_arm[baseline], baseline) for arm in runs if arm != baseline),
        *(
            [
                "- eda-1-copy against equal-steps (as many optimizer steps, no augmentation): "
                + _difference(by_arm["eda-1-copy"], by_arm["equal-steps"])
                + " (point estimates; the table tests each arm against full only)."
            ]
            if args.study == "augmentation"
            else []
        ),
        "",
        *learning_lines(board, copies[baseline], system=by_arm[baseline]["system"]),
    ]
    write_report(args.out, "\n".join(lines) + "\n")
    names = {f"{base.config.name}-{arm}": arm for arm in runs}
    write_trial_scores(args.out, records, lambda r: next((a for n, a in names.items() if n in r["trial_id"]), None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
