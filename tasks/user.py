"""User tasks: a declaration (inline in the suite or in its own YAML file) over CSV, TSV, JSON Lines or
parquet files."""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from benchmark.common.errors import InputError, first_line
from benchmark.common.paths import is_file, local_path
from benchmark.common.schema import parse, suggest
from tasks.conll import read_conll, tag_set
from tasks.metrics import METRICS
from tasks.registry import CONLL_FORMAT, ENTITY_METRICS, QA_TEXT_COLUMNS
from tasks.spec import QA_METRICS, TOKENS, TaskSpec, TaskType, template_fields
from tasks.squad import read_qa_rows

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".conll": CONLL_FORMAT,
}  # fmt: skip


@dataclass
class UserTaskDecl:
    name: str
    train: str
    text_columns: list[str] | None = None  # tagging: the tokens' column; multiple choice: the context's
    validation: str | None = None  # none: split off train (the suite's data.holdout)
    test: str | None = None
    format: Literal["csv", "tsv", "json", "parquet", "conll"] | None = None
    label_column: str = "label"  # tagging: the tags' column (a list per row)
    labels: list[str] | None = None  # class names (tagging: the tag set, else read from train); names or 0-based ids
    regression: bool = False
    metrics: list[str] | None = None
    # The family; none: classification with `labels`, regression with `regression: true`.
    type: Literal["classification", "regression", "tagging", "multiple_choice", "extractive_qa"] | None = None
    tag_column: int = -1  # tagging from CoNLL-style files: the tag column's index
    choice_columns: list[str] | None = None  # multiple choice: a column per choice, or one column of lists
    context_template: str | None = None  # multiple choice: the context from the row's columns, "{premise} ..."


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
        raise InputError(f"{where}.name", f"'{decl.name}' is a GLUE or registry task; give your task another name")
    kind = TaskType(decl.type) if decl.type else TaskType.REGRESSION if decl.regression else TaskType.CLASSIFICATION
    if decl.regression and kind is not TaskType.REGRESSION:
        raise InputError(f"{where}.regression", f"is true, but the task's type is {kind.value}")
    files = _task_files(decl, where, base_dir)
    fmt = _file_format(decl, files, where)
    if kind is TaskType.TAGGING:
        return _tagging_task(decl, where, files, fmt, holdout, holdout_seed)
    if kind is TaskType.MULTIPLE_CHOICE:
        return _choice_task(decl, where, files, fmt, holdout, holdout_seed)
    if kind is TaskType.EXTRACTIVE_QA:
        return _qa_task(decl, where, files, fmt, holdout, holdout_seed)
    if decl.text_columns is None:
        raise InputError(f"{where}.text_columns", "give the column(s) holding the text: one, or two for a pair")
    if not 1 <= len(decl.text_columns) <= 2:
        raise InputError(f"{where}.text_columns", f"give one or two columns, got {len(decl.text_columns)}")
    if len(set(decl.text_columns)) != len(decl.text_columns):
        raise InputError(f"{where}.text_columns", f"names a column twice: {decl.text_columns}")
    if decl.label_column in decl.text_columns:
        raise InputError(f"{where}.text_columns", f"'{decl.label_column}' is the label column; the text is another")
    if (kind is TaskType.REGRESSION) == (decl.labels is not None):
        raise InputError(where, "declare either `labels: [...]` (classification) or `regression: true`")
    if decl.labels is not None and (len(decl.labels) < 2 or len(set(decl.labels)) != len(decl.labels)):
        raise InputError(f"{where}.labels", "give at least two distinct label names")
    if fmt == CONLL_FORMAT:
        raise InputError(f"{where}.format", "CoNLL-style files hold tagging tasks; set type: tagging")
    metrics = decl.metrics or (["pearson", "spearmanr"] if kind is TaskType.REGRESSION else ["accuracy"])
    for i, m in enumerate(metrics):
        key = f"{where}.metrics[{i}]"
        if m not in METRICS:
            raise InputError(key, f"unknown metric '{m}'" + suggest(m, METRICS))
        if METRICS[m].tagging:
            raise InputError(key, f"'{m}' is an entity-level metric of tagging tasks (type: tagging)")
        if METRICS[m].spans:
            raise InputError(key, f"'{m}' is a metric of extractive QA tasks (type: extractive_qa)")
        if METRICS[m].regression != (kind is TaskType.REGRESSION):
            raise InputError(key, f"'{m}' is a {'regression' if METRICS[m].regression else 'classification'} metric")
        if METRICS[m].binary_only and len(decl.labels) != 2:
            raise InputError(key, f"'{m}' needs exactly two labels; use f1_macro")
    return _spec(
        decl, where, files, fmt, holdout, holdout_seed,
        text_columns=tuple(decl.text_columns),
        label_names=None if kind is TaskType.REGRESSION else tuple(decl.labels),
        metrics=tuple(metrics),
    )  # fmt: skip


