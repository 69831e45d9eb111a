"""Each encoder family bench knows, as a tiny random model, through `bench trial` (in this process, no Ray):
freezing with layer-wise lr decay and gradual unfreezing, LoRA, soups over both, the prediction path of
`bench predict`, and the joint multi-task trial's exports. Every checkpoint loads in plain transformers."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from benchmark.cli import main
from benchmark.measure.tiny import TINY_FAMILIES
from benchmark.train.families import FAMILIES, layout_of
from benchmark.train.freezing import EMBEDDINGS, group_of_parameters
from benchmark.train.lora import ADAPTER_CONFIG, ADAPTER_DIR, ADAPTER_WEIGHTS
from benchmark.train.modeling import build_classifier, load_tokenizer

TRAINING = {"batch_size": 16, "learning_rate": 2e-3, "precision": "fp32", "max_seq_length": 32, "eval_batch_size": 64}
FREEZING = {
    "epochs": 3,
    "freeze_embeddings": True,
    "layer_lr_decay": 0.9,
    "head_only_epochs": 1,
    "gradual_unfreezing": True,
}
LORA = {"epochs": 2, "lora_r": 4, "lora_alpha": 8.0, "layer_lr_decay": 0.9}  # freezing keys compose with LoRA


def suite(tmp_path: Path, model: Path, tasks: list, training: dict, **extra) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "families",
                "model": str(model),
                "tasks": tasks,
                "training": {**TRAINING, **training},
                "search": {"seeds": [1]},
                **extra,
            }
        )
    )
    return path


def trial(tmp_path: Path, name: str, model: Path, tasks: list, training: dict, task: str = "easy", **extra) -> Path:
    """`bench trial` of one suite; returns its output folder."""
    (tmp_path / f"{name}-suite").mkdir()
    path = suite(tmp_path / f"{name}-suite", model, tasks, training, **extra)
    assert main(["trial", str(path), "--task", task, "--output", str(tmp_path / name)]) == 0
    return tmp_path / name


def test_every_declared_family_is_tested():
    assert set(FAMILIES) == set(TINY_FAMILIES)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_a_family_trains_with_freezing_and_with_lora_and_its_checkpoints_load_in_plain_transformers(
    family, models, easy, tmp_path, cache_dir
):
    from transformers import AutoModelForSequenceClassification

    from benchmark.train.checkpoints import load_predictions, load_trial_meta
    from benchmark.train.inference import predict_logits
    from tasks.loading import load_split
    from tasks.spec import TaskSpec

    model, (task, _) = models[family], easy
    initial = build_classifier(str(model), ("bad", "good"))
    layout = layout_of(initial)
    assert layout.family is FAMILIES[family] and layout.num_layers == 2

    # Freezing: the head alone, then the top layer, then the bottom one; the embeddings never move.
    frozen = trial(tmp_path, "freezing", model, [task], FREEZING)
    epochs = json.loads((frozen / "epochs.json").read_text())
    counts = [e["trainable_parameters"] for e in epochs]
    total = sum(p.numel() for p in initial.parameters())
    assert counts[0] < counts[1] < counts[2] < total
    weights = load_file(str(frozen / "checkpoint" / "model.safetensors"))
    embeddings = [k for k, g in group_of_parameters(initial).items() if g == EMBEDDINGS]
    assert embeddings and all(torch.equal(weights[k], initial.state_dict()[k]) for k in embeddings)
    AutoModelForSequenceClassification.from_pretrained(frozen / "checkpoint")

    # LoRA (its adapters' learning rates decayed by layer): adapters on the family's attention projections, the head
    # in full; the merged model is plain.
    adapted = trial(tmp_path, "lora", model, [task], LORA)
    folder = adapted / "checkpoint"
    epochs = json.loads((adapted / "epochs.json").read_text())
    assert all(0 < e["trainable_parameters"] < total / 10 for e in epochs)
    adapter_config = json.loads((folder / ADAPTER_DIR / ADAPTER_CONFIG).read_text())
    assert set(adapter_config["target_modules"]) == set(layout.lora_targets) and adapter_config["r"] == 4
    assert (folder / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file()
    plain = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(plain) is type(initial) and set(plain.state_dict()) == set(initial.state_dict())
    changed = [k for k, v in plain.state_dict().items() if not torch.equal(v, initial.state_dict()[k])]
    adapted_keys = [k for k in changed if any(k.endswith(f"{t}.weight") for t in layout.lora_targets)]
    assert len(adapted_keys) == 2 * len(layout.lora_targets)  # each target in each of the 2 layers

    # `bench predict`'s path runs the merged checkpoint: it gives the dev logits the trial saved.
    spec = TaskSpec.from_dict(load_trial_meta(folder)["task"])
    dev = load_split(spec, "validation", None, cache_dir)
    logits = predict_logits(folder, spec, dev, TRAINING["max_seq_length"], 64)
    np.testing.assert_allclose(logits, load_predictions(folder)[0]["validation"], rtol=0, atol=1e-4)
    assert load_tokenizer(str(folder)).vocab_size == load_tokenizer(str(model)).vocab_size


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_a_soup_of_a_full_and_a_lora_checkpoint_runs(family, models, easy, tmp_path, cache_dir):
    from ensembles.candidates import find_candidates
    from ensembles.soups import SoupRunner, check_ingredients, read_weights, uniform_soup
    from tasks.encoding import encode_task
    from tasks.user import user_task_from_decl
    from tests.test_soups import make_run

    model, (task, _) = models[family], easy
    full = trial(tmp_path, "full", model, [task], {"epochs": 1})
    adapted = trial(tmp_path, "lora", model, [task], {**LORA, "epochs": 1})
    store = make_run(tmp_path / "run", {"a": full / "checkpoint", "b": adapted / "checkpoint"})
    a, b = find_candidates(store)["easy"]
    check_ingredients([a, b])  # the same initial model, architecture and weight names
    soup = uniform_soup([a, b])
    for key in soup:  # the mean of the merged weights, adapted or not
        expected = (read_weights(a.folder)[key].float() + read_weights(b.folder)[key].float()) / 2
        torch.testing.assert_close(soup[key], expected)
    spec = user_task_from_decl(task, "easy", Path.cwd(), set(), {"validation": 0.1, "test": 0.0}, 0)
    dev = encode_task(spec, load_tokenizer(str(model)), TRAINING["max_seq_length"], None, cache_dir)
    logits = SoupRunner(a, load_tokenizer(str(model)), dev).logits(soup)["validation"]
    assert logits.shape == (32, 2) and np.isfinite(logits).all()


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_the_joint_trial_exports_each_task_as_a_plain_checkpoint(family, models, easy, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, tasks = models[family], list(easy)
    out = trial(
        tmp_path, "joint", model, tasks, {"epochs": 1}, task="multitask", multitask={"tasks": ["easy", "easy2"]}
    )
    for name in ("easy", "easy2"):
        clf = AutoModelForSequenceClassification.from_pretrained(out / name / "checkpoint")
        assert clf.config.model_type == family


def test_bench_models_lists_the_families_and_describes_a_folder(models, tmp_path, capsys):
    from tests.test_lora import _albert

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(f"{f.name} " in out and f.layers in out for f in FAMILIES.values())
    assert main(["models", str(models["modernbert"]), str(_albert(tmp_path / "albert"))]) == 0
    out = capsys.readouterr().out
    assert "family:     ModernBERT (modernbert)" in out and "layers:     2 (model.layers)" in out
    assert "head:       model.final_norm, head, classifier" in out and "default targets Wqkv" in out
    assert "vocabulary 30,522" in out and "freezing:   yes" in out
    assert "not declared (model type albert)" in out and "freezing:   no" in out and "LoRA:       only with" in out
    sizes = [int(line.split()[1].replace(",", "")) for line in out.splitlines() if "parameters:" in line]
    assert sizes[0] == sum(
        p.numel()
        for n, p in build_classifier(str(models["modernbert"]), ("a", "b")).named_parameters()
        if not n.startswith(("head.", "classifier."))
    )
    assert main(["models", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
