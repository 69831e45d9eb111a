"""`training.pair_encoding: bi` (each text of a pair encoded alone, as sentence-transformers) and `training.pooling:
model` (a sentence-transformers folder's own pooling), on tiny random BERTs."""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmark.cli import main
from benchmark.measure.tiny import TINY_FAMILIES
from benchmark.train.modeling import build_classifier, load_finetuned_classifier, load_tokenizer
from benchmark.train.pair_encoding import BiEncoder, pair_setting
from benchmark.train.pooling import resolved_pooling
from tests.conftest import plan_prints
from tests.test_families import TRAINING

PAIRS = (["a cat sat on the mat", "rain"], ["the mat was red", "it rained all day long and then some more"])


def st_folder(model: Path, folder: Path, mode: str = "pooling_mode_mean_tokens", path: str = "1_Pooling") -> Path:
    """A copy of `model` laid out as a sentence-transformers folder whose Pooling module turns `mode` on."""
    shutil.copytree(model, folder)
    modes = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")
    (folder / path).mkdir()
    (folder / path / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, **{m: m == mode for m in modes}})
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": path, "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def write_pair_task(folder: Path, regression: bool, train: int = 64, dev: int = 32) -> dict:
    """A user task of sentence pairs: a score (how many words the two share) or two classes (any shared word)."""
    rng = random.Random(0)
    words = ["the", "film", "was", "plot", "acting", "really", "quite", "a", "story", "and", "good", "bad"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("dev", dev)):
        rows = ["first,second,label"]
        for _ in range(n):
            a, b = rng.sample(words, rng.randint(2, 6)), rng.sample(words, rng.randint(2, 6))
            shared = len(set(a) & set(b))
            rows.append(f"{' '.join(a)},{' '.join(b)},{min(shared, 5) if regression else ('yes' if shared else 'no')}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    kind = {"regression": True} if regression else {"labels": ["no", "yes"]}
    return {"name": "pairs", "train": str(folder / "train.csv"), "validation": str(folder / "dev.csv"),
            "text_columns": ["first", "second"], **kind}  # fmt: skip


def bi_trial(tmp_path: Path, name: str, model: Path, task: dict, training: dict) -> Path:
    """`bench trial` of a one-task suite; returns its output folder."""
    path = tmp_path / f"{name}.yaml"
    suite = {"name": name, "model": str(model), "tasks": [task], "training": {**TRAINING, **training},
             "search": {"seeds": [1]}}  # fmt: skip
    path.write_text(yaml.safe_dump(suite))
    assert main(["trial", str(path), "--task", task["name"], "--output", str(tmp_path / name)]) == 0
    return tmp_path / name


def pair_inputs(tokenizer, first: list[str], second: list[str]) -> dict:
    a = tokenizer(first, padding=True, return_tensors="pt")
    b = tokenizer(second, padding=True, return_tensors="pt")
    return {**a, **{f"{k}_b": v for k, v in b.items()}}


def pooled(model_path: Path, texts: list[str], mean: bool) -> torch.Tensor:
    """Each text alone through the plain pre-trained encoder, pooled by hand."""
    from transformers import AutoModel

    encoder, tokenizer = AutoModel.from_pretrained(model_path).eval(), load_tokenizer(str(model_path))
    out = []
    for text in texts:
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**enc).last_hidden_state[0]
        out.append(hidden.mean(0) if mean else hidden[0])
    return torch.stack(out)


def test_pooling_model_reads_a_sentence_transformers_folder_and_else_the_config(tiny_model, tmp_path):
    from benchmark.common.errors import InputError
    from benchmark.train.modeling import embedded_model_path

    mean = st_folder(tiny_model, tmp_path / "st-mean")
    cls = st_folder(tiny_model, tmp_path / "st-cls", "pooling_mode_cls_token", path="pool")  # named by modules.json
    assert resolved_pooling(str(mean), "model") == "mean" and resolved_pooling(str(cls), "model") == "cls"
    assert resolved_pooling(embedded_model_path(), "model") == "mean"  # all-MiniLM-L6-v2's 1_Pooling
    assert resolved_pooling(str(tiny_model), "model") == "cls"  # no Pooling module: transformers' head
    assert resolved_pooling(str(mean), None) == "cls" and resolved_pooling(str(mean), "cls") == "cls"  # null keeps
    assert resolved_pooling(str(mean), None, bi=True) == "mean"  # a bi-encoder's null is `model`
    with pytest.raises(InputError, match="training.pooling: .*pooling_mode_max_tokens"):
        resolved_pooling(str(st_folder(tiny_model, tmp_path / "st-max", "pooling_mode_max_tokens")), "model")
    hooked = build_classifier(str(mean), ("bad", "good"), pooling="model")
    assert hooked.config.classifier_pooling == "mean" and hooked.base_model._forward_hooks


