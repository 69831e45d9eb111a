"""`precision: auto`: bf16 only where the device computes it natively; the record says what ran."""

import sys

import pytest

from benchmark.common import hardware
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS

AMD_AVX2 = {"model name": "AMD EPYC 7B13", "flags": "fpu sse2 avx avx2 fma"}
INTEL_AMX = {"model name": "Intel(R) Xeon(R) Platinum 8481C", "flags": "avx2 avx512f avx512_bf16 amx_bf16 amx_tile"}


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
    assert [e["precision"] for e in result.epochs] == [ran]
    assert result.epochs[0]["device"] == hardware.cpu_model()
    print(f"auto ran {ran} on {hardware.cpu_model()}", file=sys.stderr)
