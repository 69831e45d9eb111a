"""One multi-task trial: a shared encoder with one head per task (or per group of tasks that share a label
space), trained on single-task batches that a sampler picks, and evaluated on every task after each epoch.

The model is a set of ordinary Hugging Face models, one per head, each of its task's family (a sequence
classifier, a token classifier for tagging, a multiple-choice model), that all hold the same encoder module.
Each task keeps its own batch shape: a step trains one task's batch through its own head. So a task's export is
simply its head's model, saved with `save_checkpoint` like a single-task checkpoint: it loads with the family's
`AutoModelFor...` class and gives the logits this trial scored.

Heads that a step does not train must not move. Two things make sure of it:
- every parameter takes part in every backward pass (with weight zero where the step's forward does not reach
  it: the other heads, and in a tagging step the pooler), so each parameter gets a gradient and
  DeepSpeed's ZeRO reduce hooks fire for all of them on every rank;
- each head has its own optimizer groups, whose learning rate is set to zero for the step (the schedule sets
  it back after the step), so neither Adam's moments nor decoupled weight decay change its weights.
  Its Adam moments still decay, as after a zero gradient.

A plain function like `trainer.train`; Ray is optional. It saves no training state: a retried multi-task
trial starts over, and schedulers that pause or clone trials (HyperBand, PBT) are refused for it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmark.train.batching import global_batches
from benchmark.train.checkpoints import BEST_DIR
from benchmark.train.engine import adamw_over, decay_groups, initialize_engine, linear_schedule
from benchmark.train.evaluation import Best, RankSetup, compute_fields, evaluate_task, save_best, selection_half
from benchmark.train.families import TOKEN_HEADS, model_head_family
from benchmark.train.hyperparams import TrainingConfig, init_seed_of
from benchmark.train.inference import trained_precision
from benchmark.train.mixing import Mixture
from benchmark.train.modeling import build_classifier, load_tokenizer
from benchmark.train.pair_encoding import encoding_fields
from benchmark.train.steps import loss_function, mean_over_ranks, stop_if_diverged
from benchmark.train.trainer import Reporter, initialisation, optimizer_step, pad_multiple, start_trial, step_progress
from tasks.encoding import TaskData
from tasks.metrics import OBJECTIVE


class MultiTaskModel(torch.nn.Module):
    """`classifiers`: head name -> a Hugging Face model of its task's family; all of them hold one encoder module."""

    def __init__(self, classifiers: dict, heads: dict[str, str]):
        super().__init__()
        self.classifiers = torch.nn.ModuleDict(classifiers)
        self.heads = dict(heads)  # task -> head name

    def classifier(self, task: str):
        return self.classifiers[self.heads[task]]

    def forward(self, task: str, **inputs) -> torch.Tensor:
        return self.classifier(task)(**inputs).logits

    def head_parameters(self, head: str) -> list[tuple[str, torch.nn.Parameter]]:
        """The head's own parameters: its classifier's, less the shared encoder's."""
        clf = self.classifiers[head]
        prefix = clf.base_model_prefix + "."
        return [(n, p) for n, p in clf.named_parameters() if not n.startswith(prefix)]

    def encoder_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        first = next(iter(self.classifiers.values()))
        return list(first.base_model.named_parameters())