def _task_files(decl: UserTaskDecl, where: str, base_dir: Path) -> dict[str, str]:
    files = {}
    for split in ("train", "validation", "test"):
        path = getattr(decl, split)
        if path is None:
            continue
        full = local_path(path, f"{where}.{split}", base_dir)
        if not is_file(full):
            raise InputError(f"{where}.{split}", f"file not found: {full}")
        files[split] = str(full)
    return files


def _file_format(decl: UserTaskDecl, files: dict[str, str], where: str) -> str:
    if decl.format is not None:
        return decl.format
    suffixes = {FORMATS.get(Path(p).suffix.lower()) for p in files.values()}
    if None in suffixes or len(suffixes) != 1:
        raise InputError(
            f"{where}.format",
            "cannot tell the file format from the file names; set format: csv|tsv|json|parquet|conll",
        )
    return suffixes.pop()


def _spec(decl, where, files, fmt, holdout, holdout_seed, labelled_test=None, **family) -> TaskSpec:
    """The TaskSpec of a checked declaration: its files, held-out splits and test split, and `family`'s fields."""
    # A test file with the label column is scored once at the end; one without is for `bench predict`.
    if labelled_test is None:
        labelled_test = "test" in files and (
            fmt == CONLL_FORMAT or decl.label_column in file_columns(Path(files["test"]), fmt)
        )  # a CoNLL-style test file is tagged (an untagged one has a column fewer, and reads as an error)
    held_out = {s: f for s, f in (holdout or {}).items() if s not in files and f > 0}
    if "validation" not in files and "validation" not in held_out:
        raise InputError(
            f"{where}.validation", "no validation file, and data.holdout.validation is 0; give one of them"
        )
    return TaskSpec(
        name=decl.name,
        label_column=decl.label_column,
        test_splits={"test": decl.name} if decl.test and not labelled_test else {},
        files=files,
        file_format=fmt,
        holdout=held_out,
        holdout_seed=holdout_seed if held_out else 0,
        final_test="test" if labelled_test or "test" in held_out else None,
        **family,
    )


def _tagging_task(decl, where, files, fmt, holdout, holdout_seed) -> TaskSpec:
    """Tagging: CoNLL-style files (the tag column by index), or rows holding a list of tokens and a list of tags.
    The tag set is declared, or read from train (`O` first)."""
    if fmt in ("csv", "tsv"):
        raise InputError(f"{where}.format", "a tagging task reads CoNLL-style files, JSON Lines or parquet")
    if decl.metrics and tuple(decl.metrics) != ENTITY_METRICS:
        raise InputError(f"{where}.metrics", f"a tagging task is scored on entities: {', '.join(ENTITY_METRICS)}")
    columns = decl.text_columns or [TOKENS]
    if len(columns) != 1:
        raise InputError(f"{where}.text_columns", "a tagging task has one column: its tokens")
    if decl.labels is not None and (len(set(decl.labels)) != len(decl.labels) or "O" not in decl.labels):
        raise InputError(f"{where}.labels", "give distinct tags, `O` among them")
    tags = tuple(decl.labels) if decl.labels is not None else _tags_of(files["train"], fmt, decl, where)
    return _spec(
        decl, where, files, fmt, holdout, holdout_seed,
        text_columns=(TOKENS,) if fmt == CONLL_FORMAT else tuple(columns),
        label_names=tags, metrics=ENTITY_METRICS, type=TaskType.TAGGING, tag_column=decl.tag_column,
    )  # fmt: skip


