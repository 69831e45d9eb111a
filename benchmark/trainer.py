"""One trial: fine-tune an encoder on one task with a DeepSpeed engine. A plain function; Ray is optional.

Read it top to bottom: set up, then for each epoch train (micro-steps, clip and step inside the engine),
evaluate on every dev split, keep the checkpoint when the dev score improves, and report.
"""

from __future__ import annotations

import math
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmark.batching import collate, global_batches, rank_micro_batches
from benchmark.checkpoints import save_checkpoint
from benchmark.engine import adamw, deepspeed_config, init_distributed, linear_schedule
from benchmark.errors import TrialDiverged
from benchmark.hyperparams import TrainingConfig
from benchmark.modeling import build_classifier, load_tokenizer
from tasks.encoding import EncodedSplit, TaskData
from tasks.metrics import OBJECTIVE, compute_metrics, task_score

# report(epoch_metrics, checkpoint_dir_or_None): the caller takes ownership of the checkpoint folder.
Reporter = Callable[[dict, "Path | None"], None]


@dataclass
class TrialResult:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float = -math.inf
    wall_seconds: float = 0.0


def train(hp: TrainingConfig, model_path: str, seed: int, data: TaskData, workdir: Path, report: Reporter,
          trust_remote_code: bool = False, meta: dict | None = None, threads: int | None = None) -> TrialResult:
    started = time.perf_counter()
    task = data.task
    rank, world = init_distributed()
    if threads:
        torch.set_num_threads(threads)
    if hp.batch_size % (world * hp.gradient_accumulation_steps):
        raise ValueError(f"batch_size {hp.batch_size} is not divisible by workers x accumulation ({world} x {hp.gradient_accumulation_steps})")

    # Model, optimizer and schedule, seeded so that the same seed gives the same head and the same run.
    import deepspeed
    from transformers import set_seed

    set_seed(seed)
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    model = build_classifier(model_path, task.label_names, trust_remote_code)
    lengths = data.train.lengths
    micro_parts = world * hp.gradient_accumulation_steps
    steps_per_epoch = len(global_batches(lengths, hp.batch_size, seed, 0, hp.group_by_length, micro_parts))
    optimizer = adamw(model, hp)
    schedule = linear_schedule(optimizer, steps_per_epoch * hp.epochs, hp.warmup_ratio)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                           config=deepspeed_config(hp, world))
    device = engine.device
    pad_multiple = 8 if device.type == "cuda" else 1
    loss_fn = _loss_function(task.is_regression)

    result = TrialResult()
    samples_seen = 0
    for epoch in range(hp.epochs):
        # Train one epoch.
        engine.train()
        epoch_start = time.perf_counter()
        losses, epoch_samples = [], 0
        for batch in global_batches(lengths, hp.batch_size, seed, epoch, hp.group_by_length, micro_parts):
            for micro in rank_micro_batches(batch, lengths, rank, world, hp.gradient_accumulation_steps):
                inputs = {k: v.to(device) for k, v in collate(data.train, micro, tokenizer.pad_token_id, pad_multiple).items()}
                labels = torch.from_numpy(data.train.labels[micro]).to(device)
                logits = engine(**inputs).logits
                loss = loss_fn(logits, labels)
                if not torch.isfinite(loss):
                    raise TrialDiverged(f"loss is {loss.item()} at epoch {epoch + 1}, step {engine.global_steps}")
                engine.backward(loss)
                engine.step()       # steps the optimizer and schedule at accumulation boundaries, after clipping
                losses.append(loss.item())
            epoch_samples += len(batch)
        train_seconds = time.perf_counter() - epoch_start
        samples_seen += epoch_samples

        # Evaluate on every dev split; every rank gets every logit, so all agree on what is best.
        eval_start = time.perf_counter()
        split_logits = {s: predict_logits(engine, split, tokenizer.pad_token_id, hp.eval_batch_size, task.num_labels,
                                          rank, world, pad_multiple)
                        for s, split in data.eval_splits.items()}
        split_labels = {s: split.labels for s, split in data.eval_splits.items()}
        metrics = compute_metrics(task, split_logits, split_labels)
        score = task_score(metrics)
        eval_seconds = time.perf_counter() - eval_start

        epoch_metrics = {
            "epoch": epoch + 1,
            OBJECTIVE: score,
            **metrics,
            "train_loss": _mean_over_ranks(losses, device),
            "learning_rate": schedule.get_last_lr()[0],
            "optimizer_steps": engine.global_steps,
            "train_samples": samples_seen,
            "train_seconds": train_seconds,
            "train_samples_per_s": epoch_samples / train_seconds,
            "eval_seconds": eval_seconds,
            "eval_samples_per_s": sum(len(s) for s in data.eval_splits.values()) / eval_seconds,
            "peak_memory_mb": _peak_memory_mb(device),
        }
        result.epochs.append(epoch_metrics)

        # Keep the checkpoint of the best epoch so far.
        checkpoint = None
        if score > result.best_score:
            result.best_score, result.best_epoch = score, epoch + 1
            if rank == 0:
                checkpoint = workdir / f"checkpoint-epoch{epoch + 1}"
                shutil.rmtree(checkpoint, ignore_errors=True)
                save_checkpoint(checkpoint, engine.module, tokenizer, split_logits, split_labels, {
                    **(meta or {}), "task": task.to_dict(), "model_path": model_path, "seed": seed,
                    "training": hp.to_dict(), "epoch": epoch + 1, "metrics": metrics, OBJECTIVE: score,
                })
        report({**epoch_metrics, "best_epoch": result.best_epoch, "best_score": result.best_score}, checkpoint)

    result.wall_seconds = time.perf_counter() - started
    engine.destroy()
    return result


def _loss_function(regression: bool):
    if regression:
        return lambda logits, labels: torch.nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
    return lambda logits, labels: torch.nn.functional.cross_entropy(logits.float(), labels)


@torch.no_grad()
def predict_logits(model, split: EncodedSplit, pad_id: int, batch_size: int, num_labels: int,
                   rank: int = 0, world: int = 1, pad_multiple: int = 1) -> np.ndarray:
    """Logits for every example of `split`, in file order. `model` is a DeepSpeed engine or a plain Hugging Face
    model (the ensembler evaluates weight soups with it). Ranks share the work and exchange results."""
    model.eval()
    order = np.argsort(-split.lengths, kind="stable")   # similar lengths together: less padding
    mine = order[rank::world]
    outputs = []
    for start in range(0, len(mine), batch_size):
        idx = mine[start:start + batch_size]
        inputs = {k: v.to(model.device) for k, v in collate(split, idx, pad_id, pad_multiple).items()}
        outputs.append(model(**inputs).logits.float().cpu().numpy())
    local = (mine, np.concatenate(outputs) if outputs else np.zeros((0, num_labels), np.float32))
    parts = _all_gather(local, world)
    logits = np.zeros((len(split), num_labels), dtype=np.float32)
    for idx, values in parts:
        logits[idx] = values
    return logits


def _all_gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    import torch.distributed as dist

    gathered = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def _mean_over_ranks(values: list[float], device: torch.device) -> float:
    import torch.distributed as dist

    total = torch.tensor([sum(values), len(values)], dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(total)
    return float(total[0] / max(1.0, float(total[1])))


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux reports KiB
