"""LoRA (r = 8 and 16) against full fine-tuning, on the embedded model, through `bench run`.

    python -m benchmark.measure.peft --out results/peft

Each arm is a suite of its own that this script writes and runs as `bench run` does (Ray Tune, Ray Train,
DeepSpeed): the same tasks, data slices and seeds, and the arm's own small learning-rate grid (LoRA usually
wants a higher rate). Each arm's model is a folder of links to the same model files, named after the arm, so
that the three runs' leaderboard, merged, has one row per arm. Where the suite can score on a labelled test split
(`data.glue_dev: test` when bench has it, or a task file with a test split or held-out test fraction), the grid
point and epoch are chosen on validation and the figures are on test: the score with its 95% bootstrap interval
over test examples, and the paired bootstrap p against full fine-tuning, Holm-corrected over every comparison of
the study. Without a test split they are the leaderboard's dev figures (chosen and reported on dev), and the
README says so. Also: trainable parameters, training samples/s and peak memory (what the trainer records: on CPU
the worker process's peak resident memory over its life, on GPU the peak torch allocated).

Writes `--out`/README.md and `--out`/peft.json from the figures computed here. Each arm's run directory is kept
under --work; running again resumes the runs (finished trials are kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmark.common.atomic import atomic_write_json
from benchmark.measure import write_report
from benchmark.records.final_predictions import read_test_file, test_prediction_path
from benchmark.results.bootstrap import SplitPredictions, interval, paired_difference, score_task
from benchmark.train.modeling import embedded_model_path

# Arm name -> its training keys and learning-rate grid. alpha = 2r, as is common for LoRA on GLUE.
ARMS = {
    "full": {"training": {"lora_r": 0}, "learning_rates": [2e-5, 5e-5, 1e-4]},
    "lora-r8": {"training": {"lora_r": 8, "lora_alpha": 16.0}, "learning_rates": [3e-4, 1e-3, 3e-3]},
    "lora-r16": {"training": {"lora_r": 16, "lora_alpha": 32.0}, "learning_rates": [3e-4, 1e-3, 3e-3]},
}
BASELINE = "full"
# Tasks and sizes on which full fine-tuning of the embedded model learns (results/freezing, results/multitask).
DEFAULTS = {
    "tasks": ["sst2", "mrpc", "stsb"],
    "seeds": [1, 2, 3],
    "train_samples": 4000,
    "eval_samples": 1000,
    "training": {"epochs": 3, "batch_size": 32, "max_seq_length": 128, "precision": "bf16"},
}


def arm_model(work: Path, arm: str, model_path: str) -> Path:
    """A folder named after the arm whose files link to the model's: tables name rows by model folder."""
    folder = work / "models" / arm
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(Path(model_path).iterdir()):
        link = folder / source.name
        if source.is_file() and not link.exists():
            os.symlink(source.resolve(), link)
    return folder


def glue_dev_supported() -> bool:
    """Whether this bench has `data.glue_dev` (score GLUE's dev set as test, validate on a held-out part)."""
    from benchmark.config.suite import DataConfig

    return any(f.name == "glue_dev" for f in dataclasses.fields(DataConfig))


def write_suite(work: Path, arm: str, args, model: Path) -> Path:
    spec = ARMS[arm]
    data = {"max_train_samples": args.train_samples, "max_eval_samples": args.eval_samples}
    if glue_dev_supported():
        data["glue_dev"] = "test"
    suite = {
        "name": f"peft-{arm}",
        "model": str(model),
        "data": data,
        "tasks": [str(Path(t).resolve()) if t.endswith((".yaml", ".yml")) else t for t in args.tasks],
        "training": {**DEFAULTS["training"], **({"epochs": args.epochs} if args.epochs else {}), **spec["training"]},
        "search": {"grid": {"learning_rate": spec["learning_rates"]}, "seeds": args.seeds},
        "output": str(work / "runs" / arm),
    }
    path = work / "suites" / f"{arm}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite, indent=2))  # JSON is YAML
    return path


