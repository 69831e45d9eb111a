import json
from pathlib import Path

import pytest

from benchmark.common.errors import InputError
from tasks.glue import GLUE_TASKS
from tasks.loading import load_split
from tasks.user import user_task_from_decl

# Row counts from ../shared/data/glue/SOURCES.md.
GLUE_ROWS = {
    "cola": (8551, 1043),
    "sst2": (67349, 872),
    "mrpc": (3668, 408),
    "stsb": (5749, 1500),
    "rte": (2490, 277),
    "wnli": (635, 71),
}


def test_registry_declares_all_nine_glue_tasks():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert GLUE_TASKS["cola"].metrics == ("matthews_correlation",)
    assert GLUE_TASKS["mrpc"].metrics == GLUE_TASKS["qqp"].metrics == ("f1", "accuracy")
    assert GLUE_TASKS["stsb"].is_regression and GLUE_TASKS["stsb"].metrics == ("pearson", "spearmanr")
    assert set(GLUE_TASKS["mnli"].eval_splits) == {"validation_matched", "validation_mismatched"}
    assert GLUE_TASKS["mnli"].num_labels == 3 and GLUE_TASKS["rte"].num_labels == 2
    for task in GLUE_TASKS.values():
        assert task.hub == ("nyu-mll/glue", task.name)
        assert set(task.tsv) == set(task.splits) | set(task.test_splits)


@pytest.mark.parametrize("name", sorted(GLUE_ROWS))
def test_local_glue_folder_reads_every_row(name, glue_dir, cache_dir):
    task = GLUE_TASKS[name]
    train = load_split(task, "train", glue_dir, cache_dir)
    dev = load_split(task, "validation", glue_dir, cache_dir)
    assert (len(train), len(dev)) == GLUE_ROWS[name]
    assert train.column_names == [*task.text_columns, "label"]
    if task.is_regression:
        assert 0.0 <= min(dev["label"]) and max(dev["label"]) <= 5.0
    else:
        assert set(train["label"]) == set(range(task.num_labels))


def test_glue_quirks(glue_dir, cache_dir):
    # CoLA has no header line; its first training row is known.
    cola = load_split(GLUE_TASKS["cola"], "train", glue_dir, cache_dir)
    assert cola[0] == {
        "sentence": "Our friends won't buy this analysis, let alone the next one we propose.",
        "label": 1,
    }
    # MRPC's header starts with a byte-order mark; the label column must still be found.
    mrpc = load_split(GLUE_TASKS["mrpc"], "train", glue_dir, cache_dir)
    assert mrpc[0]["label"] == 1 and mrpc[0]["sentence1"].startswith("Amrozi accused his brother")
    # RTE labels are words; they map to the hub's ids (entailment = 0).
    rte = load_split(GLUE_TASKS["rte"], "validation", glue_dir, cache_dir)
    assert rte[0]["label"] == 1 and sum(rte["label"]) == 131
    # Bare quotes stay inside sentences (QUOTE_NONE).
    assert any('"' in s for s in mrpc["sentence1"])


def test_glue_text_that_looks_like_missing_values_stays_text(tmp_path, cache_dir):
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text('sentence\tlabel\nnull\t0\nNA\t1\n"quoted\t1\n')
    (folder / "dev.tsv").write_text("sentence\tlabel\nn/a\t0\n")
    train = load_split(GLUE_TASKS["sst2"], "train", tmp_path / "glue", cache_dir)
    assert train["sentence"] == ["null", "NA", '"quoted'] and train["label"] == [0, 1, 1]


def test_sample_cap_is_a_seeded_random_slice(glue_dir, cache_dir):
    full = load_split(GLUE_TASKS["cola"], "train", glue_dir, cache_dir)
    a = load_split(GLUE_TASKS["cola"], "train", glue_dir, cache_dir, max_samples=200, sample_seed=0)
    b = load_split(GLUE_TASKS["cola"], "train", glue_dir, cache_dir, max_samples=200, sample_seed=0)
    c = load_split(GLUE_TASKS["cola"], "train", glue_dir, cache_dir, max_samples=200, sample_seed=1)
    assert len(a) == 200 and a["sentence"] == b["sentence"] and a["sentence"] != c["sentence"]
    assert a["sentence"] != full["sentence"][:200]  # not simply the first rows (CoLA is sorted by source)


