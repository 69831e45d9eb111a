"""Cross-task merging (task arithmetic, TIES) against joint multi-task, two-stage and single-task training on the
same tasks and seeds, with the calibration of every row: single, ensemble, soup and merged.

    python -m benchmark.measure.merging --out results/merging

Writes two suites into --work and runs each through `bench run`'s own path (load_suite + run_suite):
- merging-main: the model on rte, mrpc, stsb and cola, 3 seeds: single-task trials, one joint multi-task trial per
  seed, two-stage (each task alone from its joint export), merges of the single-task checkpoints (task arithmetic
  and TIES), and prediction ensembles (mean_prob, greedy);
- merging-soups: the same single-task trials (copied in: same fingerprints, so `bench run` keeps them and trains
  nothing) with weight soups, which a suite with two-stage checkpoints refuses.
The data caps default to sizes where single-task training learns every task on the embedded model (a GPU job;
cola needs thousands of examples). Every figure in README.md and results.json is computed here from the run
directories; nothing is typed in.

Which data chooses what: GLUE's dev set is split once into a selection half and a report half (the suite's
ensemble.split_seed). The selection half chooses each task's checkpoint for a merge (best mean score over seeds),
λ, the temperatures (for merged and ensemble rows; trial rows without a test split too), and ensemble members.
The comparison table scores every row on the report half only. The trainer keeps each trial's best epoch by its
full dev score (the leaderboard's convention), so trial rows, and the checkpoints merges start from, chose their
epoch on data that includes the report half.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

TASKS = ["rte", "mrpc", "stsb", "cola"]
KIND_ORDER = ["single", "multitask", "two-stage", "merged", "ensemble"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="runs/merging", help="where the suites and their run directories go")
    p.add_argument("--out", default="results/merging")
    p.add_argument("--model", default=None, help="a model folder (default: the embedded all-MiniLM-L6-v2)")
    p.add_argument("--tasks", nargs="+", default=TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--train-samples", type=int, default=8000, help="data.max_train_samples")
    p.add_argument("--eval-samples", type=int, default=1000, help="data.max_eval_samples")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of both suites")
    return p.parse_args(argv)


def main_suite(args: argparse.Namespace, work: Path) -> dict:
    return {
        "name": "merging-main",
        "model": args.model,
        "tasks": list(args.tasks),
        "data": {"max_train_samples": args.train_samples, "max_eval_samples": args.eval_samples},
        "training": {
            "epochs": args.epochs,
            "batch_size": 32,
            "learning_rate": args.learning_rate,
            "max_seq_length": 128,
            "zero_stage": 0,
        },
        "search": {"seeds": list(args.seeds)},
        "multitask": {
            "tasks": list(args.tasks),
            "sampler": "annealed",
            "temperature": 5.0,
            "two_stage": {"enabled": True, "training": {"epochs": max(1, args.epochs - 1)}},
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
    """Write the suite and run it as `bench run SUITE --set ...` does."""
    from benchmark.config.suite import load_suite
    from benchmark.run.runner import run_suite

    path = work / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    suite = load_suite(path, overrides)
    started = time.perf_counter()
    run_suite(suite)
    return suite, time.perf_counter() - started


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


def report_half_figures(board: dict, root: Path, split_seed: int) -> dict[str, dict]:
    """Every row's task scores on the report half of dev: per seed for rows of trials (their checkpoints' dev
    predictions restricted to the report half), as built for ensemble rows (already report-half, one replicate)."""
    from benchmark.train.checkpoints import load_predictions
    from tasks.spec import TaskSpec
    from tasks.splits import score_on, split_dev

    records = {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("trials/*/record.json"))}
    out = {}
    for row in board["rows"]:
        if "trial_ids" not in row:  # ensemble rows are on the report half already
            out[row["system"]] = {
                "kind": row["kind"],
                "seeds": 1,
                "task_scores": dict(row["task_scores"]),
                "task_std": {},
                "per_seed": {},
            }
            continue
        per_seed: dict[int, dict[str, float]] = {}
        for task, ids in row["trial_ids"].items():
            for trial_id in ids:
                record = records[trial_id]
                spec = TaskSpec.from_dict(record["task_spec"])
                logits, labels = load_predictions(root / record["checkpoint"])
                halves = split_dev(spec, {s: len(v) for s, v in labels.items()}, split_seed)
                per_seed.setdefault(record["seed"], {})[task] = score_on(spec, logits, labels, halves.report)[1]
        tasks = sorted({t for scores in per_seed.values() for t in scores})
        out[row["system"]] = {
            "kind": row["kind"],
            "seeds": len(per_seed),
            "task_scores": {t: float(np.mean([s[t] for s in per_seed.values() if t in s])) for t in tasks},
            "task_std": {t: _std([s[t] for s in per_seed.values() if t in s]) for t in tasks},
            "per_seed": {str(k): v for k, v in sorted(per_seed.items())},
        }
    for figures in out.values():
        scores = figures["task_scores"]
        seeds = [s for s in figures["per_seed"].values() if set(s) == set(scores)]
        figures["average"] = float(np.mean(list(scores.values()))) if scores else None
        figures["average_std"] = _std([float(np.mean(list(s.values()))) for s in seeds])
    return out


def _std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


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


def _pm(value: float | None, std: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def comparison_table(figures: dict[str, dict], tasks: list[str]) -> list[str]:
    lines = [
        "| system | kind | " + " | ".join(tasks) + " | average | seeds |",
        "|---|---|" + "---:|" * (len(tasks) + 2),
    ]
    order = sorted(
        figures,
        key=lambda s: (
            KIND_ORDER.index(figures[s]["kind"]) if figures[s]["kind"] in KIND_ORDER else len(KIND_ORDER),
            -(figures[s]["average"] or -1e9),
        ),
    )
    for system in order:
        f = figures[system]
        cells = [_pm(f["task_scores"].get(t), f["task_std"].get(t)) for t in tasks]
        lines.append(
            f"| {system} | {f['kind']} | "
            + " | ".join(cells)
            + f" | {_pm(f['average'], f['average_std'])} | {f['seeds']} |"
        )
    return lines


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


def write_results(
    args,
    command: str,
    suites: list,
    walls: list[float],
    boards: list[dict],
    figures: dict,
    choices: list[dict],
    calibration: list[dict],
) -> None:
    import torch

    from benchmark.common.atomic import atomic_write_json
    from benchmark.measure import write_report
    from benchmark.results.tables import format_markdown

    main = suites[0]
    lines = [
        "# Cross-task merging against multi-task, two-stage and single-task training; calibration",
        "",
        f"Command: `{command}`",
        "",
        f"Model {main.models[0].name}; tasks {', '.join(args.tasks)}; {args.train_samples} training and "
        f"{args.eval_samples} dev examples per task at most; seeds {args.seeds}; epochs: {args.epochs}. "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; wall time "
        f"{sum(walls) / 60:.1f} min; date {time.strftime('%Y-%m-%d')}.",
        "",
        "Which data chose what: each dev set is split once into a selection half and a report half (split seed "
        f"{main.ensemble.split_seed}). The selection half chose each task's checkpoint for a merge, λ, the "
        "temperatures of merged and ensemble rows, and ensemble members; every score below is on the report "
        "half. The trainer kept each trial's best epoch by its full dev score, so trial rows (and the checkpoints "
        "merges start from) chose their epoch on data that includes the report half.",
        "",
        "## Task scores on the report half of dev (mean ± std over seeds)",
        "",
        *comparison_table(figures, list(args.tasks)),
        "",
        "## λ chosen on the selection half, per method and seed",
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
        "ECE with 15 equal-width bins; T fitted on validation only (see above); measured on the report half "
        "(tasks without a test split). Trial rows: the mean over seeds.",
        "",
        *calibration_table(calibration),
    ]
    for board in boards:
        lines += ["", format_markdown(board, compute=True, calibration=True)]
    write_report(args.out, "\n".join(lines) + "\n")
    atomic_write_json(
        Path(args.out) / "results.json",
        {
            "command": command,
            "settings": {k: v for k, v in vars(args).items()},
            "wall_seconds": walls,
            "report_half": figures,
            "merges": choices,
            "calibration": calibration,
            "compute": {r["system"]: r["compute"] for b in boards for r in b["rows"]},
        },
    )


def main(argv=None) -> int:
    from benchmark.common.quiet import quiet_libraries
    from benchmark.results.board import leaderboard_from_runs

    args = parse_args(argv)
    quiet_libraries()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    main_config = main_suite(args, work)
    suite_main, wall_main = run(main_config, work, args.set)
    soups_config = soups_suite(main_config, work)
    copy_single_trials(Path(main_config["output"]), Path(soups_config["output"]))
    suite_soups, wall_soups = run(soups_config, work, args.set)
    boards = [leaderboard_from_runs([s.output])[0] for s in (suite_main, suite_soups)]
    figures = report_half_figures(boards[0], suite_main.output, suite_main.ensemble.split_seed)
    soup_figures = report_half_figures(boards[1], suite_soups.output, suite_soups.ensemble.split_seed)
    soups = {k: v for k, v in soup_figures.items() if v["kind"] == "ensemble" and "soup" in k}
    command = "python -m benchmark.measure.merging " + " ".join(sys.argv[1:] if argv is None else argv)
    write_results(
        args,
        command,
        [suite_main, suite_soups],
        [wall_main, wall_soups],
        boards,
        {**figures, **soups},
        merge_choices(suite_main.output),
        calibration_rows(boards),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
