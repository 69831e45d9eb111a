"""`training.pooling: mean`: the head reads the masked mean of the last hidden states, in every family bench
declares; the choice travels with the checkpoint, so evaluation, `bench predict`, chains and multi-task heads
pool as the model was trained."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.measure.tiny import TINY_FAMILIES
from benchmark.train.modeling import build_classifier, load_finetuned_classifier, load_tokenizer
from benchmark.train.pooling import POOLING_KEY, masked_mean, set_pooling
from tests.conftest import REPO, plan_prints
from tests.test_families import TRAINING, trial

PAIRS = (["a cat sat on the mat", "rain"], ["the mat was red and the cat was grey", "it rained all day long"])


def logits_padded(model, tokenizer, extra: int) -> torch.Tensor:
    """The logits of PAIRS with `extra` more padding positions than the longest pair needs."""
    enc = tokenizer(*PAIRS, padding="longest", return_tensors="pt")
    if extra:
        pad = tokenizer.pad_token_id
        enc["input_ids"] = torch.cat([enc["input_ids"], torch.full((2, extra), pad)], dim=1)
        for key in ("attention_mask", "token_type_ids"):
            if key in enc:
                enc[key] = torch.cat([enc[key], torch.zeros((2, extra), dtype=enc[key].dtype)], dim=1)
    if model.config.model_type == "distilbert":
        enc.pop("token_type_ids", None)
    with torch.no_grad():
        return model.eval()(**enc).logits


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_mean_pooling_ignores_padding_and_changes_what_the_head_reads(family, models):
    tokenizer = load_tokenizer(str(models[family]))
    torch.manual_seed(0)
    mean = build_classifier(str(models[family]), ("bad", "good"), pooling="mean")
    torch.manual_seed(0)
    cls = build_classifier(str(models[family]), ("bad", "good"), pooling="cls")
    assert getattr(mean.config, POOLING_KEY) == "mean"
    assert getattr(cls.config, POOLING_KEY, "cls") == "cls"
    torch.testing.assert_close(logits_padded(mean, tokenizer, 0), logits_padded(mean, tokenizer, 7))
    assert not torch.allclose(logits_padded(mean, tokenizer, 0), logits_padded(cls, tokenizer, 0), atol=1e-4)


def test_bert_mean_pooling_is_the_pooler_and_classifier_on_the_masked_mean(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    model = build_classifier(str(tiny_model), ("bad", "good"), pooling="mean").eval()
    enc = tokenizer(*PAIRS, padding="longest", return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
        hidden = out.hidden_states[-1]  # the last layer's states as the encoder left them ([CLS] included)
        mask = enc["attention_mask"][..., None].float()
        expected = (hidden * mask).sum(1) / mask.sum(1)
        logits = model.classifier(model.bert.pooler.activation(model.bert.pooler.dense(expected)))
    torch.testing.assert_close(out.logits, logits, rtol=1e-4, atol=1e-5)
    assert torch.equal(masked_mean(torch.ones(1, 3, 2), None), torch.ones(1, 2))


def test_a_mean_trial_saves_its_pooling_and_bench_reloads_it_where_plain_transformers_cannot(
    models,
    easy,
    tmp_path,
    cache_dir,
):
    from transformers import AutoModelForSequenceClassification

    from benchmark.train.checkpoints import load_predictions, load_trial_meta
    from benchmark.train.inference import logits_in_file_order, predict_logits
    from tasks.encoding import encode_split
    from tasks.loading import load_split
    from tasks.spec import TaskSpec

    task, _ = easy
    out = trial(tmp_path, "mean", models["bert"], [task], {"epochs": 1, "pooling": "mean"})
    folder = out / "checkpoint"
    assert json.loads((folder / "config.json").read_text())[POOLING_KEY] == "mean"
    assert load_trial_meta(folder)["training"]["pooling"] == "mean"
    spec = TaskSpec.from_dict(load_trial_meta(folder)["task"])
    dev = load_split(spec, "validation", None, cache_dir)
    saved = load_predictions(folder)[0]["validation"]
    logits = predict_logits(folder, spec, dev, TRAINING["max_seq_length"], 64)  # bench predict's and test's path
    np.testing.assert_allclose(logits, saved, rtol=0, atol=1e-4)
    # Plain transformers reads [CLS]: the limit docs/training.md states.
    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    encoded = encode_split(spec, dev, load_tokenizer(str(folder)), TRAINING["max_seq_length"])
    pad = load_tokenizer(str(folder)).pad_token_id
    assert not np.allclose(
        logits_in_file_order(plain, encoded, pad, 64, torch.device("cpu"), 2, "fp32"), saved, atol=1e-3
    )


def test_a_chain_and_multitask_heads_pool_as_their_own_trial_says(models, tmp_path):
    from benchmark.train.multitask import build_multitask_model
    from tasks.glue import GLUE_TASKS

    source = build_classifier(str(models["bert"]), ("bad", "good"), pooling="mean")
    source.save_pretrained(tmp_path / "source")
    load_tokenizer(str(models["bert"])).save_pretrained(tmp_path / "source")
    assert load_finetuned_classifier(str(tmp_path / "source")).base_model._forward_hooks
    inherited = build_classifier(str(tmp_path / "source"), None, new_head=True)  # null: as the source pooled
    assert getattr(inherited.config, POOLING_KEY) == "mean" and inherited.base_model._forward_hooks
    target = build_classifier(str(tmp_path / "source"), None, new_head=True, pooling="cls")
    assert not hasattr(target.config, POOLING_KEY) and not target.base_model._forward_hooks
    set_pooling(target, "mean")
    set_pooling(target, "mean")
    assert len(target.base_model._forward_hooks) == 1  # once, however often it is asked

    tasks = {t: GLUE_TASKS[t] for t in ("rte", "stsb")}
    joint = build_multitask_model(str(models["bert"]), tasks, {"rte": "rte", "stsb": "stsb"}, pooling="mean")
    encoders = {id(c.base_model) for c in joint.classifiers.values()}
    assert len(encoders) == 1 and len(joint.classifiers["rte"].base_model._forward_hooks) == 1
    assert all(getattr(c.config, POOLING_KEY) == "mean" for c in joint.classifiers.values())


def test_null_keeps_what_a_modernbert_config_says_and_cls_or_mean_overrides_it(models, tmp_path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(models["modernbert"])
    assert config.classifier_pooling == "cls"
    folder = tmp_path / "modernbert-mean"
    build_classifier(str(models["modernbert"]), ("bad", "good"), pooling="mean").save_pretrained(folder)
    load_tokenizer(str(models["modernbert"])).save_pretrained(folder)
    assert build_classifier(str(folder), ("bad", "good")).config.classifier_pooling == "mean"
    assert build_classifier(str(folder), ("bad", "good"), pooling="cls").config.classifier_pooling == "cls"
    assert build_classifier(str(models["bert"]), ("bad", "good")).base_model._forward_hooks == {}


def test_mean_pooling_is_checked_at_validate(tmp_path, capsys, glue_dir, cache_dir):
    from tests.test_suite import validate, write_suite

    path = write_suite(tmp_path)
    assert validate(path, capsys, "--set", "training.pooling=mean")[0] == 0
    code, err = validate(path, capsys, "--set", "training.pooling=max")
    assert code == 2 and "training.pooling" in err and err.count("\n") == 1, err
    assert main(["validate", str(path), "--set", "search.grid.pooling=[cls, mean]"]) == 0


def test_validating_a_declared_familys_mean_pooling_builds_no_model(glue_dir, cache_dir):
    # The quickstart pools by the embedded model's own mean and encodes pairs alone: its family is declared, so
    # validate reads config.json instead of building the model (transformers' modelling code: seconds of imports).
    script = "import sys; from benchmark.cli import main; main(['validate', 'configs/quickstart.yaml']); "
    script += "print(sorted(m for m in ('torch', 'transformers.models.bert.modeling_bert') if m in sys.modules))"
    first, again = (subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
                    for _ in range(2))  # fmt: skip
    assert first.returncode == 0 and again.returncode == 0, first.stderr[-2000:] + again.stderr[-2000:]
    # The first checks the model folder and the data once (transformers loads the tokenizer, importing torch); the
    # next finds them checked and imports neither.
    assert "modeling_bert" not in first.stdout and again.stdout.splitlines()[-1] == "[]"


def test_the_default_is_fingerprinted_as_what_it_runs(tmp_path, monkeypatch, glue_dir, cache_dir, tiny_model):
    from tests.test_suite import write_suite

    # The embedded model (a sentence-transformers folder): the default `model` runs its mean, as `mean` would.
    path = write_suite(tmp_path, chains=["rte -> mrpc"], tasks=["rte", "mrpc"])
    now, mean = plan_prints(path), plan_prints(path, ["training.pooling=mean"])
    cls, null = plan_prints(path, ["training.pooling=cls"]), plan_prints(path, ["training.pooling=null"])
    assert len(now) == 3 and now == mean  # rte, mrpc and the chain
    assert set(cls) == set(now) and not set(cls.values()) & set(now.values())
    # A plain transformers folder: `model` runs as `null`, so runs made before the key or the default keep theirs.
    (tmp_path / "plain").mkdir()
    plain = write_suite(tmp_path / "plain", model=str(tiny_model), chains=["rte -> mrpc"], tasks=["rte", "mrpc"])
    plain_now = plan_prints(plain)
    assert plain_now == plan_prints(plain, ["training.pooling=null"])
    assert not set(plan_prints(plain, ["training.pooling=mean"]).values()) & set(plain_now.values())
    # The code before the key (the patch holds for the rest of the test): null, for both models.
    assert plan_prints(path, without="pooling", monkeypatch=monkeypatch) == null != now
    assert plan_prints(plain, without="pooling", monkeypatch=monkeypatch) == plain_now