def build_multitask_model(
    path: str,
    tasks: dict,
    heads: dict[str, str],
    trust_remote_code: bool = False,
    pooling: str | None = None,
    init_seed: int | None = None,
) -> MultiTaskModel:
    """`tasks`: name -> TaskSpec. Each head is built as the spine builds a single-task model (so it is that
    architecture's own classification head); the second and later ones are then given the first one's encoder.
    With `init_seed`, torch's RNG is seeded with it before each head, so every head starts as a single-task trial's
    of that init seed does (and a soup may join their checkpoints); without, the heads draw one after another."""
    classifiers = {}
    for head in dict.fromkeys(heads[t] for t in tasks):
        if init_seed is not None:
            torch.manual_seed(init_seed)
        spec = tasks[head]
        classifiers[head] = build_classifier(
            path, spec.label_names, trust_remote_code, pooling=pooling, family=spec.type
        )
    # The shared encoder is a pooled head's: a token classifier's encoder has no pooler (its first position, which
    # mean pooling overwrites, is [CLS], which tagging ignores).
    encoder = _pooled_head(classifiers).base_model
    for clf in classifiers.values():
        if clf.base_model is not encoder:
            setattr(clf, clf.base_model_prefix, encoder)
    return MultiTaskModel(classifiers, {t: heads[t] for t in tasks})


def _pooled_head(classifiers):
    """A head that pools the sequence (any but a token classifier's), else the first: the one whose encoder the
    heads share (it has the pooler), whose pooling is the trial's."""
    heads = list(classifiers.values())
    pooled = [h for h in heads if model_head_family(h) not in TOKEN_HEADS]
    return (pooled or heads)[0]


def multitask_adamw(model: MultiTaskModel, hp: TrainingConfig) -> torch.optim.Optimizer:
    """The encoder's groups, then each head's own groups, tagged with the head's name (see `rest_other_heads`)."""
    groups = decay_groups(model.encoder_parameters(), hp.weight_decay, head=None)
    for head in model.classifiers:
        groups += decay_groups(model.head_parameters(head), hp.weight_decay, head=head)
    return adamw_over(groups, hp)


def rest_other_heads(optimizer: torch.optim.Optimizer, head: str) -> None:
    """Zero learning rate for every head but `head`, for the coming optimizer step. The schedule sets every
    group's rate afresh after each step (LambdaLR computes it from the base rate), so this lasts one step."""
    for group in optimizer.param_groups:
        if group.get("head") not in (None, head):
            group["lr"] = 0.0


def _zero_weighted(model: MultiTaskModel) -> torch.Tensor:
    """0 x (every parameter): an exact zero gradient for each one that the step's forward does not reach (the
    other heads; the pooler, in a tagging step)."""
    return sum(p.sum() * 0.0 for p in model.parameters())


def train_step(
    engine,
    optimizer,
    task: str,
    head: str,
    split,
    batch: np.ndarray,
    weight: float,
    loss_fn,
    setup: RankSetup,
    accumulation: int,
) -> list[float]:
    """One optimizer step on one task's global batch (this rank's micro-batches of it); the other heads rest.
    Returns the micro-batches' (unweighted) losses."""
    rest_other_heads(optimizer, head)

    def objective(inputs: dict, labels: torch.Tensor):
        loss = loss_fn(engine(task=task, **inputs), labels)
        return loss, weight * loss + _zero_weighted(engine.module)

    return optimizer_step(engine, split, batch, setup, accumulation, objective)


