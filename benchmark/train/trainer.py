"""One trial: fine-tune an encoder on one task with a DeepSpeed engine. A plain function; Ray is optional.

Read it top to bottom: set up (or restore a saved state), then for each epoch train (micro-steps; clipping
and the optimizer step happen inside the engine), and at every evaluation point (each epoch's end, and every
`eval_every_steps` optimizer steps if asked) evaluate on every dev split, keep the checkpoint when the dev
score improves, save the full training state if asked, and report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmark.common.hardware import resolve_precision
from benchmark.train.batching import TARGETS, collate, global_batches, rank_micro_batches
from benchmark.train.checkpoints import BEST_DIR, STATE_DIR
from benchmark.train.curves import CURVE_KEY, encode_curve
from benchmark.train.engine import adamw, adamw_over, init_distributed, initialize_engine, linear_schedule
from benchmark.train.evaluation import (
    Best,
    RankSetup,
    compute_fields,
    evaluate_task,
    save_best,
    selection_half,
)
from benchmark.train.freezing import optimizer_groups, trainable_groups, trainable_parameter_count, uses_freezing
from benchmark.train.hyperparams import TrainingConfig, init_seed_of
from benchmark.train.lora import adapter_parameter_names, add_adapters, classifier_of, uses_lora
from benchmark.train.modeling import build_classifier, load_tokenizer
from benchmark.train.pair_encoding import encoding_fields, label_range_of, pair_setting
from benchmark.train.steps import loss_function, mean_over_ranks, output_logits, reset_peak_memory, stop_if_diverged
from benchmark.train.training_state import (
    load_training_state,
    read_client_state,
    save_training_state,
    set_schedule_step,
)
from tasks.encoding import EncodedSplit, TaskData

# report(metrics, folder_or_None): the caller takes ownership of the folder. It holds `best/` (a Hugging Face
# checkpoint, when this evaluation is the best so far; rank 0 only) and `state/` (when saving state).
Reporter = Callable[[dict, "Path | None"], None]


@dataclass
class Progress:
    """Where the loop stands; saved with the training state, so a restored trial continues the same history."""

    epoch: int = 0  # the epoch to train next (0-based)
    batch: int = 0  # the first batch of that epoch still to train
    samples_seen: int = 0
    best: Best = field(default_factory=Best)
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
    final_state: bool = True,
    resume_from: Path | None = None,
    reset_best: bool = False,
    log_every_steps: int = 10,
    new_head: bool = False,
    on_step: Callable[[dict], None] | None = None,
    selection_seed: int | None = None,
) -> TrialResult:
    """`reset_best`: after restoring another trial's state (PBT), judge "best" afresh. `log_every_steps`: a curve point
    (loss, learning rate) every so many optimizer steps and at each evaluation. `new_head`: `model_path` is another
    task's checkpoint (intermediate-task transfer): its encoder, a new head. `on_step(info)`: where the epoch stands,
    after every optimizer step. `selection_seed`: the kept epoch is the best on its split-half selection half.
    `final_state` False: no training state at the last evaluation point (only PBT continues a finished trial)."""
    started = time.perf_counter()
    hp, rank, world = start_trial(hp, seed, threads)  # hp.precision: `auto` resolved for this device
    tokenizer, model, engine, schedule, trainable, total_steps, progress = _prepare(
        hp, model_path, seed, data, rank, world, trust_remote_code, new_head, resume_from, reset_best
    )
    half = selection_half(data, selection_seed)
    setup = RankSetup(tokenizer.pad_token_id, hp.eval_batch_size, rank, world, engine.device, pad_multiple(engine))
    checkpoint_meta = {
        **(meta or {}), "model_path": model_path, "seed": seed, "init_seed": init_seed_of(hp.to_dict(), seed),
        "training": hp.to_dict(), "selection_seed": selection_seed if half else None,  # what chooses the kept epoch
    }  # fmt: skip
    trial = _Trial(hp, data, half, setup, tokenizer, workdir, report, checkpoint_meta, save_state, final_state)
    loss_fn, resumed_at_end = loss_function(data.task, label_range_of(model)), progress.epoch >= hp.epochs
    micro_parts = world * hp.gradient_accumulation_steps

    for epoch in range(progress.epoch, hp.epochs):
        if (wanted := _trainable(hp, model, epoch)) != trainable:
            engine, schedule = _rebuild_engine(engine, schedule, model, hp, wanted, total_steps, world)
            trainable = wanted
        engine.train()
        batches = global_batches(data.train.lengths, hp.batch_size, seed, epoch, hp.group_by_length, micro_parts)
        window_start, window_samples, losses = time.perf_counter(), 0, []
        curve, logged = [], 0  # the points since the last report; `losses[logged:]` are not in a point yet
        for b in range(progress.batch if epoch == progress.epoch else 0, len(batches)):
            step_losses = optimizer_step(
                engine, data.train, batches[b], setup, hp.gradient_accumulation_steps, task_objective(engine, loss_fn)
            )
            losses += step_losses
            stop_if_diverged(step_losses, setup.device, f"optimizer step {engine.global_steps} (epoch {epoch + 1})")
            window_samples += len(batches[b])
            progress.samples_seen += len(batches[b])
            if on_step is not None:
                on_step(
                    step_progress(epoch, hp.epochs, b + 1, len(batches), window_samples, window_start, hp.batch_size)
                )
            end_of_epoch = b == len(batches) - 1
            evaluating = end_of_epoch or bool(eval_every_steps and engine.global_steps % eval_every_steps == 0)
            if evaluating or engine.global_steps % log_every_steps == 0:
                curve.append(curve_point(engine, schedule, losses[logged:], setup.device))
                logged = len(losses)
            if not evaluating:
                continue
            window = (window_samples, time.perf_counter() - window_start)  # the training since the last point
            progress.epoch, progress.batch = (epoch + 1, 0) if end_of_epoch else (epoch, b + 1)
            at = epoch + 1 if end_of_epoch else round(epoch + (b + 1) / len(batches), 4)
            evaluation_point(trial, engine, schedule, model, progress, at, losses, curve, window)
            engine.train()
            window_start, window_samples, losses = time.perf_counter(), 0, []
            curve, logged = [], 0

    if resumed_at_end and progress.history:  # the state was saved after the last evaluation: report it again
        report({**progress.history[-1], **progress.best.fields(False)}, None)
    engine.destroy()
    return TrialResult(progress.history, progress.best.epoch, progress.best.score, time.perf_counter() - started)


@dataclass(frozen=True)
class _Trial:
    """What every evaluation point of one trial uses."""

    hp: TrainingConfig
    data: TaskData
    half: dict | None  # the selection half that chooses the kept epoch; None: all of dev
    setup: RankSetup
    tokenizer: object
    workdir: Path
    report: Reporter
    checkpoint_meta: dict  # model path, seed, settings, what chooses the epoch
    save_state: bool
    final_state: bool  # the state at the trial's last evaluation point too


def _prepare(hp, model_path, seed, data, rank, world, trust_remote_code, new_head, resume_from, reset_best):
    """Tokenizer, model, engine and schedule, seeded so that the same init seed gives the same head and the same
    seed the same run (or
    restored from a saved state): (tokenizer, model, engine, schedule, its trainable set, total steps, progress)."""
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    pairing = pair_setting(data, hp.pair_encoding)  # bi: the pair's texts apart, a score's training range
    with initialisation(hp, seed):  # the head and adapters from the init seed, then the trial seed again
        model = build_classifier(
            model_path, data.task.label_names, trust_remote_code, new_head, hp.pooling, *pairing,
            family=data.task.type,
        )  # fmt: skip
        if uses_lora(hp):
            model = add_adapters(model, hp, model_path)  # a peft model: adapters and the head train
    micro_parts = world * hp.gradient_accumulation_steps
    steps = len(global_batches(data.train.lengths, hp.batch_size, seed, 0, hp.group_by_length, micro_parts))
    progress = restored_progress(resume_from, reset_best)
    # A state saved at an epoch's end holds the optimizer of the epoch that ended (its trainable set).
    ended = progress.batch == 0 and progress.epoch > 0
    trainable = _trainable(hp, model, progress.epoch - 1 if ended else progress.epoch)
    engine, schedule = _build_engine(model, hp, trainable, steps * hp.epochs, world)
    if resume_from is not None:
        load_training_state(engine, schedule, Path(resume_from), rank, world, hp.zero_stage)
    return tokenizer, model, engine, schedule, trainable, steps * hp.epochs, progress


def evaluation_point(
    trial: _Trial, engine, schedule, model, progress: Progress, epoch: float, losses: list, curve: list, window
) -> None:
    """Evaluate on every dev split, keep the checkpoint when the selection score improves, save the full training
    state if asked, and report. `window`: (samples, seconds) trained since the last evaluation point."""
    hp, setup = trial.hp, trial.setup
    folder = trial.workdir / f"step-{engine.global_steps}"
    if setup.rank == 0:  # a retry's leftovers go before the evaluation's collectives let other ranks write here
        shutil.rmtree(folder, ignore_errors=True)
    engine.eval()
    evaluation = evaluate_task(engine, engine.module.config.num_labels, trial.data, trial.half, setup)
    compute = compute_fields(*window, setup.device, hp.precision)  # after evaluating: the peak memory includes it
    row = {
        **evaluation.fields(),
        "epoch": epoch,
        "train_loss": mean_over_ranks(losses, setup.device),
        "learning_rate": max(schedule.get_last_lr()),  # the head's, with layer-wise decay
        "trainable_parameters": trainable_parameter_count(model),  # with LoRA: adapters and head
        "augmented_examples": trial.data.augmented_examples,
        "optimizer_steps": engine.global_steps,
        "train_samples": progress.samples_seen,
        **compute,
        **encoding_fields(model),  # the pooling and pair encoding that ran
    }
    progress.history.append(row)
    is_best = progress.best.update(row["selection_score"], epoch)
    wrote = is_best and setup.rank == 0
    if wrote:
        meta = {**trial.checkpoint_meta, **encoding_fields(model)}
        save_best(folder / BEST_DIR, engine.module, trial.tokenizer, evaluation, trial.data.task, meta, epoch)
    saving = trial.save_state and (trial.final_state or progress.epoch < hp.epochs)
    if saving:
        state = dataclasses.asdict(progress)
        save_training_state(engine, schedule, folder / STATE_DIR, setup.rank, setup.world, hp.zero_stage, state)
        wrote = True
    fields = {**row, **progress.best.fields(is_best), CURVE_KEY: encode_curve(curve), "state_saved": saving}
    trial.report(fields, folder if wrote else None)


def restored_progress(resume_from: Path | None, reset_best: bool) -> Progress:
    """Where a saved state left the loop (a fresh start without one); `reset_best`: judge "best" afresh."""
    if resume_from is None:
        return Progress()
    client = read_client_state(Path(resume_from))
    if "best" not in client:  # a state saved by an earlier bench kept the best flat
        client["best"] = {"score": client["best_score"], "epoch": client["best_epoch"]}
    progress = Progress(**{k: client[k] for k in (f.name for f in dataclasses.fields(Progress))})
    progress.best = Best() if reset_best else Best(**progress.best)
    return progress


def optimizer_step(engine, split: EncodedSplit, batch: np.ndarray, setup: RankSetup, accumulation: int, objective):
    """One optimizer step on this rank's micro-batches of the global `batch`; their losses. `objective(inputs,
    labels)` gives a micro-batch's loss and the term to back-propagate (the loss itself, in a single-task trial).
    Clipping, the optimizer and the schedule step inside the engine, at the accumulation boundary."""
    losses = []
    for micro in rank_micro_batches(batch, split.lengths, setup.rank, setup.world, accumulation):
        inputs = {k: v.to(setup.device) for k, v in collate(split, micro, setup.pad_id, setup.pad_multiple).items()}
        targets = inputs.pop(TARGETS, None)  # tagging: a label per token; QA: each window's answer span
        labels = targets if targets is not None else torch.from_numpy(split.labels[micro]).to(setup.device)
        loss, term = objective(inputs, labels)
        engine.backward(term)
        engine.step()
        losses.append(loss.item())
    return losses


def task_objective(engine, loss_fn):
    """A single-task trial's objective for `optimizer_step`: the task's loss."""

    def objective(inputs: dict, labels: torch.Tensor):
        loss = loss_fn(output_logits(engine(**inputs)), labels)
        return loss, loss

    return objective


def curve_point(engine, schedule, losses: list[float], device) -> dict:
    """A point of the training curve: the mean loss over the ranks' steps since the last point, the head's rate."""
    return {
        "step": engine.global_steps,
        "train_loss": mean_over_ranks(losses, device),
        "learning_rate": max(schedule.get_last_lr()),
    }


def pad_multiple(engine) -> int:
    """Pad batches to a multiple of 8 on GPUs (tensor cores); on CPUs padding only costs."""
    return 8 if engine.device.type == "cuda" else 1


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
    # Imported here for start-up speed (deepspeed).
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
    # Imported here for start-up speed (transformers).
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
    reset_peak_memory()  # a reused Tune actor's peak would otherwise be the largest of all its trials
    return hp, rank, world


@contextlib.contextmanager
def initialisation(hp: TrainingConfig, seed: int):
    """Weights built inside (a new head, LoRA adapters) are drawn from torch's RNG seeded with `training.init_seed`;
    then the trial seed reseeds everything, so dropout and data order follow the trial seed alone. A null init
    seed draws them from the trial seed's RNG as `start_trial` left it (each seed its own head)."""
    # Imported here for start-up speed (transformers).
    from transformers import set_seed

    if hp.init_seed is None:
        yield
        return
    torch.manual_seed(hp.init_seed)
    yield
    set_seed(seed)


def step_progress(epoch: int, epochs: int, step: int, steps: int, samples: int, since: float, batch: int) -> dict:
    """Where a trial stands within its epoch (for the live display): 1-based epoch and step, samples/s since the
    last evaluation, and the training time left at that rate (evaluations not counted)."""
    seconds = time.perf_counter() - since
    rate = samples / seconds if seconds > 0 else None
    steps_left = (steps - step) + (epochs - epoch - 1) * steps
    return {"epoch": epoch + 1, "epochs": epochs, "step": step, "steps": steps, "samples_per_s": rate,
            "seconds_left": steps_left * batch / rate if rate else None}  # fmt: skip
