"""Freezing, gradual unfreezing and layer-wise learning-rate decay, on a real DeepSpeed engine (no Ray)."""

import pytest
import torch
from safetensors.torch import load_file

from benchmark.train.freezing import (
    EMBEDDINGS,
    HEAD,
    group_of_parameters,
    layer,
    lr_scale,
    optimizer_groups,
    trainable_groups,
)
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import build_classifier, load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tests.conftest import resumed_after_epoch_1

FAST = dict(batch_size=16, learning_rate=1e-3, eval_batch_size=32)


@pytest.fixture(scope="module")
def rte(tiny_model, glue_dir, cache_dir):
    return encode_task(GLUE_TASKS["rte"], load_tokenizer(str(tiny_model)), 64, glue_dir, cache_dir, 64, 32)


def _weights(folder):
    return {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}


def quiet(*_):
    pass


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_frozen_parameters_stay_bit_identical_and_the_rest_train(tiny_model, rte, tmp_path, precision):
    """(ZeRO-2 partitions across ranks; one rank runs stage 0, see benchmark/train/engine.py.) bf16 is autocast: the
    weights stay fp32, so frozen ones come back bit for bit."""
    hp = TrainingConfig(**FAST, epochs=1, freeze_embeddings=True, freeze_layers=1, precision=precision)
    before = build_classifier(str(tiny_model), GLUE_TASKS["rte"].label_names)
    initial = {k: v.float() for k, v in before.state_dict().items()}
    result = run_local_trial(hp, str(tiny_model), 1, rte, tmp_path, log=quiet)
    after = _weights(tmp_path / "checkpoint")
    frozen = [k for k in after if k.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    trained = [k for k in after if k.startswith(("bert.encoder.layer.1.", "classifier."))]
    assert len(frozen) > 10 and len(trained) > 10
    assert all(torch.equal(after[k], initial[k]) for k in frozen)
    assert all(not torch.equal(after[k], initial[k]) for k in trained if after[k].ndim == 2)
    total = sum(p.numel() for p in before.parameters())
    embeddings = sum(p.numel() for n, p in before.named_parameters() if n.startswith("bert.embeddings."))
    layer0 = sum(p.numel() for n, p in before.named_parameters() if n.startswith("bert.encoder.layer.0."))
    assert result.epochs[0]["trainable_parameters"] == total - embeddings - layer0


def test_gradual_unfreezing_follows_its_schedule_and_resumes_exactly(tiny_model, rte, tmp_path):
    """ULMFiT: head alone, then one more group per epoch top-down (2 layers, then the embeddings), a new
    engine at each change. A run stopped after epoch 1 and resumed from its saved state gives the same numbers."""
    hp = TrainingConfig(**FAST, epochs=3, head_only_epochs=1, gradual_unfreezing=True)
    model = build_classifier(str(tiny_model), GLUE_TASKS["rte"].label_names)
    sizes = {g: 0 for g in (HEAD, layer(1), layer(0), EMBEDDINGS)}
    for name, group in group_of_parameters(model).items():
        sizes[group] += dict(model.named_parameters())[name].numel()
    straight = run_local_trial(hp, str(tiny_model), 1, rte, tmp_path / "straight", log=quiet)
    expected = [sizes[HEAD], sizes[HEAD] + sizes[layer(1)], sizes[HEAD] + sizes[layer(1)] + sizes[layer(0)]]
    assert [e["trainable_parameters"] for e in straight.epochs] == expected
    assert straight.epochs[-1]["learning_rate"] == 0.0  # the schedule ran on across the new engines
    assert [e["optimizer_steps"] for e in straight.epochs] == [4, 8, 12]

    resumed = resumed_after_epoch_1(hp, tiny_model, rte, tmp_path)
    keys = ["epoch", "score", "train_loss", "learning_rate", "optimizer_steps", "trainable_parameters"]
    assert [{k: e[k] for k in keys} for e in resumed.epochs] == [{k: e[k] for k in keys} for e in straight.epochs]


def test_trainable_groups_schedules():
    gradual = TrainingConfig(epochs=5, head_only_epochs=2, gradual_unfreezing=True, freeze_layers=1)
    assert [sorted(trainable_groups(gradual, e, 3)) for e in range(5)] == [
        [HEAD],
        [HEAD],
        [HEAD, layer(2)],
        [HEAD, layer(1), layer(2)],
        [HEAD, layer(1), layer(2)],
    ]
    then_all = TrainingConfig(epochs=3, head_only_epochs=1, freeze_embeddings=True)
    assert sorted(trainable_groups(then_all, 1, 2)) == [HEAD, layer(0), layer(1)]


def test_layer_wise_decay_gives_each_group_its_learning_rate(tiny_model):
    hp = TrainingConfig(learning_rate=1e-3, layer_lr_decay=0.5)
    model = build_classifier(str(tiny_model), GLUE_TASKS["rte"].label_names)
    groups = optimizer_groups(model, hp, trainable_groups(hp, 0, 2))
    by_name = {id(p): n for n, p in model.named_parameters()}
    lrs = {by_name[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert lrs["classifier.weight"] == 1e-3 and lrs["bert.pooler.dense.weight"] == 1e-3
    assert lrs["bert.encoder.layer.1.attention.self.query.weight"] == pytest.approx(5e-4)
    assert lrs["bert.encoder.layer.0.output.dense.bias"] == pytest.approx(2.5e-4)
    assert lrs["bert.embeddings.word_embeddings.weight"] == pytest.approx(1.25e-4)
    assert len(lrs) == len(list(model.parameters()))
    assert lr_scale(layer(0), 2, 1.0) == 1.0
