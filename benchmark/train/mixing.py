"""The suite's `multitask:` section and the task samplers: which task each optimizer step trains on.

Each step trains one single-task batch. A sampler gives, for every epoch, the probability of each task; the
draws of an epoch come from a generator seeded by (seed, epoch), so every rank draws the same sequence and a
rerun draws it again. Pure numpy: the suite module imports this without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmark.common.errors import InputError
from benchmark.common.schema import suggest
from tasks.spec import TaskType

SAMPLERS = ("proportional", "uniform", "temperature", "annealed")
# A classification and a regression task differ in their label spaces, which the shared-head message names.
SENTENCE_FAMILIES = {TaskType.CLASSIFICATION, TaskType.REGRESSION}


@dataclass
class TwoStageConfig:
    """MT-DNN's second stage: each task fine-tuned alone from the encoder (and head) stage one exported for it."""

    enabled: bool = False
    training: dict[str, Any] = field(default_factory=dict)  # overrides of `training:` for stage two
    grid: dict[str, list[Any]] = field(default_factory=dict)  # stage two's own grid, crossed with each stage-one trial


@dataclass
class MultitaskConfig:
    tasks: list[str] = field(default_factory=list)  # task names from `tasks:`; empty: no multi-task trials
    sampler: str = "proportional"
    temperature: float = field(default=2.0, metadata={"min": 1.0})  # temperature; annealed: the last epoch's
    cap: int | None = field(default=None, metadata={"min": 1})  # count at most this many examples per task
    loss_weights: dict[str, float] = field(default_factory=dict)  # task -> weight (default 1)
    shared_heads: list[list[str]] = field(default_factory=list)  # groups of tasks that share one head
    steps_per_epoch: int | None = field(default=None, metadata={"min": 1})  # null: every task's batches once
    two_stage: TwoStageConfig = field(default_factory=TwoStageConfig)


@dataclass(frozen=True)
class Mixture:
    """What the training loop needs of the `multitask:` section, checked against the suite's tasks."""

    tasks: tuple[str, ...]
    sampler: str
    temperature: float
    cap: int | None
    loss_weights: dict[str, float]
    heads: dict[str, str]  # task -> head name (the first task of its sharing group)
    steps_per_epoch: int | None

    def to_dict(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "sampler": self.sampler,
            "temperature": self.temperature,
            "cap": self.cap,
            "loss_weights": dict(self.loss_weights),
            "heads": dict(self.heads),
            "steps_per_epoch": self.steps_per_epoch,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Mixture":
        return cls(
            tuple(d["tasks"]),
            d["sampler"],
            d["temperature"],
            d["cap"],
            dict(d["loss_weights"]),
            dict(d["heads"]),
            d["steps_per_epoch"],
        )

    def probabilities(self, sizes: dict[str, int], epoch: int, epochs: int) -> np.ndarray:
        return task_probabilities(
            self.sampler, [sizes[t] for t in self.tasks], self.temperature, self.cap, epoch, epochs
        )

    def epoch_steps(self, sizes: dict[str, int], batch_size: int) -> int:
        """An epoch: `steps_per_epoch` if the suite sets it, else as many steps as every task has batches."""
        return self.steps_per_epoch or sum(math.ceil(sizes[t] / batch_size) for t in self.tasks)

    def draws(self, sizes: dict[str, int], batch_size: int, seed: int, epoch: int, epochs: int) -> list[str]:
        """The task of each step of one epoch, in order."""
        rng = np.random.default_rng([seed, epoch, 1])  # its own stream: not the one that shuffles batches
        p = self.probabilities(sizes, epoch, epochs)
        return [self.tasks[i] for i in rng.choice(len(self.tasks), size=self.epoch_steps(sizes, batch_size), p=p)]


def task_probabilities(
    sampler: str, sizes: list[int], temperature: float, cap: int | None, epoch: int, epochs: int
) -> np.ndarray:
    """p_i ∝ n_i^(1/T), with n_i capped at `cap`. proportional: T = 1; uniform: T = ∞; annealed: 1/T moves linearly
    from 1 at the first epoch to 1/temperature at the last (from proportional toward uniform)."""
    n = np.asarray([min(s, cap) if cap else s for s in sizes], dtype=np.float64)
    if sampler == "proportional":
        exponent = 1.0
    elif sampler == "uniform":
        exponent = 0.0
    elif sampler == "temperature":
        exponent = 1.0 / temperature
    elif sampler == "annealed":
        progress = epoch / (epochs - 1) if epochs > 1 else 1.0
        exponent = 1.0 - progress * (1.0 - 1.0 / temperature)
    else:
        raise InputError(
            "multitask.sampler",
            f"unknown sampler '{sampler}'" + suggest(sampler, SAMPLERS) + f"; samplers are {', '.join(SAMPLERS)}",
        )
    weights = n**exponent
    return weights / weights.sum()


def check_multitask(config: MultitaskConfig, tasks: dict) -> Mixture | None:
    """`tasks`: the suite's TaskSpecs by name. None when the suite trains no tasks jointly."""
    if not config.tasks:
        if config.two_stage.enabled:
            raise InputError("multitask.two_stage", "needs multitask.tasks: the tasks stage one trains jointly")
        return None
    if config.sampler not in SAMPLERS:
        raise InputError(
            "multitask.sampler",
            f"unknown sampler '{config.sampler}'"
            + suggest(config.sampler, SAMPLERS)
            + f"; samplers are {', '.join(SAMPLERS)}",
        )
    for i, name in enumerate(config.tasks):
        if name not in tasks:
            raise InputError(f"multitask.tasks[{i}]", f"'{name}' is not one of the suite's tasks ({', '.join(tasks)})")
    if len(set(config.tasks)) != len(config.tasks):
        raise InputError("multitask.tasks", "lists a task twice")
    if len(config.tasks) < 2:
        raise InputError("multitask.tasks", "name at least two tasks to train jointly")
    for name, weight in config.loss_weights.items():
        if name not in config.tasks:
            raise InputError(f"multitask.loss_weights.{name}", "is not one of multitask.tasks")
        if weight <= 0:
            raise InputError(f"multitask.loss_weights.{name}", f"must be positive, got {weight}")
    heads = {t: t for t in config.tasks}
    for g, group in enumerate(config.shared_heads):
        where = f"multitask.shared_heads[{g}]"
        if len(group) < 2:
            raise InputError(where, "a sharing group names at least two tasks")
        for name in group:
            if name not in config.tasks:
                raise InputError(where, f"'{name}' is not one of multitask.tasks")
            if heads[name] != name:
                raise InputError(where, f"'{name}' is already in another sharing group")
        first = tasks[group[0]]
        for name in group[1:]:
            if tasks[name].type is not first.type and not {first.type, tasks[name].type} <= SENTENCE_FAMILIES:
                raise InputError(
                    where,
                    f"'{group[0]}' is a {first.type.value} task and '{name}' a {tasks[name].type.value} one; "
                    "only tasks of one family share a head",
                )
            if tasks[name].label_names != first.label_names:
                raise InputError(
                    where,
                    f"'{group[0]}' and '{name}' have different label spaces "
                    f"({_labels(first)} vs {_labels(tasks[name])}); only tasks with the same labels share a head",
                )
            heads[name] = group[0]
    return Mixture(
        tuple(config.tasks),
        config.sampler,
        config.temperature,
        config.cap,
        {t: float(config.loss_weights.get(t, 1.0)) for t in config.tasks},
        heads,
        config.steps_per_epoch,
    )


def _labels(task) -> str:
    return "regression" if task.label_names is None else "/".join(task.label_names)