def test_bi_regression_is_the_cosine_of_each_text_pooled_alone_in_the_label_range(tiny_model):
    model = build_classifier(str(tiny_model), None, pooling="mean", pair_encoding="bi", label_range=(1.0, 5.0))
    assert isinstance(model, BiEncoder) and model.classifier is None and model.bert.pooler is None
    with torch.no_grad():
        logits = model.eval()(**pair_inputs(load_tokenizer(str(tiny_model)), *PAIRS)).logits
    u, v = pooled(tiny_model, PAIRS[0], mean=True), pooled(tiny_model, PAIRS[1], mean=True)
    cosine = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    torch.testing.assert_close(logits[:, 0], 1.0 + 4.0 * cosine, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits[0], logits[1])


def test_the_bi_classifier_head_reads_u_v_and_their_absolute_difference(tiny_model):
    model = build_classifier(str(tiny_model), ("a", "b", "c"), pooling="cls", pair_encoding="bi").eval()
    assert tuple(model.classifier.weight.shape) == (3, 3 * 32)
    with torch.no_grad():
        logits = model(**pair_inputs(load_tokenizer(str(tiny_model)), *PAIRS)).logits
        u, v = pooled(tiny_model, PAIRS[0], mean=False), pooled(tiny_model, PAIRS[1], mean=False)
        expected = model.classifier(torch.cat([u, v, (u - v).abs()], dim=-1))
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_a_bi_split_keeps_both_texts_apart_in_the_cache_and_batches_them(tiny_model, tmp_path, cache_dir):
    from benchmark.train.batching import collate
    from tasks.encoding import encode_task
    from tasks.user import user_task_from_decl

    task = user_task_from_decl(write_pair_task(tmp_path / "pairs", regression=True), "tasks[0]", tmp_path, set())
    tokenizer = load_tokenizer(str(tiny_model))
    cross = encode_task(task, tokenizer, 32, None, cache_dir)
    bi = encode_task(task, tokenizer, 32, None, cache_dir, pair_encoding="bi")
    again = encode_task(task, tokenizer, 32, None, cache_dir, pair_encoding="bi")  # from the cache
    assert cross.train.second is None and bi.cache_key != cross.cache_key
    rows = task_rows(tmp_path / "pairs" / "train.csv")
    first, second = bi.train.example(3)[0], bi.train.second.example(3)[0]
    assert list(first) == tokenizer(rows[3][0])["input_ids"] and list(second) == tokenizer(rows[3][1])["input_ids"]
    np.testing.assert_array_equal(again.train.second.ids, bi.train.second.ids)
    np.testing.assert_array_equal(bi.train.lengths, bi.train.token_lengths + bi.train.second.token_lengths)
    batch = collate(bi.train, np.array([3, 5]), tokenizer.pad_token_id)
    assert batch["input_ids_b"][0, : len(second)].tolist() == list(second)
    assert batch["attention_mask_b"].sum(1).tolist() == [len(second), len(bi.train.second.example(5)[0])]
    lo, hi = pair_setting(bi, "bi")[1]
    assert (lo, hi) == (float(bi.train.labels.min()), float(bi.train.labels.max())) and pair_setting(cross, "cross")[
        1
    ] is None


def task_rows(path: Path) -> list[list[str]]:
    return [line.split(",") for line in path.read_text().splitlines()[1:]]


