"""What the machine computes natively: the precision `auto` resolves to, and the device named beside every figure.

bf16 is fast only where the hardware multiplies in bf16: a CUDA GPU of compute capability 8.0 or newer, or a CPU
with AMX-BF16 or AVX512-BF16. Elsewhere torch emulates it, and on an AVX2-only CPU bf16 autocast trained 14x
slower than fp32 (issue 15's measurement on an AMD EPYC). No torch import at module level: `bench validate`
reads this too.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# The CPU flags worth writing beside a throughput figure: what decides the speed of fp32 and bf16 matmuls.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
BF16_SLOWDOWN = "about 14x slower than fp32 on an AVX2-only CPU"


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    return frozenset(_cpuinfo().get("flags", "").split())


def cpu_has_native_bf16() -> bool:
    return any(f in cpu_flags() for f in BF16_CPU_FLAGS)


def resolve_precision(requested: str) -> str:
    """`auto`: bf16 where the device this process trains on computes it natively; on CUDA without it, fp16 (with
    DeepSpeed's loss scaling); fp32 on any other CPU. An explicit precision is kept as asked."""
    if requested != "auto":
        return requested
    # Imported here for start-up speed (torch): only a trial resolves `auto`, and it has torch loaded already.
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.get_device_capability() >= (8, 0) else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def device_name() -> str:
    """The device a trial trains on, as a table or a result names it: the GPU's name, else the CPU model."""
    # Imported here for start-up speed (torch), as above.
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return cpu_model()


def machine_description() -> dict:
    """What a measurement writes beside its figures."""
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cpu_flags": [f for f in REPORTED_FLAGS if f in flags],
        "native_bf16": cpu_has_native_bf16(),
    }


def bf16_warning(gpus_per_worker: float) -> str | None:
    """A one-line warning for an explicit bf16 on a CPU that emulates it (None when it is native or on GPUs)."""
    if gpus_per_worker > 0 or cpu_has_native_bf16():
        return None
    return (
        f"warning: training.precision: bf16 on this CPU ({cpu_model()}) has no native bf16 (no AMX-BF16 or "
        f"AVX512-BF16): expect training {BF16_SLOWDOWN}; precision: auto picks fp32 here"
    )
