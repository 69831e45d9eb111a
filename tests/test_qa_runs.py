"""Issue 41's check: extractive QA through `bench run` (trials, test, an ensemble, `bench predict`) on a tiny random
model with 512 positions, for the registry's `squad` and for a user task of long contexts cut into windows."""

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.cli import main
from benchmark.train.modeling import save_random_bert
from tasks.squad import read_squad_json
from tests.conftest import bench

DATA = Path(os.environ.get("BENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")).resolve()
needs_squad = pytest.mark.skipif(not (DATA / "squad").is_dir(), reason="needs $BENCH_DATA_DIR/squad")
WORDS = "river stone light garden city window paper music table winter forest letter".split()


@pytest.fixture(scope="module")
def model_512(tmp_path_factory) -> Path:
    return save_random_bert(tmp_path_factory.mktemp("bert-512"), hidden=32, layers=2, heads=2, intermediate=64)


def write_suite(tmp_path: Path, model: Path, tasks: list, training: dict, **extra) -> Path:
    path = tmp_path / "suite.yaml"
    body = {
        "name": "qa",
        "model": str(model),
        "tasks": tasks,
        "data": {"data_dir": str(DATA), "max_train_samples": 64, "max_eval_samples": 16},
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 1.0e-3, "precision": "fp32", **training},
        "search": {"seeds": [1, 2]},
        "output": str(tmp_path / "run"),
        **extra,
    }
    path.write_text(yaml.safe_dump(body))
    return path


@needs_squad
def test_squad_runs_with_two_seeds_an_ensemble_a_test_score_and_official_predictions(tmp_path, model_512, cache_dir):
    from transformers import AutoModelForQuestionAnswering

    path = write_suite(
        tmp_path, model_512, ["squad"], {"max_seq_length": 384}, ensemble={"methods": ["mean_prob"], "k": [None]}
    )
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    assert board["metrics"]["squad"] == ["exact_match", "f1"]
    rows = {r["kind"]: r for r in board["rows"] if "best single" not in r["system"]}
    assert {"single", "ensemble"} <= set(rows) and "probe" not in rows  # QA has no probe floor
    single = rows["single"]
    assert single["seeds"] == 2 and set(single["scores"]["squad"]) == {"exact_match", "f1"}
    assert single["task_scores"]["squad"] == pytest.approx(np.mean(list(single["scores"]["squad"].values())))
    assert set(single["test"]["scores"]["squad"]) == {"exact_match", "f1"}
    assert set(rows["ensemble"]["test"]["scores"]["squad"]) == {"exact_match", "f1"}
    # the carving is by article, recorded
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())["squad"]
    rows_of = read_squad_json(DATA / "squad" / "dev-v1.1.json")
    titles = {s: {rows_of[i]["title"] for i in splits["rows"][s]} for s in ("validation", "test")}
    assert titles["validation"] and titles["test"] and not titles["validation"] & titles["test"]
    folder = next((tmp_path / "run" / "trials").glob("*/checkpoint/trial.json")).parent
    assert type(AutoModelForQuestionAnswering.from_pretrained(folder)).__name__ == "BertForQuestionAnswering"
    assert main(["predict", str(tmp_path / "run")]) == 0  # in this process: CI's seconds
    predictions = json.loads((tmp_path / "run" / "submission" / "squad.json").read_text())
    test_ids = {rows_of[i]["id"] for i in splits["rows"]["test"]}
    assert len(predictions) == len(test_ids) and set(predictions) == test_ids  # every test question, SQuAD's ids
    assert all(isinstance(a, str) for a in predictions.values())


