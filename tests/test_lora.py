"""LoRA through peft in the single-task trainer, on a real DeepSpeed engine (no Ray): what trains, what the
checkpoint holds, and exact resumption."""

import json

import pytest
import torch
from safetensors.torch import load_file

from benchmark.plan.points import points as expand_points
from benchmark.plan.points import training_for
from benchmark.train.checkpoints import load_predictions
from benchmark.train.freezing import HEAD, group_of_parameters, layer
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.lora import ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS, add_adapters, classifier_of
from benchmark.train.modeling import build_classifier, load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tests.conftest import interrupted_and_resumed, two_ranks

FAST = dict(batch_size=16, learning_rate=5e-3, eval_batch_size=32, precision="fp32")
LORA = dict(lora_r=4, lora_alpha=8.0, lora_dropout=0.1)


@pytest.fixture(scope="module")
def rte(tiny_model, glue_dir, cache_dir):
    return encode_task(GLUE_TASKS["rte"], load_tokenizer(str(tiny_model)), 64, glue_dir, cache_dir, 64, 32)


def quiet(*_):
    pass


def _counts(model):
    """(adapter parameters, head parameters) of a plain tiny BERT classifier with r = 4 on query and value."""
    hidden = model.config.hidden_size
    adapters = model.config.num_hidden_layers * 2 * (4 * hidden + hidden * 4)
    head = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("classifier.", "bert.pooler.")))
    return adapters, head


