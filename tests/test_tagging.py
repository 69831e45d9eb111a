"""The tagging family through training, scoring, statistics and prediction files: a token classifier scored on
entities (seqeval), one prediction per word, sentences resampled."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.cli import main
from benchmark.measure.reliability import random_kills, run_to_end
from tasks.metrics import entity_counts, entity_metrics
from tasks.metrics.resampled import ENTITY_RESAMPLED
from tasks.registry import REGISTRY
from tasks.words import IGNORE
from tests.conftest import bench, interrupted_and_resumed

DATA = Path(os.environ.get("BENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")).resolve()
needs_data = pytest.mark.skipif(not (DATA / "conll2003").is_dir(), reason="needs $BENCH_DATA_DIR/conll2003")
TAGS = REGISTRY["conll2003"].label_names


def random_tagging(rng, sentences: int, width: int, noise: float):
    """Gold tags with entities, and predictions that keep each word's tag or draw another with `noise`."""
    lengths = rng.integers(1, width + 1, sentences)
    labels = np.full((sentences, width), IGNORE)
    for s, n in enumerate(lengths):
        labels[s, :n] = rng.choice(len(TAGS), n, p=[0.6] + [0.05] * 8)
    predicted = np.where(rng.random(labels.shape) < noise, rng.integers(0, len(TAGS), labels.shape), labels)
    return np.where(labels == IGNORE, 0, predicted), labels


def test_entity_scores_resampled_by_sentence_equal_seqeval_on_each_resample():
    rng = np.random.default_rng(0)
    predicted, labels = random_tagging(rng, 40, 12, 0.3)
    counts, gold = entity_counts(TAGS, predicted, labels)
    draws = rng.integers(0, 40, (5, 40))
    for metric, resampled in ENTITY_RESAMPLED.items():
        values = resampled(counts[draws], gold[draws])
        expected = [seqeval_scores(predicted[d], labels[d])[metric] for d in draws]
        assert values == pytest.approx(expected, abs=1e-12)
        assert entity_metrics(TAGS, predicted[draws[0]], labels[draws[0]])[metric] == pytest.approx(expected[0])
    # all-O finds no entity: the trivial predictor's entity F1 is 0
    assert entity_metrics(TAGS, np.zeros_like(labels), labels) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize("tags", [TAGS, ("O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y", "S-Y", "B", "I")])
def test_entity_counts_equal_seqevals_entities_sentence_by_sentence(tags):
    from seqeval.metrics.sequence_labeling import get_entities

    rng = np.random.default_rng(1)
    labels, predicted = rng.integers(0, len(tags), (300, 12)), rng.integers(0, len(tags), (300, 12))
    labels[rng.random(labels.shape) < 0.3] = IGNORE  # sub-tokens inside a sentence
    labels[np.arange(12)[None, :] >= rng.integers(0, 13, 300)[:, None]] = IGNORE  # and past its end (some empty)
    counts, gold = entity_counts(tags, predicted, labels)
    for s, (p, t) in enumerate(zip(predicted, labels)):
        words = t != IGNORE
        true = set(get_entities([tags[i] for i in t[words]]))
        pred = set(get_entities([tags[i] for i in p[words]]))
        assert (counts[s, 0], counts[s, 1], gold[s]) == (len(pred), len(pred & true), len(true)), s


