"""The configurations a suite expands into: grid points, random samples of the search space, and stage two's
points, each with the training hyperparameters it runs. The suite stays data; this is where it is expanded."""

from __future__ import annotations

import itertools
from typing import Any

from benchmark.common.errors import InputError
from benchmark.config.search import SearchConfig, sample_space
from benchmark.config.suite import Suite, SuiteConfig
from benchmark.train.hyperparams import TrainingConfig
from tasks.augment import Augmentation, check_augmentation


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def points(search: SearchConfig) -> list[dict[str, Any]]:
    """The configurations the plan runs: grid points, each crossed with the random samples of `space`."""
    if search.resolved_algorithm != "random":
        return grid_points(search.grid)
    samples = sample_space(search.space, search.num_samples, search.sample_seed)
    return [{**point, **sample, "sample": i} for point in grid_points(search.grid) for i, sample in enumerate(samples)]


def training_for(config: SuiteConfig, point: dict[str, Any]) -> TrainingConfig:
    return config.training.replace(**{k: v for k, v in point.items() if k not in ("sample", "optuna")})


def stage_two_points(config: SuiteConfig) -> list[dict[str, Any]]:
    """Stage two's own grid points (one empty point without a grid)."""
    return grid_points(config.multitask.two_stage.grid)


def stage_two_training_for(
    config: SuiteConfig, point: dict[str, Any], stage_two_point: dict[str, Any]
) -> TrainingConfig:
    """Stage two of two-stage training: the stage-one grid point's training, with `multitask.two_stage.training`
    and then stage two's own grid point on top."""
    return training_for(config, point).replace(**{**config.multitask.two_stage.training, **stage_two_point})


def trials_per_task(suite: Suite) -> int:
    """How many checkpoints the plan makes for each task (for the task with fewest: joint and two-stage
    trials add some to the multi-task tasks only). Optuna studies run with the first seed."""
    search = suite.config.search
    if search.resolved_algorithm == "optuna":
        return len(suite.models) * len(grid_points(search.grid)) * search.num_samples
    singles = len(suite.models) * len(points(search)) * len(search.seeds)
    if suite.mixture is None or any(t.name not in suite.mixture.tasks for t in suite.tasks):
        return singles
    stage_two = len(stage_two_points(suite.config)) if suite.config.multitask.two_stage.enabled else 0
    return singles * (2 + stage_two)  # each joint trial exports one per task, then stage two per its points


def check_expansion(suite: Suite) -> None:
    """What only the expanded suite shows: each point's augmentation, and ensemble pools the plan can fill."""
    for point in points(suite.config.search):
        check_augmentation(Augmentation.of(training_for(suite.config, point).to_dict()))
    made = trials_per_task(suite)
    for k in suite.ensemble.pool_sizes if suite.ensemble else ():
        if k is not None and k > made:
            raise InputError(
                "ensemble.k", f"{k} is larger than the {made} checkpoints per task this suite makes "
                "(models x grid points x seeds)"
            )  # fmt: skip