def _write_user_files(folder: Path, fmt: str, rows_train, rows_dev):
    import pandas as pd

    paths = {}
    for split, rows in (("train", rows_train), ("dev", rows_dev)):
        frame = pd.DataFrame(rows)
        path = folder / f"{split}.{ {'csv': 'csv', 'json': 'jsonl', 'parquet': 'parquet'}[fmt] }"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "json":
            path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        else:
            frame.to_parquet(path)
        paths[split] = str(path)
    return paths


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_user_classification_task_from_files(fmt, tmp_path, cache_dir):
    rows = [{"review": f"text {i}", "stars": ["bad", "good"][i % 2]} for i in range(10)]
    paths = _write_user_files(tmp_path, fmt, rows, rows[:4])
    task = user_task_from_decl(
        {
            "name": "reviews",
            "train": paths["train"],
            "validation": paths["dev"],
            "text_columns": ["review"],
            "label_column": "stars",
            "labels": ["bad", "good"],
        },
        "tasks[0]",
        tmp_path,
        set(GLUE_TASKS),
    )
    assert task.file_format == fmt and task.metrics == ("accuracy",)
    train = load_split(task, "train", None, cache_dir)
    assert train.column_names == ["review", "label"] and train["label"][:4] == [0, 1, 0, 1]


def test_user_regression_task_and_pair_columns(tmp_path, cache_dir):
    rows = [{"a": f"x{i}", "b": f"y{i}", "score": i / 2} for i in range(6)]
    _write_user_files(tmp_path, "csv", rows, rows)
    task = user_task_from_decl(
        {
            "name": "sim",
            "train": "train.csv",
            "validation": "dev.csv",
            "text_columns": ["a", "b"],
            "label_column": "score",
            "regression": True,
        },
        "t",
        tmp_path,
        set(GLUE_TASKS),
    )
    assert task.is_regression and task.metrics == ("pearson", "spearmanr")
    assert load_split(task, "validation", None, cache_dir)["label"] == pytest.approx([i / 2 for i in range(6)])


@pytest.mark.parametrize(
    "decl, message",
    [
        ({"labels": ["bad", "good"], "label_column": "nope"}, "missing column(s) nope"),
        ({"labels": ["neg", "pos"]}, "label 'bad' is not one of neg, pos"),
    ],
)
def test_user_task_data_errors_name_the_file(decl, message, tmp_path, cache_dir):
    rows = [{"review": "t", "label": "bad"}, {"review": "u", "label": "good"}]
    paths = _write_user_files(tmp_path, "csv", rows, rows)
    task = user_task_from_decl(
        {"name": "r", "train": paths["train"], "validation": paths["dev"], "text_columns": ["review"], **decl},
        "t",
        tmp_path,
        set(GLUE_TASKS),
    )
    with pytest.raises(InputError) as e:
        load_split(task, "train", None, cache_dir)
    assert message in str(e.value) and "train.csv" in str(e.value)


@pytest.mark.parametrize(
    "decl, message",
    [
        ({"labels": ["a", "b"], "regression": True}, "either `labels"),
        ({}, "either `labels"),
        ({"labels": ["a"]}, "at least two distinct"),
        ({"labels": ["a", "b"], "metrics": ["pearson"]}, "'pearson' is a regression metric"),
        ({"labels": ["a", "b", "c"], "metrics": ["f1"]}, "needs exactly two labels"),
        ({"labels": ["a", "b"], "metrics": ["acurracy"]}, "did you mean 'accuracy'"),
        ({"labels": ["a", "b"], "name": "rte"}, "is a GLUE or registry task"),
        ({"labels": ["a", "b"], "train": "missing.csv"}, "file not found"),
        ({"labels": ["a", "b"], "lables": 1}, "unknown key (did you mean 'labels'?)"),
        ({"labels": ["a", "b"], "text_columns": ["text", "text"]}, "names a column twice"),  # found by the fuzz
        ({"labels": ["a", "b"], "text_columns": ["label"]}, "'label' is the label column"),
    ],
)
def test_user_task_declaration_errors(decl, message, tmp_path):
    (tmp_path / "train.csv").write_text("text,label\nx,a\n")
    base = {"name": "mine", "train": "train.csv", "validation": "train.csv", "text_columns": ["text"]}
    with pytest.raises(InputError) as e:
        user_task_from_decl({**base, **decl}, "tasks[1]", tmp_path, set(GLUE_TASKS))
    assert message in str(e.value)


def _tsv(path: Path, header: list[str], rows: list[list[str]]):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")


