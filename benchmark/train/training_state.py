"""Save and restore a trial's whole training state in safetensors: resume after a crash, and PBT's exploit.

DeepSpeed's own checkpoints are pickles, which bench never loads. This module saves what an exact
continuation needs instead: the module's weights, the optimizer's master weights and moments (each rank its
own ZeRO partition), the schedule's step, the engine's counters, the RNG state, and the loop's own progress.
A state restores into an engine built with the same world size and ZeRO stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

MODULE_FILE = "module.safetensors"
CLIENT_FILE = "client.json"


def rank_file(rank: int) -> str:
    return f"optimizer-rank{rank}.safetensors"


def _inner_optimizer(engine) -> torch.optim.Optimizer:
    """The torch optimizer that holds master weights and moments, under whichever DeepSpeed wrapper."""
    optimizer = engine.optimizer
    inner = getattr(optimizer, "optimizer", optimizer)
    if not isinstance(inner, torch.optim.Optimizer):
        raise TypeError(f"cannot find the torch optimizer inside {type(optimizer).__name__}")
    return inner


def save_training_state(
    engine, schedule, folder: Path, rank: int, world_size: int, zero_stage: int, client: dict
) -> None:
    """Every rank writes its own optimizer partition; rank 0 also writes the module and the loop's progress."""
    # Imported here for start-up speed (safetensors).
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    inner = _inner_optimizer(engine)
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    for g, group in enumerate(inner.param_groups):
        for p, param in enumerate(group["params"]):
            tensors[f"{g}.{p}.param"] = param.detach().contiguous()
            for key, value in inner.state.get(param, {}).items():
                if torch.is_tensor(value):
                    tensors[f"{g}.{p}.{key}"] = value.detach().contiguous()
    save_file({k: v.cpu() for k, v in tensors.items()}, str(folder / rank_file(rank)))
    if rank == 0:
        # Clones: ZeRO's parameters are views into one flat buffer, which safetensors refuses to save as is.
        module = {k: v.detach().clone().contiguous().cpu() for k, v in engine.module.state_dict().items()}
        save_file(module, str(folder / MODULE_FILE))
        scale = getattr(engine.optimizer, "cur_scale", None)  # fp16's dynamic loss scale
        (folder / CLIENT_FILE).write_text(
            json.dumps(
                {
                    **client,
                    "world_size": world_size,
                    "zero_stage": zero_stage,
                    "global_steps": engine.global_steps,
                    "global_samples": engine.global_samples,
                    "micro_steps": engine.micro_steps,
                    "schedule_step": schedule.last_epoch,
                    "loss_scale": float(scale) if scale is not None else None,
                }
            )
        )


def read_client_state(folder: Path) -> dict:
    return json.loads((Path(folder) / CLIENT_FILE).read_text())


def load_training_state(engine, schedule, folder: Path, rank: int, world_size: int, zero_stage: int) -> dict:
    """Restore a saved state into a freshly built engine; returns the loop's progress (`client`).

    Learning rates are recomputed from the schedule at the restored step, so a state restored under new
    hyperparameters (PBT's explore) continues with the new ones.
    """
    # Imported here for start-up speed (safetensors).
    from safetensors.torch import load_file

    folder = Path(folder)
    client = read_client_state(folder)
    if (client["world_size"], client["zero_stage"]) != (world_size, zero_stage):
        raise ValueError(
            f"state saved with {client['world_size']} worker(s) at ZeRO-{client['zero_stage']} cannot "
            f"restore into {world_size} worker(s) at ZeRO-{zero_stage}"
        )
    engine.module.load_state_dict(load_file(str(folder / MODULE_FILE), device=str(engine.device)))
    saved = load_file(str(folder / rank_file(rank)), device="cpu")
    inner = _inner_optimizer(engine)
    for g, group in enumerate(inner.param_groups):
        for p, param in enumerate(group["params"]):
            with torch.no_grad():
                param.copy_(saved[f"{g}.{p}.param"].to(param.device, param.dtype))
            prefix = f"{g}.{p}."
            state = {
                k[len(prefix) :]: v.to(param.device)
                for k, v in saved.items()
                if k.startswith(prefix) and not k.endswith(".param")
            }
            if state:
                inner.state[param] = state
    engine.global_steps = client["global_steps"]
    engine.global_samples = client["global_samples"]
    engine.micro_steps = client["micro_steps"]
    if client.get("loss_scale") is not None and hasattr(engine.optimizer, "cur_scale"):
        engine.optimizer.cur_scale = client["loss_scale"]
    set_schedule_step(schedule, client["schedule_step"])
    torch.set_rng_state(saved["rng.cpu"])
    if "rng.cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state(saved["rng.cuda"])
    return client


def set_schedule_step(schedule, step: int) -> None:
    """Move a LambdaLR schedule to `step`, with its groups' learning rates recomputed from their base rates."""
    schedule.last_epoch = step
    lrs = [base * factor(step) for base, factor in zip(schedule.base_lrs, schedule.lr_lambdas)]
    for group, lr in zip(schedule.optimizer.param_groups, lrs):
        group["lr"] = lr
    schedule._last_lr = lrs
