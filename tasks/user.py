"""User tasks: a declaration (inline in the suite or in its own YAML file) over CSV, TSV, JSON Lines or parquet files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmark.errors import InputError
from benchmark.paths import is_file, local_path
from benchmark.schema import parse
from tasks.metrics import METRICS
from tasks.spec import TaskSpec

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


@dataclass
class UserTaskDecl:
    name: str
    train: str
    validation: str
    text_columns: list[str]
    test: str | None = None
    format: Literal["csv", "tsv", "json", "parquet"] | None = None
    label_column: str = "label"
    labels: list[str] | None = None    # label names for classification; file values are names or 0-based ids
    regression: bool = False
    metrics: list[str] | None = None


def user_task_from_decl(data: dict, where: str, base_dir: Path, reserved: set[str]) -> TaskSpec:
    decl = parse(UserTaskDecl, data, where)
    if not decl.name or not decl.name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"{where}.name", f"use letters, digits, '-' and '_' only; got {decl.name!r}")
    if decl.name in reserved:
        raise InputError(f"{where}.name", f"'{decl.name}' is a GLUE task; give your task another name")
    if not 1 <= len(decl.text_columns) <= 2:
        raise InputError(f"{where}.text_columns", f"give one or two columns, got {len(decl.text_columns)}")
    if decl.regression == (decl.labels is not None):
        raise InputError(where, "declare either `labels: [...]` (classification) or `regression: true`")
    if decl.labels is not None and (len(decl.labels) < 2 or len(set(decl.labels)) != len(decl.labels)):
        raise InputError(f"{where}.labels", "give at least two distinct label names")
    metrics = decl.metrics or (["pearson", "spearmanr"] if decl.regression else ["accuracy"])
    for i, m in enumerate(metrics):
        key = f"{where}.metrics[{i}]"
        if m not in METRICS:
            from benchmark.schema import suggest

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
            raise InputError(f"{where}.format", "cannot tell the file format from the file names; set format: csv|tsv|json|parquet")
        fmt = suffixes.pop()
    return TaskSpec(
        name=decl.name,
        text_columns=tuple(decl.text_columns),
        label_names=None if decl.regression else tuple(decl.labels),
        metrics=tuple(metrics),
        label_column=decl.label_column,
        test_splits={"test": decl.name} if decl.test else {},
        files=files,
        file_format=fmt,
    )