class BatchStream:
    """One task's training batches, pass after pass over its data (each pass shuffled afresh)."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, group_by_length: bool, min_size: int):
        self.args = (lengths, batch_size, seed)
        self.group_by_length, self.min_size = group_by_length, min_size
        self.passes, self.batches = 0, []

    def next(self) -> np.ndarray:
        if not self.batches:
            lengths, batch_size, seed = self.args
            self.batches = global_batches(lengths, batch_size, seed, self.passes, self.group_by_length, self.min_size)
            self.passes += 1
        return self.batches.pop(0)


@dataclass
class MultitaskResult:
    epochs: list[dict]
    best_epoch: float | None  # of the mean task score
    best_score: float
    best_epochs: dict[str, float] = field(default_factory=dict)  # task -> its own best epoch
    best_scores: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


def train_multitask(
    hp: TrainingConfig,
    model_path: str,
    seed: int,
    data: dict[str, TaskData],
    mixture: Mixture,
    workdir: Path,
    report: Reporter,
    *,
    trust_remote_code: bool = False,
    meta: dict | None = None,
    threads: int | None = None,
    on_step: Callable[[dict], None] | None = None,
    selection_seed: int | None = None,
) -> MultitaskResult:
    """`report(row, folder)`: the row holds the mean task score as `score` and each task's metrics under
    `tasks`, with the samples and optimizer steps of its own batches so far (its share of the joint trial);
    `folder/best/<task>` holds the export of each task whose own dev score improved (judged on the selection half
    with `selection_seed`, as in `trainer.train`)."""
    started = time.perf_counter()
    hp, rank, world = start_trial(hp, seed, threads)  # hp.precision: `auto` resolved for this device
    specs = {t: data[t].task for t in mixture.tasks}
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    sizes = {t: len(data[t].train) for t in mixture.tasks}
    with initialisation(hp, seed):  # the heads from the init seed, then the trial seed again
        model = build_multitask_model(model_path, specs, mixture.heads, trust_remote_code, hp.pooling, hp.init_seed)
    optimizer = multitask_adamw(model, hp)
    schedule = linear_schedule(optimizer, mixture.epoch_steps(sizes, hp.batch_size) * hp.epochs, hp.warmup_ratio)
    engine = initialize_engine(model, optimizer, schedule, hp, world)
    micro_parts, device = world * hp.gradient_accumulation_steps, engine.device
    streams = {
        t: BatchStream(data[t].train.lengths, hp.batch_size, seed, hp.group_by_length, micro_parts)
        for t in mixture.tasks
    }
    losses_fn = {t: loss_function(specs[t]) for t in mixture.tasks}
    setup = RankSetup(tokenizer.pad_token_id, hp.eval_batch_size, rank, world, device, pad_multiple(engine))
    checkpoint_meta = {
        **(meta or {}), "model_path": model_path, "seed": seed, "training": hp.to_dict(),
        **encoding_fields(_pooled_head(model.classifiers)),
        "init_seed": init_seed_of(hp.to_dict(), seed),
    }  # fmt: skip
    joint = _Joint(
        hp, data, mixture, {t: selection_half(data[t], selection_seed) for t in mixture.tasks}, selection_seed,
        setup, tokenizer, workdir, report, {**checkpoint_meta, "multitask": mixture.to_dict()},
    )  # fmt: skip
    counts, history = _Counts(mixture.tasks), []

    for epoch in range(hp.epochs):
        engine.train()
        draws = mixture.draws(sizes, hp.batch_size, seed, epoch, hp.epochs)  # the same on every rank
        window_start, window_samples, losses = time.perf_counter(), 0, []
        task_losses = {t: [] for t in mixture.tasks}
        for step, task in enumerate(draws):
            # One optimizer step on one task's batch; the other heads rest.
            batch = streams[task].next()
            step_losses = train_step(
                engine, optimizer, task, mixture.heads[task], data[task].train, batch, mixture.loss_weights[task],
                losses_fn[task], setup, hp.gradient_accumulation_steps,
            )  # fmt: skip
            losses += step_losses
            task_losses[task] += step_losses
            where = f"optimizer step {engine.global_steps} (epoch {epoch + 1}, task {task})"
            stop_if_diverged(step_losses, device, where)
            window_samples += len(batch)
            counts.add(task, len(batch))
            if on_step is not None:
                on_step(
                    step_progress(epoch, hp.epochs, step + 1, len(draws), window_samples, window_start, hp.batch_size)
                )
        window = (window_samples, time.perf_counter() - window_start)  # the epoch's training
        history.append(epoch_end(joint, engine, schedule, epoch + 1, losses, task_losses, draws, counts, window))
    engine.destroy()
    return MultitaskResult(
        history,
        counts.best.epoch,
        counts.best.score,
        {t: b.epoch for t, b in counts.task_best.items() if b.epoch is not None},
        {t: b.score for t, b in counts.task_best.items()},
        time.perf_counter() - started,
    )


@dataclass(frozen=True)
class _Joint:
    """What every epoch's end of one joint trial uses."""

    hp: TrainingConfig
    data: dict[str, TaskData]
    mixture: Mixture
    halves: dict[str, dict | None]  # per task, the selection half that chooses its export; None: all of dev
    selection_seed: int | None
    setup: RankSetup
    tokenizer: object
    workdir: Path
    report: Reporter
    checkpoint_meta: dict  # model path, seed, settings, the mixture


