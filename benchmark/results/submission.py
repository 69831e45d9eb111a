"""`bench predict RUN_DIR --split test`: GLUE submission files, from the best checkpoint of each task.

The GLUE server's format (as GLUE's own baselines write it): one file per test split, named as the task
declares (CoLA.tsv, MNLI-m.tsv, ...), a header `index<TAB>prediction`, one line per test example in file order.
Predictions are label ids for CoLA, SST-2, MRPC, QQP and WNLI, label names for MNLI, QNLI and RTE, and for
STS-B a score clipped to GLUE's 0-5 range. Any other task of one prediction per example (a user task, a
registry task such as CB or COPA) gets `<name>.tsv` with what a user reads: the example's index, its texts, its gold
label where the split has them, the predicted label and its probability (a regression: the score). Its unlabelled
test split where it has one, else its labelled test split.
A tagging task's file is CoNLL-style, `<name>.conll`: a token and its predicted tag per line (tab-separated), a
blank line after each sentence, for its unlabelled test split or else its labelled one.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from benchmark.common.atomic import atomic_write_json, atomic_write_text
from benchmark.common.errors import InputError
from benchmark.common.hashing import canonical
from benchmark.common.paths import check_name, resolve_cache_dir
from benchmark.records.store import RunStore
from benchmark.results.board import leaderboard_from_runs
from benchmark.train.checkpoints import checkpoint_problem
from benchmark.train.floors import FLOOR_KINDS
from benchmark.train.inference import predict
from ensembles.combine import probabilities
from tasks.glue import GLUE_TASKS
from tasks.loading import load_split, resolve_glue_dir
from tasks.metrics import predictions_from_logits, qa_answers
from tasks.spec import CHOICES, CONTEXT, TOKENS, TaskSpec, TaskType

SUBMISSION_DIR = "submission"
LABEL_IDS_IN_FILE = {"cola", "sst2", "mrpc", "qqp", "wnli"}  # the server reads these as 0/1, the rest as words
SCORE_RANGE = {"stsb": (0.0, 5.0)}
GLUE_FILES = ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI", "AX"]


def submission_text(task: TaskSpec, logits: np.ndarray, index: np.ndarray) -> str:
    """The file for one test split: pure, from the logits in test-file order."""
    preds = predictions_from_logits(task, logits)
    if task.is_regression:
        low, high = SCORE_RANGE.get(task.name, (-np.inf, np.inf))
        values = [f"{v:.3f}" for v in np.clip(preds, low, high)]
    elif task.name in LABEL_IDS_IN_FILE:
        values = [str(int(p)) for p in preds]
    else:
        values = [task.label_names[int(p)] for p in preds]
    return "index\tprediction\n" + "".join(f"{int(i)}\t{v}\n" for i, v in zip(index, values))


def predictions_tsv(task: TaskSpec, logits: np.ndarray, ds) -> str:
    """A non-GLUE task's predictions for people: index, texts, gold label (a labelled split), prediction and its
    probability, one row per example in split order; tab-separated, quoted where a text needs it (csv module)."""
    preds = predictions_from_logits(task, logits)
    labelled = "label" in ds.column_names
    texts = [CONTEXT, CHOICES] if task.type is TaskType.MULTIPLE_CHOICE else list(task.text_columns)
    columns = {c: ds[c][:] for c in texts}
    index = ds["index"][:] if "index" in ds.column_names else range(len(ds))

    def name(v) -> str:
        if task.type is TaskType.MULTIPLE_CHOICE:  # the right choice's index, as the file gives it
            return str(v)
        return f"{v:.4f}" if task.is_regression else task.label_names[int(v)]

    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["index", *texts, *(["label"] if labelled else []), "prediction",
                     *([] if task.is_regression else ["probability"])])  # fmt: skip
    confidence = None if task.is_regression else probabilities(logits).max(axis=-1)
    gold = ds["label"][:] if labelled else None
    for i, row in enumerate(index):
        cells = [json.dumps(columns[c][i], ensure_ascii=False) if c == CHOICES else columns[c][i] for c in texts]
        writer.writerow([row, *cells, *([name(gold[i])] if labelled else []), name(preds[i]),
                         *([] if confidence is None else [f"{confidence[i]:.4f}"])])  # fmt: skip
    return out.getvalue()


def conll_text(task: TaskSpec, logits: np.ndarray, tokens: list[list[str]]) -> str:
    """A tagging task's predictions: a token and its tag per line, a blank line after each sentence."""
    preds = predictions_from_logits(task, logits)
    return "".join(
        "".join(f"{word}\t{task.label_names[int(t)]}\n" for word, t in zip(words, row)) + "\n"
        for words, row in zip(tokens, preds)
    )


def prediction_splits(task: TaskSpec) -> dict[str, str]:
    """The splits `bench predict` writes, each with its file's name: the unlabelled test splits; a task without
    one, its labelled test split (`glue_dev: test`, a holdout, a registry task's test)."""
    if not task.test_splits and task.final_test:
        return {task.final_test: task.name}
    return task.test_splits


