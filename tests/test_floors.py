"""The floors (zero-shot and probe rows): what they compute, which tasks have them, and how tables mark a row below
one. `bench run` writing them is checked in test_run_e2e.py."""

import json

import numpy as np
import pytest
import torch
import yaml

from benchmark.config.floors import FloorsConfig, check_floors
from benchmark.results.leaderboard import build_leaderboard
from benchmark.results.tables import format_csv, format_markdown
from benchmark.train.floors import (
    FloorKind,
    FrozenEncoder,
    SplitEmbeddings,
    embed_split,
    fit_probe,
    has_floor,
    zero_shot_logits,
)
from benchmark.train.pooling import resolved_pooling
from tasks.glue import GLUE_TASKS
from tasks.registry import REGISTRY
from tests.conftest import bench


def test_only_similarity_pairs_have_a_zero_shot_floor_and_every_task_a_probe():
    assert has_floor(FloorKind.ZERO_SHOT, GLUE_TASKS["stsb"])
    assert not any(has_floor(FloorKind.ZERO_SHOT, GLUE_TASKS[t]) for t in ("sst2", "rte", "mrpc", "cola"))
    assert all(has_floor(FloorKind.PROBE, GLUE_TASKS[t]) for t in ("sst2", "stsb", "rte"))
    assert all(has_floor(FloorKind.PROBE, REGISTRY[t]) for t in ("conll2003", "copa", "cb"))
    assert not any(has_floor(FloorKind.ZERO_SHOT, REGISTRY[t]) for t in ("conll2003", "copa", "cb"))
    tasks = [GLUE_TASKS[t] for t in ("sst2", "stsb")]
    assert check_floors(FloorsConfig(), tasks).zero_shot == ("stsb",)
    assert check_floors(FloorsConfig(), tasks).probe == ("sst2", "stsb")
    assert check_floors(FloorsConfig(zero_shot=False, probe=["sst2"]), tasks).probe == ("sst2",)


@pytest.mark.parametrize(
    "floors, message",
    [
        ({"zero_shot": ["sst2"]}, "floors.zero_shot[0]: task 'sst2' has no zero-shot floor"),
        ({"probe": ["qnli"]}, "floors.probe[0]: 'qnli' is not a task of this suite"),
        ({"probe": "yes"}, "floors.probe"),
    ],
)
def test_a_floor_a_task_cannot_have_is_refused_at_validate(tmp_path, floors, message):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "f", "tasks": ["sst2", "stsb"], "floors": floors}))
    proc = bench("validate", path)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_zero_shot_is_the_cosine_of_mean_pooled_embeddings_of_each_text_alone(tiny_model):
    from transformers import AutoModel, AutoTokenizer

    encoder = FrozenEncoder(str(tiny_model), "mean", 32)
    texts_a, texts_b = ["a cat sat on the mat", "hello"], ["a dog lay on a rug today", "hello there you"]
    split = SplitEmbeddings([encoder.embed(texts_a), encoder.embed(texts_b)], np.zeros(2, np.float32))
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_model), AutoModel.from_pretrained(tiny_model).eval()

    def by_hand(text):  # one text alone: no padding, the plain mean of its token states
        with torch.no_grad():
            return model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].mean(0).numpy()

    for i in range(2):
        u, v = by_hand(texts_a[i]), by_hand(texts_b[i])
        cosine = float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
        assert zero_shot_logits(split)[i, 0] == pytest.approx(cosine, abs=1e-5)
    cls = FrozenEncoder(str(tiny_model), "cls", 32).embed(texts_a)
    assert not np.allclose(cls, split.columns[0], atol=1e-3)  # the pooling is what was asked


def test_floors_read_a_sentence_transformers_folder_by_its_own_pooling(tmp_path, tiny_model):
    from benchmark.train.modeling import embedded_model_path

    assert resolved_pooling(embedded_model_path(), "model", True) == "mean"  # its 1_Pooling/config.json
    assert resolved_pooling(str(tiny_model), "model", True) == "cls"  # a plain transformers folder