def test_only_adapters_and_head_train_and_the_checkpoint_is_a_merged_plain_model(tiny_model, rte, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    hp = TrainingConfig(**FAST, **LORA, epochs=2)
    initial = build_classifier(str(tiny_model), GLUE_TASKS["rte"].label_names)
    adapters, head = _counts(initial)
    result = run_local_trial(hp, str(tiny_model), 1, rte, tmp_path, log=quiet)
    assert [e["trainable_parameters"] for e in result.epochs] == [adapters + head] * 2

    folder = tmp_path / "checkpoint"
    assert (folder / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file()
    assert json.loads((folder / ADAPTER_DIR / ADAPTER_CONFIG).read_text())["r"] == 4
    merged = load_file(str(folder / "model.safetensors"))
    assert set(merged) == set(initial.state_dict())  # plain names: no lora_ or base_layer keys
    before = initial.state_dict()
    changed = {k for k in merged if not torch.equal(merged[k], before[k])}
    query_value = {k for k in before if k.endswith(("query.weight", "value.weight"))}
    head_keys = {k for k in before if k.startswith(("classifier.", "bert.pooler."))}
    assert query_value <= changed and changed <= query_value | head_keys  # nothing else moved

    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    logits, _ = load_predictions(folder)
    ours = _dev_logits(plain, rte)
    # Merged, the weights sum in another order than the adapted forward does: equal up to rounding.
    assert torch.allclose(torch.from_numpy(logits["validation"]), ours, rtol=0, atol=1e-6)
    # The adapter files on the initial model give the trial's classifier, to the bit.
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    with_adapters = PeftModel.from_pretrained(base, folder / ADAPTER_DIR).eval()
    assert torch.equal(_dev_logits(with_adapters, rte), torch.from_numpy(logits["validation"]))


def _dev_logits(model, data):
    """As the trainer computes them (the same batches and padding)."""
    from benchmark.train.evaluation import RankSetup, predict_split

    with torch.no_grad():
        setup = RankSetup(pad_id=0, batch_size=32, rank=0, world=1, device=torch.device("cpu"), pad_multiple=1)
        logits = predict_split(model, 2, data.eval_splits["validation"], setup)
    return torch.from_numpy(logits)


def test_the_engine_holds_only_adapters_and_head(tiny_model):
    from benchmark.train.trainer import _build_engine, start_trial

    hp = TrainingConfig(**FAST, **LORA, epochs=1)
    start_trial(hp, 0, None)
    model = add_adapters(build_classifier(str(tiny_model), ("a", "b")), hp, str(tiny_model))
    engine, _ = _build_engine(model, hp, None, 10, 1)
    in_optimizer = sum(p.numel() for g in engine.optimizer.param_groups for p in g["params"])
    assert in_optimizer == sum(_counts(build_classifier(str(tiny_model), ("a", "b"))))
    assert in_optimizer == 2 * 2 * (4 * 32 + 32 * 4) + (32 * 32 + 32) + (2 * 32 + 2)  # adapters, pooler, classifier
    engine.destroy()


def test_freezing_keys_choose_which_layers_adapters_train_and_scale_their_rates(tiny_model):
    from benchmark.train.freezing import optimizer_groups, trainable_groups
    from benchmark.train.lora import adapter_parameter_names

    hp = TrainingConfig(**FAST, **LORA, freeze_layers=1, layer_lr_decay=0.5)
    model = add_adapters(build_classifier(str(tiny_model), ("a", "b")), hp, str(tiny_model))
    inner = classifier_of(model)
    groups = optimizer_groups(inner, hp, trainable_groups(hp, 0, 2), adapter_parameter_names(model))
    names = {id(p): n for n, p in inner.named_parameters()}
    lrs = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert all(".lora_" in n or ".modules_to_save." in n for n in lrs)
    assert not any("layer.0." in n for n in lrs)  # the frozen layer's adapters do not train
    assert lrs["bert.encoder.layer.1.attention.self.query.lora_A.default.weight"] == pytest.approx(5e-3 * 0.5)
    assert lrs["classifier.modules_to_save.default.weight"] == 5e-3
    assert group_of_parameters(inner)["bert.encoder.layer.0.attention.self.value.lora_B.default.weight"] == layer(0)
    assert group_of_parameters(inner)["bert.pooler.modules_to_save.default.dense.weight"] == HEAD


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_lora_trial_resumes_exactly_from_its_saved_state(tiny_model, rte, tmp_path, precision):
    """Adapters, the head's copy, Adam's moments, the schedule and the dropout RNG all come back; a head-only
    first epoch (a new engine after it) included."""
    hp = TrainingConfig(**{**FAST, "precision": precision}, **LORA, epochs=3, head_only_epochs=1)
    straight, resumed = interrupted_and_resumed(hp, tiny_model, rte, tmp_path)
    keys = ["epoch", "score", "train_loss", "learning_rate", "optimizer_steps", "trainable_parameters"]
    assert [{k: e[k] for k in keys} for e in resumed.epochs] == [{k: e[k] for k in keys} for e in straight.epochs]
    assert straight.epochs[0]["trainable_parameters"] < straight.epochs[1]["trainable_parameters"]


def _albert(folder):
    """A tiny ALBERT: a family bench does not declare, whose layers share one module (none to freeze apart)."""
    from transformers import AlbertConfig, AlbertModel

    from benchmark.common.quiet import quiet_libraries

    quiet_libraries()  # saving writes a progress bar to stderr, which the one-line checks read
    tokenizer = load_tokenizer(str(_embedded()))
    config = AlbertConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    AlbertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _embedded():
    from benchmark.train.modeling import embedded_model_path

    return embedded_model_path()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.lora_r=-1"], "training.lora_r: must be at least 0"),
        (["training.lora_r=1.5"], "training.lora_r: expected an integer, got number 1.5"),
        (["training.lora_r=true"], "training.lora_r: expected an integer, got boolean true"),
        (["search.grid.lora_r=[0, -4]"], "search.grid.lora_r[1]: must be at least 0"),
        (
            ["training.lora_r=4", "training.lora_targets=[querry]"],
            "training.lora_targets: model all-MiniLM-L6-v2 has no module 'querry' (did you mean 'query'?)",
        ),
        (
            ["search.grid.lora_r=[4]", "search.grid.lora_targets=[null, [value, nope]]"],
            "training.lora_targets: model all-MiniLM-L6-v2 has no module 'nope'",
        ),
        (
            ["training.lora_r=4", "training.lora_targets=[attention]"],
            "a BertAttention of model all-MiniLM-L6-v2; LoRA adapts",
        ),
        (["training.lora_r=4", "training.lora_targets=[classifier]"], "'classifier' names classifier in the head"),
        (["training.lora_r=4", "training.lora_targets=[]"], "training.lora_targets: the list is empty"),
        (
            ["training.lora_r=4", "tasks=[rte, mrpc]", "multitask.tasks=[rte, mrpc]"],
            "training.lora_r: LoRA applies to single-task trials",
        ),
        (["training.lora_dropout=1.0"], "training.lora_dropout: must be at most 0.99"),
    ],
)
def test_bad_lora_settings_exit_2_with_one_line(tmp_path, capsys, glue_dir, cache_dir, overrides, message):
    from tests.test_suite import validate, write_suite

    code, err = validate(write_suite(tmp_path), capsys, *[x for o in overrides for x in ("--set", o)])
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["training.lora_r=8"],
            "training.lora_r: bench knows no LoRA targets for model albert (model type albert); name",
        ),
        (["training.freeze_layers=1"], "training.freeze_layers: bench cannot find the encoder layers of model albert"),
        (["search.grid.layer_lr_decay=[1.0, 0.8]"], "training.layer_lr_decay: bench cannot find the encoder layers"),
        (["training.pooling=mean"], "training.pooling: mean pooling needs a family bench declares (bert, roberta"),
    ],
)
def test_a_family_bench_does_not_know_is_refused_what_it_cannot_do(
    tmp_path, capsys, glue_dir, cache_dir, overrides, message
):
    from tests.test_suite import validate, write_suite

    path = write_suite(tmp_path, model=str(_albert(tmp_path / "albert")))
    code, err = validate(path, capsys, *[x for o in overrides for x in ("--set", o)])
    assert code == 2 and message in err, err
    assert err.count("\n") == 1
    # Full fine-tuning, and LoRA on targets named by the suite, are fine.
    assert validate(path, capsys)[0] == 0
    assert validate(path, capsys, "--set", "training.lora_r=8", "--set", "training.lora_targets=[query, value]")[0] == 0


