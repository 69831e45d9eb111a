"""`precision: auto`: bf16 only where the device computes it natively; the record says what ran. One precision: a
kept checkpoint's saved dev logits are what re-running it gives (test scores, `bench predict`, soups and merges), in
fp32 and in bf16, because every re-scoring computes as the trial's evaluation did through the DeepSpeed engine
(benchmark/train/inference.py, `trained_precision`)."""

import sys

import numpy as np
import pytest
import torch

from benchmark.common import hardware
from benchmark.common.errors import InputError
from benchmark.train.checkpoints import load_predictions, load_trial_meta
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.inference import logits_in_file_order, predict_logits, trained_precision
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import load_finetuned_classifier, load_tokenizer
from ensembles.candidates import find_candidates
from ensembles.soups import SoupRunner, check_ingredients, read_weights
from tasks.encoding import encode_split, encode_task
from tasks.glue import GLUE_TASKS
from tasks.loading import load_split
from tests.test_soups import make_run

AMD_AVX2 = {"model name": "AMD EPYC 7B13", "flags": "fpu sse2 avx avx2 fma"}
INTEL_AMX = {"model name": "Intel(R) Xeon(R) Platinum 8481C", "flags": "avx2 avx512f avx512_bf16 amx_bf16 amx_tile"}
TOL = 1e-6  # saved and re-scored logits agree to this; the tiny model's logits are about 0.02
MAX_LENGTH, EVAL_BATCH = 64, 16  # several evaluation batches: padding differs between them as in any real run
FAST = dict(epochs=1, batch_size=16, learning_rate=1e-3, eval_batch_size=EVAL_BATCH, max_seq_length=MAX_LENGTH)


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be another CPU: what /proc/cpuinfo would say."""

    def use(fields: dict):
        monkeypatch.setattr(hardware, "_cpuinfo", lambda: fields)
        monkeypatch.setattr("torch.cuda.is_available", lambda: False)

    return use


def test_auto_is_bf16_only_on_a_cpu_with_native_bf16(cpu):
    cpu(AMD_AVX2)
    assert hardware.resolve_precision("auto") == "fp32"
    assert hardware.machine_description() == {
        "cpu": "AMD EPYC 7B13",
        "cpu_flags": ["avx2", "fma"],
        "native_bf16": False,
    }
    cpu(INTEL_AMX)
    assert hardware.resolve_precision("auto") == "bf16"
    assert hardware.resolve_precision("fp32") == "fp32"  # an explicit choice is kept
    cpu({"model name": "x", "flags": "avx512f avx512_bf16"})
    assert hardware.resolve_precision("auto") == "bf16"


def test_auto_on_cuda_follows_compute_capability(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.get_device_capability", lambda *a: (9, 0))
    assert hardware.resolve_precision("auto") == "bf16"
    monkeypatch.setattr("torch.cuda.get_device_capability", lambda *a: (7, 5))
    assert hardware.resolve_precision("auto") == "fp16"


def test_the_default_is_auto():
    assert TrainingConfig().precision == "auto"


def test_explicit_bf16_on_a_cpu_without_it_warns_at_validation(cpu, tmp_path, tiny_model, glue_dir, capsys):
    from benchmark.cli import main

    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"name: p\nmodel: {tiny_model}\ntasks: [rte]\ndata: {{glue_dir: {glue_dir}}}\ntraining: {{precision: bf16}}\n"
    )
    cpu(AMD_AVX2)
    assert main(["validate", str(suite)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: training.precision: bf16 on this CPU (AMD EPYC 7B13)")
    assert "14x slower" in err[0]
    cpu(INTEL_AMX)
    assert main(["validate", str(suite)]) == 0
    assert capsys.readouterr().err == ""
    cpu(AMD_AVX2)  # auto never warns
    assert main(["validate", str(suite), "--set", "training.precision=auto"]) == 0
    assert capsys.readouterr().err == ""


def test_the_record_says_which_precision_ran(tiny_model, glue_dir, cache_dir, tmp_path):
    data = encode_task(GLUE_TASKS["rte"], load_tokenizer(str(tiny_model)), 32, glue_dir, cache_dir, 32, 16)
    result = run_local_trial(
        TrainingConfig(epochs=1, batch_size=16), str(tiny_model), 1, data, tmp_path, log=lambda *_: None
    )
    ran = hardware.resolve_precision("auto")
    assert ran in ("fp32", "bf16") and ran == ("bf16" if hardware.cpu_has_native_bf16() else "fp32")
    assert [e["train_precision"] for e in result.epochs] == [ran]
    assert result.epochs[0]["device"] == hardware.cpu_model()
    print(f"auto ran {ran} on {hardware.cpu_model()}", file=sys.stderr)


# One precision: saved and re-scored logits ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rte(tiny_model, glue_dir, cache_dir):
    return encode_task(GLUE_TASKS["rte"], load_tokenizer(str(tiny_model)), MAX_LENGTH, glue_dir, cache_dir, 64, 48)


@pytest.fixture(scope="module")
def checkpoints(tiny_model, rte, tmp_path_factory):
    """A tiny trial's kept checkpoint in each precision (`auto` resolved: what trial.json records)."""
    root = tmp_path_factory.mktemp("precision-trials")
    out = {}
    for precision in ("fp32", "bf16"):
        hp = TrainingConfig(**FAST, precision=precision)
        run_local_trial(hp, str(tiny_model), 1, rte, root / precision, log=lambda *_: None)
        out[precision] = root / precision / "checkpoint"
    return out


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_checkpoint_rescored_gives_its_saved_dev_logits(checkpoints, precision, glue_dir, cache_dir):
    folder = checkpoints[precision]
    assert load_trial_meta(folder)["training"]["precision"] == precision
    saved = load_predictions(folder)[0]["validation"]
    dev = load_split(GLUE_TASKS["rte"], "validation", glue_dir, cache_dir, 48)
    rescored = predict_logits(folder, GLUE_TASKS["rte"], dev, MAX_LENGTH, EVAL_BATCH)  # test scores, `bench predict`
    np.testing.assert_allclose(rescored, saved, rtol=0, atol=TOL)
    # Without the trained precision the numbers move: in bf16 the test could fail.
    model = load_finetuned_classifier(str(folder)).eval()
    tokenizer = load_tokenizer(str(folder))
    encoded = encode_split(GLUE_TASKS["rte"], dev, tokenizer, MAX_LENGTH)
    args = (model, encoded, tokenizer.pad_token_id, EVAL_BATCH, torch.device("cpu"), 2)
    fp32 = logits_in_file_order(*args, "fp32")
    gap = float(np.abs(fp32 - saved).max())
    assert gap <= TOL if precision == "fp32" else gap > 10 * TOL, gap  # bf16: about 1.6e-4 on an AMD EPYC
    np.testing.assert_allclose(logits_in_file_order(*args, precision), saved, rtol=0, atol=TOL)


