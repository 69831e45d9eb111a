"""`bench data SUITE.yaml`: the data report of every task of a suite (tasks/data_report.py), as a table on the
terminal and as `data_report.json` and `data_report.md` in the output folder. It never changes data. `bench run`
writes the same files into the run directory, once for each state of the data it reads.

Each split is read as the trials read it: the suite's caps (`max_train_samples`, `max_eval_samples`) applied,
validation held out of train where the suite says so, under the first model's tokenizer at the longest
`max_seq_length` the plan can give.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.table import Table

from benchmark.common.atomic import atomic_write_json, atomic_write_text
from benchmark.common.hashing import fingerprint
from benchmark.config.suite import Suite, cache_dir, possible_values
from benchmark.train.modeling import load_tokenizer
from tasks.data_report import NEAR_THRESHOLD, Overlap, SplitReport, task_report
from tasks.loading import load_split, resolve_glue_dir

REPORT_FILE = "data_report.json"
REPORT_MD = "data_report.md"


def report_length(suite: Suite) -> int:
    """The longest `max_seq_length` the plan can give: what "truncated" counts against."""
    return max(possible_values(suite.config, "max_seq_length"))


def report_key(suite: Suite) -> str:
    """What the report depends on: the tasks, the data settings, the model's tokenizer and the length."""
    data = suite.config.data
    return fingerprint(
        {
            "tasks": [t.to_dict() for t in suite.tasks],
            "data": dataclasses.asdict(data),
            "model": suite.models[0].path,
            "max_seq_length": report_length(suite),
        }
    )


def data_reports(suite: Suite) -> dict[str, list[SplitReport]]:
    data = suite.config.data
    glue_dir = resolve_glue_dir(data.glue_dir, data.data_dir)
    tokenizer = load_tokenizer(suite.models[0].path, suite.config.trust_remote_code)
    length = report_length(suite)
    out = {}
    for task in suite.tasks:
        splits = {}
        for split in (*task.splits, *([task.final_test] if task.final_test else [])):
            cap = data.train_cap(task.name) if split == "train" else data.max_eval_samples
            splits[split] = load_split(task, split, glue_dir, cache_dir(suite), cap, data.sample_seed)
        out[task.name] = task_report(task, splits, tokenizer, length)
    return out


def as_json(suite: Suite, reports: dict[str, list[SplitReport]]) -> dict:
    return {
        "key": report_key(suite),
        "model": suite.models[0].name,
        "near_threshold": NEAR_THRESHOLD,
        "tasks": {name: [dataclasses.asdict(r) for r in splits] for name, splits in reports.items()},
    }


def from_json(saved: dict) -> dict[str, list[SplitReport]]:
    """`as_json`'s reports read back (a study's README is rebuilt from them)."""
    out = {}
    for task, splits in saved["tasks"].items():
        out[task] = [
            SplitReport(**{**r, "overlap": {k: Overlap(**o) for k, o in r["overlap"].items()}}) for r in splits
        ]
    return out


def rows(reports: dict[str, list[SplitReport]]) -> list[list[str]]:
    """One line per task and split: what a reader checks first."""
    out = []
    for task, splits in reports.items():
        for r in splits:
            overlap = "; ".join(
                f"{name}: {o.rows} rows ({o.near_rows} near), {o.texts} texts" for name, o in r.overlap.items()
            )
            out.append([
                task, r.split, f"{r.rows:,}", f"{r.lengths.get('p50', 0)}/{r.lengths.get('p99', 0)}/"
                f"{r.lengths.get('max', 0)}", f"{r.truncated:,}", str(r.empty), str(r.mojibake),
                "—" if r.duplicates is None else f"{r.duplicates:,} ({r.duplicate_inputs:,})",
                "—" if r.near_duplicates is None else f"{r.near_duplicates:,}",
                "—" if r.conflicting is None else f"{r.conflicting:,}", overlap or "—",
            ])  # fmt: skip
    return out


HEADER = ["task", "split", "rows", "tokens p50/p99/max", "truncated", "empty", "mojibake", "duplicates (inputs)",
          "near duplicates", "conflicting labels", "in train"]  # fmt: skip


def data_table(suite: Suite, reports: dict[str, list[SplitReport]]) -> Table:
    table = Table(title=f"data: {suite.config.name}", title_justify="left")
    for column in HEADER:
        table.add_column(column, overflow="fold")
    for row in rows(reports):
        table.add_row(*row)
    return table


def as_markdown(suite: Suite, reports: dict[str, list[SplitReport]]) -> str:
    length = report_length(suite)
    lines = [
        f"# Data report: {suite.config.name}",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(r) + " |" for r in rows(reports)),
        "",
        f"Tokens under {suite.models[0].name}'s tokenizer, with special tokens (a pair together); truncated: rows "
        f"over max_seq_length {length}. Texts are compared after NFKC, lower case and collapsed whitespace. "
        "duplicates: training rows whose input and label repeat an earlier row's (in brackets: whose input does, "
        "whatever the label); near duplicates: within an "
        f"estimated Jaccard similarity of {NEAR_THRESHOLD} of an earlier row (MinHash of word 3-grams), exact ones "
        "not counted again; conflicting labels: training inputs given more than one label; in train: that split's "
        "rows whose whole input is a training row's (near: within the threshold), and its single texts (a pair's "
        "sentences each) that are a text of some training row. The labels and the rows of each finding are in "
        f"{REPORT_FILE}.",
    ]
    return "\n".join(lines) + "\n"


def write_data_report(folder: Path, suite: Suite, reports: dict[str, list[SplitReport]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / REPORT_FILE, as_json(suite, reports))
    atomic_write_text(folder / REPORT_MD, as_markdown(suite, reports))
    return folder / REPORT_FILE


def report_is_current(folder: Path, suite: Suite) -> bool:
    try:
        return json.loads((folder / REPORT_FILE).read_text()).get("key") == report_key(suite)
    except (OSError, ValueError, AttributeError):
        return False