def _separable(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return SplitEmbeddings([x], (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64))


def test_the_probe_learns_a_linear_task_and_its_seed_draws_the_head():
    task, train, dev = GLUE_TASKS["sst2"], _separable(400, 0), {"validation": _separable(200, 1)}
    runs = [fit_probe(task, train, dev, None, dev, seed) for seed in (1, 1, 2)]
    accuracy = [float((r.logits["validation"].argmax(1) == dev["validation"].labels).mean()) for r in runs]
    assert min(accuracy) > 0.9  # far above the 50% a constant prediction scores
    np.testing.assert_array_equal(runs[0].logits["validation"], runs[1].logits["validation"])  # same seed, same head
    assert not np.array_equal(runs[0].logits["validation"], runs[2].logits["validation"])
    assert runs[0].selection_score == pytest.approx(100 * accuracy[0])
    half = {"validation": np.arange(100)}  # the epoch is chosen on the examples it is given, only
    chosen = fit_probe(task, train, dev, half, dev, 1)
    scores = 100 * float((chosen.logits["validation"][:100].argmax(1) == dev["validation"].labels[:100]).mean())
    assert chosen.selection_score == pytest.approx(scores)


def test_the_regression_probe_predicts_on_the_label_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = (2.5 + 1.5 * np.tanh(x[:, 0])).astype(np.float32)  # STS-B-like scores, 1 to 4
    train, dev = SplitEmbeddings([x], y), {"validation": SplitEmbeddings([x[:100]], y[:100])}
    result = fit_probe(GLUE_TASKS["stsb"], train, dev, None, dev, 1)
    assert result.selection_score > 90  # Pearson/Spearman of a nearly linear target
    assert abs(float(result.logits["validation"].mean()) - float(y[:100].mean())) < 0.3


def _record(kind, seed, score, test=None):
    record = {
        "trial_id": f"{kind}-{seed}", "status": "finished", "kind": kind, "task": "stsb", "model": "m",
        "metric_keys": ["pearson", "spearmanr"], "grid_point": {}, "seed": seed, "best_score": score,
        "best_metrics": {"pearson": score / 100, "spearmanr": score / 100}, "checkpoint": None,
    }  # fmt: skip
    if test is not None:
        record["test_metrics"] = {"pearson": test / 100, "spearmanr": test / 100}
    return record


def test_a_row_below_a_floor_is_marked_in_every_format():
    records = [_record("single", 1, 40.0, 50.0), _record("single", 2, 44.0, 52.0), _record("zero-shot", 1, 86.0, 55.0)]
    board = build_leaderboard("s", records)
    single = next(r for r in board["rows"] if r["kind"] == "single")
    assert single["below_floor"] == {"stsb": ["zero-shot"]}
    assert single["test"]["below_floor"] == {"stsb": ["zero-shot"]}  # 51.0 on test against 55.0
    assert next(r for r in board["rows"] if r["kind"] == "zero-shot").get("below_floor") is None
    assert board["trials"]["total"] == 2  # a floor is no trial
    md = format_markdown(board)
    assert "42.0/42.0 ± 2.8‡" in md and "Below a floor ‡: m (single) on stsb (zero-shot)" in md
    header, *lines = format_csv(board).splitlines()
    column = header.split(",").index("stsb/below_floor")
    assert [line.split(",")[column] for line in lines] == ["", "zero-shot"]  # the floor first: it scores higher
    assert json.loads(json.dumps(board))["rows"][1]["below_floor"] == {"stsb": ["zero-shot"]}


def test_a_row_on_the_report_half_is_held_against_the_floors_on_that_half():
    """An ensemble row scores the report half of dev; a floor, all of it. The mark compares the two on the
    report half's examples: there the probe is perfect (so the row is below it), although over all of dev the
    probe's 50% is below the row's 75%."""
    from benchmark.results.board import mark_floors_on_the_same_examples
    from benchmark.results.bootstrap import SplitPredictions

    task = GLUE_TASKS["sst2"]
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    right, wrong = np.eye(2)[labels], np.eye(2)[1 - labels]
    probe_logits = np.concatenate([right[:4], wrong[4:]])  # right on examples 0-3 only: 50% on all of dev
    half = np.array([0, 1, 2, 3])
    row_logits = np.concatenate([right[:3], wrong[3:4]])  # 3 of the half's 4: 75%
    files = {
        "probe.safetensors": {"validation": SplitPredictions(probe_logits, labels, np.arange(8))},
        "half.safetensors": {"validation": SplitPredictions(row_logits, labels[half], half)},
        "all.safetensors": {"validation": SplitPredictions(row_logits.repeat(2, 0), labels, np.arange(8))},
    }

    def rows(row_file: str, score: float) -> list[dict]:
        probe = {
            "kind": "probe",
            "model": "m",
            "task_scores": {"sst2": 50.0},
            "predictions": {"sst2": ["probe.safetensors"]},
        }
        row = {"kind": "ensemble", "model": "m", "task_scores": {"sst2": score}, "predictions": {"sst2": [row_file]}}
        return [probe, {**row, "below_floor": {}}]

    on_half = rows("half.safetensors", 75.0)
    mark_floors_on_the_same_examples(on_half, {"sst2": task}, files.get)
    assert on_half[1]["below_floor"] == {"sst2": ["probe"]}  # the probe scores 100 on those four examples
    # A row on the floor's own examples keeps build_leaderboard's comparison of the two scores.
    on_all = rows("all.safetensors", 75.0)
    mark_floors_on_the_same_examples(on_all, {"sst2": task}, files.get)
    assert on_all[1]["below_floor"] == {}
    # And a mark made over all of dev is taken back where, on the row's own examples, the floor is lower.
    files["probe.safetensors"] = {
        "validation": SplitPredictions(np.concatenate([wrong[:4], right[4:]]), labels, np.arange(8))
    }
    lifted = rows("half.safetensors", 40.0)
    lifted[1]["below_floor"] = {"sst2": ["probe"]}
    mark_floors_on_the_same_examples(lifted, {"sst2": task}, files.get)
    assert lifted[1]["below_floor"] == {}


def test_a_tagging_probe_reads_each_words_first_sub_token_and_a_choice_probe_scores_each_choice(tiny_model):
    """The words' hidden states are the encoder's at their first sub-tokens, whatever window holds them; a tagging
    probe's logits are sentences x words x tags, a multiple-choice probe's one score per choice."""
    from datasets import Dataset
    from transformers import AutoModel, AutoTokenizer

    encoder = FrozenEncoder(str(tiny_model), "cls", 12)  # 12 tokens: the long sentence goes into windows
    sentences = [["Peter", "Blackburn", "visited", "Brussels"], ["unbelievably", "long", "words"] * 4]
    features, words = encoder.embed_words(sentences)
    assert features.shape[0] == sum(map(len, sentences)) and sorted(map(tuple, words)) == sorted(
        (s, w) for s, words_ in enumerate(sentences) for w in range(len(words_))
    )
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_model), AutoModel.from_pretrained(tiny_model).eval()
    enc = tokenizer(sentences[0], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state[0].numpy()
    first = [enc.word_ids().index(w) for w in range(4)]
    rows = [i for i, (s, _) in enumerate(words) if s == 0]
    by_word = {int(words[i, 1]): features[i] for i in rows}
    assert np.allclose(np.stack([by_word[w] for w in range(4)]), hidden[first], atol=1e-5)

    conll = REGISTRY["conll2003"]
    tags = Dataset.from_dict({"tokens": sentences, "label": [[1, 2, 0, 5], [0] * 12]})
    split = embed_split(encoder, conll, tags)
    probe = fit_probe(conll, split, {"validation": split}, None, {"validation": split}, seed=0)
    assert probe.logits["validation"].shape == (2, 12, len(conll.label_names))
    assert not probe.logits["validation"][0, 4:].any()  # nothing past the first sentence's 4 words

    copa = REGISTRY["copa"]
    rows_ = {"context": ["It rained. What was the effect?"] * 6, "choices": [["wet", "dry"]] * 6, "label": [0] * 6}
    split = embed_split(encoder, copa, Dataset.from_dict(rows_))
    assert split.features().shape == (6, 2, 4 * model.config.hidden_size)  # (u, v, |u - v|, u * v) per choice
    probe = fit_probe(copa, split, {"validation": split}, None, {"validation": split}, seed=0)
    assert probe.logits["validation"].shape == (6, 2) and (probe.logits["validation"].argmax(-1) == 0).all()