def test_a_bi_trial_keeps_a_checkpoint_that_bench_rescores_and_records_what_ran(tiny_model, tmp_path, cache_dir):
    from benchmark.records.store import trial_record
    from benchmark.run.recorder import EPOCH_FIELDS
    from benchmark.train.checkpoints import load_predictions, load_trial_meta
    from benchmark.train.inference import predict_logits
    from tasks.loading import load_split
    from tasks.spec import TaskSpec

    model = st_folder(tiny_model, tmp_path / "st")
    out = bi_trial(
        tmp_path,
        "bi",
        model,
        write_pair_task(tmp_path / "pairs", True),
        {"epochs": 2, "pair_encoding": "bi", "pooling": "model"},
    )
    folder = out / "checkpoint"
    config = json.loads((folder / "config.json").read_text())
    assert config["pair_encoding"] == "bi" and config["classifier_pooling"] == "mean"
    meta = load_trial_meta(folder)
    assert (meta["pooling"], meta["pair_encoding"], meta["training"]["pooling"]) == ("mean", "bi", "model")
    assert config["pair_label_range"] == [
        0.0,
        float(max(float(r[2]) for r in task_rows(tmp_path / "pairs" / "train.csv"))),
    ]
    spec = TaskSpec.from_dict(meta["task"])
    dev = load_split(spec, "validation", None, cache_dir)
    saved = load_predictions(folder)[0]["validation"]
    np.testing.assert_allclose(predict_logits(folder, spec, dev, TRAINING["max_seq_length"], 64), saved, atol=1e-5)
    epochs = json.loads((out / "epochs.json").read_text())
    assert {"pooling", "pair_encoding"} <= set(EPOCH_FIELDS)
    spec_dict = {"trial_id": "t", "task": "pairs", "model_name": "st", "model_path": str(model), "point": {},
                 "seed": 1, "training": meta["training"], "fingerprint": "f"}  # fmt: skip
    record = trial_record(spec_dict, spec.to_dict(), spec.metric_keys(), epochs, "finished", None, 1.0)
    assert (record["pooling"], record["pair_encoding"]) == ("mean", "bi")
    assert epochs[-1]["train_loss"] < 0.5  # the loss is on labels scaled to [0, 1]


def test_a_bi_classifier_trains_with_lora_and_freezing_and_soups(tiny_model, tmp_path, cache_dir):
    from benchmark.train.checkpoints import load_predictions, load_trial_meta
    from benchmark.train.inference import logits_in_file_order, predict_logits
    from ensembles.soups import read_weights
    from tasks.encoding import encode_split
    from tasks.loading import load_split
    from tasks.spec import TaskSpec

    task = write_pair_task(tmp_path / "pairs", False)
    lora = {"epochs": 2, "pair_encoding": "bi", "lora_r": 4, "lora_alpha": 8.0, "layer_lr_decay": 0.9}
    folders = [bi_trial(tmp_path, "lora", tiny_model, task, lora) / "checkpoint"]
    folders.append(
        bi_trial(tmp_path, "full", tiny_model, task, {"epochs": 1, "pair_encoding": "bi", "head_only_epochs": 1})
        / "checkpoint"
    )
    assert (folders[0] / "adapter" / "adapter_model.safetensors").is_file()
    spec = TaskSpec.from_dict(load_trial_meta(folders[0])["task"])
    dev = load_split(spec, "validation", None, cache_dir)
    for folder in folders:
        saved = load_predictions(folder)[0]["validation"]
        np.testing.assert_allclose(predict_logits(folder, spec, dev, TRAINING["max_seq_length"], 64), saved, atol=1e-5)
    initial = build_classifier(str(tiny_model), ("no", "yes"), pair_encoding="bi")
    full = read_weights(folders[1])
    changed = [n for n, w in full.items() if not torch.equal(w, initial.state_dict()[n])]
    assert changed == ["classifier.bias", "classifier.weight"] or set(changed) == {
        "classifier.bias",
        "classifier.weight",
    }
    # A uniform soup of the two, run as SoupRunner runs weights: the same module takes the averaged state dict.
    soup = {n: (w.float() + read_weights(folders[0])[n].float()) / 2 for n, w in full.items()}
    model = load_finetuned_classifier(str(folders[0]))
    model.load_state_dict(soup, strict=True)
    tokenizer = load_tokenizer(str(folders[0]))
    encoded = encode_split(spec, dev, tokenizer, TRAINING["max_seq_length"], "bi")
    logits = logits_in_file_order(model.eval(), encoded, tokenizer.pad_token_id, 16, torch.device("cpu"), 2, "fp32")
    ends = [load_predictions(f)[0]["validation"] for f in folders]
    assert logits.shape == (32, 2) and not np.allclose(logits, ends[0]) and not np.allclose(logits, ends[1])