def run_arms(args, work: Path, model_path: str) -> list[Path]:
    """`bench run` of each arm's suite; returns the run directories, the baseline first."""
    from benchmark.config.suite import load_suite
    from benchmark.run.runner import run_suite

    runs = []
    for arm in ARMS:
        suite = load_suite(write_suite(work, arm, args, arm_model(work, arm, model_path)), args.set)
        print(f"== {arm}: {suite.output}", flush=True)
        run_suite(suite)
        runs.append(suite.output)
    return runs


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: family-wise error control over all the comparisons."""
    order = np.argsort(pvalues, kind="stable")
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def test_sample(row: dict, root_of: dict, task_spec):
    """The row's chosen checkpoints scored on the task's test split, resampled; None without test predictions.
    `root_of`: (model, trial id) -> run directory (the arms' runs give their trials the same ids)."""
    seeds = []
    for trial_id in row["trial_ids"].get(task_spec.name, []):
        test = read_test_file(test_prediction_path(root_of[row["model"], trial_id], trial_id))
        if test is None:
            return None
        seeds.append({"test": SplitPredictions(test["logits"], test["labels"], np.arange(len(test["labels"])))})
    if not seeds:
        return None
    task = dataclasses.replace(task_spec, eval_splits={"test": ""})
    return score_task(task, seeds, {"test": np.arange(len(seeds[0]["test"].labels))})


def arm_figures(row: dict, records: list[dict]) -> dict:
    """Cost figures of one arm over the trials at its chosen grid points."""
    chosen = {i for ids in row["trial_ids"].values() for i in ids}
    epochs = [e for r in records if r["model"] == row["model"] and r["trial_id"] in chosen for e in r.get("epochs", [])]
    return {
        "trainable_parameters": max((e.get("trainable_parameters", 0) for e in epochs), default=None),
        "parameters": row["compute"].get("parameters"),
        "train_samples_per_s": float(np.mean([e["train_samples_per_s"] for e in epochs])) if epochs else None,
        "peak_memory_mb": max((e.get("peak_memory_mb", 0.0) for e in epochs), default=None),
        "device": row["compute"].get("device"),
        "learning_rate": {t: point.get("learning_rate") for t, point in row["config"].items()},
    }


def compute_figures(runs: list[Path]) -> dict:
    """Every figure the README and the json report, from the merged leaderboard of the arms' runs."""
    from benchmark.records.store import RunStore
    from benchmark.results.board import leaderboard_from_runs
    from tasks.spec import TaskSpec

    board, records = leaderboard_from_runs(runs, baseline=f"{BASELINE} (single)")
    root_of = {(r["model"], r["trial_id"]): run for run in runs for r in RunStore(run).records()}
    specs = {r["task"]: TaskSpec.from_dict(r["task_spec"]) for r in records}
    rows = {row["model"]: row for row in board["rows"] if row["kind"] == "single"}
    samples = {arm: {t: test_sample(rows[arm], root_of, specs[t]) for t in board["tasks"]} for arm in rows}
    on_test = all(s is not None for per_task in samples.values() for s in per_task.values())
    arms = {}
    for arm, row in rows.items():
        tasks = {}
        for t in board["tasks"]:
            if on_test:
                sample = samples[arm][t]
                tasks[t] = {"score": sample.score, "ci": interval(sample.score_replicates), "examples": sample.examples}
                if arm != BASELINE:
                    base = samples[BASELINE][t]
                    tasks[t]["vs_full"] = paired_difference(
                        sample.score, sample.score_replicates, base.score, base.score_replicates
                    )
            else:
                tasks[t] = {
                    "score": row["task_scores"][t],
                    "ci": row["ci"]["task_scores"].get(t),
                    "examples": row["ci"].get("examples", {}).get(t),
                }
                if arm != BASELINE:
                    tasks[t]["vs_full"] = row["significance"]["task_scores"][t]
            tasks[t]["std_over_seeds"] = (
                row["test"]["std"]["task_scores"].get(t) if on_test else row["std"]["task_scores"].get(t)
            )
        arms[arm] = {**arm_figures(row, records), "tasks": tasks}
    comparisons = [
        (a, t) for a in arms if a != BASELINE for t in board["tasks"] if "p" in arms[a]["tasks"][t]["vs_full"]
    ]
    for (a, t), p in zip(comparisons, holm([arms[a]["tasks"][t]["vs_full"]["p"] for a, t in comparisons])):
        arms[a]["tasks"][t]["vs_full"]["p_holm"] = p
    return {
        "split": "test" if on_test else "dev",
        "tasks": board["tasks"],
        "arms": arms,
        "seeds": max(row["seeds"] for row in rows.values()),
        "trials": board["trials"],
    }


def readme(figures: dict, args, command: str, wall: float) -> str:
    import torch

    split = figures["split"]
    lines = [
        "# LoRA against full fine-tuning",
        "",
        f"Command: `{command}`",
        "",
        f"Model {args.model_name}; tasks {', '.join(figures['tasks'])}; {args.train_samples} training and "
        f"{args.eval_samples} evaluation examples per task; seeds {args.seeds}; each arm's learning rates: "
        + "; ".join(f"{a} {ARMS[a]['learning_rates']}" for a in ARMS)
        + f". {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; wall time "
        f"{wall / 60:.1f} min; date {time.strftime('%Y-%m-%d')}.",
        "",
    ]
    if split == "test":
        lines.append("Grid point and epoch chosen on validation; scores on the labelled test split, never chosen on.")
    else:
        lines.append(
            "No labelled test split: dev scores, on the dev sets that also chose the grid point and epoch "
            "(the GLUE convention; optimistic for every arm alike)."
        )
    lines += [
        "",
        "| arm | trainable parameters | of all | train samples/s | peak memory (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for arm, f in figures["arms"].items():
        share = f"{100 * f['trainable_parameters'] / f['parameters']:.2f}%" if f["parameters"] else "?"
        lines.append(
            f"| {arm} | {f['trainable_parameters']:,} | {share} | {f['train_samples_per_s']:.1f} | "
            f"{f['peak_memory_mb']:.0f} |"
        )
    lines += [
        "",
        f"| task | arm | {split} score (95% CI) | ± std over seeds | vs full | p | p (Holm) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for t in figures["tasks"]:
        for arm, f in figures["arms"].items():
            c = f["tasks"][t]
            ci = f" [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]" if c.get("ci") else ""
            std = f"{c['std_over_seeds']:.2f}" if c.get("std_over_seeds") is not None else "-"
            vs = c.get("vs_full") or {}
            delta = f"{vs['delta']:+.2f}" if "delta" in vs else "-"
            p = f"{vs['p']:.3f}" if "p" in vs else "-"
            holm_p = f"{vs['p_holm']:.3f}" if "p_holm" in vs else "-"
            lines.append(f"| {t} | {arm} | {c['score']:.2f}{ci} | {std} | {delta} | {p} | {holm_p} |")
    lines += [
        "",
        "Scores 0-100 (the mean of the task's metrics), the mean over seeds of the checkpoints at each arm's "
        "chosen grid point. Intervals: percentile bootstrap over examples; p: paired bootstrap against full "
        "fine-tuning on the same draws, two-sided; Holm: adjusted over every arm-and-task comparison above.",
        "Trainable parameters: with LoRA, the adapters and the classification head (the DeepSpeed engine "
        "holds nothing else). Samples/s: the mean over the chosen trials' epochs.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from benchmark.common.quiet import quiet_libraries

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a model folder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--tasks", nargs="+", default=DEFAULTS["tasks"], help="GLUE names or task files")
    p.add_argument("--seeds", nargs="+", type=int, default=DEFAULTS["seeds"])
    p.add_argument("--train-samples", type=int, default=DEFAULTS["train_samples"])
    p.add_argument("--eval-samples", type=int, default=DEFAULTS["eval_samples"])
    p.add_argument("--epochs", type=int, help=f"default {DEFAULTS['training']['epochs']}")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of every arm's suite"
    )
    p.add_argument("--work", default="runs/measure-peft", help="the arms' suites, model links and run directories")
    p.add_argument("--out", default="results/peft")
    args = p.parse_args(argv)
    quiet_libraries()
    model_path = args.model or embedded_model_path()
    args.model_name = Path(model_path).name if args.model else "the embedded all-MiniLM-L6-v2"
    work = Path(args.work).resolve()
    started = time.perf_counter()
    runs = run_arms(args, work, model_path)
    figures = compute_figures(runs)
    wall = time.perf_counter() - started
    command = "python -m benchmark.measure.peft " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "peft.json", {"command": command, "wall_seconds": wall, **figures})
    write_report(args.out, readme(figures, args, command, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
