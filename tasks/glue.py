"""The nine GLUE tasks, as the hub's `nyu-mll/glue` configurations and GLUE's own tsv files lay them out."""

from __future__ import annotations

import dataclasses

from tasks.spec import TaskSpec, TsvFile

HUB_PATH = "nyu-mll/glue"
DEV_AS_TEST = "dev"  # with data.glue_dev: test, the split that reads GLUE's dev set as a labelled test split


def _task(name, folder, text_columns, label_names, metrics, tsv, test, eval_splits=None):
    """`test`: test split -> (its TsvFile, the name of its file in a GLUE submission)."""
    return TaskSpec(
        name=name,
        text_columns=text_columns,
        label_names=label_names,
        metrics=metrics,
        eval_splits=eval_splits or {"validation": ""},
        test_splits={split: submission for split, (_, submission) in test.items()},
        glue_folder=folder,
        tsv={**tsv, **{split: f for split, (f, _) in test.items()}},
        hub=(HUB_PATH, name),
    )


def _pair(path, a="sentence1", b="sentence2", label="label", **kw):
    return TsvFile(path, text_columns=(a, b), label_column=label, **kw)


def _test(submission, *text_columns, split="test", path="test.tsv", index="index"):
    """A GLUE test file (a header, an id column, the text columns, no label) and its submission file's name."""
    return {split: (TsvFile(path, text_columns=text_columns, label_column=None, index_column=index), submission)}


GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": _task(
        "cola",
        "CoLA",
        ("sentence",),
        ("unacceptable", "acceptable"),
        ("matthews_correlation",),
        # CoLA's train and dev files have no header: source, label, original mark, sentence.
        {
            s: TsvFile(f"{f}.tsv", text_columns=("sentence",), column_names=("source", "label", "mark", "sentence"))
            for s, f in (("train", "train"), ("validation", "dev"))
        },
        _test("CoLA", "sentence"),  # unlike train and dev, CoLA's test file has a header
    ),
    "sst2": _task(
        "sst2",
        "SST-2",
        ("sentence",),
        ("negative", "positive"),
        ("accuracy",),
        {s: TsvFile(f"{f}.tsv", text_columns=("sentence",)) for s, f in (("train", "train"), ("validation", "dev"))},
        _test("SST-2", "sentence"),
    ),
    "mrpc": _task(
        "mrpc",
        "MRPC",
        ("sentence1", "sentence2"),
        ("not_equivalent", "equivalent"),
        ("f1", "accuracy"),
        {
            s: _pair(f"{f}.tsv", "#1 String", "#2 String", "Quality")
            for s, f in (("train", "train"), ("validation", "dev"))
        },
        _test("MRPC", "#1 String", "#2 String"),
    ),
    "stsb": _task(
        "stsb",
        "STS-B",
        ("sentence1", "sentence2"),
        None,
        ("pearson", "spearmanr"),
        {s: _pair(f"{f}.tsv", label="score") for s, f in (("train", "train"), ("validation", "dev"))},
        _test("STS-B", "sentence1", "sentence2"),
    ),
    "qqp": _task(
        "qqp",
        "QQP",
        ("question1", "question2"),
        ("not_duplicate", "duplicate"),
        ("f1", "accuracy"),
        {
            s: _pair(f"{f}.tsv", "question1", "question2", "is_duplicate", skip_bad_rows=True)
            for s, f in (("train", "train"), ("validation", "dev"))
        },
        _test("QQP", "question1", "question2", index="id"),
    ),
    "mnli": _task(
        "mnli",
        "MNLI",
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        ("accuracy",),
        {
            s: _pair(f"{f}.tsv", label="gold_label")
            for s, f in (
                ("train", "train"),
                ("validation_matched", "dev_matched"),
                ("validation_mismatched", "dev_mismatched"),
            )
        },
        {
            **_test("MNLI-m", "sentence1", "sentence2", split="test_matched", path="test_matched.tsv"),
            **_test("MNLI-mm", "sentence1", "sentence2", split="test_mismatched", path="test_mismatched.tsv"),
        },
        eval_splits={"validation_matched": "matched", "validation_mismatched": "mismatched"},
    ),
    "qnli": _task(
        "qnli",
        "QNLI",
        ("question", "sentence"),
        ("entailment", "not_entailment"),
        ("accuracy",),
        {s: _pair(f"{f}.tsv", "question", "sentence") for s, f in (("train", "train"), ("validation", "dev"))},
        _test("QNLI", "question", "sentence"),
    ),
    "rte": _task(
        "rte",
        "RTE",
        ("sentence1", "sentence2"),
        ("entailment", "not_entailment"),
        ("accuracy",),
        {s: _pair(f"{f}.tsv") for s, f in (("train", "train"), ("validation", "dev"))},
        _test("RTE", "sentence1", "sentence2"),
    ),
    "wnli": _task(
        "wnli",
        "WNLI",
        ("sentence1", "sentence2"),
        ("not_entailment", "entailment"),
        ("accuracy",),
        {s: _pair(f"{f}.tsv") for s, f in (("train", "train"), ("validation", "dev"))},
        _test("WNLI", "sentence1", "sentence2"),
    ),
}


def dev_as_test(task: TaskSpec, validation_fraction: float, seed: int) -> TaskSpec:
    """`task` with GLUE's dev set as its labelled test split, scored once after all selection, and a validation
    split held out of its training set (stratified, seeded). MNLI's test split is its matched dev set."""
    dev = next(iter(task.eval_splits))  # validation, or MNLI's validation_matched
    return dataclasses.replace(
        task,
        eval_splits={"validation": ""},
        tsv={**task.tsv, DEV_AS_TEST: task.tsv[dev]},
        sources={DEV_AS_TEST: dev},
        holdout={"validation": validation_fraction},
        holdout_seed=seed,
        final_test=DEV_AS_TEST,
    )
