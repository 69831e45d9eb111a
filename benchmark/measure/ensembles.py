"""Ensembles against the best single checkpoint, on report data only.

    python -m benchmark.measure.ensembles [--suite configs/ensembles.yaml] --out results/ensembles

Runs `--suite` (default configs/ensembles.yaml: the embedded model on rte, mrpc, stsb and cola, 3 learning rates
x 2 seeds = 6 candidate checkpoints per task on 800-example training slices) through `bench run`, then every
ensemble method over each task's top 3 and all of its candidates; the output names the suite it ran. Every figure
below is a report-half score (split-half protocol): members, pools
and the best single checkpoint were chosen on the other half of dev. The goal is the best ensemble beating the
best single checkpoint by at least 1 point on average.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from benchmark.common.hardware import machine_description
from benchmark.measure import code_line, write_report
from benchmark.measure.records import board_from_records, table_markdown
from benchmark.measure.study import learning_lines, run_study
from benchmark.records.store import RunStore
from benchmark.train.checkpoints import load_predictions, load_trial_meta
from ensembles.rows import read_state
from tasks.spec import TaskSpec
from tasks.splits import score_on

GOAL = 1.0  # points of average task score over the best single checkpoint


def summarize(board: dict, run: Path, suite, command: str, wall: str) -> str:
    """The README of the run's records `run` (a copy, see benchmark/measure/records.py) and its board."""
    state, records = read_state(run), RunStore(run).records()
    tasks = state["tasks"]
    test = {r["system"]: r["test"] for r in board["rows"] if r.get("test")}
    rows = state["rows"]
    best_single = next(r for r in rows if r["kind"] == "single")
    ensembles = sorted((r for r in rows if r["kind"] == "ensemble"), key=lambda r: -r["average"])
    lines = _setting_lines(state, records, suite, run, command, wall, best_single)
    lines += _table_lines(tasks, best_single, ensembles, test, records)
    lines += _result_lines(board, run, tasks, best_single, ensembles, test)
    lines += [
        "## The leaderboard, with intervals and corrected tests",
        "",
        "As `bench table` prints it for this run (statistics on validation; see its notes for what chose and what "
        "reported).",
        "",
        table_markdown(board, compute=False),
        "## Members",
        "",
    ]
    for row in [best_single] + ensembles:
        members = "; ".join(
            f"{t}: {', '.join(_weighted(ids, row['member_weights'][t]))}" for t, ids in row["members"].items()
        )
        lines.append(f"- {row['system']}: {members}")
    lines += [
        "",
        "## Candidates",
        "",
        "Each candidate's score on the selection half (what every choice above used) and on the report half. The "
        "report column is for reading only: picking a checkpoint by it would be selection on report data.",
        "",
        "| task | trial | selection half | report half | full dev (trial record) |",
        "|---|---|---:|---:|---:|",
    ]
    records_by_id = {r["trial_id"]: r for r in records}
    for t in tasks:
        for c in state["candidates"][t]:
            report = _candidate_report_score(run, c, best_single["predictions"][t][0])
            lines.append(
                f"| {t} | {c['trial_id']} | {c['selection_score']:.1f} | {report} | "
                f"{records_by_id[c['trial_id']]['best_score']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def _setting_lines(state, records, suite, run, command, wall, best_single) -> list[str]:
    """What ran, on what machine, and the protocol."""
    tasks, cfg = state["tasks"], suite.config
    trial_hours = sum(r.get("wall_seconds", 0.0) for r in records) / 3600
    counts = ", ".join(f"{len(state['candidates'][t])} candidates for {t}" for t in tasks)
    report_sizes = {t: _report_size(run, best_single["predictions"][t][0]) for t in tasks}
    return [
        "# Ensembles against the best single checkpoint (report halves of dev)",
        "",
        f"Command: `{command}`",
        "",
        code_line(),
        "",
        f"Model {best_single['model']}{' (embedded)' if cfg.model is None else ''}; "
        f"tasks {', '.join(tasks)}; training slices of "
        f"{cfg.data.max_train_samples} examples (seeded), dev capped at {cfg.data.max_eval_samples} examples; "
        f"{cfg.training.epochs} epochs, batch {cfg.training.batch_size}, max length {cfg.training.max_seq_length}, "
        f"{cfg.training.precision}, ZeRO-{cfg.training.zero_stage}; grid "
        f"{', '.join(f'{k}={v}' for k, v in cfg.search.grid.items())}; seeds {cfg.search.seeds}: "
        f"{counts}. "
        f"Machine: {machine_description()['cpu']}, {torch.get_num_threads()} threads, precision that ran "
        f"{'/'.join(sorted({str(r.get('precision')) for r in records}))}, nothing else running; "
        f"{wall} ({trial_hours:.2f} trial-hours of training), "
        f"of which building the ensembles {state['build_seconds'] / 60:.1f} min (the last build).",
        "",
        f"Protocol: {state['protocol']['description']} Report halves: "
        f"{', '.join(f'{t} {n}' for t, n in report_sizes.items())} examples.",
        "",
        "Validation columns are report-half scores; test columns (where the tasks have a labelled test split, e.g. "
        "GLUE's dev set with data.glue_dev: test) score the same chosen systems once on test: nothing chose on it.",
        "",
    ]


def _table_lines(tasks, best_single, ensembles, test, records) -> list[str]:
    """The rows against the best single checkpoint, on validation and test."""
    lines = [
        "| system | "
        + " | ".join(tasks)
        + " | average | Δ vs best single | test average | Δ test vs best single | passes per example |",
        "|---|" + "---:|" * (len(tasks) + 5),
    ]
    base_test = (test.get(best_single["system"]) or {}).get("average")
    for row in [best_single] + ensembles:
        delta = row["average"] - best_single["average"]
        cells = [f"{row['task_scores'][t]:.1f}" for t in tasks]
        row_test = (test.get(row["system"]) or {}).get("average")
        test_cells = [
            "—" if row_test is None else f"{row_test:.2f}",
            "—" if row is best_single or row_test is None or base_test is None else f"{row_test - base_test:+.2f}",
        ]
        lines.append(
            f"| {row['system']} | " + " | ".join(cells) + f" | {row['average']:.2f} | "
            f"{'—' if row is best_single else f'{delta:+.2f}'} | " + " | ".join(test_cells) + " | "
            f"{row['compute']['inference_passes']:g} |"
        )
    metrics = {r["task"]: r["metric_keys"] for r in records}
    lines += [
        "",
        "A task's score is the mean of its metrics, 0-100 ("
        + "; ".join(f"{t}: {', '.join(metrics[t])}" for t in tasks)
        + "); the average is their unweighted mean.",
        "",
    ]
    return lines


def _result_lines(board, run, tasks, best_single, ensembles, test) -> list[str]:
    """The result against the goal, judged on test where there is one, and the best gain per method."""
    base_test = (test.get(best_single["system"]) or {}).get("average")
    top = ensembles[0]  # the best ensemble by its validation (report-half) average
    gain = top["average"] - best_single["average"]
    stats = next((r.get("significance") or {} for r in board["rows"] if r["system"] == top["system"]), {})
    sig = stats.get("average") or {}
    top_test = (test.get(top["system"]) or {}).get("average")
    test_sig = ((test.get(top["system"]) or {}).get("significance") or {}).get("average") or {}
    # The goal is judged on test where there is one: nothing chose there.
    judged, judged_gain = (test_sig, top_test - base_test) if test_sig.get("ci") else (sig, gain)
    shown = judged.get("significant") and judged["delta"] > 0 and judged_gain >= GOAL
    lines = [
        f"**Result.** The best ensemble on validation, {top['system']}, averages {top['average']:.2f} against "
        f"{best_single['average']:.2f} for the best single checkpoint on the same report halves: {gain:+.2f} points "
        + (
            f"(interval {sig['ci'][0]:+.2f} to {sig['ci'][1]:+.2f}, Holm-adjusted p={sig['p_adjusted']:.3f})"
            if sig.get("ci")
            else "(no test)"
        )
        + (
            f"; on test it scores {top_test:.2f} against {base_test:.2f} ({top_test - base_test:+.2f}"
            + (
                f", interval {test_sig['ci'][0]:+.2f} to {test_sig['ci'][1]:+.2f}, Holm-adjusted p="
                f"{test_sig['p_adjusted']:.3f})"
                if test_sig.get("ci")
                else ")"
            )
            if top_test is not None and base_test is not None
            else ""
        )
        + f". The goal, +{GOAL:g} points shown{' on test' if judged is test_sig else ''}: "
        + ("met." if shown else "not met: no such difference is shown at this size.")
        + " Per task on validation: "
        + ", ".join(f"{t} {top['task_scores'][t] - best_single['task_scores'][t]:+.1f}" for t in tasks)
        + ".",
        "",
        *learning_lines(board, run),
        "",
    ]
    by_method = {}
    for row in ensembles:
        method = row["config"][tasks[0]]["method"]
        by_method[method] = max(by_method.get(method, -np.inf), row["average"] - best_single["average"])
    lines += [
        "Best gain per method (either pool): " + ", ".join(f"{m} {g:+.2f}" for m, g in by_method.items()) + ".",
        "",
    ]
    return lines


def _report_size(run_dir: Path, path: str) -> int:
    # Imported here for start-up speed (safetensors).
    from safetensors.numpy import load_file

    return sum(len(v) for k, v in load_file(str(run_dir / path)).items() if k.endswith("/indices"))


def _candidate_report_score(run_dir: Path, candidate: dict, report_file: str) -> str:
    """A candidate's report-half score, from its saved dev logits and the report indices of a row's prediction file."""
    # Imported here for start-up speed (safetensors).
    from safetensors.numpy import load_file

    folder = run_dir / candidate["checkpoint"]
    logits, labels = load_predictions(folder)
    files = load_file(str(run_dir / report_file))
    report = {k.split("/")[0]: v for k, v in files.items() if k.endswith("/indices")}
    return f"{score_on(TaskSpec.from_dict(load_trial_meta(folder)['task']), logits, labels, report)[1]:.1f}"


def _weighted(ids: list[str], weights: list[float]) -> list[str]:
    if len(set(weights)) <= 1:
        return list(ids)
    return [f"{i} ×{w:.2f}" for i, w in zip(ids, weights)]


def main(argv=None) -> int:
    study = run_study("benchmark.measure.ensembles", __doc__, "configs/ensembles.yaml", "results/ensembles", argv)
    args, suite, command = study.args, study.suite, study.command

    board, _, copies = board_from_records(
        args.out, "leaderboard", {suite.config.name: Path(suite.output)}, compute=False
    )
    write_report(args.out, summarize(board, copies[suite.config.name], suite, command, study.wall_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
