"""Task families beyond sentence classification: named-entity tagging and multiple choice beside SST-2.

    python -m benchmark.measure.tasks --out results/tasks

Runs configs/tasks.yaml through `bench run` (Ray Tune, DeepSpeed) on the embedded model: CoNLL-2003 and WNUT-17
(entity-level F1, seqeval), COPA (accuracy) and SST-2, every seed; a joint multi-task trial of CoNLL-2003, COPA and
SST-2 on one encoder; mean-probability and vote ensembles of the seeds. Writes the leaderboard (mean ± std over
seeds, test columns scored once), whether the baseline learns (against the trivial predictor: all-`O`, entity F1 0;
the majority choice or class; and the probe on the frozen encoder), each task's training samples/s on this machine,
and the published references.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.common.hardware import machine_description
from benchmark.measure import code_line, write_report
from benchmark.measure.records import board_from_records, table_markdown
from benchmark.measure.study import constant_score, learning_lines, run_study
from benchmark.records.final_predictions import read_test_file, test_prediction_path
from benchmark.records.store import run_trial_id
from tasks.spec import TaskSpec

# Published points, each with its source; none of them is at this size or with this encoder.
REFERENCES = {
    "conll2003": "BERT-base fine-tuned on all 14,041 training sentences: about 92.4 test F1 and about 95 dev F1 "
    "(Devlin et al., 2019, table 7)",
    "wnut17": "the best system of the WNUT-17 shared task: about 41.9 test entity F1 (Derczynski et al., 2017)",
    "copa": "BERT-large, SuperGLUE's baseline: about 70.6 test accuracy (Wang et al., 2019); chance is 50",
    "sst2": "BERT-base fine-tuned on all 67,349 training sentences: 93.5 on GLUE's test set (Devlin et al., 2019)",
}


def interval_lines(board: dict, run: Path) -> list[str]:
    """Per task, whether the trial row's 95% test interval clears the constant prediction and the probe: a point
    estimate a few points above them is not learning shown when the interval reaches one."""
    row = next(r for r in board["rows"] if r["kind"] == "single" and "trial_ids" in r)
    probe = next((r for r in board["rows"] if r["kind"] == "probe" and r["model"] == row["model"]), None)
    lines = []
    for task, trial_ids in row["trial_ids"].items():
        test = read_test_file(test_prediction_path(run, run_trial_id(trial_ids[0])))
        record = json.loads((run / "trials" / run_trial_id(trial_ids[0]) / "record.json").read_text())
        low, high = row["test"]["ci"]["task_scores"][task]
        constant = constant_score(TaskSpec.from_dict(record["task_spec"]), np.asarray(test["labels"]))
        floor = ((probe or {}).get("test") or {}).get("task_scores", {}).get(task)
        highest = max(constant, floor if floor is not None else -np.inf)
        shown = "learning shown" if low > highest else "learning NOT shown: the interval reaches the highest floor"
        probe_text = f" and the probe's {floor:.1f}" if floor is not None else ""
        lines.append(f"- {task}: test {row['test']['task_scores'][task]:.1f} [{low:.1f}, {high:.1f}] against the "
                     f"constant's {constant:.1f}{probe_text}: {shown}.")  # fmt: skip
    return ["The same on the test intervals (95%, the table's):", "", *lines]


def main(argv=None) -> int:
    study = run_study("benchmark.measure.tasks", __doc__, "configs/tasks.yaml", "results/tasks", argv)
    args, suite, command = study.args, study.suite, study.command
    board, records, copies = board_from_records(args.out, "board", {suite.config.name: Path(suite.output)}, "(single)")
    machine = machine_description()
    speeds = {}
    for r in records:
        if r.get("kind") == "single" and r.get("train_samples_per_s"):
            speeds.setdefault(r["task"], []).append(r["train_samples_per_s"])
    lines = [
        "# Task families: named-entity tagging and multiple choice beside sentence classification",
        "",
        f"Command: `{command}`",
        "",
        code_line(),
        "",
        f"Suite `{args.suite}` ({', '.join(t.name for t in suite.tasks)}; {suite.config.data.max_train_samples} "
        f"training examples per task at most; seeds {suite.config.search.seeds}); CPU {machine['cpu']} "
        f"({', '.join(machine['cpu_flags']) or 'no AVX512/AMX flags'}; native bf16: "
        f"{'yes' if machine['native_bf16'] else 'no'}), "
        f"{torch.get_num_threads()} threads, precision that ran "
        f"{'/'.join(sorted({str(r.get('precision')) for r in records}))}; nothing else running; "
        f"{study.wall_text()}; date {time.strftime('%Y-%m-%d')}.",
        "",
        table_markdown(board),
        *learning_lines(board, copies[suite.config.name]),
        "",
        *interval_lines(board, copies[suite.config.name]),
        "",
        "## Training speed on this machine",
        "",
        "Train samples/s of each task's trials (mean over seeds; a sample is a window of a sentence for tagging,",
        "one per sentence unless it exceeds 128 sub-tokens, and a question with both its choices for COPA), two",
        "trials at a time, one core each; the trials' precision is in the table's precision column (the probe",
        "row trains no encoder).",
        "",
        "| task | train samples/s | trials |",
        "|---|---:|---:|",
        *(f"| {t} | {np.mean(v):.1f} | {len(v)} |" for t, v in sorted(speeds.items())),
        "",
        "## Published references",
        "",
        *(f"- {t}: {ref}." for t, ref in REFERENCES.items()),
        "",
        "These train on all of each training set with larger encoders; the rows above use at most 2,000",
        "examples and a 6-layer sentence encoder, so they say what bench's paths reach here, not comparisons.",
        "",
        "## Not here",
        "",
        "- Weight soups and cross-task merges of these families run (tests/test_tagging.py) but are not in this",
        "  study; nor is augmentation, which tagging refuses (an edit would have to carry each word's tag).",
    ]
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
