"""Read a task's splits through `datasets`, from a local GLUE folder, the hub, or user files.

Every source ends in the same shape: the task's text columns plus `label` (class id or float score); a test
split instead has `index`, the example ids a submission file repeats, and no label.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from benchmark.common.errors import InputError, first_line
from benchmark.common.hub import hub_unreachable
from tasks.conll import check_tags, read_conll
from tasks.registry import CONLL_FORMAT, SQUAD_FORMAT, resolve_data_dir
from tasks.spec import CHOICES, CONTEXT, QA_COLUMNS, TOKENS, TaskSpec, TaskType, TsvFile, template_fields
from tasks.splits import describe_partition, holdout_partition
from tasks.squad import article_partition, check_qa_rows, read_qa_rows, read_squad_json

GLUE_DIR_ENV = "BENCH_GLUE_DIR"
GLUE_FOLDER = "glue"  # GLUE's folder under the data root


def resolve_glue_dir(glue_dir: str | None, data_dir: str | None = None) -> Path | None:
    """The suite's `data.glue_dir`, else `glue/` under its `data.data_dir`, else $BENCH_GLUE_DIR, else `glue/`
    under $BENCH_DATA_DIR, else None (the hub)."""
    if glue_dir:
        return Path(glue_dir).expanduser().resolve()
    if data_dir:
        return resolve_data_dir(data_dir) / GLUE_FOLDER
    if os.environ.get(GLUE_DIR_ENV):
        return Path(os.environ[GLUE_DIR_ENV]).expanduser().resolve()
    root = resolve_data_dir(None)
    return root / GLUE_FOLDER if root is not None and (root / GLUE_FOLDER).is_dir() else None


def source_columns(task: TaskSpec, labelled: bool = True) -> list[str]:
    """The columns a task reads of each row of its files or its hub copy."""
    if task.type is TaskType.EXTRACTIVE_QA:
        return [c for c in QA_COLUMNS if labelled or c != task.label_column]
    columns = [*task.text_columns, *task.choice_columns]
    if task.context_template:
        columns += [f for f in template_fields(task.context_template) if f not in columns]
    return columns + ([task.label_column] if labelled else [])


def data_files(task: TaskSpec, glue_dir: Path | None) -> dict[str, Path] | None:
    """The local files a task reads, by split; None when it reads from the hub."""
    if task.files:
        return {split: Path(p) for split, p in task.files.items()}
    if glue_dir is not None and task.glue_folder:
        return {split: glue_dir / task.glue_folder / f.path for split, f in task.tsv.items()}
    return None


def load_split(
    task: TaskSpec,
    split: str,
    glue_dir: Path | None,
    cache_dir: Path,
    max_samples: int | None = None,
    sample_seed: int = 0,
):
    """One split as a `datasets.Dataset` with columns `task.text_columns + ["label"]` (a test split: `+ ["index"]`)."""
    if task.holdout and split in ("train", *task.holdout):
        ds = held_out_split(task, split, glue_dir, cache_dir)
    elif split in task.test_splits:
        ds, source = _read_source(task, split, glue_dir, cache_dir)
        if task.type is TaskType.EXTRACTIVE_QA:  # its questions' own ids are what predictions are keyed by
            return _checked_questions(ds, source, labelled=False)
        return _with_index(ds, source)
    else:
        ds, source = _read_source(task, split, glue_dir, cache_dir)
        ds = _canonical(task, ds, source)
    if max_samples is not None and len(ds) > max_samples:
        # A seeded random slice, not the first rows: GLUE files are often sorted by source.
        ds = ds.shuffle(seed=sample_seed).select(range(max_samples)).flatten_indices()
    return ds


def _read_source(task: TaskSpec, split: str, glue_dir: Path | None, cache_dir: Path):
    """A split as its file or the hub holds it (labels not yet checked), and a name for it in messages."""
    files = data_files(task, glue_dir)
    if files is not None and split in files:
        path = files[split]
        if not path.is_file():
            raise InputError(f"task {task.name}", f"{split} file not found: {path}")
        if task.files:
            ds = _read_user_file(task, path, cache_dir, labelled=split not in task.test_splits)
        else:
            ds = _read_glue_tsv(task.tsv[split], path, task, cache_dir)
        source = str(path)
    elif task.hub is not None and files is None:
        hub_split = task.sources.get(split, split)
        ds, source = _read_hub(task, hub_split, cache_dir), f"{task.hub[0]}/{task.hub[1]}:{hub_split}"
    else:
        raise InputError(f"task {task.name}", f"has no {split} split")
    if len(ds) == 0:
        raise InputError(source, f"{split} split is empty")
    return ds, source


def held_out_split(task: TaskSpec, split: str, glue_dir: Path | None, cache_dir: Path):
    """ "train" or a split held out of the task's training data (a user task without a validation or test file, or
    a GLUE task whose dev set is its test split)."""
    ds, _, partition = _partitioned_train(task, glue_dir, cache_dir)
    return ds.select(partition[split]).flatten_indices()


def holdout_record(task: TaskSpec, cache_dir: Path, glue_dir: Path | None = None) -> dict:
    """How a task's held-out splits were made, for the run directory's splits.json."""

    _, source, partition = _partitioned_train(task, glue_dir, cache_dir)
    path = Path(source)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None  # None: read from the hub
    return describe_partition(partition, task.holdout, task.holdout_seed, _stratified(task), source, digest)


def _stratified(task: TaskSpec) -> bool:
    """Held-out rows are dealt per class where an example has one class."""
    return task.type in (TaskType.CLASSIFICATION, TaskType.MULTIPLE_CHOICE)


def _partitioned_train(task: TaskSpec, glue_dir: Path | None, cache_dir: Path):
    """The training data as read, its source, and its partition into "train" and the held-out splits. Each
    held-out split must hold at least two rows and every class the training data has."""
    ds, source = _read_source(task, "train", glue_dir, cache_dir)
    ds = _canonical(task, ds, source)
    stratify = _stratified(task)
    labels = np.asarray(ds["label"][:]) if stratify else np.zeros(len(ds))  # a tagged sentence has many labels
    if task.type is TaskType.EXTRACTIVE_QA:  # whole articles (paragraphs where no title is given) per split
        titles = [t or c for t, c in zip(ds["title"][:], ds[CONTEXT][:])]
        partition = article_partition(titles, task.holdout, task.holdout_seed)
    else:
        partition = holdout_partition(labels, task.holdout, task.holdout_seed, stratify=stratify)
    for held in task.holdout:
        rows = partition[held]
        missing = sorted(set(labels.tolist()) - set(labels[rows].tolist())) if stratify else []
        if len(rows) < 2 or missing:
            what = f"no row of class {task.label_names[missing[0]]}" if missing else f"{len(rows)} row(s)"
            raise InputError(
                f"data.holdout.{held}",
                f"holds {what} of task {task.name}'s {len(ds)} training rows ({source}); "
                "a larger share or more training rows are needed for a stratified split",
            )
    return ds, source, partition


def _read_glue_tsv(spec: TsvFile, path: Path, task: TaskSpec, cache_dir: Path):
    # Imported here for start-up speed (datasets).
    import datasets

    kwargs = dict(
        sep="\t",
        quoting=3,  # QUOTE_NONE: GLUE sentences hold bare '"' characters
        keep_default_na=False,  # a sentence "null" or "NA" is text, not a missing value
        na_filter=False,
        converters={c: str for c in (*spec.text_columns, spec.label_column, spec.index_column) if c},
        encoding="utf-8-sig",  # MRPC's header starts with a byte-order mark
        on_bad_lines="skip" if spec.skip_bad_rows else "error",
    )
    if spec.column_names:
        kwargs.update(header=None, column_names=list(spec.column_names))
    try:
        ds = datasets.load_dataset(
            "csv", data_files=str(path), split="train", cache_dir=str(cache_dir / "datasets"), **kwargs
        )
    except Exception as e:  # pandas and arrow raise many types for a malformed file
        raise InputError(str(path), f"cannot read as GLUE tsv: {first_line(e)}") from None
    wanted = [c for c in (*spec.text_columns, spec.label_column, spec.index_column) if c]
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise InputError(str(path), f"missing column(s) {', '.join(missing)}; has {', '.join(ds.column_names)}")
    ds = ds.select_columns(wanted)
    if spec.skip_bad_rows and spec.label_column:
        # pandas pads a row with too few fields; like GLUE's own processors, drop it (its label is missing).
        ds = ds.filter(lambda label: label not in ("", None), input_columns=spec.label_column)
    renames = {old: new for old, new in zip(spec.text_columns, task.text_columns) if old != new}
    renames.update(
        {old: new for old, new in ((spec.label_column, "label"), (spec.index_column, "index")) if old and old != new}
    )
    return ds.rename_columns(renames) if renames else ds


def _read_hub(task: TaskSpec, split: str, cache_dir: Path):
    # Imported here for start-up speed (datasets).
    import datasets

    unreachable = hub_unreachable()
    offline = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = offline or unreachable is not None  # a cached copy, without 25 s of retries
    try:
        ds = datasets.load_dataset(task.hub[0], task.hub[1], split=split, cache_dir=str(cache_dir / "datasets"))
    except Exception as e:
        raise InputError(
            f"task {task.name}",
            f"no local GLUE folder (data.glue_dir or ${GLUE_DIR_ENV}) and the hub copy {task.hub[0]}/{task.hub[1]} "
            f"cannot be loaded: {unreachable + ' and it is not cached' if unreachable else first_line(e)}",
        ) from None
    finally:
        datasets.config.HF_HUB_OFFLINE = offline
    if split in task.test_splits:  # the hub's test splits carry label -1 and the example id as `idx`
        return ds.select_columns([*source_columns(task, labelled=False), "idx"]).rename_column("idx", "index")
    ds = ds.select_columns(source_columns(task))
    return ds.rename_column(task.label_column, "label") if task.label_column != "label" else ds


def _read_user_file(task: TaskSpec, path: Path, cache_dir: Path, labelled: bool = True):
    # Imported here for start-up speed (datasets).
    import datasets

    fmt = task.file_format
    if fmt == CONLL_FORMAT:
        return _read_conll_file(task, path, labelled)
    if task.type is TaskType.EXTRACTIVE_QA and fmt in (SQUAD_FORMAT, "json"):
        return _qa_dataset(read_squad_json(path) if fmt == SQUAD_FORMAT else read_qa_rows(path), labelled)
    kwargs = {"sep": "\t", "quoting": 3, "keep_default_na": False} if fmt == "tsv" else {}
    if fmt == "csv":
        kwargs = {"keep_default_na": False}
    builder = "csv" if fmt in ("csv", "tsv") else fmt
    try:
        ds = datasets.load_dataset(
            builder, data_files=str(path), split="train", cache_dir=str(cache_dir / "datasets"), **kwargs
        )
    except Exception as e:
        raise InputError(str(path), f"cannot read as {fmt}: {first_line(e)}") from None
    wanted = source_columns(task, labelled)
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise InputError(str(path), f"missing column(s) {', '.join(missing)}; has {', '.join(ds.column_names)}")
    ds = ds.select_columns(wanted)
    if not labelled:  # a user's test file: its examples are numbered in file order
        return ds.add_column("index", list(range(len(ds))))
    return ds.rename_column(task.label_column, "label") if task.label_column != "label" else ds


def _qa_dataset(rows: list[dict], labelled: bool):
    """Questions in Hugging Face's SQuAD layout (an unlabelled file's answers left out)."""
    # Imported here for start-up speed (datasets).
    import datasets

    columns = [c for c in QA_COLUMNS if labelled or c != "answers"]
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})


def _checked_questions(ds, source: str, labelled: bool = True):
    """A QA split's questions, checked (tasks/squad.py's `check_qa_rows`): ids, contexts and answer offsets. Every
    source ends in the same columns (a parquet file or the hub copy may leave out `title`)."""
    # Imported here for start-up speed (datasets).
    import datasets

    rows = ds.to_list()
    for r in rows:
        r.setdefault("title", "")
        r["title"] = str(r["title"] or "")
        r["id"] = None if r.get("id") is None else str(r["id"])
        r.setdefault("answers", {"text": [], "answer_start": []})
    check_qa_rows(rows, source, labelled)
    features = datasets.Features(
        {"id": datasets.Value("string"), "title": datasets.Value("string"), CONTEXT: datasets.Value("string"),
         "question": datasets.Value("string"),
         "answers": {"text": datasets.Sequence(datasets.Value("string")),
                     "answer_start": datasets.Sequence(datasets.Value("int64"))}}
    )  # fmt: skip
    columns = {c: [r[c] for r in rows] for c in QA_COLUMNS}
    return datasets.Dataset.from_dict(columns, features=features)


def _read_conll_file(task: TaskSpec, path: Path, labelled: bool):
    """A CoNLL-style file as `tokens` and `label` (tag names, checked against the task's tags by file and line)."""
    # Imported here for start-up speed (datasets).
    import datasets

    sentences = read_conll(path, task.tag_column)
    if task.label_names is not None and labelled:
        check_tags(sentences, task.label_names, str(path))
    rows = {TOKENS: [list(s.tokens) for s in sentences]}
    if labelled:
        rows["label"] = [list(s.tags) for s in sentences]
        return datasets.Dataset.from_dict(rows)
    return datasets.Dataset.from_dict({**rows, "index": list(range(len(sentences)))})


def _canonical(task: TaskSpec, ds, source: str):
    """A split in its family's shape, labels checked: see `_normalise_labels`, `_tag_ids` and `_choice_rows`."""
    if task.type is TaskType.TAGGING:
        return _tag_ids(task, ds, source)
    if task.type is TaskType.MULTIPLE_CHOICE:
        return _choice_rows(task, ds, source)
    if task.type is TaskType.EXTRACTIVE_QA:
        return _checked_questions(ds, source)
    return _normalise_labels(task, ds, source)


def _tag_ids(task: TaskSpec, ds, source: str):
    """Each sentence's tags as ids (int64 lists): a sentence with no token, a tag count other than its token
    count, or a tag outside the task's tags is an input error naming the row."""
    # Imported here for start-up speed (datasets).
    import datasets

    ids = {name: i for i, name in enumerate(task.label_names)}
    column = task.text_columns[0]  # `tokens`, or a user file's own name for it
    tokens, tags, out = ds[column][:], ds["label"][:], []
    for row, (words, labels) in enumerate(zip(tokens, tags), start=1):
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise InputError(source, f"row {row}: column {column} must hold a list of tokens")
        if not words:
            raise InputError(source, f"row {row}: an empty sentence (no tokens)")
        if not isinstance(labels, list) or len(labels) != len(words):
            count = len(labels) if isinstance(labels, list) else "no list of"
            raise InputError(source, f"row {row}: {len(words)} tokens but {count} tags")
        found = [_class_id(t, ids) for t in labels]
        if None in found:
            bad = labels[found.index(None)]
            raise InputError(source, f"row {row}: tag {bad!r} is not one of the task's tags ({', '.join(ids)})")
        out.append(found)
    feature = datasets.Sequence(datasets.Value("int64"))
    ds = ds.select_columns([column, "label"])
    ds = ds.rename_column(column, TOKENS) if column != TOKENS else ds
    return _replace_column(ds, "label", out, feature, task.to_dict())


def _choice_rows(task: TaskSpec, ds, source: str):
    """`context` (the template filled from the row, or its context column), `choices` (a list, the same length
    in every row) and `label` (the right choice's index): a row with another number of choices, or a label that
    is no choice's index, is an input error naming it."""
    # Imported here for start-up speed (datasets).
    import datasets

    columns = {c: ds[c][:] for c in source_columns(task, labelled=False)}
    rows = [{c: values[i] for c, values in columns.items()} for i in range(len(ds))]
    contexts, choices = [], []
    for i, r in enumerate(rows, start=1):
        options = r[task.choice_columns[0]] if len(task.choice_columns) == 1 else [r[c] for c in task.choice_columns]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise InputError(source, f"row {i}: the choices must be texts")
        if choices and len(options) != len(choices[0]):
            raise InputError(source, f"row {i}: {len(options)} choices; row 1 has {len(choices[0])}")
        choices.append(options)
        contexts.append(task.context_template.format(**r) if task.context_template else r[task.text_columns[0]])
    labels = []
    for i, v in enumerate(ds["label"][:], start=1):
        n = _as_int(v)
        if n is None or not 0 <= n < len(choices[0]):
            raise InputError(source, f"row {i}: label {v!r} is not a choice's index (0 to {len(choices[0]) - 1})")
        labels.append(n)
    features = datasets.Features(
        {CONTEXT: datasets.Value("string"), CHOICES: datasets.Sequence(datasets.Value("string")),
         "label": datasets.Value("int64")}
    )  # fmt: skip
    return datasets.Dataset.from_dict({CONTEXT: contexts, CHOICES: choices, "label": labels}, features=features)


def _normalise_labels(task: TaskSpec, ds, source: str):
    """Labels become class ids (int64) or scores (float32); a value outside the declared set is an input error."""
    # Imported here for start-up speed (datasets).
    import datasets

    raw = ds["label"][:]  # a list at once: iterating the column reads it row by row
    if task.is_regression:
        try:
            values = [float(v) for v in raw]
        except (TypeError, ValueError):
            bad = next(v for v in raw if not _is_float(v))
            raise InputError(source, f"label {bad!r} is not a number (task {task.name} is a regression)") from None
        for row, v in enumerate(values):
            if not math.isfinite(v):
                raise InputError(source, f"row {row + 1}: label {raw[row]!r} is not a finite number")
        feature = datasets.Value("float32")
    else:
        ids = {name: i for i, name in enumerate(task.label_names)}
        class_of = {v: _class_id(v, ids) for v in set(raw)}  # each distinct value once: files have few
        values = [class_of[v] for v in raw]
        if None in class_of.values():
            row = values.index(None)
            raise InputError(source, f"row {row + 1}: label {raw[row]!r} is not one of {', '.join(task.label_names)}")
        feature = datasets.Value("int64")
    for col in task.text_columns:
        if ds.features[col].dtype not in ("string", "large_string"):
            raise InputError(source, f"column {col} holds {ds.features[col].dtype}, not text")
    return _replace_column(ds, "label", values, feature, task.to_dict())


def _class_id(v, ids: dict[str, int]) -> int | None:
    if isinstance(v, bool):  # SuperGLUE's BoolQ labels are JSON booleans; its label names are "false", "true"
        v = str(v).lower()
    if isinstance(v, str) and v in ids:
        return ids[v]
    n = _as_int(v)
    if n is not None and 0 <= n < len(ids):  # -1 (the hub's "unlabelled") only in test splits, read without labels
        return n
    return None


def _replace_column(ds, name: str, values: list, feature, derived_from):
    """`ds` with column `name` replaced. Its fingerprint is derived from `ds`'s and `derived_from` (what made the
    values from it): `datasets` would otherwise hash every value, which takes longer than reading the file."""
    digest = hashlib.sha256(json.dumps([ds._fingerprint, name, derived_from], default=str).encode()).hexdigest()
    return ds.remove_columns(name).add_column(name, values, feature=feature, new_fingerprint=digest[:32])


def _with_index(ds, source: str):
    """A test split's example ids as integers; a file whose ids are not integers is an input error."""
    # Imported here for start-up speed (datasets).
    import datasets

    given = ds["index"][:]
    ids = [_as_int(v) for v in given]
    if any(i is None for i in ids):
        bad = next(v for v, i in zip(given, ids) if i is None)
        raise InputError(source, f"example id {bad!r} is not an integer")
    return _replace_column(ds, "index", ids, datasets.Value("int64"), "int64 ids")


def _as_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    return None


def _is_float(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False
