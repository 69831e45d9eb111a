"""Cross-task merging (task arithmetic, TIES) against joint multi-task, two-stage and single-task training on the
same tasks and seeds, with the calibration of every row: single, ensemble, soup and merged.

    python -m benchmark.measure.merging --out results/merging

Writes two suites into --work and runs each through `bench run`'s own path (load_suite + run_suite):
- merging-main: the model on sst2, stsb, mrpc and cola, 3 seeds: single-task trials, one joint multi-task trial per
  seed, two-stage (each task alone from its joint export), merges of the single-task checkpoints (task arithmetic
  and TIES), and prediction ensembles (mean_prob, greedy);
- merging-soups: the same single-task trials (copied in: same fingerprints, so `bench run` keeps them and trains
  nothing) with weight soups, which a suite with two-stage checkpoints refuses.
SST-2 and STS-B are capped at 1,500 training examples; MRPC and CoLA train on all theirs, which the embedded model
needs to beat the constant prediction on them (the README says whether each baseline learned).

Which data chooses what (data.glue_dev: test): validation is held out of GLUE's training set and chooses
everything: each trial's epoch, each task's checkpoint for a merge and λ (on its selection half), temperatures,
ensemble members. GLUE's dev set is the test split: every chosen system is scored on it once, and the table's
test columns, intervals and corrected tests are on it. Every figure in README.md and results.json is computed
here from the run directories.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

from benchmark.common.atomic import atomic_write_json
from benchmark.common.hardware import machine_description
from benchmark.common.quiet import quiet_libraries
from benchmark.config.suite import load_suite
from benchmark.measure import code_line, write_report
from benchmark.measure.records import RECORDS_DIR, board_from_records, table_markdown

TASKS = ["sst2", "stsb", "mrpc", "cola"]
KINDS = ("multitask", "two-stage", "merged")
# SST-2 and STS-B learn from 1,500 examples; MRPC and CoLA need all of theirs (at 1,500 their baselines do not beat
# the constant prediction).
TRAIN_SAMPLES = ["sst2=1500", "stsb=1500"]


def train_caps(values: list[str]) -> int | dict[str, int]:
    """`["1500"]` -> 1500; `["sst2=1500", "stsb=1500"]` -> {"sst2": 1500, "stsb": 1500}."""
    if len(values) == 1 and "=" not in values[0]:
        return int(values[0])
    return {task: int(n) for task, n in (v.split("=", 1) for v in values)}


def caps_text(caps: int | dict[str, int], tasks: list[str]) -> str:
    if isinstance(caps, int):
        return f"{caps} training examples per task"
    return "training examples: " + ", ".join(f"{t} {caps[t]}" if t in caps else f"{t} all" for t in tasks)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="runs/merging", help="where the suites and their run directories go")
    p.add_argument("--out", default="results/merging")
    p.add_argument("--model", default=None, help="a model folder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--tasks", nargs="+", default=TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument(
        "--train-samples",
        nargs="+",
        default=TRAIN_SAMPLES,
        metavar="[TASK=]N",
        help="data.max_train_samples: N for every task, or TASK=N per task (a task not named trains on all its rows)",
    )
    p.add_argument("--eval-samples", type=int, default=400, help="data.max_eval_samples (validation and test)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of both suites")
    return p.parse_args(argv)


def main_suite(args: argparse.Namespace, work: Path) -> dict:
    return {
        "name": "merging-main",
        "model": args.model,
        "tasks": list(args.tasks),
        "data": {
            "glue_dev": "test",
            "holdout": {"validation": 0.1, "seed": 0},
            "max_train_samples": train_caps(args.train_samples),
            "max_eval_samples": args.eval_samples,
        },
        "training": {
            "epochs": args.epochs,
            "batch_size": 16,
            "learning_rate": args.learning_rate,
            "max_seq_length": 64,
            "zero_stage": 0,
            "init_seed": 0,  # every seed's heads start from one initialisation: the soups suite averages them
        },
        "search": {"seeds": list(args.seeds)},
        "multitask": {
            "tasks": list(args.tasks),
            "sampler": "annealed",
            "temperature": 5.0,
            "two_stage": {"enabled": True, "training": {"epochs": 1}, "grid": {"learning_rate": [5e-5]}},
        },
        "merge": {"methods": ["task_arithmetic", "ties"]},
        "ensemble": {"methods": ["mean_prob", "greedy"], "split_seed": 0},
        "output": str(work / "merging-main"),
    }


def soups_suite(main: dict, work: Path) -> dict:
    suite = {k: v for k, v in main.items() if k not in ("multitask", "merge")}
    return {
        **suite,
        "name": "merging-soups",
        "ensemble": {"methods": ["soup_uniform", "soup_greedy"], "split_seed": 0},
        "output": str(work / "merging-soups"),
    }


def run(config: dict, work: Path, overrides: list[str]):
    """Write the suite and run it as `bench run SUITE --set ...` does; the suite, and its run's (seconds, timed
    parts, untimed parts) so far."""
    # Imported here for start-up speed (rich).
    from benchmark.measure.study import timed_run

    path = work / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    suite = load_suite(path, overrides)
    return suite, timed_run(suite)


def copy_single_trials(source: Path, target: Path) -> int:
    """The main run's single-task trials, into the soups run: `bench run` keeps a finished trial of the same
    fingerprint, so the soups are built from the very checkpoints the merges used."""
    copied = 0
    for record_path in sorted((source / "trials").glob("*/record.json")):
        record = json.loads(record_path.read_text())
        folder = target / "trials" / record["trial_id"]
        if record.get("kind") == "single" and record.get("status") == "finished" and not folder.exists():
            shutil.copytree(record_path.parent, folder)
            copied += 1
    return copied


def merge_choices(root: Path) -> list[dict]:
    """λ and the selection-half score of every scale, per merged method and seed (the records of one merge agree)."""
    out = {}
    for path in sorted(root.glob("trials/*/record.json")):
        record = json.loads(path.read_text())
        if record.get("kind") == "merged":
            merge = record["merge"]
            out[(merge["method"], record["seed"])] = {
                "method": merge["method"],
                "seed": record["seed"],
                "lambda": merge["scale"],
                "selection": merge["selection_scores"],
                "sources": merge["sources"],
            }
    return [out[k] for k in sorted(out)]


def calibration_rows(boards: list[dict]) -> list[dict]:
    """Single, ensemble, soup and merged rows (and the rest) with their calibration, one entry per row and task; of
    the soups run only its soups (its other rows repeat the main run's)."""
    out = []
    for i, board in enumerate(boards):
        for row in board["rows"]:
            kind = "soup" if row.get("soups") else row["kind"]
            if i > 0 and kind != "soup":
                continue
            for task, c in (row.get("calibration") or {}).items():
                out.append(
                    {
                        "system": row["system"],
                        "kind": kind,
                        "task": task,
                        **{k: c[k] for k in ("ece", "ece_scaled", "nll", "brier", "temperature", "examples")},
                    }
                )
    return out


def calibration_table(rows: list[dict]) -> list[str]:
    lines = [
        "| system | kind | task | ECE % | ECE after T % | NLL | Brier | T | examples |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['kind']} | {r['task']} | {100 * r['ece']:.1f} "
            f"| {100 * r['ece_scaled']:.1f} | {r['nll']:.3f} | {r['brier']:.3f} | {r['temperature']:.2f} "
            f"| {r['examples']} |"
        )
    return lines


def verdicts(board: dict) -> list[str]:
    """One line per multi-task, two-stage and merged row against the single-task row."""
    # Imported here for start-up speed (rich).
    from benchmark.measure.study import trained_against_single

    single = next(r for r in board["rows"] if r["kind"] == "single" and "trial_ids" in r)
    return [
        trained_against_single(row, single)
        for row in board["rows"]
        if row["kind"] in KINDS and row["average"] is not None
    ]


def write_results(args, command: str, suites: list, walls: list, boards: list[dict], records: list[dict]) -> None:
    # Imported here for start-up speed (torch).
    import torch

    # Imported here for start-up speed (rich).
    from benchmark.measure.study import learning_lines, walls_text

    main = suites[0]
    choices, calibration = merge_choices(main.output), calibration_rows(boards)
    precision = "/".join(sorted({str(r["precision"]) for r in records if r.get("precision")}))
    lines = [
        "# Cross-task merging against multi-task, two-stage and single-task training; calibration",
        "",
        f"Command: `{command}`",
        "",
        code_line(),
        "",
        f"Model {main.models[0].name}; tasks {', '.join(args.tasks)}; "
        f"{caps_text(train_caps(args.train_samples), args.tasks)} (all: GLUE's training set less validation); "
        f"validation and test capped at {args.eval_samples}; data.glue_dev: test; seeds {args.seeds}; "
        f"{args.epochs} epochs (two-stage: 1 more from the joint export). CPU {machine_description()['cpu']}, "
        f"{torch.get_num_threads()} threads, precision that ran {precision}; nothing else running; "
        f"{walls_text(walls)}; date {time.strftime('%Y-%m-%d')}.",
        "",
        "Which data chose what: validation, held out of GLUE's training set, chose each trial's epoch; its selection "
        f"half (split seed {main.ensemble.split_seed}) chose each task's checkpoint for a merge, λ, the temperatures "
        "of merged and ensemble rows and the ensemble members. Test is GLUE's dev set: nothing chose on it.",
        "",
        "## Every way of training (run merging-main)",
        "",
        table_markdown(boards[0], calibration=True),
        "## Weight soups of the same single-task checkpoints (run merging-soups)",
        "",
        table_markdown(boards[1], calibration=True),
        "## What it shows",
        "",
        "Every row against the single-task row, each difference with the table's Holm correction (test and "
        "validation are separate families).",
        "",
        *verdicts(boards[0]),
        "",
        *learning_lines(boards[0], Path(args.out) / RECORDS_DIR / "merging-main"),
        "",
        "## λ chosen on the selection half of validation, per method and seed",
        "",
        "| method | seed | λ | selection-half mean score per λ |",
        "|---|---:|---:|---|",
    ]
    for c in choices:
        scores = ", ".join(f"{k}: {v:.2f}" for k, v in c["selection"].items())
        lines.append(f"| {c['method']} | {c['seed']} | {c['lambda']:g} | {scores} |")
    lines += [
        "",
        "## Calibration (classification tasks)",
        "",
        "ECE with 15 equal-width bins; T fitted on validation only (ensembles and merges: its selection half); "
        "measured on test. Trial rows: the mean over seeds.",
        "",
        *calibration_table(calibration),
    ]
    write_report(args.out, "\n".join(lines) + "\n")
    atomic_write_json(
        Path(args.out) / "results.json",
        {
            "command": command,
            "settings": dict(vars(args)),
            "wall_seconds": [seconds for seconds, _, _ in walls],
            "merges": choices,
            "calibration": calibration,
            "rows": [
                {k: r.get(k) for k in ("system", "kind", "task_scores", "average", "test", "compute", "significance")}
                for b in boards
                for r in b["rows"]
            ],
        },
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_libraries()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    main_config = main_suite(args, work)
    suite_main, wall_main = run(main_config, work, args.set)
    soups_config = soups_suite(main_config, work)
    copy_single_trials(Path(main_config["output"]), Path(soups_config["output"]))
    suite_soups, wall_soups = run(soups_config, work, args.set)
    main_board, records, _ = board_from_records(
        args.out, "main", {"merging-main": Path(suite_main.output)}, "(single)", calibration=True
    )
    soups = {"merging-soups": Path(suite_soups.output)}
    soups_board, _, _ = board_from_records(args.out, "soups", soups, calibration=True)
    command = "python -m benchmark.measure.merging " + " ".join(sys.argv[1:] if argv is None else argv)
    write_results(args, command, [suite_main, suite_soups], [wall_main, wall_soups], [main_board, soups_board], records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