def seqeval_scores(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """seqeval's own entity scores (its default mode), the reference for bench's counts."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    true = [[TAGS[i] for i in t[t != IGNORE]] for t in labels]
    pred = [[TAGS[i] for i in p[t != IGNORE]] for p, t in zip(predicted, labels)]
    scores = {"precision": precision_score, "recall": recall_score, "f1": f1_score}
    return {name: score(true, pred, zero_division=0) for name, score in scores.items()}


def write_suite(tmp_path: Path, model: Path, tasks: list, **extra) -> Path:
    path = tmp_path / "suite.yaml"
    body = {
        "name": "tagging",
        "model": str(model),
        "tasks": tasks,
        "data": {"data_dir": str(DATA), "max_train_samples": 64, "max_eval_samples": 48},
        "training": {"epochs": 2, "batch_size": 8, "learning_rate": 1.0e-3, "max_seq_length": 32},
        "search": {"seeds": [1]},
        "output": str(tmp_path / "run"),
        **extra,
    }
    path.write_text(yaml.safe_dump(body))
    return path


@needs_data
def test_a_tagging_trial_scores_words_on_entities_and_saves_a_token_classifier(tmp_path, tiny_model, cache_dir):
    from transformers import AutoModelForTokenClassification

    from benchmark.train.checkpoints import load_predictions

    path = write_suite(tmp_path, tiny_model, ["conll2003"])
    assert main(["trial", str(path), "--task", "conll2003", "--output", str(tmp_path / "out")]) == 0
    epochs = json.loads((tmp_path / "out" / "epochs.json").read_text())
    best = max(epochs, key=lambda e: e["score"])
    assert {"precision", "recall", "f1"} <= set(best) and best["train_precision"] in ("fp32", "bf16")
    assert best["score"] == pytest.approx(100 * best["f1"])  # a tagging task's score is its entity F1
    assert best["pooling"] is None  # a tag per token: nothing pooled
    logits, labels = load_predictions(tmp_path / "out" / "checkpoint")
    dev, gold = logits["validation"], labels["validation"]
    assert dev.shape == (*gold.shape, len(TAGS)) and gold.shape[0] == 48  # sentences x words x tags
    # max_seq_length 32 cuts long sentences into windows: still one prediction per word, none at padding
    words = gold != IGNORE
    assert (np.abs(dev[words]).sum(-1) > 0).all() and (dev[~words] == 0).all()
    assert entity_metrics(TAGS, dev.argmax(-1), gold)["f1"] == pytest.approx(best["f1"])
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "out" / "checkpoint")
    assert model.config.id2label == dict(enumerate(TAGS))


@needs_data
def test_a_run_of_tagging_multiple_choice_and_classification_has_single_multitask_and_ensemble_rows(
    tmp_path, tiny_model, cache_dir, glue_dir
):
    """Issue 40's check: conll2003, copa and sst2 alone, jointly on one encoder, and as ensembles."""
    from transformers import AutoModelForMultipleChoice, AutoModelForTokenClassification

    tasks = ["conll2003", "copa", "sst2"]
    assert bench("validate", write_suite(tmp_path, tiny_model, ["conll2003", "wnut17", "copa", "cb"])).returncode == 0
    path = write_suite(
        tmp_path, tiny_model, tasks, search={"seeds": [1, 2]}, multitask={"tasks": tasks},
        ensemble={"methods": ["mean_prob"], "k": [None]},
    )  # fmt: skip
    proc = bench("run", path)  # a fresh process, as a user runs it: Ray stays out of this test process
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"conll2003/32: \d+ of 64 train, \d+ of 48 validation sentence\(s\) exceed max_seq_length", out)
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    assert board["metrics"]["conll2003"] == ["precision", "recall", "f1"]
    assert board["metrics"]["copa"] == ["accuracy"]
    rows = {r["kind"]: r for r in board["rows"] if "best single" not in r["system"]}
    assert {"single", "multitask", "ensemble", "probe"} <= set(rows)  # sst2's probe; tagging has none yet
    for kind in ("single", "multitask", "ensemble"):
        row = rows[kind]
        assert set(row["scores"]["conll2003"]) == {"precision", "recall", "f1"}, kind
        assert set(row["scores"]["copa"]) == {"accuracy"}, kind
        assert row["task_scores"]["conll2003"] == pytest.approx(row["scores"]["conll2003"]["f1"]), kind
    single = rows["single"]
    assert single["seeds"] == 2 and set(single["test"]["scores"]["conll2003"]) == {"precision", "recall", "f1"}
    folders = {
        json.loads(p.read_text())["task"]["name"]: p.parent
        for p in (tmp_path / "run" / "trials").glob("*/checkpoint/trial.json")
    }
    assert type(AutoModelForTokenClassification.from_pretrained(folders["conll2003"])).__name__.endswith(
        "ForTokenClassification"
    )
    assert type(AutoModelForMultipleChoice.from_pretrained(folders["copa"])).__name__ == "BertForMultipleChoice"
    proc = bench("predict", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (tmp_path / "run" / "submission" / "conll2003.conll").read_text().split("\n")
    tagged = [line.split("\t") for line in lines if line]
    assert len(tagged) == 46435 and {t for _, t in tagged} <= set(TAGS)  # every test token (SOURCES.md) tagged


@needs_data
def test_chains_two_stage_vote_greedy_and_merges_take_tagging_and_multiple_choice_and_a_killed_run_resumes(
    tmp_path, tiny_model, cache_dir, glue_dir
):
    from transformers import AutoModelForTokenClassification

    path = write_suite(
        tmp_path, tiny_model, ["conll2003", "wnut17", "copa", "sst2"], chains=["conll2003 -> wnut17"],
        multitask={"tasks": ["wnut17", "copa", "sst2"], "two_stage": {"enabled": True, "training": {"epochs": 1}}},
        ensemble={"methods": ["vote", "greedy"]}, merge={"methods": ["ties"], "tasks": ["conll2003", "copa", "sst2"]},
    )  # fmt: skip
    # killed (SIGKILL) after its first writes, then the same command again: no finished trial lost or run twice
    run, log = tmp_path / "run", tmp_path / "driver.log"
    kills = random_kills(path, run, kills=1, seed=3, log=log, max_writes=2, max_delay=0.5)
    last = run_to_end(path, run, log)
    assert [k["returncode"] for k in kills if k["injected"]] == [-9], kills
    assert last["returncode"] == 0 and all(e["lost"] == [] for e in (*kills, last)), (kills, last, log.read_text())
    board = json.loads((run / "leaderboard.json").read_text())
    model = next(r["system"] for r in board["rows"] if r["kind"] == "single").split(" ")[0]
    rows = {r["system"].removeprefix(model + " "): r for r in board["rows"]}
    expected = {  # row -> the tagging and multiple-choice tasks it scores
        "(single)": {"conll2003", "wnut17", "copa"},
        "[conll2003→wnut17]": {"wnut17"},
        "(multitask)": {"wnut17", "copa"},
        "(two-stage)": {"wnut17", "copa"},
        "vote (all)": {"conll2003", "wnut17", "copa"},
        "greedy (all)": {"conll2003", "wnut17", "copa"},
        "ties": {"conll2003", "copa"},
        "(probe)": {"conll2003", "wnut17", "copa"},
    }
    for system, tasks in expected.items():
        scored = {t for t in tasks if rows[system]["scores"].get(t)}
        assert scored == tasks, (system, rows[system]["scores"])
        for t in tasks & {"conll2003", "wnut17"}:
            assert set(rows[system]["scores"][t]) == {"precision", "recall", "f1"}, system
    chain = next(
        p.parent for p in (tmp_path / "run" / "trials").glob("*/checkpoint/trial.json") if "conll2003-to" in str(p)
    )
    model = AutoModelForTokenClassification.from_pretrained(chain)  # the chain's target: a fresh 13-tag head
    assert model.config.num_labels == len(REGISTRY["wnut17"].label_names)


@needs_data
@pytest.mark.parametrize("extra", [{}, {"lora_r": 4, "lora_alpha": 8.0, "head_only_epochs": 1, "layer_lr_decay": 0.8}])
def test_a_tagging_trial_resumes_exactly_from_its_saved_state(extra, tmp_path, tiny_model, cache_dir):
    """The same history after an interruption at epoch 1, for plain fine-tuning and with LoRA, a head-only first
    epoch and layer-wise decay."""
    from benchmark.train.hyperparams import TrainingConfig
    from benchmark.train.modeling import load_tokenizer
    from tasks.encoding import encode_task
    from tasks.registry import registry_task

    task = registry_task("conll2003", DATA, False, 0.1, 0)
    data = encode_task(task, load_tokenizer(str(tiny_model)), 24, None, cache_dir, 48, 24)
    assert len(data.train) > data.train.examples  # long sentences went into several windows
    hp = TrainingConfig(batch_size=8, learning_rate=5e-3, eval_batch_size=16, precision="fp32", epochs=3, **extra)
    straight, resumed = interrupted_and_resumed(hp, tiny_model, data, tmp_path)
    keys = ["epoch", "score", "f1", "precision", "train_loss", "learning_rate", "optimizer_steps"]
    assert [{k: e[k] for k in keys} for e in resumed.epochs] == [{k: e[k] for k in keys} for e in straight.epochs]
    assert straight.epochs[-1]["train_loss"] < straight.epochs[0]["train_loss"]


@needs_data
def test_a_multiple_choice_trial_scores_every_choice_in_one_batch_and_saves_a_multiple_choice_model(
    tmp_path, tiny_model, cache_dir
):
    from transformers import AutoModelForMultipleChoice

    from benchmark.train.checkpoints import load_predictions
    from benchmark.train.modeling import load_tokenizer
    from tasks.encoding import encode_task
    from tasks.registry import registry_task

    data = encode_task(registry_task("copa", DATA, False, 0.1, 0), load_tokenizer(str(tiny_model)), 32, None, cache_dir)
    train = data.train
    assert (len(train), train.choices, len(train.offsets) - 1) == (400, 2, 800)  # a sequence per choice
    first = train.ids[train.offsets[0] : train.offsets[1]]
    text = load_tokenizer(str(tiny_model)).decode(first)
    assert "what was the cause?" in text and "the sun was rising." in text  # premise, question word and choice
    path = write_suite(tmp_path, tiny_model, ["copa"])
    assert main(["trial", str(path), "--task", "copa", "--output", str(tmp_path / "out")]) == 0
    epochs = json.loads((tmp_path / "out" / "epochs.json").read_text())
    logits, labels = load_predictions(tmp_path / "out" / "checkpoint")
    assert logits["validation"].shape == (48, 2)  # a score per choice
    best = max(epochs, key=lambda e: e["score"])
    assert best["accuracy"] == pytest.approx(float((logits["validation"].argmax(-1) == labels["validation"]).mean()))
    model = AutoModelForMultipleChoice.from_pretrained(tmp_path / "out" / "checkpoint")
    assert type(model).__name__ == "BertForMultipleChoice"
    # LoRA: adapters on the encoder, the choice scorer in full; the merged checkpoint is a plain multiple-choice model
    body = yaml.safe_load(path.read_text())
    body["training"].update(lora_r=4, lora_alpha=8.0)
    path.write_text(yaml.safe_dump(body))
    assert main(["trial", str(path), "--task", "copa", "--output", str(tmp_path / "lora")]) == 0
    epochs = json.loads((tmp_path / "lora" / "epochs.json").read_text())
    assert epochs[0]["trainable_parameters"] < sum(p.numel() for p in model.parameters()) / 4
    merged = AutoModelForMultipleChoice.from_pretrained(tmp_path / "lora" / "checkpoint")
    lora_logits, _ = load_predictions(tmp_path / "lora" / "checkpoint")
    assert lora_logits["validation"].shape == (48, 2) and (tmp_path / "lora" / "checkpoint" / "adapter").is_dir()
    assert type(merged).__name__ == "BertForMultipleChoice"


def test_a_joint_trials_token_classifier_shares_a_pooled_encoder_but_saves_as_a_plain_one(tiny_model, tmp_path):
    """Heads of three families hold one encoder (the pooled heads need its pooler); the tagging head's folder has
    no pooler, as a single-task one's, so soups and merges join the two."""
    from transformers import AutoModelForTokenClassification

    from benchmark.train.lora import save_model
    from benchmark.train.multitask import build_multitask_model
    from tasks.glue import GLUE_TASKS

    specs = {"conll2003": REGISTRY["conll2003"], "copa": REGISTRY["copa"], "sst2": GLUE_TASKS["sst2"]}
    model = build_multitask_model(str(tiny_model), specs, {t: t for t in specs}, init_seed=0)
    kinds = {t: type(model.classifier(t)).__name__ for t in specs}
    assert kinds == {"conll2003": "BertForTokenClassification", "copa": "BertForMultipleChoice",
                     "sst2": "BertForSequenceClassification"}  # fmt: skip
    encoders = {id(model.classifier(t).base_model) for t in specs}
    assert len(encoders) == 1 and model.classifier("conll2003").base_model.pooler is not None
    save_model(model.classifier("conll2003"), tmp_path / "ner")
    loaded, info = AutoModelForTokenClassification.from_pretrained(tmp_path / "ner", output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