def founders(path: Path, rows: int = 60, words: int = 530) -> Path:
    """Questions over contexts of ~530 words, each naming a founder in its middle."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(rows):
        name = f"Founder{i} Smith"
        before = " ".join(rng.choice(WORDS, words // 2))
        after = " ".join(rng.choice(WORDS, words // 2))
        context = f"{before}. The company was founded by {name} in {1900 + i}. {after}."
        start = context.index(name)
        lines.append(json.dumps({
            "id": f"f{i}", "title": f"company {i}", "context": context, "question": "Who founded the company?",
            "answers": {"text": [name], "answer_start": [start]},
        }))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def sentences(path: Path, rows: int = 60) -> Path:
    """A classification task beside the QA one: does the sentence name a river?"""
    rng = np.random.default_rng(1)
    lines = [json.dumps({"s": " ".join(rng.choice(WORDS, 8)), "label": "x"}) for _ in range(rows)]
    lines = [line.replace('"x"', '"river"' if "river" in line else '"dry"') for line in lines]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_user_qa_task_with_long_contexts_runs_in_windows_soups_and_a_merge(tmp_path, model_512, cache_dir, capsys):
    train = founders(tmp_path / "qa.jsonl")
    task = {"name": "founders", "type": "extractive_qa", "train": str(train)}
    other = {"name": "rivers", "train": str(sentences(tmp_path / "s.jsonl")), "text_columns": ["s"],
             "labels": ["dry", "river"]}  # fmt: skip
    path = write_suite(
        tmp_path, model_512, [task, other], {"max_seq_length": 128, "doc_stride": 32, "init_seed": 0},
        data={"holdout": {"validation": 0.2, "test": 0.2}},
        ensemble={"methods": ["soup_uniform", "soup_greedy"], "k": [None]}, merge={"methods": ["task_arithmetic"]},
    )  # fmt: skip
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    rows = {r["system"]: r for r in board["rows"]}
    single = next(r for r in board["rows"] if r["kind"] == "single")
    assert set(single["test"]["scores"]["founders"]) == {"exact_match", "f1"}
    # weight averages of QA checkpoints (one init, every seed) and a cross-task merge beside a classifier, each
    # scored on the QA test questions by the official metric
    merged = [r for r in board["rows"] if r["kind"] == "merged"]
    assert merged and all(set(r["test"]["scores"]["founders"]) == {"exact_match", "f1"} for r in merged)
    for soup in ("soup_uniform", "soup_greedy"):
        row = next(r for name, r in rows.items() if soup in name)
        assert set(row["test"]["scores"]["founders"]) == {"exact_match", "f1"}
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())["founders"]
    assert splits["sizes"] == {"validation": 12, "test": 12, "train": 36}
    # the run wrote its data report: each task's splits, as the trials read them
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())["tasks"]
    assert [r["rows"] for r in report["founders"]] == [36, 12, 12] and report["rivers"][0]["rows"] == 36
    # bench predict: a file per task for its labelled test split, and no word of GLUE's files
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run")]) == 0
    assert "GLUE" not in capsys.readouterr().out
    assert len(json.loads((tmp_path / "run" / "submission" / "founders.json").read_text())) == 12
    with open(tmp_path / "run" / "submission" / "rivers.tsv", newline="") as f:
        table = list(csv.reader(f, delimiter="\t"))
    assert table[0] == ["index", "s", "label", "prediction", "probability"] and len(table) == 13
    assert all(r[2] == ("river" if "river" in r[1].split() else "dry") for r in table[1:])  # the gold labels
    assert all(r[3] in ("dry", "river") and 0.5 <= float(r[4]) <= 1 for r in table[1:])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"training": {"max_seq_length": 128, "doc_stride": 96}}, r"training.doc_stride: doc_stride 96 is not smaller"),
        (
            {"multitask": {"tasks": ["founders", "sst2"]}, "training": {"max_seq_length": 384}},
            r"task founders: multitask: the extractive_qa family",
        ),
    ],
)
def test_bad_qa_settings_are_refused_at_validate(change, message, tmp_path, model_512, cache_dir, capsys):
    train = founders(tmp_path / "qa.jsonl", rows=12, words=40)
    task = {"name": "founders", "type": "extractive_qa", "train": str(train)}
    body = {
        "name": "qa", "model": str(model_512), "tasks": [task, "sst2"] if "multitask" in change else [task],
        "data": {"holdout": {"validation": 0.2}}, **change,
    }  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body))
    code, err = main(["validate", str(path)]), capsys.readouterr().err
    assert code == 2 and re.search(message, err) and len(err.strip().splitlines()) == 1, err


def test_a_wrong_answer_start_is_named_at_validate(tmp_path, model_512, cache_dir, capsys):
    train = founders(tmp_path / "qa.jsonl", rows=12, words=40)
    lines = train.read_text().splitlines()
    row = json.loads(lines[3])
    row["answers"]["answer_start"] = [row["answers"]["answer_start"][0] + 1]
    lines[3] = json.dumps(row)
    train.write_text("\n".join(lines))
    task = {"name": "founders", "type": "extractive_qa", "train": str(train)}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "qa", "model": str(model_512), "tasks": [task],
                                    "data": {"holdout": {"validation": 0.2}}}))  # fmt: skip
    code, err = main(["validate", str(path)]), capsys.readouterr().err
    assert code == 2 and "qa.jsonl: question f3: answer_start" in err, err
