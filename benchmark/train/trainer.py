"""One trial: fine-tune an encoder on one task with a DeepSpeed engine. A plain function; Ray is optional.

Read it top to bottom: set up (or restore a saved state), then for each epoch train (micro-steps; clipping
and the optimizer step happen inside the engine), and at every evaluation point (each epoch's end, and every
`eval_every_steps` optimizer steps if asked) evaluate on every dev split, keep the checkpoint when the dev
score improves, save the full training state if asked, and report.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmark.common.errors import TrialDiverged
from benchmark.common.hardware import device_name, resolve_precision
from benchmark.train.batching import collate, global_batches, rank_micro_batches
from benchmark.train.checkpoints import BEST_DIR, STATE_DIR, save_checkpoint
from benchmark.train.curves import CURVE_KEY, encode_curve
from benchmark.train.engine import adamw, adamw_over, init_distributed, initialize_engine, linear_schedule
from benchmark.train.freezing import optimizer_groups, trainable_groups, trainable_parameter_count, uses_freezing
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.inference import batched_logits
from benchmark.train.lora import adapter_parameter_names, add_adapters, classifier_of, uses_lora
from benchmark.train.modeling import build_classifier, load_tokenizer
from benchmark.train.steps import all_gather, loss_function, mean_over_ranks, peak_memory_mb, sum_over_ranks
from benchmark.train.training_state import (
    load_training_state,
    read_client_state,
    save_training_state,
    set_schedule_step,
)
from tasks.encoding import EncodedSplit, TaskData
from tasks.metrics import OBJECTIVE, compute_metrics, task_score
from tasks.splits import score_on, split_dev

# report(metrics, folder_or_None): the caller takes ownership of the folder. It holds `best/` (a Hugging Face
# checkpoint, when this evaluation is the best so far; rank 0 only) and `state/` (when saving state).
Reporter = Callable[[dict, "Path | None"], None]


@dataclass
class Progress:
    """Where the loop stands; saved with the training state, so a restored trial continues the same history."""

    epoch: int = 0  # the epoch to train next (0-based)
    batch: int = 0  # the first batch of that epoch still to train
    samples_seen: int = 0
    best_score: float = -math.inf
    best_epoch: float | None = None
    history: list[dict] = field(default_factory=list)


@dataclass
class TrialResult:
    epochs: list[dict]
    best_epoch: float | None
    best_score: float
    wall_seconds: float


def train(
    hp: TrainingConfig,
    model_path: str,
    seed: int,
    data: TaskData,
    workdir: Path,
    report: Reporter,
    *,
    trust_remote_code: bool = False,
    meta: dict | None = None,
    threads: int | None = None,
    eval_every_steps: int | None = None,
    save_state: bool = False,
    resume_from: Path | None = None,
    reset_best: bool = False,
    log_every_steps: int = 10,
    new_head: bool = False,
    on_step: Callable[[dict], None] | None = None,
    selection_seed: int | None = None,
) -> TrialResult:
    """`reset_best`: after restoring another trial's state (PBT), judge "best" afresh from here on.
    `log_every_steps`: a point of the training curve (loss, learning rate) every so many optimizer steps and at
    each evaluation; each report carries the points since the last one (benchmark/train/curves.py). `new_head`:
    `model_path` is a checkpoint of another task (intermediate-task transfer): its encoder, with a new head.
    `on_step(info)`: told after every optimizer step where the epoch stands (`step_progress`).
    `selection_seed`: the kept epoch is the best on that split-half protocol's selection half (`selection_half`)."""
    started = time.perf_counter()
    task = data.task
    half = selection_half(data, selection_seed)
    hp, rank, world = start_trial(hp, seed, threads)  # hp.precision: `auto` resolved for this device

    # Model, optimizer and schedule, seeded so that the same seed gives the same head and the same run.
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    model = build_classifier(model_path, task.label_names, trust_remote_code, new_head)
    if uses_lora(hp):
        model = add_adapters(model, hp, model_path)  # a peft model: adapters and the head train
    lengths = data.train.lengths
    micro_parts = world * hp.gradient_accumulation_steps
    steps_per_epoch = len(global_batches(lengths, hp.batch_size, seed, 0, hp.group_by_length, micro_parts))
    total_steps = steps_per_epoch * hp.epochs
    progress = Progress()
    if resume_from is not None:
        client = read_client_state(Path(resume_from))
        progress = Progress(**{k: client[k] for k in (f.name for f in dataclasses.fields(Progress))})
        if reset_best:
            progress.best_score, progress.best_epoch = -math.inf, None
    # A state saved at an epoch's end holds the optimizer of the epoch that ended (its trainable set).
    trainable = _trainable(
        hp, model, progress.epoch - 1 if progress.batch == 0 and progress.epoch > 0 else progress.epoch
    )
    engine, schedule = _build_engine(model, hp, trainable, total_steps, world)
    if resume_from is not None:
        load_training_state(engine, schedule, Path(resume_from), rank, world, hp.zero_stage)
    device = engine.device
    pad_multiple = 8 if device.type == "cuda" else 1
    loss_fn = loss_function(task.is_regression)
    resumed_at_end = progress.epoch >= hp.epochs

    for epoch in range(progress.epoch, hp.epochs):
        if (wanted := _trainable(hp, model, epoch)) != trainable:
            engine, schedule = _rebuild_engine(engine, schedule, model, hp, wanted, total_steps, world)
            trainable = wanted
        engine.train()
        batches = global_batches(lengths, hp.batch_size, seed, epoch, hp.group_by_length, micro_parts)
        window_start, window_samples, losses = time.perf_counter(), 0, []
        curve, logged = [], 0  # the points since the last report; `losses[logged:]` are not in a point yet
        for b in range(progress.batch if epoch == progress.epoch else 0, len(batches)):
            # One optimizer step: this rank's micro-batches of the global batch.
            nonfinite = 0
            for micro in rank_micro_batches(batches[b], lengths, rank, world, hp.gradient_accumulation_steps):
                inputs = {
                    k: v.to(device) for k, v in collate(data.train, micro, tokenizer.pad_token_id, pad_multiple).items()
                }
                labels = torch.from_numpy(data.train.labels[micro]).to(device)
                loss = loss_fn(engine(**inputs).logits, labels)
                nonfinite += int(not torch.isfinite(loss))
                engine.backward(loss)
                engine.step()  # steps the optimizer and schedule at accumulation boundaries, after clipping
                losses.append(loss.item())
            if sum_over_ranks(nonfinite, device):  # every rank stops at the same step
                raise TrialDiverged(
                    f"loss became {losses[-1]} at optimizer step {engine.global_steps} (epoch {epoch + 1})"
                )
            window_samples += len(batches[b])
            if on_step is not None:
                where = (epoch, hp.epochs, b + 1, len(batches))
                on_step(step_progress(*where, window_samples, window_start, hp.batch_size))
            progress.samples_seen += len(batches[b])

            end_of_epoch = b == len(batches) - 1
            evaluating = end_of_epoch or bool(eval_every_steps and engine.global_steps % eval_every_steps == 0)
            if evaluating or engine.global_steps % log_every_steps == 0:
                curve.append(
                    {
                        "step": engine.global_steps,
                        "train_loss": mean_over_ranks(losses[logged:], device),
                        "learning_rate": max(schedule.get_last_lr()),
                    }
                )
                logged = len(losses)
            if not evaluating:
                continue
            # An evaluation point: evaluate, keep the best, save state, report.
            train_seconds = time.perf_counter() - window_start
            progress.epoch, progress.batch = (epoch + 1, 0) if end_of_epoch else (epoch, b + 1)
            row = _evaluate(engine, data, tokenizer.pad_token_id, hp.eval_batch_size, rank, world, pad_multiple)
            split_logits, split_labels = row.pop("_logits"), row.pop("_labels")
            row.update(
                {
                    "selection_score": selection_score(task, split_logits, split_labels, half, row[OBJECTIVE]),
                    "epoch": epoch + 1 if end_of_epoch else round(epoch + (b + 1) / len(batches), 4),
                    "train_loss": mean_over_ranks(losses, device),
                    "learning_rate": max(schedule.get_last_lr()),  # the head's, with layer-wise decay
                    "trainable_parameters": trainable_parameter_count(model),  # with LoRA: adapters and head
                    "augmented_examples": data.augmented_examples,
                    "optimizer_steps": engine.global_steps,
                    "train_samples": progress.samples_seen,
                    "train_seconds": train_seconds,
                    "train_samples_per_s": window_samples / train_seconds,
                    "peak_memory_mb": peak_memory_mb(device),
                    "precision": hp.precision,
                    "device": device_name(),
                }
            )
            progress.history.append(row)
            is_best = row["selection_score"] > progress.best_score
            if is_best:
                progress.best_score, progress.best_epoch = row["selection_score"], row["epoch"]
            folder = workdir / f"step-{engine.global_steps}"
            wrote = False
            if is_best and rank == 0:
                shutil.rmtree(folder, ignore_errors=True)
                save_checkpoint(
                    folder / BEST_DIR,
                    engine.module,
                    tokenizer,
                    split_logits,
                    split_labels,
                    {
                        **(meta or {}),
                        "task": task.to_dict(),
                        "model_path": model_path,
                        "seed": seed,
                        "training": hp.to_dict(),
                        "epoch": row["epoch"],
                        "selection_seed": selection_seed if half else None,  # what chose the epoch
                        "metrics": {k: row[k] for k in task.metric_keys()},
                        OBJECTIVE: row[OBJECTIVE],
                    },
                )
                wrote = True
            if save_state:
                save_training_state(
                    engine, schedule, folder / STATE_DIR, rank, world, hp.zero_stage, dataclasses.asdict(progress)
                )
                wrote = True
            report(
                {
                    **row,
                    "is_best": is_best,
                    "best_epoch": progress.best_epoch,
                    "best_score": progress.best_score,
                    CURVE_KEY: encode_curve(curve),
                },
                folder if wrote else None,
            )
            engine.train()
            window_start, window_samples, losses = time.perf_counter(), 0, []
            curve, logged = [], 0

    if resumed_at_end and progress.history:  # the state was saved after the last evaluation: report it again
        report(
            {
                **progress.history[-1],
                "is_best": False,
                "best_epoch": progress.best_epoch,
                "best_score": progress.best_score,
            },
            None,
        )
    engine.destroy()
    return TrialResult(progress.history, progress.best_epoch, progress.best_score, time.perf_counter() - started)