def test_validate_refuses_bi_in_joint_trials_and_a_pooling_bench_does_not_run(
    tmp_path, capsys, tiny_model, glue_dir, cache_dir
):
    from tests.test_suite import validate, write_suite

    path = write_suite(tmp_path)
    assert validate(path, capsys, "--set", "training.pair_encoding=bi", "--set", "training.pooling=model")[0] == 0
    code, err = validate(path, capsys, "--set", "training.pair_encoding=both")
    assert code == 2 and "training.pair_encoding" in err and err.count("\n") == 1, err
    maxed = st_folder(tiny_model, tmp_path / "st-max", "pooling_mode_max_tokens")
    code, err = validate(path, capsys, "--set", f"model={maxed}", "--set", "training.pooling=model")
    assert code == 2 and "training.pooling" in err and "pooling_mode_max_tokens" in err and err.count("\n") == 1, err
    (tmp_path / "joint").mkdir()
    joint = write_suite(tmp_path / "joint", tasks=["rte", "mrpc"], multitask={"tasks": ["rte", "mrpc"]})
    code, err = validate(joint, capsys, "--set", "training.pair_encoding=bi")
    assert (
        code == 2
        and err.startswith("bench: error: training.pair_encoding: bi applies to single-task")
        and err.count("\n") == 1
    ), err


def test_cross_keeps_the_fingerprints_of_runs_made_before_the_key_and_bi_changes_them(
    tmp_path, monkeypatch, glue_dir, cache_dir
):
    from tests.test_suite import write_suite

    path = write_suite(tmp_path, chains=["rte -> mrpc"], tasks=["rte", "mrpc"])
    now, bi = plan_prints(path), plan_prints(path, ["training.pair_encoding=bi"])
    before = plan_prints(path, without="pair_encoding", monkeypatch=monkeypatch)  # the code before the key
    assert len(now) == 3 and now == before
    assert set(bi) == set(now) and not set(bi.values()) & set(now.values())


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_family_runs_as_a_bi_encoder_with_freezing_groups_and_lora(family, models, tmp_path):
    from benchmark.train.freezing import HEAD, group_of_parameters
    from benchmark.train.hyperparams import TrainingConfig
    from benchmark.train.lora import add_adapters, save_model

    tokenizer = load_tokenizer(str(models[family]))
    inputs = pair_inputs(tokenizer, *PAIRS)
    if family == "distilbert":  # its encoder takes no segment ids (nor does its cross classifier)
        inputs = {k: v for k, v in inputs.items() if not k.startswith("token_type_ids")}
    torch.manual_seed(0)
    model = build_classifier(str(models[family]), ("a", "b"), pair_encoding="bi")
    groups = group_of_parameters(model)
    head = {n for n, g in groups.items() if g == HEAD}  # ModernBERT's final norm too, as the family declares
    assert {"classifier.weight", "classifier.bias"} <= head and not {n for n in head if ".layers." in n}
    assert any(g == "layer.1" for g in groups.values()) and any(g == "embeddings" for g in groups.values())
    lora = add_adapters(model, TrainingConfig(lora_r=4), str(models[family]))
    with torch.no_grad():
        logits = lora.eval()(**inputs).logits
    save_model(lora, tmp_path / "ck")
    tokenizer.save_pretrained(tmp_path / "ck")
    with torch.no_grad():
        again = load_finetuned_classifier(str(tmp_path / "ck")).eval()(**inputs).logits
    torch.testing.assert_close(again, logits, rtol=1e-5, atol=1e-5)


def test_validate_refuses_a_head_only_phase_for_a_bi_encoders_score(tmp_path, capsys, glue_dir, cache_dir):
    from tests.test_suite import validate, write_suite

    path = write_suite(tmp_path, tasks=["sst2", "stsb"], training={"epochs": 2, "batch_size": 8})
    bi, head_only = ["--set", "training.pair_encoding=bi"], ["--set", "training.head_only_epochs=1"]
    assert validate(path, capsys, *bi)[0] == 0 and validate(path, capsys, *head_only)[0] == 0  # each alone runs
    code, err = validate(path, capsys, *bi, *head_only)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("bench: error: training.head_only_epochs: task stsb as a bi-encoder"), err
