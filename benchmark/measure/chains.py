"""Intermediate-task transfer against direct fine-tuning of the target, on the same seeds.

    python -m benchmark.measure.chains --out results/chains

Runs configs/chains.yaml through `bench run` (Ray Tune, DeepSpeed): the embedded model on MRPC, RTE and STS-B, then
RTE and STS-B again from MRPC's best checkpoint (`mrpc -> rte`, `mrpc -> stsb`), 3 seeds each. Writes the
leaderboard (mean ± std over seeds, intervals, Holm-corrected tests against the direct single-task row, test columns
on GLUE's dev set with data.glue_dev: test), one line per chain on what the numbers show, whether the direct
baseline learns each task, and the compute each way spent (a chain also pays for its source's trials).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from benchmark.common.hardware import machine_description
from benchmark.measure import code_line, write_report
from benchmark.measure.merging import caps_text
from benchmark.measure.records import board_from_records, table_markdown
from benchmark.measure.study import learning_lines, run_study, shown


def chain_line(row: dict, direct: dict, target: str) -> str:
    """The chained row against the direct row on the target task: test first (nothing chose on it), then
    validation, each with the table's corrected test."""
    parts = []
    for side, base, name in ((row.get("test") or {}, direct.get("test") or {}, "test"), (row, direct, "validation")):
        mine, theirs = (side.get("task_scores") or {}).get(target), (base.get("task_scores") or {}).get(target)
        if mine is None or theirs is None:
            continue
        test = ((side.get("significance") or {}).get("task_scores") or {}).get(target) or {}
        parts.append(f"{name} {mine - theirs:+.2f} ({shown(test)})")
    return f"- {row['system']} against direct fine-tuning on {target}: " + "; ".join(parts) + "."


def compute_lines(records: list[dict]) -> list[str]:
    hours: dict[str, float] = {}
    for r in records:
        kind = r.get("chain") or f"{r['task']} direct"
        hours[kind] = hours.get(kind, 0.0) + r.get("wall_seconds", 0.0) / 3600
    return [
        "## Compute (trial-hours, every seed)",
        "",
        "A chain's own trials are below; it also needs its source task's trials, which every chain from that source "
        "shares.",
        "",
        "| trials | trial-hours |",
        "|---|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in hours.items()),
    ]


def main(argv=None) -> int:
    study = run_study("benchmark.measure.chains", __doc__, "configs/chains.yaml", "results/chains", argv)
    args, suite, command = study.args, study.suite, study.command
    board, records, copies = board_from_records(args.out, "board", {suite.config.name: Path(suite.output)}, "(single)")
    direct = next(r for r in board["rows"] if r["kind"] == "single")
    machine = machine_description()
    data = suite.config.data
    caps = caps_text(data.max_train_samples, [t.name for t in suite.tasks])
    lines = [
        "# Intermediate-task transfer against direct fine-tuning",
        "",
        f"Command: `{command}`",
        "",
        code_line(),
        "",
        f"Suite `{args.suite}` ({', '.join(t.name for t in suite.tasks)}; chains "
        f"{', '.join(c.label for c in suite.chains)}; {caps} (all: "
        f"GLUE's training set less validation); data.glue_dev: {data.glue_dev}; pooling "
        f"{suite.config.training.pooling}; seeds {suite.config.search.seeds}); "
        f"CPU {machine['cpu']}, {torch.get_num_threads()} threads, precision that ran "
        f"{'/'.join(sorted({str(r.get('precision')) for r in records}))}; nothing else running; "
        f"{study.wall_text()}; date {time.strftime('%Y-%m-%d')}.",
        "",
        "Which data chose what: validation, held out of GLUE's training set, chose each trial's epoch and the source "
        "checkpoint a chain starts from; test is GLUE's dev set, where nothing chose.",
        "",
        table_markdown(board),
        "## What it shows",
        "",
        "Each chain against the direct single-task row on its target, with the table's Holm correction (test and "
        "validation are separate families).",
        "",
        *(chain_line(r, direct, next(iter(r["task_scores"]))) for r in board["rows"] if r["kind"] == "chain"),
        "",
        *learning_lines(board, copies[suite.config.name]),
        "",
        "A comparison on a task whose direct baseline misses the goal above shows nothing about transfer: both rows "
        "sit near the constant prediction.",
        "",
        *compute_lines(records),
    ]
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