def selection_half(data: TaskData, seed: int | None) -> dict[str, np.ndarray] | None:
    """The dev examples that choose the kept epoch: with `seed`, the split-half protocol's selection half, so that
    ensembles reporting on the other half report on data that chose nothing; else (None) the whole dev set. A task
    with a labelled test split chooses on all of validation: test reports."""
    if seed is None or data.task.final_test is not None:
        return None
    return split_dev(data.task, {s: len(sp) for s, sp in data.eval_splits.items()}, seed).selection


def selection_score(task, split_logits: dict, split_labels: dict, half: dict | None, score: float) -> float:
    """The score that chooses the kept epoch: the selection half's (`selection_half`), else the dev score."""
    return score_on(task, split_logits, split_labels, half)[1] if half else score


def _trainable(hp: TrainingConfig, model, epoch: int) -> frozenset[str] | None:
    """The layer groups that train in `epoch`; None without freezing options (every parameter trains)."""
    return trainable_groups(hp, epoch, classifier_of(model).config.num_hidden_layers) if uses_freezing(hp) else None


def _build_engine(model, hp: TrainingConfig, trainable: frozenset[str] | None, total_steps: int, world: int):
    """The engine, over the parameters that train (with LoRA: the adapters and the head, nothing else)."""
    if trainable is None:
        optimizer = adamw(model, hp)  # over what requires grad: all, or what peft left trainable
    else:
        groups = optimizer_groups(classifier_of(model), hp, trainable, adapter_parameter_names(model))
        optimizer = adamw_over(groups, hp)
    schedule = linear_schedule(optimizer, total_steps, hp.warmup_ratio)
    return initialize_engine(model, optimizer, schedule, hp, world), schedule