def test_mnli_qqp_qnli_read_from_glue_layout(tmp_path, cache_dir):
    """These three are not in ../shared; the layouts below are GLUE's own headers."""
    glue = tmp_path / "glue"
    parse = ["(a)", "(b)", "(a)", "(b)"]
    train_head = [
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1_binary_parse",
        "sentence2_binary_parse",
        "sentence1_parse",
        "sentence2_parse",
        "sentence1",
        "sentence2",
        "label1",
        "gold_label",
    ]
    dev_head = train_head[:11] + ["label2", "label3", "label4", "label5", "gold_label"]
    _tsv(
        glue / "MNLI" / "train.tsv",
        train_head,
        [
            ["0", "1", "1e", "fiction", *parse, "A man.", "A person.", "entailment", "entailment"],
            ["1", "2", "2c", "fiction", *parse, "A dog.", "No dog.", "contradiction", "contradiction"],
        ],
    )
    for name in ("dev_matched", "dev_mismatched"):
        _tsv(
            glue / "MNLI" / f"{name}.tsv",
            dev_head,
            [
                [
                    "0",
                    "1",
                    "1n",
                    "slate",
                    *parse,
                    'He said "hi".',
                    "Maybe.",
                    "neutral",
                    "neutral",
                    "neutral",
                    "entailment",
                    "neutral",
                    "neutral",
                ]
            ],
        )
    mnli = GLUE_TASKS["mnli"]
    assert load_split(mnli, "train", glue, cache_dir)["label"] == [0, 2]
    dev = load_split(mnli, "validation_mismatched", glue, cache_dir)
    assert dev[0] == {"premise": 'He said "hi".', "hypothesis": "Maybe.", "label": 1}

    qqp_head = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
    _tsv(
        glue / "QQP" / "train.tsv",
        qqp_head,
        [["0", "1", "2", "How?", "Why?", "0"], ["1", "3", "4", "broken row"], ["2", "5", "6", "What?", "Which?", "1"]],
    )
    _tsv(glue / "QQP" / "dev.tsv", qqp_head, [["0", "1", "2", "A?", "B?", "1"]])
    qqp = load_split(GLUE_TASKS["qqp"], "train", glue, cache_dir)
    assert qqp["question1"] == ["How?", "What?"] and qqp["label"] == [0, 1]  # the malformed row is skipped

    _tsv(
        glue / "QNLI" / "train.tsv",
        ["index", "question", "sentence", "label"],
        [["0", "Who?", "Him.", "not_entailment"]],
    )
    _tsv(glue / "QNLI" / "dev.tsv", ["index", "question", "sentence", "label"], [["0", "Who?", "Her.", "entailment"]])
    assert load_split(GLUE_TASKS["qnli"], "validation", glue, cache_dir)[0] == {
        "question": "Who?",
        "sentence": "Her.",
        "label": 0,
    }


# Row counts of GLUE's unlabelled test files, from ../shared/data/glue/SOURCES.md.
GLUE_TEST_ROWS = {"cola": 1063, "sst2": 1821, "mrpc": 1725, "stsb": 1379, "rte": 3000, "wnli": 146}


@pytest.mark.parametrize("name", sorted(GLUE_TEST_ROWS))
def test_local_glue_test_files_read_every_row_with_its_id(name, glue_dir, cache_dir):
    task = GLUE_TASKS[name]
    (split,) = task.test_splits
    test = load_split(task, split, glue_dir, cache_dir)
    assert len(test) == GLUE_TEST_ROWS[name]
    assert test.column_names == [*task.text_columns, "index"]
    assert test["index"] == list(range(GLUE_TEST_ROWS[name]))
    assert all(isinstance(s, str) and s for s in test[task.text_columns[-1]])


def test_a_user_task_test_file_is_read_without_labels(tmp_path, cache_dir):
    for split, rows in (
        ("train", "text,label\ngood,pos\nbad,neg\n"),
        ("dev", "text,label\nfine,pos\n"),
        ("test", "text\nawful\ngreat\n"),
    ):
        (tmp_path / f"{split}.csv").write_text(rows)
    task = user_task_from_decl(
        {
            "name": "reviews",
            "train": "train.csv",
            "validation": "dev.csv",
            "test": "test.csv",
            "text_columns": ["text"],
            "labels": ["neg", "pos"],
        },
        "tasks[0]",
        tmp_path,
        set(),
    )
    assert task.test_splits == {"test": "reviews"}
    test = load_split(task, "test", None, cache_dir)
    assert test.column_names == ["text", "index"] and test["index"] == [0, 1] and test["text"] == ["awful", "great"]


def test_data_checked_once_is_not_read_again_until_a_file_changes(tmp_path, cache_dir, monkeypatch):
    import os

    import yaml

    import benchmark.run.runner as runner
    from benchmark.config.suite import load_suite

    files = {s: tmp_path / f"{s}.csv" for s in ("train", "validation")}
    for path in files.values():  # enough rows for a held-out test split with both classes
        path.write_text("text,label\n" + "the film was good,good\nthe plot was bad,bad\n" * 10)
    decl = {"name": "mine", **{s: str(p) for s, p in files.items()}, "text_columns": ["text"]}
    decl["labels"] = ["bad", "good"]
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"name": "s", "model": None, "tasks": [decl]}))
    suite = load_suite(tmp_path / "suite.yaml")
    read = []
    monkeypatch.setattr(runner, "load_split", lambda task, split, *a: read.append(split) or load_split(task, split, *a))
    runner.check_data(suite)
    runner.check_data(suite)
    assert read == ["train", "validation", "test"]  # the second check found the files as they were

    files["validation"].write_text("text,label\nthe film was good,good\nthe plot was bad,awful\n")
    os.utime(files["validation"], ns=(1, 1))  # a different time even where the clock is coarse
    with pytest.raises(InputError, match="awful"):
        runner.check_data(suite)
