"""What the single-task and multi-task loops share below the loop: the loss, values across ranks, peak memory."""

from __future__ import annotations

import math
import resource
from pathlib import Path

import torch
import torch.distributed as dist

from benchmark.common.errors import TrialDiverged
from tasks.spec import TaskSpec, TaskType
from tasks.words import IGNORE


def loss_function(task: TaskSpec, label_range: tuple[float, float] | None = None):
    """`task`'s loss: cross-entropy for classes, mean squared error for a score; computed in float32 whatever the
    precision. Extractive QA: the mean of the start's and the end's cross-entropy over a window's tokens, as
    transformers' question-answering heads compute it.
    `label_range` (a bi-encoder's score, benchmark/train/pair_encoding.py): the error of the prediction and label
    both scaled by it to [0, 1], as sentence-transformers' CosineSimilarityLoss (the cosine against the label)."""
    regression = task.is_regression
    if task.type is TaskType.EXTRACTIVE_QA:
        return lambda logits, targets: (
            (
                torch.nn.functional.cross_entropy(logits[..., 0].float(), targets[:, 0])
                + torch.nn.functional.cross_entropy(logits[..., 1].float(), targets[:, 1])
            )
            / 2
        )
    if regression and label_range is not None:
        lo, span = label_range[0], label_range[1] - label_range[0]
        return lambda logits, labels: torch.nn.functional.mse_loss(
            (logits.squeeze(-1).float() - lo) / span, (labels.float() - lo) / span
        )
    if regression:
        return lambda logits, labels: torch.nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
    # Classes per example, or per token (tagging: IGNORE marks the tokens that are no word's first).
    return lambda logits, labels: torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE
    )


def output_logits(outputs):
    """A head's logits: transformers' `logits`, or a span head's start and end logits as (batch, tokens, 2)."""
    if getattr(outputs, "start_logits", None) is not None:
        return torch.stack([outputs.start_logits, outputs.end_logits], dim=-1)
    return outputs.logits


def all_gather(obj, world: int) -> list:
    """Every rank's `obj`, in rank order."""
    if world == 1:
        return [obj]

    gathered = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def sum_over_ranks(value: float, device: torch.device) -> float:
    """`value` summed over the ranks of the process group (itself with one rank)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total[0])


def stop_if_diverged(losses: list[float], device: torch.device, where: str) -> None:
    """Raise TrialDiverged on every rank at once when any rank's loss of this step is not finite."""
    if sum_over_ranks(sum(not math.isfinite(x) for x in losses), device):
        raise TrialDiverged(f"loss became {losses[-1]} at {where}")


def mean_over_ranks(values: list[float], device: torch.device) -> float:
    """The mean of every rank's `values` together."""
    total, count = sum_over_ranks(sum(values), device), sum_over_ranks(len(values), device)
    return total / max(1.0, count)


STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def reset_peak_memory() -> None:
    """Start this trial's peak afresh: the GPU's allocation peak, and on Linux the resident set's high-water mark
    (writing 5 to clear_refs resets it; getrusage's ru_maxrss cannot be reset)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        CLEAR_REFS.write_text("5")
    except OSError:  # not Linux, or a kernel without it: the process's peak since it started
        pass


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since reset_peak_memory: the GPU's allocations on CUDA, else the resident set (VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        line = next(x for x in STATUS.read_text().splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024  # kB
    except (OSError, StopIteration, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