def test_lora_keys_vary_in_a_grid(tmp_path, capsys, glue_dir, cache_dir):
    from tests.test_suite import validate, write_suite

    path = write_suite(
        tmp_path, search={"grid": {"lora_r": [0, 8], "lora_targets": [None, ["query", "key", "value"]]}, "seeds": [1]}
    )
    code, _ = validate(path, capsys)
    assert code == 0
    from benchmark.config.suite import load_suite

    suite = load_suite(path)
    points = [training_for(suite.config, p) for p in expand_points(suite.config.search)]
    assert [(t.lora_r, t.lora_targets) for t in points] == [
        (0, None),
        (0, ["query", "key", "value"]),
        (8, None),
        (8, ["query", "key", "value"]),
    ]


TWO_RANKS = """
import json, sys
from pathlib import Path
import torch.distributed
from benchmark.train.engine import init_distributed
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.modeling import load_tokenizer
from benchmark.train.checkpoints import STATE_DIR
from benchmark.train.trainer import train
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS

model, glue, cache, out = sys.argv[1:]
rank, world = init_distributed()
data = encode_task(GLUE_TASKS["rte"], load_tokenizer(model), 64, Path(glue), Path(cache), 64, 32)
hp = TrainingConfig(epochs=2, batch_size=16, learning_rate=5e-3, zero_stage=2, precision="bf16", eval_batch_size=32,
                    lora_r=4, lora_alpha=8.0)
straight = train(hp, model, 1, data, Path(out) / f"straight{rank}", lambda m, f: None)
saved = {}

def stop_after_epoch_1(metrics, folder):
    if metrics["epoch"] == 1:
        saved["state"] = folder / "state"
        raise KeyboardInterrupt
try:
    train(hp, model, 1, data, Path(out) / "work", stop_after_epoch_1, save_state=True)
except KeyboardInterrupt:
    pass
torch.distributed.barrier()   # rank 0 writes the state's shared files; Ray's report would wait the same way
resumed = train(hp, model, 1, data, Path(out) / f"resumed{rank}", lambda m, f: None, resume_from=saved["state"])
keys = ("epoch", "score", "train_loss", "optimizer_steps", "trainable_parameters")
(Path(out) / f"result{rank}.json").write_text(json.dumps({
    "rank": rank, "world": world, "straight": [{k: e[k] for k in keys} for e in straight.epochs],
    "resumed": [{k: e[k] for k in keys} for e in resumed.epochs]}))
"""


def test_two_ranks_at_zero_2_train_lora_and_resume_exactly(tiny_model, glue_dir, cache_dir, tmp_path):
    """ZeRO-2 partitions only the adapters' and head's optimizer state across two ranks (torchrun, gloo); both ranks
    report the same numbers, and a state saved after epoch 1 continues exactly."""
    proc = two_ranks(TWO_RANKS, tiny_model, glue_dir, cache_dir, tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[:4000] + proc.stdout[-2000:]
    results = [json.loads((tmp_path / "out" / f"result{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world"] for r in results] == [2, 2]
    assert results[0]["straight"] == results[1]["straight"] == results[0]["resumed"] == results[1]["resumed"]
    adapters, head = _counts(build_classifier(str(tiny_model), ("a", "b")))
    assert [e["trainable_parameters"] for e in results[0]["straight"]] == [adapters + head] * 2


def test_a_lora_checkpoint_starts_a_chain_and_a_lora_target_keeps_its_encoder(tiny_model, rte, tmp_path):
    """Intermediate-task transfer from a merged LoRA checkpoint (a plain folder), with LoRA again on the target:
    the target's frozen encoder weights are the source's merged ones, to the bit."""
    from benchmark.train.checkpoints import BEST_DIR
    from benchmark.train.trainer import train

    hp = TrainingConfig(**FAST, **LORA, epochs=1)
    run_local_trial(hp, str(tiny_model), 1, rte, tmp_path / "source", log=quiet)
    source = tmp_path / "source" / "checkpoint"
    kept = {}

    def keep(metrics, folder):
        if folder is not None and (folder / BEST_DIR).is_dir():
            kept["weights"] = load_file(str(folder / BEST_DIR / "model.safetensors"))

    train(hp, str(source), 2, rte, tmp_path / "target", keep, new_head=True)
    before = load_file(str(source / "model.safetensors"))
    frozen = [
        k
        for k in before
        if k.startswith("bert.") and not k.endswith(("query.weight", "value.weight")) and ".pooler." not in k
    ]
    assert len(frozen) > 20 and all(torch.equal(kept["weights"][k], before[k]) for k in frozen)
    assert not torch.equal(
        kept["weights"]["bert.encoder.layer.1.attention.self.query.weight"],
        before["bert.encoder.layer.1.attention.self.query.weight"],
    )
