"""What to ensemble: the suite's `ensemble:` section, also what `bench ensemble`'s flags override."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.common.errors import InputError
from benchmark.common.schema import suggest

PREDICTION_METHODS = ("mean_prob", "vote", "greedy")  # combine saved dev logits; no model runs
SOUP_METHODS = ("soup_uniform", "soup_greedy")  # average weights into one model, then run it on dev
METHODS = PREDICTION_METHODS + SOUP_METHODS


@dataclass
class EnsembleConfig:
    methods: list[str] = field(default_factory=list)  # empty: `bench run` builds no ensembles
    # The candidate pool of each task: its top k checkpoints by selection-half score. A list builds every
    # method once per k; null: every checkpoint of the task.
    k: int | list[int | None] | None = None
    split_seed: int = 0  # which examples of each dev set go to which half


@dataclass(frozen=True)
class EnsembleSettings:
    """An `EnsembleConfig` checked and flattened: pool sizes as a list, None meaning every candidate."""

    methods: tuple[str, ...]
    pool_sizes: tuple[int | None, ...]
    split_seed: int

    def to_dict(self) -> dict:
        return {"methods": list(self.methods), "k": list(self.pool_sizes), "split_seed": self.split_seed}


def check_ensemble(
    config: EnsembleConfig, where: str = "ensemble", candidates_per_task: int | None = None, base_models: int = 1
) -> EnsembleSettings:
    """Refuse unknown or repeated methods, bad pool sizes and seeds, and soups over several base models, for the suite
    and for `bench ensemble`'s flags alike; `candidates_per_task` is known when a suite is checked."""
    for i, method in enumerate(config.methods):
        if method not in METHODS:
            raise InputError(
                f"{where}.methods[{i}]",
                f"unknown method '{method}'" + suggest(method, METHODS) + f"; methods are {', '.join(METHODS)}",
            )
    if len(set(config.methods)) != len(config.methods):
        raise InputError(f"{where}.methods", "repeats a method")
    sizes = config.k if isinstance(config.k, list) else [config.k]
    if not sizes:
        raise InputError(f"{where}.k", "the list is empty; use null for every checkpoint")
    for k in sizes:
        if k is not None and k < 1:
            raise InputError(f"{where}.k", f"must be at least 1, got {k}")
        if k is not None and candidates_per_task is not None and k > candidates_per_task:
            raise InputError(
                f"{where}.k",
                f"{k} is larger than the {candidates_per_task} checkpoints per task "
                "this suite makes (models x grid points x seeds)",
            )
    if len(set(sizes)) != len(sizes):
        raise InputError(f"{where}.k", "repeats a value")
    if config.split_seed < 0:
        raise InputError(f"{where}.split_seed", f"must be at least 0, got {config.split_seed}")
    soups = [m for m in config.methods if m in SOUP_METHODS]
    if soups and base_models > 1:
        raise InputError(
            f"{where}.methods",
            f"{soups[0]} averages weights fine-tuned from one base model, and this "
            f"suite lists {base_models}; use mean_prob, vote or greedy to combine models",
        )
    return EnsembleSettings(tuple(config.methods), tuple(sizes), config.split_seed)