def _tags_of(train: str, fmt: str, decl: UserTaskDecl, where: str) -> tuple[str, ...]:
    """The tag set of a training file, `O` first, then by entity type, B before I."""
    if fmt == CONLL_FORMAT:
        return tag_set(read_conll(Path(train), decl.tag_column))
    # Imported here for start-up speed (datasets).
    import datasets

    try:
        ds = datasets.load_dataset(fmt, data_files=train, split="train")
    except Exception as e:  # pandas and arrow raise many types for a malformed file
        raise InputError(train, f"cannot read as {fmt}: {first_line(e)}") from None
    if decl.label_column not in ds.column_names:
        raise InputError(train, f"missing column {decl.label_column}; has {', '.join(ds.column_names)}")
    found = {t for row in ds[decl.label_column] if isinstance(row, list) for t in row if isinstance(t, str)}
    return ("O", *sorted(found - {"O"}, key=lambda t: (t[2:], t[:2])))


def _choice_task(decl, where, files, fmt, holdout, holdout_seed) -> TaskSpec:
    """Multiple choice: a context column (or a template over the row's columns), a column per choice or one
    column of lists, and the right choice's index."""
    choices = tuple(decl.choice_columns or ())
    if not choices:
        raise InputError(f"{where}.choice_columns", "give a column per choice, or one column holding a list")
    if len(choices) == 1 and fmt in ("csv", "tsv"):
        raise InputError(f"{where}.choice_columns", "a column of lists needs JSON Lines or parquet")
    columns = tuple(decl.text_columns or ())
    if len(columns) > 1 or (not columns and not decl.context_template):
        raise InputError(f"{where}.text_columns", "give the context's column, or a context_template")
    if decl.context_template:
        try:
            decl.context_template.format_map({f: "" for f in template_fields(decl.context_template)})
        except (ValueError, IndexError) as e:
            raise InputError(f"{where}.context_template", f"not a format string: {e}") from None
    fields = [f for f in template_fields(decl.context_template or "") if f not in columns]
    if decl.metrics and list(decl.metrics) != ["accuracy"]:
        raise InputError(f"{where}.metrics", "a multiple-choice task is scored by accuracy")
    names = choices if len(choices) > 1 else _list_choices(files["train"], fmt, choices[0])
    return _spec(
        decl, where, files, fmt, holdout, holdout_seed,
        text_columns=columns or (fields[0],), label_names=names,
        metrics=("accuracy",), type=TaskType.MULTIPLE_CHOICE, choice_columns=choices,
        context_template=decl.context_template,
    )  # fmt: skip


def _qa_task(decl, where, files, fmt, holdout, holdout_seed) -> TaskSpec:
    """Extractive QA: SQuAD-format JSON, or JSON Lines or parquet rows in its Hugging Face layout (`id`, `context`,
    `question`, `answers` with lists `text` and `answer_start`; `title` optional), read and checked as the
    registry's `squad` is (tasks/squad.py). Held-out splits take whole titles (paragraphs where none is given)."""
    if fmt not in ("json", "parquet"):
        raise InputError(f"{where}.format", "an extractive QA task reads SQuAD-format JSON, JSON Lines or parquet")
    own = decl.text_columns in (None, list(QA_TEXT_COLUMNS)) and decl.label_column in ("label", "answers")
    if not own or decl.labels or decl.choice_columns:
        raise InputError(where, "an extractive QA task reads SQuAD's columns: id, title, context, question, answers")
    if decl.metrics and tuple(decl.metrics) != QA_METRICS:
        raise InputError(f"{where}.metrics", f"an extractive QA task is scored by {', '.join(QA_METRICS)}")
    decl = dataclasses.replace(decl, label_column="answers")
    labelled = "test" in files and (fmt == "parquet" or any(r["answers"]["text"] for r in read_qa_rows(files["test"])))
    return _spec(
        decl, where, files, fmt, holdout, holdout_seed, labelled,
        text_columns=QA_TEXT_COLUMNS, label_names=None, metrics=QA_METRICS, type=TaskType.EXTRACTIVE_QA,
    )  # fmt: skip


def _list_choices(train: str, fmt: str, column: str) -> tuple[str, ...]:
    """Names for the choices of a column of lists ("0", "1", ...), as many as the training file's first row has;
    the reader checks that every row has as many."""
    # Imported here for start-up speed (datasets).
    import datasets

    try:
        first = datasets.load_dataset(fmt, data_files=train, split="train")[0]
    except Exception as e:  # pandas and arrow raise many types for a malformed file
        raise InputError(train, f"cannot read as {fmt}: {first_line(e)}") from None
    options = first.get(column)
    if not isinstance(options, list) or len(options) < 2:
        raise InputError(train, f"row 1: column {column} must hold a list of at least two choices")
    return tuple(str(i) for i in range(len(options)))


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