def _rebuild_engine(
    engine, schedule, model, hp: TrainingConfig, trainable: frozenset[str], total_steps: int, world: int
):
    """A new engine over a new trainable set: ZeRO partitions the optimizer's parameters when an engine is built.
    The fp32 master weights, the step counters, the schedule's step and the loss scale carry over; Adam's
    moments start again from zero, as in a fresh optimizer."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

    masters = {n: safe_get_full_fp32_param(p) for n, p in model.named_parameters() if p.requires_grad}
    counters = engine.global_steps, engine.global_samples, engine.micro_steps
    scale, step = getattr(engine.optimizer, "cur_scale", None), schedule.last_epoch
    engine.destroy()
    engine, schedule = _build_engine(model, hp, trainable, total_steps, world)
    for name, p in model.named_parameters():
        if masters.get(name) is not None:  # None: no separate master (fp32 at ZeRO 0); the module holds it
            safe_set_full_fp32_param(p, masters[name])
    engine.global_steps, engine.global_samples, engine.micro_steps = counters
    if scale is not None and hasattr(engine.optimizer, "cur_scale"):
        engine.optimizer.cur_scale = scale
    set_schedule_step(schedule, step)
    return engine, schedule


def start_trial(hp: TrainingConfig, seed: int, threads: int | None) -> tuple[TrainingConfig, int, int]:
    """What every trial does first, single- or multi-task: join the process group, check the batch splits
    across it, resolve `precision: auto` for this device, and seed everything. Returns (hp, rank, world size)."""
    from transformers import set_seed

    rank, world = init_distributed()
    hp = hp.replace(precision=resolve_precision(hp.precision))
    if threads:
        torch.set_num_threads(threads)
    if hp.batch_size % (world * hp.gradient_accumulation_steps):
        raise ValueError(
            f"batch_size {hp.batch_size} is not divisible by workers x accumulation "
            f"({world} x {hp.gradient_accumulation_steps})"
        )
    set_seed(seed)
    return hp, rank, world


def step_progress(epoch: int, epochs: int, step: int, steps: int, samples: int, since: float, batch: int) -> dict:
    """Where a trial stands within its epoch (for the live display): 1-based epoch and step, samples/s since the
    last evaluation, and the training time left at that rate (evaluations not counted)."""
    seconds = time.perf_counter() - since
    rate = samples / seconds if seconds > 0 else None
    steps_left = (steps - step) + (epochs - epoch - 1) * steps
    return {"epoch": epoch + 1, "epochs": epochs, "step": step, "steps": steps, "samples_per_s": rate,
            "seconds_left": steps_left * batch / rate if rate else None}  # fmt: skip


def _evaluate(engine, data: TaskData, pad_id: int, batch_size: int, rank: int, world: int, pad_multiple: int) -> dict:
    started = time.perf_counter()
    engine.eval()
    width = engine.module.config.num_labels
    split_logits = {
        s: predict_split(engine, width, split, pad_id, batch_size, rank, world, engine.device, pad_multiple)
        for s, split in data.eval_splits.items()
    }
    split_labels = {s: split.labels for s, split in data.eval_splits.items()}
    metrics = compute_metrics(data.task, split_logits, split_labels)
    seconds = time.perf_counter() - started
    return {
        OBJECTIVE: task_score(metrics),
        **metrics,
        "eval_seconds": seconds,
        "eval_samples_per_s": sum(len(s) for s in data.eval_splits.values()) / seconds,
        "_logits": split_logits,
        "_labels": split_labels,
    }


def predict_split(
    model,
    width: int,
    split: EncodedSplit,
    pad_id: int,
    batch_size: int,
    rank: int,
    world: int,
    device: torch.device,
    pad_multiple: int,
) -> np.ndarray:
    """Logits of `model` (in eval mode) for every example of `split`, in file order. Ranks share the work and
    exchange results."""
    order = np.argsort(-split.lengths, kind="stable")  # similar lengths together: less padding
    mine = order[rank::world]
    local = (mine, batched_logits(model, split, mine, pad_id, batch_size, device, width, pad_multiple))
    parts = all_gather(local, world)
    logits = np.zeros((len(split), width), dtype=np.float32)
    for idx, values in parts:
        logits[idx] = values
    return logits
