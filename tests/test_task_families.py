"""Task families in the declaration: registry tasks read from the data root ($BENCH_DATA_DIR), user tasks of each
family, their bad input at `bench validate`, and the families a trial cannot train yet refused there."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.cli import main
from benchmark.common.errors import InputError
from tasks.glue import GLUE_TASKS
from tasks.loading import load_split, resolve_glue_dir
from tasks.registry import REGISTRY, registry_task
from tasks.spec import TaskSpec, TaskType
from tasks.user import user_task_from_decl

DATA = Path(os.environ.get("BENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")).resolve()
needs_data = pytest.mark.skipif(not (DATA / "superglue").is_dir(), reason="needs $BENCH_DATA_DIR")


def splits(task: TaskSpec, cache: Path) -> dict:
    names = (*task.splits, *([task.final_test] if task.final_test else []))
    return {s: load_split(task, s, None, cache) for s in names}


@needs_data
def test_registry_tasks_read_as_their_sources_count_them(cache_dir):
    cb = splits(registry_task("cb", DATA, False, 0.1, 0), cache_dir)
    assert (len(cb["train"]), len(cb["validation"])) == (250, 56)
    # SOURCES.md: entailment 115, contradiction 119, neutral 16, in the hub copy's id order
    assert np.bincount(cb["train"]["label"]).tolist() == [115, 119, 16]
    copa = splits(registry_task("copa", DATA, False, 0.1, 0), cache_dir)
    assert (len(copa["train"]), len(copa["validation"])) == (400, 100)
    assert copa["train"][0] == {
        "context": "My body cast a shadow over the grass. What was the cause?",
        "choices": ["The sun was rising.", "The grass was cut."],
        "label": 0,
    }
    assert np.bincount(copa["validation"]["label"]).tolist() == [55, 45]
    conll = splits(registry_task("conll2003", DATA, True, 0.1, 0), cache_dir)  # its own test: glue_dev changes nothing
    assert {s: len(d) for s, d in conll.items()} == {"train": 14041, "validation": 3250, "test": 3453}
    tags = REGISTRY["conll2003"].label_names
    first = conll["train"][0]
    assert first["tokens"][:3] == ["EU", "rejects", "German"]
    assert [tags[t] for t in first["label"][:3]] == ["B-ORG", "O", "B-MISC"]
    wnut = splits(registry_task("wnut17", DATA, False, 0.1, 0), cache_dir)
    assert {s: len(d) for s, d in wnut.items()} == {"train": 3394, "validation": 1009, "test": 1287}
    entity_starts = sum(
        REGISTRY["wnut17"].label_names[t].startswith("B-") for row in wnut["train"]["label"] for t in row
    )
    assert entity_starts == 1975


def test_the_registry_declares_each_family_and_its_metric_keys():
    kinds = {name: t.type for name, t in REGISTRY.items()}
    assert kinds == {
        "cb": TaskType.CLASSIFICATION,
        "boolq": TaskType.CLASSIFICATION,
        "copa": TaskType.MULTIPLE_CHOICE,
        "conll2003": TaskType.TAGGING,
        "wnut17": TaskType.TAGGING,
        "squad": TaskType.EXTRACTIVE_QA,
    }
    keys = {name: t.metric_keys() for name, t in REGISTRY.items()}
    assert keys["conll2003"] == keys["wnut17"] == ["precision", "recall", "f1"]
    assert (keys["copa"], keys["boolq"], keys["cb"]) == (["accuracy"], ["accuracy"], ["accuracy", "f1_macro"])
    assert keys["squad"] == REGISTRY["squad"].score_keys() == ["exact_match", "f1"]  # the score: their mean
    for task in REGISTRY.values():
        assert TaskSpec.from_dict(json.loads(json.dumps(task.to_dict()))) == task
    # A sentence task's declaration is what it was before families: its fingerprints and caches hold.
    assert "type" not in GLUE_TASKS["rte"].to_dict() and "choice_columns" not in GLUE_TASKS["rte"].to_dict()
    assert GLUE_TASKS["stsb"].type is TaskType.REGRESSION and GLUE_TASKS["rte"].type is TaskType.CLASSIFICATION


@needs_data
def test_with_glue_dev_test_the_public_dev_set_is_the_test_split_and_validation_comes_out_of_train(cache_dir):
    for name, train, dev in (("cb", 250, 56), ("copa", 400, 100)):
        task = registry_task(name, DATA, True, 0.2, 3)
        data = splits(task, cache_dir)
        assert task.final_test == "dev" and len(data["dev"]) == dev
        assert len(data["train"]) + len(data["validation"]) == train and len(data["validation"]) == train // 5
        key = "premise" if name == "cb" else "context"
        texts = set(zip(data["train"][key], map(str, data["train"]["hypothesis" if name == "cb" else "choices"])))
        held = set(
            zip(data["validation"][key], map(str, data["validation"]["hypothesis" if name == "cb" else "choices"]))
        )
        assert not texts & held


def test_without_its_folder_a_registry_task_reads_the_hub(tmp_path):
    for name in REGISTRY:
        task = registry_task(name, tmp_path, False, 0.1, 0)
        assert task.files == {} and task.hub[0] in (
            "aps/super_glue",
            "eriktks/conll2003",
            "leondz/wnut_17",
            "rajpurkar/squad",
        )
    squad = registry_task("squad", tmp_path, False, 0.1, 0)
    assert squad.holdout == {} and squad.final_test is None  # squad's carving is for its one local file only


def test_the_data_root_holds_glue_unless_a_glue_folder_is_given(tmp_path, monkeypatch):
    (tmp_path / "glue").mkdir()
    monkeypatch.delenv("BENCH_GLUE_DIR", raising=False)
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    assert resolve_glue_dir(None) == tmp_path / "glue"
    assert resolve_glue_dir(None, str(tmp_path / "other")) == tmp_path / "other" / "glue"
    assert resolve_glue_dir(str(tmp_path / "mine"), str(tmp_path / "other")) == tmp_path / "mine"
    monkeypatch.setenv("BENCH_GLUE_DIR", str(tmp_path / "env"))
    assert resolve_glue_dir(None) == tmp_path / "env"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_boolq_reads_superglue_jsonl_from_a_users_data_root(tmp_path, cache_dir):
    rows = [
        {"question": f"is it {i}", "passage": f"passage {i}", "label": i % 3 == 0, "idx": i} for i in range(12)
    ]  # SuperGLUE's BoolQ spells its labels as JSON booleans
    write_jsonl(tmp_path / "superglue" / "BoolQ" / "train.jsonl", rows)
    write_jsonl(tmp_path / "superglue" / "BoolQ" / "val.jsonl", rows[:4])
    task = registry_task("boolq", tmp_path, False, 0.1, 0)
    data = splits(task, cache_dir)
    assert data["train"]["label"] == [int(i % 3 == 0) for i in range(12)]
    assert data["validation"].column_names == ["question", "passage", "label"] and len(data["validation"]) == 4


def test_user_tasks_of_each_family_from_files(tmp_path, cache_dir):
    conll = tmp_path / "ner.conll"
    conll.write_text("-DOCSTART- O\n\nJohn NNP B-PER\nlives VBZ O\nin IN O\nParis NNP B-LOC\n\nHi UH O\n")
    task = user_task_from_decl(
        {"name": "ner", "type": "tagging", "train": str(conll), "validation": str(conll), "tag_column": 2},
        "tasks[0]",
        tmp_path,
        set(),
    )
    assert task.type is TaskType.TAGGING and task.label_names == ("O", "B-LOC", "B-PER")  # read from train
    train = load_split(task, "train", None, cache_dir)
    assert train["tokens"] == [["John", "lives", "in", "Paris"], ["Hi"]] and train["label"] == [[2, 0, 0, 1], [0]]

    rows = [{"words": ["a", "b"], "tags": ["B-X", "I-X"]}, {"words": ["c"], "tags": ["O"]}]
    path = write_jsonl(tmp_path / "tags.jsonl", rows)
    decl = {"name": "t", "type": "tagging", "train": path, "validation": path, "text_columns": ["words"]}
    task = user_task_from_decl({**decl, "label_column": "tags"}, "tasks[0]", tmp_path, set())
    assert task.label_names == ("O", "B-X", "I-X")
    assert load_split(task, "validation", None, cache_dir)["label"] == [[1, 2], [0]]

    rows = [
        {"q": "Sky?", "options": ["blue", "green", "red"], "answer": 0},
        {"q": "Grass?", "options": ["x", "green", "y"], "answer": 1},
    ]
    path = write_jsonl(tmp_path / "mc.jsonl", rows)
    decl = {"name": "mc", "type": "multiple_choice", "train": path, "validation": path, "text_columns": ["q"]}
    task = user_task_from_decl({**decl, "choice_columns": ["options"], "label_column": "answer"}, "t", tmp_path, set())
    data = load_split(task, "train", None, cache_dir)
    assert (
        data["context"] == ["Sky?", "Grass?"] and data["choices"][1] == ["x", "green", "y"] and data["label"] == [0, 1]
    )


def suite(tmp_path: Path, tasks: list, **data) -> Path:
    path = tmp_path / "suite.yaml"
    body = {
        "name": "families",
        "tasks": tasks,
        "data": {"max_train_samples": 16, **data},
        "output": str(tmp_path / "run"),
    }
    path.write_text(yaml.safe_dump(body))
    return path


def validate(path: Path, capsys) -> tuple[int, str]:
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err


def bad_tagging(tmp_path: Path, text: str, labels=None) -> dict:
    (tmp_path / "bad.conll").write_text(text)
    decl = {
        "name": "ner",
        "type": "tagging",
        "train": str(tmp_path / "bad.conll"),
        "validation": str(tmp_path / "bad.conll"),
    }
    return {**decl, **({"labels": labels} if labels else {})}


def bad_rows(tmp_path: Path, rows: list[dict], **decl) -> dict:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    return {"name": "bad", "train": path, "validation": path, "test": path, **decl}


CHOICE = {"type": "multiple_choice", "text_columns": ["q"], "choice_columns": ["a", "b"]}


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: bad_tagging(p, "EU B-ORG\nrejects O\n\nGerman B-MSIC\n", ["O", "B-ORG", "I-ORG", "B-MISC"]),
            "bad.conll:4: tag 'B-MSIC' is not one of the task's tags",
        ),
        (lambda p: bad_tagging(p, "EU NNP B-ORG\nrejects VBZ O\n\nGerman B-MISC\n"), "bad.conll:4: has 2 column(s)"),
        (
            lambda p: bad_rows(p, [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["b", "c"], "tags": ["O"]}],
                               type="tagging", label_column="tags"),
            "bad.jsonl: row 2: 2 tokens but 1 tags",
        ),
        (
            lambda p: bad_rows(p, [{"tokens": ["a"], "tags": ["O"]}, {"tokens": [], "tags": []}],
                               type="tagging", label_column="tags"),
            "bad.jsonl: row 2: an empty sentence",
        ),
        (
            lambda p: bad_rows(p, [{"q": "x", "options": ["a", "b"], "label": 0},
                                   {"q": "y", "options": ["a"], "label": 0}],
                               **{**CHOICE, "choice_columns": ["options"]}),
            "bad.jsonl: row 2: 1 choices; row 1 has 2",
        ),
        (
            lambda p: bad_rows(p, [{"q": "x", "a": "1", "b": "2", "label": 0},
                                   {"q": "y", "a": "1", "b": "2", "label": 2}], **CHOICE),
            "bad.jsonl: row 2: label 2 is not a choice's index (0 to 1)",
        ),
    ],
)  # fmt: skip
def test_bad_family_input_is_one_line_at_validate(make, message, tmp_path, capsys, cache_dir):
    code, err = validate(suite(tmp_path, [make(tmp_path)], data_dir=str(DATA) if DATA.is_dir() else None), capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@needs_data
def test_a_stage_the_tagging_family_lacks_is_refused_at_validate_naming_it(tmp_path, capsys):
    path = suite(tmp_path, ["conll2003", "wnut17", "sst2"], data_dir=str(DATA))
    extra = {"training": {"augment_copies": 1, "augment_swap": 0.1}}
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **extra}))
    code, err = validate(path, capsys)
    assert code == 2 and "task conll2003: training.augment_copies: the tagging family is not supported there" in err
    # every other stage takes both families
    path = suite(tmp_path, ["conll2003", "wnut17", "copa", "cb"], data_dir=str(DATA))
    extra = {
        "multitask": {"tasks": ["conll2003", "copa", "cb"]}, "chains": ["conll2003 -> wnut17"],
        "ensemble": {"methods": ["mean_prob", "vote", "greedy"]}, "merge": {"methods": ["task_arithmetic"]},
    }  # fmt: skip
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **extra}))
    code, err = validate(path, capsys)
    assert code == 0, err
    body = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "multitask"}
    path.write_text(yaml.safe_dump({**body, "training": {"lora_r": 4}}))
    code, err = validate(path, capsys)
    assert code == 0, err


@needs_data
def test_tasks_of_two_families_do_not_share_a_head(tmp_path, capsys):
    path = suite(tmp_path, ["conll2003", "wnut17", "copa", "sst2"], data_dir=str(DATA))
    extra = {"multitask": {"tasks": ["copa", "sst2"], "shared_heads": [["copa", "sst2"]]}}
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **extra}))
    code, err = validate(path, capsys)
    assert code == 2 and "'copa' is a multiple_choice task and 'sst2' a classification one" in err, err


def test_cb_trains_in_a_trial_and_is_scored_by_accuracy_and_macro_f1(tmp_path, tiny_model, cache_dir):
    path = suite(tmp_path, ["cb"], data_dir=str(DATA), max_eval_samples=32)
    body = yaml.safe_load(path.read_text())
    body.update(model=str(tiny_model), training={"epochs": 1, "batch_size": 8}, search={"seeds": [1]})
    path.write_text(yaml.safe_dump(body))
    assert main(["trial", str(path), "--task", "cb", "--output", str(tmp_path / "out")]) == 0
    from sklearn.metrics import f1_score

    from benchmark.train.checkpoints import load_predictions

    epoch = json.loads((tmp_path / "out" / "epochs.json").read_text())
    epoch = epoch[-1] if isinstance(epoch, list) else epoch["epochs"][-1]
    logits, labels = load_predictions(tmp_path / "out" / "checkpoint")
    predicted = logits["validation"].argmax(-1)
    assert logits["validation"].shape == (len(labels["validation"]), 3)  # entailment, contradiction, neutral
    assert epoch["accuracy"] == pytest.approx(float((predicted == labels["validation"]).mean()))
    assert epoch["f1_macro"] == pytest.approx(f1_score(labels["validation"], predicted, average="macro"))
    assert epoch["score"] == pytest.approx(50 * (epoch["accuracy"] + epoch["f1_macro"]), abs=1e-3)


def test_a_registry_name_is_not_a_user_tasks_name(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"s": "a", "label": "x"}])
    with pytest.raises(InputError, match="'copa' is a GLUE or registry task"):
        from benchmark.config.suite import load_suite

        (tmp_path / "s.yaml").write_text(
            yaml.safe_dump({"name": "s", "tasks": [{"name": "copa", "train": path, "validation": path,
                                                     "text_columns": ["s"], "labels": ["x", "y"]}]})
        )  # fmt: skip
        load_suite(tmp_path / "s.yaml")
