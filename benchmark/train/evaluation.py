"""The evaluation point both training loops share (single-task `trainer.train`, joint `multitask.train_multitask`):
score a task's dev splits, keep the checkpoint when the selection score improves, describe the compute, report.

Which score keeps an epoch: the selection half's where the split-half protocol reports on the other half of dev
(`selection_half`), else the whole dev score; a task with a labelled test split chooses on all of validation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.common.hardware import device_name
from benchmark.train.checkpoints import save_checkpoint
from benchmark.train.inference import batched_logits, in_examples
from benchmark.train.steps import all_gather, peak_memory_mb
from tasks.encoding import EncodedSplit, TaskData
from tasks.metrics import OBJECTIVE, compute_metrics, task_score
from tasks.spec import TaskSpec
from tasks.splits import score_on, split_dev


@dataclass(frozen=True)
class RankSetup:
    """What a rank needs to batch and place examples: the pad token, the evaluation batch size, which rank of how
    many, the device, and the multiple that batches are padded to."""

    pad_id: int
    batch_size: int
    rank: int
    world: int
    device: torch.device
    pad_multiple: int


@dataclass
class Evaluation:
    """One task's dev splits scored once: its metrics, task score, the score that chooses, and the logits."""

    metrics: dict[str, float]
    score: float  # the task score (GLUE's mean of its metrics)
    selection_score: float  # what keeps the epoch (`selection_half`)
    logits: dict[str, np.ndarray]  # per dev split, in file order
    labels: dict[str, np.ndarray]
    seconds: float
    examples: int

    def scores(self) -> dict:
        """The task score, the score that chooses, and each metric."""
        return {OBJECTIVE: self.score, "selection_score": self.selection_score, **self.metrics}

    def fields(self) -> dict:
        """The evaluation's part of a reported row: its scores and how long it took."""
        return {**self.scores(), "eval_seconds": self.seconds, "eval_samples_per_s": self.examples / self.seconds}


@dataclass
class Best:
    """The best selection score so far and the epoch that had it (fractional for evaluations within an epoch)."""

    score: float = -math.inf
    epoch: float | None = None

    def update(self, score: float, epoch: float) -> bool:
        """Keep `score` if it beats the best so far; True if it did."""
        if score > self.score:
            self.score, self.epoch = score, epoch
            return True
        return False

    def fields(self, is_best: bool) -> dict:
        """A reported row's part: whether this evaluation is the best so far, and the best so far."""
        return {"is_best": is_best, "best_epoch": self.epoch, "best_score": self.score}


def selection_half(data: TaskData, seed: int | None) -> dict[str, np.ndarray] | None:
    """The dev examples that choose the kept epoch: with `seed`, the split-half protocol's selection half, so that
    ensembles reporting on the other half report on data that chose nothing; else (None) the whole dev set. A task
    with a labelled test split chooses on all of validation: test reports."""
    if seed is None or data.task.final_test is not None:
        return None
    return split_dev(data.task, {s: sp.examples for s, sp in data.eval_splits.items()}, seed).selection


def evaluate_task(model, width: int, data: TaskData, half: dict | None, setup: RankSetup) -> Evaluation:
    """Score `model` (in eval mode; `width` outputs) on every dev split of `data`."""
    started = time.perf_counter()
    logits = {s: predict_split(model, width, split, setup) for s, split in data.eval_splits.items()}
    labels = {s: split.labels for s, split in data.eval_splits.items()}
    metrics = compute_metrics(data.task, logits, labels)
    score = task_score(metrics, data.task)
    chooser = score_on(data.task, logits, labels, half)[1] if half else score
    examples = sum(s.examples for s in data.eval_splits.values())
    return Evaluation(metrics, score, chooser, logits, labels, time.perf_counter() - started, examples)


def predict_split(model, width: int, split: EncodedSplit, setup: RankSetup) -> np.ndarray:
    """Logits of `model` (in eval mode) for every example of `split`, in file order. Ranks share the work and
    exchange results."""
    order = np.argsort(-split.lengths, kind="stable")  # similar lengths together: less padding
    mine = order[setup.rank :: setup.world]
    local = (
        mine,
        batched_logits(model, split, mine, setup.pad_id, setup.batch_size, setup.device, width, setup.pad_multiple),
    )
    gathered = all_gather(local, setup.world)
    rows = np.concatenate([idx for idx, _ in gathered])
    return in_examples(split, np.concatenate([values for _, values in gathered]), rows)


def compute_fields(samples: int, seconds: float, device: torch.device, precision: str) -> dict:
    """What a reported row says of the training since the last evaluation point, and of the device."""
    return {
        "train_seconds": seconds,
        "train_samples_per_s": samples / seconds,
        "peak_memory_mb": peak_memory_mb(device),
        "train_precision": precision,  # not `precision`: that is a tagging task's metric
        "device": device_name(),
    }


def save_best(folder: Path, module, tokenizer, evaluation: Evaluation, spec: TaskSpec, meta: dict, epoch: float):
    """The kept checkpoint: `module` as a Hugging Face folder with its dev predictions; `meta` (model path, seed,
    training settings, what chose the epoch, ...) gains the task, the epoch and its scores."""
    save_checkpoint(
        folder,
        module,
        tokenizer,
        evaluation.logits,
        evaluation.labels,
        {
            **meta,
            "task": spec.to_dict(),
            "epoch": epoch,
            "metrics": {k: evaluation.metrics[k] for k in spec.metric_keys()},
            OBJECTIVE: evaluation.score,
        },
    )
