"""The suite's `statistics:` section: settings of its leaderboard's statistics that a study fixes in advance."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.common.errors import InputError

MARGIN_KEY = "statistics.equivalence_margin"


@dataclass
class StatisticsConfig:
    # Score points (0-100): every compared pair also gets an equivalence test (TOST) at ±this; null: none.
    # `bench table --equivalence-margin` overrides it.
    equivalence_margin: float | None = None


def check_equivalence_margin(margin: float | None, where: str) -> float | None:
    """The margin, or an input error naming `where` (the flag or the key) unless it is a positive finite number."""
    if margin is not None and not (math.isfinite(margin) and margin > 0):
        raise InputError(where, f"must be a positive number of score points (0-100), got {margin}")
    return margin
