"""The suite's `search:` section: grid, sampled space, search algorithm, scheduler, fault tolerance.

Grid values and sampled distributions are checked against the training hyperparameters' own types and
ranges. Random samples are drawn here, from `search.sample_seed`, so the trial plan is explicit and a
resumed run draws the same configurations again.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from benchmark.common.errors import InputError
from benchmark.common.schema import check_value, suggest
from benchmark.train.hyperparams import TRAINING_KEYS, TrainingConfig

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
# What PBT may change in a running trial: the rest shapes the model, the data or the step count.
MUTABLE_KEYS = ("learning_rate", "weight_decay", "max_grad_norm", "adam_epsilon")


@dataclass
class SchedulerConfig:
    type: Literal["fifo", "asha", "hyperband", "pbt"] = "fifo"
    grace_period: int = field(default=1, metadata={"min": 1})  # asha: evaluations before a trial may stop
    reduction_factor: float = field(default=3.0, metadata={"min": 1.01})  # asha, hyperband
    brackets: int = field(default=1, metadata={"min": 1})  # asha
    perturbation_interval: int = field(default=1, metadata={"min": 1})  # pbt: evaluations between exploits
    quantile_fraction: float = field(default=0.25, metadata={"min": 0.0, "max": 0.5})  # pbt
    resample_probability: float = field(default=0.25, metadata={"min": 0.0, "max": 1.0})  # pbt


@dataclass
class SearchConfig:
    grid: dict[str, list[Any | None]] = field(default_factory=dict)  # null: e.g. lora_targets' family default
    space: dict[str, dict[str, list[Any | None]]] = field(default_factory=dict)  # key: {loguniform: [lo, hi]}, ...
    num_samples: int = field(default=1, metadata={"min": 1, "max": 100000})  # samples of `space` per grid point
    algorithm: Literal["grid", "random", "optuna"] | None = None  # null: random with a space, else grid
    sample_seed: int = field(default=0, metadata={"min": 0, "max": 2**32 - 1})  # numpy and Ray seeds are 32-bit
    seeds: list[int] = field(default_factory=lambda: [1], metadata={"nonempty": True})
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    eval_every_steps: int | None = field(default=None, metadata={"min": 1})  # also evaluate every N optimizer steps
    log_every_steps: int = field(default=10, metadata={"min": 1})  # a training-curve point every N optimizer steps
    max_failures: int = field(default=1, metadata={"min": 0, "max": 100})  # retries of a crashed trial
    save_state: bool = True  # full training state at every evaluation: resume mid-trial, PBT, retries

    @property
    def resolved_algorithm(self) -> str:
        return self.algorithm or ("random" if self.space else "grid")


def check_grid(grid: dict, where: str) -> None:
    """Each grid key a training hyperparameter, each value of its type and range, none repeated (in place)."""
    hints = typing.get_type_hints(TrainingConfig)
    metas = {f.name: f.metadata for f in dataclasses.fields(TrainingConfig)}
    for key, values in grid.items():
        at = f"{where}.{key}"
        if key not in TRAINING_KEYS:
            raise InputError(at, "not a training hyperparameter" + suggest(key, TRAINING_KEYS))
        if not values:
            raise InputError(at, "the grid has no values for this key")
        checked = [check_value(hints[key], v, f"{at}[{i}]", metas[key]) for i, v in enumerate(values)]
        if len(set(map(repr, checked))) != len(checked):
            raise InputError(at, "repeats a value")
        grid[key] = checked


def check_search(search: SearchConfig) -> None:
    hints = typing.get_type_hints(TrainingConfig)
    metas = {f.name: f.metadata for f in dataclasses.fields(TrainingConfig)}
    check_grid(search.grid, "search.grid")
    for key, spec in search.space.items():
        where = f"search.space.{key}"
        if key not in TRAINING_KEYS:
            raise InputError(where, "not a training hyperparameter" + suggest(key, TRAINING_KEYS))
        if key in search.grid:
            raise InputError(where, "is also a grid key; give each hyperparameter one place")
        search.space[key] = _check_distribution(spec, where, hints[key], metas[key])
    algorithm = search.resolved_algorithm
    if algorithm == "grid" and search.space:
        raise InputError("search.algorithm", "grid cannot sample search.space; use random or optuna")
    if algorithm != "grid" and not search.space:
        raise InputError("search.space", f"algorithm {algorithm} needs a space to sample")
    if algorithm == "grid" and search.num_samples != 1:
        raise InputError("search.num_samples", "only applies to a sampled space")
    if algorithm == "optuna":
        try:
            # optuna: an optional dependency, imported only where it is used.
            import optuna  # noqa: F401
        except ImportError:
            raise InputError("search.algorithm", "optuna is not installed; pip install 'bench[optuna]'") from None
        augmenting = [k for k in search.space if k.startswith("augment_")]
        if augmenting:  # the data is augmented and tokenised before any trial starts
            raise InputError(
                f"search.space.{augmenting[0]}",
                "optuna chooses values as trials start, after the data "
                "is prepared; put augmentation keys in search.grid",
            )
    seeds = search.seeds
    if len(set(seeds)) != len(seeds):
        raise InputError("search.seeds", "repeats a seed")
    if any(s < 0 or s >= 2**32 for s in seeds):
        raise InputError("search.seeds", "seeds must lie in [0, 2^32)")
    scheduler = search.scheduler.type
    if scheduler == "pbt":
        varied = {**search.grid, **search.space}
        mutable = [k for k in varied if k in MUTABLE_KEYS]
        if not mutable:
            raise InputError(
                "search.scheduler", f"pbt needs a grid or space over one of {', '.join(MUTABLE_KEYS)} to perturb"
            )
    if scheduler in ("pbt", "hyperband") and not search.save_state:
        raise InputError(
            "search.save_state", f"{scheduler} pauses and restores trials from saved states; it needs save_state: true"
        )
    if scheduler == "pbt" and algorithm == "optuna":
        raise InputError("search.scheduler", "pbt chooses its own configurations; use algorithm grid or random with it")


def _check_distribution(spec: Any, where: str, hint, meta) -> dict:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InputError(
            where, f"give one distribution, e.g. {{loguniform: [1.0e-5, 1.0e-4]}}; one of {', '.join(DISTRIBUTIONS)}"
        )
    ((kind, args),) = spec.items()
    if kind not in DISTRIBUTIONS:
        raise InputError(
            f"{where}.{kind}",
            "unknown distribution" + suggest(kind, DISTRIBUTIONS) + f"; use one of {', '.join(DISTRIBUTIONS)}",
        )
    if not isinstance(args, list) or not args:
        raise InputError(f"{where}.{kind}", "expected a non-empty list")
    if kind == "choice":
        values = [check_value(hint, v, f"{where}.choice[{i}]", meta) for i, v in enumerate(args)]
        return {"choice": values}
    if len(args) != 2:
        raise InputError(f"{where}.{kind}", "expected [low, high]")
    if kind == "randint" and hint is not int:
        raise InputError(f"{where}.randint", "randint is for integer hyperparameters")
    if kind in ("uniform", "loguniform") and hint is not float:
        raise InputError(f"{where}.{kind}", f"{kind} is for real-valued hyperparameters; use choice or randint")
    low, high = (check_value(hint, v, f"{where}.{kind}[{i}]", meta) for i, v in enumerate(args))
    if not low < high:
        raise InputError(f"{where}.{kind}", f"low ({low}) must be below high ({high})")
    if kind == "loguniform" and low <= 0:
        raise InputError(f"{where}.loguniform", "bounds must be positive")
    if kind == "randint":  # [low, high) as in Ray Tune; the largest value drawn must still be valid
        check_value(hint, high - 1, f"{where}.randint[1]", meta)
    return {kind: [low, high]}


def sample_space(space: dict, num_samples: int, seed: int) -> list[dict]:
    """Draw `num_samples` configurations, reproducibly. Keys are drawn in sorted order."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(num_samples):
        point = {}
        for key in sorted(space):
            ((kind, args),) = space[key].items()
            if kind == "choice":
                point[key] = args[int(rng.integers(len(args)))]
            elif kind == "uniform":
                point[key] = float(rng.uniform(args[0], args[1]))
            elif kind == "loguniform":
                point[key] = float(math.exp(rng.uniform(math.log(args[0]), math.log(args[1]))))
            else:
                point[key] = int(rng.integers(args[0], args[1]))
        samples.append(point)
    return samples
