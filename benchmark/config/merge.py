"""What to merge: the suite's `merge:` section (cross-task merging of single-task checkpoints), checked whole."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.common.errors import InputError
from benchmark.common.schema import suggest

MERGE_METHODS = ("task_arithmetic", "ties")


@dataclass
class MergeConfig:
    methods: list[str] = field(default_factory=list)  # empty: `bench run` merges nothing
    scales: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 1.0])  # the λ grid, chosen on validation
    ties_density: float = 0.2  # TIES keeps this share of each task vector's entries (largest first)
    tasks: list[str] | None = None  # null: every task of the suite


@dataclass(frozen=True)
class MergeSettings:
    methods: tuple[str, ...]
    scales: tuple[float, ...]
    ties_density: float
    tasks: tuple[str, ...]

    def to_dict(self) -> dict:
        return {
            "methods": list(self.methods),
            "scales": list(self.scales),
            "ties_density": self.ties_density,
            "tasks": list(self.tasks),
        }


def check_merge(config: MergeConfig, suite_tasks: list[str], where: str = "merge") -> MergeSettings:
    """Refuse unknown or repeated methods, scales outside (0, 2], a density outside (0, 1], unknown tasks, and
    a merge of fewer than two tasks."""
    for i, method in enumerate(config.methods):
        if method not in MERGE_METHODS:
            raise InputError(
                f"{where}.methods[{i}]",
                f"unknown merge method '{method}'"
                + suggest(method, MERGE_METHODS)
                + f"; methods are {', '.join(MERGE_METHODS)}",
            )
    if len(set(config.methods)) != len(config.methods):
        raise InputError(f"{where}.methods", "repeats a method")
    if not config.scales:
        raise InputError(f"{where}.scales", "the list is empty; give at least one λ in (0, 2]")
    for i, scale in enumerate(config.scales):
        if not 0 < scale <= 2:
            raise InputError(f"{where}.scales[{i}]", f"must be in (0, 2], got {scale}")
    if len(set(config.scales)) != len(config.scales):
        raise InputError(f"{where}.scales", "repeats a value")
    if not 0 < config.ties_density <= 1:
        raise InputError(f"{where}.ties_density", f"must be in (0, 1], got {config.ties_density}")
    tasks = list(suite_tasks) if config.tasks is None else list(config.tasks)
    for i, task in enumerate(tasks):
        if task not in suite_tasks:
            raise InputError(
                f"{where}.tasks[{i}]", f"'{task}' is not a task of this suite" + suggest(task, suite_tasks)
            )
    if len(set(tasks)) != len(tasks):
        raise InputError(f"{where}.tasks", "repeats a task")
    if config.methods and len(tasks) < 2:
        raise InputError(
            f"{where}.tasks" if config.tasks is not None else "tasks",
            f"merging needs at least two tasks, got {len(tasks)}: {', '.join(tasks) or 'none'}",
        )
    return MergeSettings(
        tuple(config.methods), tuple(float(s) for s in config.scales), float(config.ties_density), tuple(tasks)
    )
