"""The DeepSpeed glue: process group, config, optimizer and schedule. Kept thin on purpose."""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from benchmark.train.hyperparams import TrainingConfig

# DeepSpeed compiles small ops on first use into a cache shared by every Python environment of the user;
# environments with other paths then rebuild it in turn. One cache per environment builds once.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
STALE_BUILD_LOCK_S = 600  # longer than any op compile takes, even on a loaded 2-core machine


def import_deepspeed():
    """DeepSpeed, imported on first use. Its autotuner, which bench never runs, imports MLflow where it is installed:
    1.8 s of a 4.2 s import on a 2-core CPU, in every trial's process. MLflow is hidden from that one import. Only the
    first import counts, and loading a model imports DeepSpeed too (transformers through accelerate), so a trial calls
    this first (`start_trial` joins the process group before it loads anything)."""
    hide = "deepspeed" not in sys.modules and "mlflow" not in sys.modules
    if hide:
        sys.modules["mlflow"] = None  # `import mlflow` raises ImportError while this entry holds
    try:
        # Imported here for start-up speed (deepspeed).
        import deepspeed
    finally:
        if hide and sys.modules.get("mlflow", 0) is None:
            del sys.modules["mlflow"]
    return deepspeed


def init_distributed() -> tuple[int, int]:
    """Join the process group (Ray Train has made one already), or make a one-process group. Returns (rank, world)."""
    deepspeed = import_deepspeed()
    if not dist.is_initialized():
        clear_stale_build_locks(Path(os.environ["TORCH_EXTENSIONS_DIR"]))
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            # One process: a group of its own on a port free now. A MASTER_PORT inherited from a parent process
            # (a driver or a test that trained in-process) would be shared by every trial of a machine at once.
            os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(_free_port()))  # fmt: skip
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)
    return dist.get_rank(), dist.get_world_size()


def clear_stale_build_locks(root: Path) -> None:
    """DeepSpeed compiles its CPU communication op on first use, under torch's lock file. A compile killed half way
    (Ctrl-C, kill -9) leaves the lock behind, and every later trial would wait on it forever. A lock older than the
    op it guards (the build finished) or older than any compile takes is stale."""
    for lock in root.glob("*/lock"):
        try:
            locked = lock.stat().st_mtime
            built = any(so.stat().st_mtime > locked for so in lock.parent.glob("*.so"))
            if built or time.time() - locked > STALE_BUILD_LOCK_S:
                lock.unlink(missing_ok=True)
        except OSError:  # another process removed it first
            continue


def deepspeed_config(hp: TrainingConfig, world_size: int) -> dict:
    """bf16 is mixed precision as torch autocast does it (fp32 weights and optimizer, bf16 matmuls): on CPU,
    DeepSpeed's bf16 mode (bf16 weights, fp32 master copy) spends as long in its optimizer wrapper as in
    forward and backward (measured on an Intel Xeon with AMX, 2026-11-26)."""
    micro = hp.batch_size // (world_size * hp.gradient_accumulation_steps)
    return {
        "train_batch_size": micro * world_size * hp.gradient_accumulation_steps,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": hp.gradient_accumulation_steps,
        "gradient_clipping": hp.max_grad_norm,
        "zero_optimization": {"stage": effective_zero_stage(hp.zero_stage, world_size)},
        "torch_autocast": {"enabled": hp.precision == "bf16", "dtype": "bfloat16"},
        "fp16": {"enabled": hp.precision == "fp16", "initial_scale_power": 16},
        # A client torch.optim.AdamW under ZeRO: DeepSpeed supports it but calls it "untested".
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def effective_zero_stage(stage: int, world_size: int) -> int:
    """ZeRO partitions optimizer state and gradients across ranks. One rank has nothing to partition, and
    stages 1-2 then only cost time (a third of a CPU trial's throughput); the same optimizer math runs at 0."""
    return stage if world_size > 1 else 0


def initialize_engine(model: torch.nn.Module, optimizer, schedule, hp: TrainingConfig, world_size: int):
    engine, _, _, _ = import_deepspeed().initialize(
        model=model, optimizer=optimizer, lr_scheduler=schedule, config=deepspeed_config(hp, world_size)
    )
    if world_size == 1:
        # Nobody to average gradients with, yet DeepSpeed would flatten and all-reduce them every step.
        engine.enable_backward_allreduce = False
    return engine


def adamw(model: torch.nn.Module, hp: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and LayerNorm weights (as BERT's recipe)."""
    return adamw_over(decay_groups(model.named_parameters(), hp.weight_decay), hp)


def decay_groups(named_parameters, weight_decay: float, **extra) -> list[dict]:
    """Two parameter groups: weights that decay, and biases and LayerNorm weights that do not. Empty groups are
    left out; `extra` keys go into both (the multi-task trainer tags each head's groups with its name)."""
    decay, no_decay = [], []
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, **extra},
        {"params": no_decay, "weight_decay": 0.0, **extra},
    ]
    return [g for g in groups if g["params"]]


def adamw_over(groups: list[dict], hp: TrainingConfig) -> torch.optim.Optimizer:
    # One fused kernel per tensor, on CPU as on GPU: 6x faster than the per-op default on CPU.
    return torch.optim.AdamW(groups, lr=hp.learning_rate, eps=hp.adam_epsilon, fused=True)


def linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up to the peak learning rate over `warmup_ratio` of the steps, then linear decay to zero.

    The same curve as transformers' get_linear_schedule_with_warmup, so runs compare step for step.
    """
    warmup = math.ceil(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
