"""User tasks: a declaration (inline in the suite or in its own YAML file) over CSV, TSV, JSON Lines or
parquet files."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmark.common.errors import InputError
from benchmark.common.paths import is_file, local_path
from benchmark.common.schema import parse, suggest
from tasks.metrics import METRICS
from tasks.spec import TaskSpec

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass
class UserTaskDecl:
    name: str
    train: str
    text_columns: list[str]
    validation: str | None = None  # none: split off train (the suite's data.holdout)
    test: str | None = None
    format: Literal["csv", "tsv", "json", "parquet"] | None = None
    label_column: str = "label"
    labels: list[str] | None = None  # label names for classification; file values are names or 0-based ids
    regression: bool = False
    metrics: list[str] | None = None


def user_task_from_decl(
    data: dict,
    where: str,
    base_dir: Path,
    reserved: set[str],
    holdout: dict[str, float] | None = None,
    holdout_seed: int = 0,
) -> TaskSpec:
    """`holdout`: split -> fraction of train held out for it when the task has no file for it (a 0 fraction:
    none); `holdout_seed` seeds which rows."""
    decl = parse(UserTaskDecl, data, where)
    if not decl.name or not decl.name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"{where}.name", f"use letters, digits, '-' and '_' only; got {decl.name!r}")
    if decl.name in reserved:
        raise InputError(f"{where}.name", f"'{decl.name}' is a GLUE task; give your task another name")
    if not 1 <= len(decl.text_columns) <= 2:
        raise InputError(f"{where}.text_columns", f"give one or two columns, got {len(decl.text_columns)}")
    if len(set(decl.text_columns)) != len(decl.text_columns):
        raise InputError(f"{where}.text_columns", f"names a column twice: {decl.text_columns}")
    if decl.label_column in decl.text_columns:
        raise InputError(f"{where}.text_columns", f"'{decl.label_column}' is the label column; the text is another")
    if decl.regression == (decl.labels is not None):
        raise InputError(where, "declare either `labels: [...]` (classification) or `regression: true`")
    if decl.labels is not None and (len(decl.labels) < 2 or len(set(decl.labels)) != len(decl.labels)):
        raise InputError(f"{where}.labels", "give at least two distinct label names")
    metrics = decl.metrics or (["pearson", "spearmanr"] if decl.regression else ["accuracy"])
    for i, m in enumerate(metrics):
        key = f"{where}.metrics[{i}]"
        if m not in METRICS:
            raise InputError(key, f"unknown metric '{m}'" + suggest(m, METRICS))
        if METRICS[m].regression != decl.regression:
            raise InputError(key, f"'{m}' is a {'regression' if METRICS[m].regression else 'classification'} metric")
        if METRICS[m].binary_only and len(decl.labels) != 2:
            raise InputError(key, f"'{m}' needs exactly two labels; use f1_macro")
    files = {}
    for split in ("train", "validation", "test"):
        path = getattr(decl, split)
        if path is None:
            continue
        full = local_path(path, f"{where}.{split}", base_dir)
        if not is_file(full):
            raise InputError(f"{where}.{split}", f"file not found: {full}")
        files[split] = str(full)
    fmt = decl.format
    if fmt is None:
        suffixes = {FORMATS.get(Path(p).suffix.lower()) for p in files.values()}
        if None in suffixes or len(suffixes) != 1:
            raise InputError(
                f"{where}.format", "cannot tell the file format from the file names; set format: csv|tsv|json|parquet"
            )
        fmt = suffixes.pop()
    # A test file with the label column is scored once at the end; one without is for `bench predict`.
    labelled_test = "test" in files and decl.label_column in file_columns(Path(files["test"]), fmt)
    held_out = {s: f for s, f in (holdout or {}).items() if s not in files and f > 0}
    if "validation" not in files and "validation" not in held_out:
        raise InputError(
            f"{where}.validation", "no validation file, and data.holdout.validation is 0; give one of them"
        )
    return TaskSpec(
        name=decl.name,
        text_columns=tuple(decl.text_columns),
        label_names=None if decl.regression else tuple(decl.labels),
        metrics=tuple(metrics),
        label_column=decl.label_column,
        test_splits={"test": decl.name} if decl.test and not labelled_test else {},
        files=files,
        file_format=fmt,
        holdout=held_out,
        holdout_seed=holdout_seed if held_out else 0,
        final_test="test" if labelled_test or "test" in held_out else None,
    )


def file_columns(path: Path, fmt: str) -> list[str]:
    """The column names of a data file, from its first line (csv, tsv, JSON Lines) or its schema (parquet)."""
    try:
        if fmt == "parquet":
            # Imported here for start-up speed (pyarrow).
            import pyarrow.parquet as pq

            return list(pq.read_schema(str(path)).names)
        with open(path, encoding="utf-8-sig", newline="") as f:
            first = f.readline()
        if fmt in ("csv", "tsv"):
            return next(csv.reader([first], delimiter="\t" if fmt == "tsv" else ","), [])
        if first.lstrip().startswith("["):  # a JSON array of records, not JSON Lines
            records = json.loads(path.read_text(encoding="utf-8"))
            return list(records[0]) if records and isinstance(records[0], dict) else []
        record = json.loads(first) if first.strip() else {}
        return list(record) if isinstance(record, dict) else []
    except (OSError, UnicodeDecodeError, ValueError, ImportError) as e:
        raise InputError(str(path), f"cannot read its columns as {fmt}: {e}") from None
