"""Single-task, joint multi-task and two-stage (MT-DNN) training side by side on the same tasks and seeds.

    python -m benchmark.measure.multitask --out results/multitask

Runs configs/multitask.yaml through `bench run` (Ray Tune + Ray Train + DeepSpeed): the embedded model on rte,
mrpc, stsb and cola, 2 seeds of each way of training. Writes the leaderboard (mean ± std over seeds, bootstrap
intervals, paired tests against the single-task row), the compute each way of training spent, and whether
two-stage meets MT-DNN's mark: at least single-task's average, and better on rte.
"""

from __future__ import annotations

import platform
import sys
import time

import torch

from benchmark.measure import write_report
from benchmark.measure.study import run_study
from benchmark.results.board import leaderboard_from_runs
from benchmark.results.tables import format_markdown


def compute_by_kind(records: list[dict]) -> dict[str, dict]:
    """Trial-hours and training samples per way of training; two-stage also pays for its stage one."""
    out: dict[str, dict] = {}
    for r in records:
        kind = out.setdefault(r.get("kind", "single"), {"hours": 0.0, "samples": 0, "trials": 0})
        kind["hours"] += r.get("wall_seconds", 0.0) / 3600
        kind["samples"] += r.get("train_samples", 0)
        kind["trials"] += 1
    if "two-stage" in out and "multitask" in out:
        out["two-stage (with stage one)"] = {k: out["two-stage"][k] + out["multitask"][k] for k in ("hours", "samples")}
    return out


def main(argv=None) -> int:
    study = run_study("benchmark.measure.multitask", __doc__, "configs/multitask.yaml", "results/multitask", argv)
    args, suite, wall, command = study.args, study.suite, study.wall_seconds, study.command
    board, records = leaderboard_from_runs([suite.output], baseline="(single)")
    rows = {r["kind"]: r for r in board["rows"]}
    lines = [
        "# Single-task, joint multi-task and two-stage training",
        "",
        f"Command: `{command}`",
        "",
        f"Suite `{args.suite}` ({', '.join(t.name for t in suite.tasks)}; {suite.config.data.max_train_samples} "
        f"training examples per task; seeds {suite.config.search.seeds}); {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; wall time {wall / 60:.1f} min; date {time.strftime('%Y-%m-%d')}.",
        "",
        format_markdown(board, compute=True),
        "## Compute by way of training",
        "",
        "| training | trial-hours | training samples |",
        "|---|---:|---:|",
    ]
    for kind, c in compute_by_kind(records).items():
        lines.append(f"| {kind} | {c['hours']:.2f} | {c['samples']:,} |")
    single, two = rows.get("single"), rows.get("two-stage")
    if single and two and single["average"] is not None and two["average"] is not None:
        lines += [
            "",
            "## Against MT-DNN's mark",
            "",
            f"- two-stage average {two['average']:.2f} vs single-task {single['average']:.2f} "
            f"({two['average'] - single['average']:+.2f}; target: at least 0).",
            f"- rte: two-stage {two['task_scores']['rte']:.2f} vs single-task {single['task_scores']['rte']:.2f} "
            f"({two['task_scores']['rte'] - single['task_scores']['rte']:+.2f}; target: better).",
        ]
        joint = rows.get("multitask")
        if joint and joint["average"] is not None:
            lines.append(
                f"- joint multi-task alone: average {joint['average']:.2f} "
                f"({joint['average'] - single['average']:+.2f} against single-task)."
            )
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
