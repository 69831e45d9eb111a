"""A task is a short declaration: where its data lives, which columns hold text and label, how it is scored."""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass, field
from enum import Enum


class TaskType(str, Enum):
    """A task's family: what one example is and what is predicted for it. It decides the head, the collation,
    the metrics and the unit statistics resample (docs/tasks.md)."""

    CLASSIFICATION = "classification"  # a text or a pair -> one of `label_names`
    REGRESSION = "regression"  # a text or a pair -> a score
    TAGGING = "tagging"  # a sentence's words -> a tag each, from `label_names` (IOB2)
    MULTIPLE_CHOICE = "multiple_choice"  # a context and N choices -> the index of the right choice
    EXTRACTIVE_QA = "extractive_qa"  # a question and its context -> the answer, a span of the context


# What a dataset of each family holds, whatever its source (besides GLUE's text columns for the first two).
TOKENS, CONTEXT, CHOICES = "tokens", "context", "choices"
# Extractive QA: Hugging Face's SQuAD layout, a row per question (`answers` holds lists `text` and `answer_start`).
QA_COLUMNS = ("id", "title", CONTEXT, "question", "answers")
QA_METRICS = ("exact_match", "f1")  # SQuAD v1.1's (tasks/metrics/squad.py)


@dataclass(frozen=True)
class Windowing:
    """How a QA task's contexts are cut and its answers decoded: `training.doc_stride`, `max_query_length` and
    `max_answer_length` (with `max_seq_length`, the window's length), and the n-best kept per window."""

    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = 30
    n_best: int = 20

    @classmethod
    def of(cls, training: dict) -> "Windowing":
        return cls(**{k: training[k] for k in ("doc_stride", "max_query_length", "max_answer_length") if k in training})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def template_fields(template: str) -> list[str]:
    """The row columns a multiple-choice `context_template` names ("{premise} ..."); [] for a malformed one."""
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError:
        return []


@dataclass(frozen=True)
class TsvFile:
    """One file of GLUE's own tsv layout: its text and label columns, named by its header or by `column_names`."""

    path: str  # relative to the task's folder in the GLUE directory
    text_columns: tuple = ()
    label_column: str | None = "label"  # None: unlabelled (GLUE's test files)
    column_names: tuple | None = None  # for files without a header line (CoLA)
    skip_bad_rows: bool = False  # QQP's train file has a few rows with missing fields
    index_column: str | None = None  # the example ids a submission file repeats (GLUE's test files)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    text_columns: tuple[str, ...]  # one (single sentence) or two (a pair)
    label_names: tuple[str, ...] | None  # None means regression
    metrics: tuple[str, ...]
    # Dev splits, each mapped to the suffix its metric names get ("" for the only one).
    eval_splits: dict = field(default_factory=lambda: {"validation": ""})
    # Unlabelled test splits, each mapped to the name of its file in a GLUE submission (RTE, MNLI-m, ...).
    test_splits: dict = field(default_factory=dict)
    label_column: str = "label"
    # Where the data comes from. GLUE tasks: `glue_folder` + `tsv` (local) and `hub` (path, config name).
    glue_folder: str | None = None
    tsv: dict = field(default_factory=dict)  # split -> TsvFile
    hub: tuple[str, str] | None = None
    # User tasks: split -> file path, and the file format (csv, tsv, json, parquet).
    files: dict = field(default_factory=dict)
    file_format: str | None = None
    # User tasks without a validation or test file: split -> fraction of the training file held out for it.
    holdout: dict = field(default_factory=dict)
    holdout_seed: int = 0
    # A labelled test split, scored once at the end with the checkpoints chosen on validation (None: none).
    final_test: str | None = None
    # Split -> the split of the hub dataset it reads, where the names differ (GLUE's dev set read as "dev").
    sources: dict = field(default_factory=dict)
    # The family; None: classification when `label_names` are given, else regression.
    type: TaskType | None = None
    # Tagging from CoNLL-style column files: the tag column's index (-1: the last).
    tag_column: int = -1
    # Multiple choice: the choice columns (one: a column holding a list of choices), and the context's
    # format over the row's columns (None: `text_columns[0]` as it is).
    choice_columns: tuple[str, ...] = ()
    context_template: str | None = None

    def __post_init__(self):
        kind = self.type or (TaskType.REGRESSION if self.label_names is None else TaskType.CLASSIFICATION)
        object.__setattr__(self, "type", TaskType(kind))

    @property
    def is_regression(self) -> bool:
        return self.type is TaskType.REGRESSION

    @property
    def has_classes(self) -> bool:
        """Whether a prediction is a distribution over classes (per example, per word, over choices): what
        calibration measures. A score has none; nor has a span (its start and end are two distributions over
        a window's tokens, and a question's answer comes from several windows)."""
        return self.type not in (TaskType.REGRESSION, TaskType.EXTRACTIVE_QA)

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.eval_splits)

    def score_keys(self) -> list[str]:
        """The metrics the task score averages: every one (GLUE's convention), but a tagging task's entity F1
        alone (its precision and recall are reported beside it)."""
        if self.type is TaskType.TAGGING:
            return [k for k in self.metric_keys() if k.split("_")[0] == "f1"]
        return self.metric_keys()

    def metric_keys(self) -> list[str]:
        """The names under which this task's metrics are reported: `f1`, or `accuracy_mismatched` for MNLI."""
        return [f"{m}_{suffix}" if suffix else m for suffix in self.eval_splits.values() for m in self.metrics]

    def to_dict(self) -> dict:
        """The declaration as plain data; the family fields are left out where they hold their defaults, so that
        a sentence task's dict (and so its fingerprints) is what it was before task families."""
        d = dataclasses.asdict(self)
        d["type"] = self.type.value
        defaults = {"tag_column": -1, "choice_columns": (), "context_template": None}
        if self.type in (TaskType.CLASSIFICATION, TaskType.REGRESSION):
            del d["type"]
        return {k: v for k, v in d.items() if k not in defaults or v != defaults[k]}

    @classmethod
    def from_dict(cls, d: dict) -> "TaskSpec":
        d = dict(d)
        d["text_columns"] = tuple(d["text_columns"])
        d["metrics"] = tuple(d["metrics"])
        if d.get("label_names") is not None:
            d["label_names"] = tuple(d["label_names"])
        if d.get("hub") is not None:
            d["hub"] = tuple(d["hub"])
        if d.get("choice_columns"):
            d["choice_columns"] = tuple(d["choice_columns"])
        d["tsv"] = {
            k: TsvFile(
                **{
                    **v,
                    "text_columns": tuple(v["text_columns"]),
                    "column_names": tuple(v["column_names"]) if v.get("column_names") else None,
                }
            )
            for k, v in d.get("tsv", {}).items()
        }
        return cls(**d)