class _Counts:
    """The joint trial's running totals: samples and optimizer steps, all and per task, and the bests so far
    (the mean task score's, and each task's own)."""

    def __init__(self, tasks: list[str]):
        self.samples = 0
        self.task_samples, self.task_steps = dict.fromkeys(tasks, 0), dict.fromkeys(tasks, 0)
        self.best, self.task_best = Best(), {t: Best() for t in tasks}

    def add(self, task: str, samples: int) -> None:
        self.samples += samples
        self.task_samples[task] += samples
        self.task_steps[task] += 1


def epoch_end(
    joint: _Joint, engine, schedule, epoch: int, losses: list, task_losses: dict, draws: list, counts, window
) -> dict:
    """Every task's dev sets, each task's export where its own selection score improved, the report; the row.
    `window`: (samples, seconds) of the epoch's training."""
    tasks, device, rank = joint.mixture.tasks, joint.setup.device, joint.setup.rank
    folder = joint.workdir / f"step-{engine.global_steps}"
    if rank == 0:  # a retry's leftovers go before the evaluation's collectives, as in the single-task loop
        shutil.rmtree(folder, ignore_errors=True)
    engine.eval()
    evaluations = {}
    for t in tasks:
        clf = engine.module.classifier(t)  # a head's module, outside the engine's forward: its autocast is not on
        with trained_precision(clf, joint.hp.precision):
            evaluations[t] = evaluate_task(clf, clf.config.num_labels, joint.data[t], joint.halves[t], joint.setup)
    per_task = {
        t: {
            **evaluations[t].scores(),
            "train_loss": mean_over_ranks(task_losses[t], device),
            "train_steps": draws.count(t),
            "train_samples": counts.task_samples[t],
            "optimizer_steps": counts.task_steps[t],
        }
        for t in tasks
    }
    eval_seconds = sum(e.seconds for e in evaluations.values())
    compute = compute_fields(*window, device, joint.hp.precision)  # after evaluating: the peak memory includes it
    row = {
        OBJECTIVE: float(np.mean([e.score for e in evaluations.values()])),
        "selection_score": float(np.mean([e.selection_score for e in evaluations.values()])),
        "tasks": per_task,
        "epoch": epoch,
        "train_loss": mean_over_ranks(losses, device),
        "learning_rate": schedule.get_last_lr()[0],
        "optimizer_steps": engine.global_steps,
        "train_samples": counts.samples,
        **compute,
        "eval_seconds": eval_seconds,
        "eval_samples_per_s": sum(e.examples for e in evaluations.values()) / eval_seconds,
        **encoding_fields(_pooled_head(engine.module.classifiers)),  # one encoder: its pooling is every pooled head's
    }
    is_best = counts.best.update(row["selection_score"], epoch)
    improved = [t for t in tasks if counts.task_best[t].update(evaluations[t].selection_score, epoch)]
    if improved and rank == 0:
        for t in improved:
            # A task's export: the shared encoder and its head, as it stands at that task's best epoch.
            meta = {**joint.checkpoint_meta, "selection_seed": joint.selection_seed if joint.halves[t] else None}
            clf, spec = engine.module.classifier(t), joint.data[t].task
            save_best(folder / BEST_DIR / t, clf, joint.tokenizer, evaluations[t], spec, meta, epoch)
    joint.report(
        {**row, **counts.best.fields(is_best), "improved": improved}, folder if improved and rank == 0 else None
    )
    return row
