"""Extractive QA: SQuAD v1.1, carved by article, on the embedded model, against two trivial predictors.

    python -m benchmark.measure.squad --out results/tasks/squad

Runs configs/squad.yaml through `bench run` (Ray Tune, DeepSpeed): 3 seeds, test scored once, mean-probability and
vote ensembles. Writes the leaderboard (exact match / F1, mean ± std over seeds, test columns scored once), whether
the baseline learns against the first-sentence predictor, both trivial predictors (first sentence; a sliding window
after Rajpurkar et al., 2016) on the same test questions, the training speed, and the published reference.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.common.hardware import machine_description
from benchmark.config.suite import cache_dir
from benchmark.measure import code_line, write_report
from benchmark.measure.records import board_from_records, table_markdown
from benchmark.measure.study import learning_lines, run_study
from benchmark.records.final_predictions import read_test_file, test_prediction_path
from benchmark.records.store import RunStore, run_trial_id
from tasks.loading import load_split
from tasks.metrics.squad import squad_metrics
from tasks.qa_baselines import first_sentence, sliding_window
from tasks.spans import QALabels
from tasks.spec import TaskSpec

REFERENCE = (
    "BERT-base fine-tuned on all 87,599 training questions: 80.8 EM / 88.5 F1 on the official dev set "
    "(Devlin et al., 2019, table 2); the sliding-window baseline: about 13 EM / 20 F1 there (Rajpurkar et al., 2016)"
)


def baseline_lines(run: Path, board: dict, cache: Path) -> list[str]:
    """Both trivial predictors on the test questions the trials were scored on (read back from their test file)."""
    row = next(r for r in board["rows"] if r["kind"] == "single" and "trial_ids" in r)
    trial_id = run_trial_id(row["trial_ids"]["squad"][0])
    record = json.loads((run / "trials" / trial_id / "record.json").read_text())
    task = TaskSpec.from_dict(record["task_spec"])
    view = QALabels.unpack(read_test_file(test_prediction_path(run, trial_id))["labels"])
    data = RunStore(run).read_suite().get("data", {})
    ds = load_split(task, task.final_test, None, cache, data.get("max_eval_samples"), data.get("sample_seed", 0))
    if list(ds["context"][:]) != view.contexts:
        raise AssertionError("the test questions read back are not the ones the trials were scored on")
    golds, lines, questions = view.golds(), [], ds["question"][:]
    for name, answers in (
        ("first sentence of the context", [first_sentence(c) for c in view.contexts]),
        ("sliding window (Rajpurkar et al., 2016)", [sliding_window(q, c) for q, c in zip(questions, view.contexts)]),
    ):
        m = squad_metrics(answers, golds)
        lines.append(f"| {name} | {100 * m['exact_match']:.1f} | {100 * m['f1']:.1f} |")
    test = row["test"]["scores"]["squad"]
    lines.append(f"| {row['system']}, mean of 3 seeds | {test['exact_match']:.1f} | {test['f1']:.1f} |")
    return [
        f"## Trivial predictors on the same {len(view)} test questions",
        "",
        "| predictor | EM | F1 |",
        "|---|---:|---:|",
        *lines,
        "",
        "The sliding window takes spans of up to 3 words (not starting or ending with a function word) where",
        "Rajpurkar et al. took a parse's constituents (tasks/qa_baselines.py), so it scores below their 13 / 20.",
    ]


def main(argv=None) -> int:
    study = run_study("benchmark.measure.squad", __doc__, "configs/squad.yaml", "results/tasks/squad", argv)
    args, suite, command = study.args, study.suite, study.command
    board, records, copies = board_from_records(args.out, "board", {suite.config.name: Path(suite.output)}, "(single)")
    run, machine = copies[suite.config.name], machine_description()
    speeds = [r["train_samples_per_s"] for r in records if r.get("kind") == "single" and r.get("train_samples_per_s")]
    lines = [
        "# Extractive question answering: SQuAD v1.1, carved by article",
        "",
        f"Command: `{command}`",
        "",
        code_line(),
        "",
        f"Suite `{args.suite}`: {suite.config.data.max_train_samples} training questions, "
        f"{suite.config.data.max_eval_samples} validation and {suite.config.data.max_eval_samples} test questions "
        f"at most, each split of its own articles (splits.json); seeds {suite.config.search.seeds}; windows of "
        f"{suite.config.training.max_seq_length} tokens, doc_stride {suite.config.training.doc_stride}. CPU "
        f"{machine['cpu']} ({', '.join(machine['cpu_flags']) or 'no AVX512/AMX flags'}; native bf16: "
        f"{'yes' if machine['native_bf16'] else 'no'}), {torch.get_num_threads()} threads, precision that ran "
        f"{'/'.join(sorted({str(r.get('precision')) for r in records}))}; nothing else running; "
        f"{study.wall_text()}; date {time.strftime('%Y-%m-%d')}.",
        "",
        "The task score is the mean of exact match and F1 (the official SQuAD v1.1 definitions, "
        "tasks/metrics/squad.py).",
        "",
        table_markdown(board),
        *learning_lines(board, run),
        "",
        "(The constant column is the first-sentence predictor: QA has no majority class; nor has it a probe.)",
        "",
        *baseline_lines(run, board, cache_dir(suite)),
        "",
        "## Training speed on this machine",
        "",
        f"{np.mean(speeds):.1f} train samples/s per trial (mean over {len(speeds)} seeds; a sample is a window of "
        "a question and its context), two trials at a time, one core each.",
        "",
        "## Published reference",
        "",
        f"- {REFERENCE}.",
        "",
        f"A 6-layer sentence encoder trained for sentence embeddings (not span extraction), on "
        f"{suite.config.data.max_train_samples} questions ({suite.config.data.max_train_samples / 87599:.1%} of "
        "SQuAD's training set) for 2 epochs, is far from it: BERT-base has twice the layers and width, was",
        f"pretrained as a masked language model, and trains on {87599 / suite.config.data.max_train_samples:.0f} "
        "times as many questions. The rows say what",
        "bench's QA path reaches here, not a comparison.",
    ]
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