def best_checkpoints(board: dict, records: list[dict], system: str | None) -> tuple[dict, dict[str, dict]]:
    """The row to submit (by default the best row that has checkpoints) and, per task, the finished trial of
    its chosen grid point with the best dev score."""
    candidates = [r for r in board["rows"] if r["kind"] not in ("ensemble", *FLOOR_KINDS)]
    if system:
        matches = [r for r in board["rows"] if r["system"] == system] or [
            r for r in board["rows"] if system.lower() in r["system"].lower()
        ]
        if len(matches) != 1:
            raise InputError(
                "--system",
                f"'{system}' {'matches several rows' if matches else 'matches no row'}; "
                f"rows: {', '.join(r['system'] for r in board['rows'])}",
            )
        if matches[0]["kind"] in ("ensemble", *FLOOR_KINDS):
            raise InputError(
                "--system",
                f"{matches[0]['kind']} rows have no single checkpoint to run; choose a single or multitask row",
            )
        candidates = matches
    if not candidates:
        raise InputError("RUN_DIR", "no row with checkpoints to predict with")
    row = candidates[0]
    chosen = {}
    for task, point in row["config"].items():
        trials = [
            r
            for r in records
            if r["task"] == task
            and r["model"] == row["model"]
            and r.get("kind", "single") == row["kind"]
            and r.get("chain") == row.get("chain")
            and r.get("status") == "finished"
            and r.get("checkpoint")
            and canonical(r["grid_point"]) == canonical(point)
        ]
        if trials:
            chosen[task] = max(trials, key=lambda r: r["best_score"])
    return row, chosen


def task_for_test(record: dict) -> TaskSpec:
    """The record's task declaration; runs made before tasks declared test splits get the current GLUE one."""
    task = TaskSpec.from_dict(record["task_spec"])
    glue = GLUE_TASKS.get(task.name)
    if not task.test_splits and glue is not None and glue.glue_folder == task.glue_folder:
        return glue
    return task


def write_submission(run_dir: Path, output: Path | None = None, system: str | None = None) -> tuple[Path, list[str]]:
    """Predict every task's test splits with its best checkpoint; returns the folder and the files written."""
    run_dir = Path(run_dir)
    suite = RunStore(run_dir).read_suite()
    board, records = leaderboard_from_runs([run_dir], resamples=1)  # statistics are not needed here
    damaged: set[str] = set()
    while True:  # a damaged checkpoint is reported and passed over for the task's next best one
        row, chosen = best_checkpoints(board, [r for r in records if r["trial_id"] not in damaged], system)
        problems = {r["trial_id"]: checkpoint_problem(run_dir / r["checkpoint"]) for r in chosen.values()}
        problems = {t: p for t, p in problems.items() if p}
        if not problems:
            break
        for trial_id, problem in problems.items():
            print(f"warning: skipping the checkpoint of {trial_id}: {problem}", file=sys.stderr)
        damaged |= set(problems)
    data = suite.get("data", {})
    glue_dir = resolve_glue_dir(data.get("glue_dir"), data.get("data_dir"))
    cache = resolve_cache_dir(data.get("cache_dir"))
    output = Path(output) if output else run_dir / SUBMISSION_DIR
    written, manifest = [], {"system": row["system"], "files": {}}
    for task_name, record in chosen.items():
        task = task_for_test(record)
        if not prediction_splits(task):
            print(f"{task_name}: no test split declared; skipped")
            continue
        for split, name in prediction_splits(task).items():
            check_name(name, f"{record['trial_id']}: task_spec.test_splits.{split}", "test file name")
            ds = load_split(task, split, glue_dir, cache)
            logits, labels = predict(
                run_dir / record["checkpoint"],
                task,
                ds,
                record["training"]["max_seq_length"],
                record["training"]["eval_batch_size"],
                suite.get("trust_remote_code", False),
            )
            if task.type is TaskType.TAGGING:
                file, text = f"{name}.conll", conll_text(task, logits, ds[TOKENS][:])
            elif task.type is TaskType.EXTRACTIVE_QA:  # the official predictions file: question id -> answer
                answers = qa_answers(logits, labels)[0]
                file, text = f"{name}.json", json.dumps(dict(zip(ds["id"][:], answers)), ensure_ascii=False)
            elif task.name in GLUE_TASKS and split in task.test_splits:  # the server's format
                file, text = f"{name}.tsv", submission_text(task, logits, np.asarray(ds["index"][:]))
            else:
                file, text = f"{name}.tsv", predictions_tsv(task, logits, ds)
            atomic_write_text(output / file, text)
            written.append(file)
            manifest["files"][file] = {
                "task": task_name,
                "split": split,
                "examples": len(ds),
                "trial": record["trial_id"],
                "seed": record["seed"],
                "dev_score": record["best_score"],
                "checkpoint": record["checkpoint"],
            }
            print(f"{file}: {len(ds)} predictions from {record['trial_id']} (dev score {record['best_score']:.2f})")
    atomic_write_json(output / "submission.json", manifest)
    return output, written


def missing_for_glue(written: list[str]) -> list[str]:
    """The files GLUE's server expects in a complete submission that are not among `written` (none where no GLUE
    file was written: the run is no GLUE submission)."""
    if not any(f"{name}.tsv" in written for name in GLUE_FILES):
        return []
    return [name for name in GLUE_FILES if f"{name}.tsv" not in written]
