"""The nine GLUE tasks, as the hub's `nyu-mll/glue` configurations and GLUE's own tsv files lay them out."""

from __future__ import annotations

from tasks.spec import TaskSpec, TsvFile

HUB_PATH = "nyu-mll/glue"


def _task(name, folder, text_columns, label_names, metrics, tsv, eval_splits=None):
    return TaskSpec(
        name=name,
        text_columns=text_columns,
        label_names=label_names,
        metrics=metrics,
        eval_splits=eval_splits or {"validation": ""},
        glue_folder=folder,
        tsv=tsv,
        hub=(HUB_PATH, name),
    )


def _pair(path, a="sentence1", b="sentence2", label="label", **kw):
    return TsvFile(path, text_columns=(a, b), label_column=label, **kw)


GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": _task(
        "cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",),
        # CoLA's train and dev files have no header: source, label, original mark, sentence.
        {s: TsvFile(f"{f}.tsv", text_columns=("sentence",), column_names=("source", "label", "mark", "sentence"))
         for s, f in (("train", "train"), ("validation", "dev"))},
    ),
    "sst2": _task(
        "sst2", "SST-2", ("sentence",), ("negative", "positive"), ("accuracy",),
        {s: TsvFile(f"{f}.tsv", text_columns=("sentence",)) for s, f in (("train", "train"), ("validation", "dev"))},
    ),
    "mrpc": _task(
        "mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy"),
        {s: _pair(f"{f}.tsv", "#1 String", "#2 String", "Quality") for s, f in (("train", "train"), ("validation", "dev"))},
    ),
    "stsb": _task(
        "stsb", "STS-B", ("sentence1", "sentence2"), None, ("pearson", "spearmanr"),
        {s: _pair(f"{f}.tsv", label="score") for s, f in (("train", "train"), ("validation", "dev"))},
    ),
    "qqp": _task(
        "qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy"),
        {s: _pair(f"{f}.tsv", "question1", "question2", "is_duplicate", skip_bad_rows=True)
         for s, f in (("train", "train"), ("validation", "dev"))},
    ),
    "mnli": _task(
        "mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",),
        {s: _pair(f"{f}.tsv", label="gold_label") for s, f in
         (("train", "train"), ("validation_matched", "dev_matched"), ("validation_mismatched", "dev_mismatched"))},
        eval_splits={"validation_matched": "matched", "validation_mismatched": "mismatched"},
    ),
    "qnli": _task(
        "qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",),
        {s: _pair(f"{f}.tsv", "question", "sentence") for s, f in (("train", "train"), ("validation", "dev"))},
    ),
    "rte": _task(
        "rte", "RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",),
        {s: _pair(f"{f}.tsv") for s, f in (("train", "train"), ("validation", "dev"))},
    ),
    "wnli": _task(
        "wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",),
        {s: _pair(f"{f}.tsv") for s, f in (("train", "train"), ("validation", "dev"))},
    ),
}
