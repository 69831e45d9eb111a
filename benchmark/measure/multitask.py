"""Single-task, joint multi-task and two-stage (MT-DNN) training side by side on the same tasks and seeds.

    python -m benchmark.measure.multitask --out results/multitask

Runs configs/multitask.yaml through `bench run` (Ray Tune, DeepSpeed): the embedded model, each way of training
with every seed. Writes the leaderboard (mean ± std over seeds, intervals over seeds and examples, Holm-corrected
tests against the single-task row, the samples each row trained, test columns with data.glue_dev: test) and one
line per way of training on what the numbers show.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from benchmark.common.hardware import machine_description
from benchmark.measure import code_line, write_report
from benchmark.measure.records import board_from_records, table_markdown
from benchmark.measure.study import learning_lines, run_study, trained_against_single


def main(argv=None) -> int:
    study = run_study("benchmark.measure.multitask", __doc__, "configs/multitask.yaml", "results/multitask", argv)
    args, suite, command = study.args, study.suite, study.command
    board, records, copies = board_from_records(args.out, "board", {suite.config.name: Path(suite.output)}, "(single)")
    rows = {r["kind"]: r for r in board["rows"]}
    machine = machine_description()
    lines = [
        "# Single-task, joint multi-task and two-stage training",
        "",
        f"Command: `{command}`",
        "",
        code_line(),
        "",
        f"Suite `{args.suite}` ({', '.join(t.name for t in suite.tasks)}; {suite.config.data.max_train_samples} "
        f"training examples per task; data.glue_dev: {suite.config.data.glue_dev}; seeds "
        f"{suite.config.search.seeds}); CPU {machine['cpu']}, {torch.get_num_threads()} threads, precision that ran "
        f"{'/'.join(sorted({str(r.get('precision')) for r in records}))}; nothing else running; "
        f"{study.wall_text()}; date {time.strftime('%Y-%m-%d')}.",
        "",
        table_markdown(board),
        "## What it shows",
        "",
        "Every row against the single-task row (the baseline named above), each difference with the table's Holm "
        "correction (test and validation are separate families; test is GLUE's dev set, where nothing chose).",
        "",
    ]
    single = rows.get("single")
    for kind in ("multitask", "two-stage"):
        if single and kind in rows and rows[kind]["average"] is not None and single["average"] is not None:
            lines.append(trained_against_single(rows[kind], single))
    lines += ["", *learning_lines(board, copies[suite.config.name])]
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