def test_the_context_reproduces_the_engines_numerics(tiny_model):
    """bf16: autocast over fp32 weights (the engine's `torch_autocast`); fp16: half weights, fp32 buffers kept."""
    model = load_finetuned_classifier(str(tiny_model)).eval()
    inputs = {"input_ids": torch.tensor([[101, 2000, 2003, 102]])}
    with torch.no_grad(), trained_precision(model, "bf16"):
        assert model(**inputs).logits.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad(), trained_precision(model, "fp32"):
        assert model(**inputs).logits.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    with trained_precision(model, "fp16"):
        assert all(p.dtype == torch.float16 for p in model.parameters())
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="'auto'"):
        with trained_precision(model, "auto"):
            pass


def test_a_soup_scores_at_its_ingredients_precision_and_refuses_a_mix(checkpoints, rte, tmp_path):
    store = make_run(tmp_path / "same", {"a": checkpoints["bf16"], "b": checkpoints["bf16"]})
    a, b = find_candidates(store)["rte"]
    check_ingredients([a, b])
    runner = SoupRunner(a, load_tokenizer(str(a.folder)), rte)
    assert runner.precision == "bf16"
    logits = runner.logits(read_weights(a.folder))["validation"]  # a soup of one checkpoint is that checkpoint
    np.testing.assert_allclose(logits, a.logits["validation"], rtol=0, atol=TOL)

    mixed = make_run(tmp_path / "mixed", {"a": checkpoints["fp32"], "b": checkpoints["bf16"]})
    a, b = find_candidates(mixed)["rte"]
    with pytest.raises(InputError, match="it trained in bf16, not fp32") as err:
        check_ingredients([a, b])
    assert err.value.where == "trials/b/checkpoint"
