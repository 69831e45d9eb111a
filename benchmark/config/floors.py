"""The suite's `floors:` section: which floors (benchmark/train/floors.py) the leaderboard shows, checked whole."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.common.errors import InputError
from benchmark.train.floors import FloorKind, has_floor
from tasks.spec import TaskSpec


@dataclass
class FloorsConfig:
    # true: every task whose family has the floor; false: none; a list: those tasks, each of which must have it.
    zero_shot: bool | list[str] = True
    probe: bool | list[str] = True


@dataclass(frozen=True)
class FloorSettings:
    zero_shot: tuple[str, ...]  # the tasks that get each floor
    probe: tuple[str, ...]


def check_floors(config: FloorsConfig, tasks: list[TaskSpec], where: str = "floors") -> FloorSettings:
    """Refuse a task the suite does not have, and a floor asked by name for a task whose family has none."""
    by_name = {t.name: t for t in tasks}
    chosen = {}
    for kind, value in ((FloorKind.ZERO_SHOT, config.zero_shot), (FloorKind.PROBE, config.probe)):
        key = f"{where}.{kind.name.lower()}"
        if isinstance(value, bool):
            chosen[kind] = tuple(t.name for t in tasks if value and has_floor(kind, t))
            continue
        for i, name in enumerate(value):
            if name not in by_name:
                raise InputError(f"{key}[{i}]", f"'{name}' is not a task of this suite ({', '.join(by_name)})")
            if not has_floor(kind, by_name[name]):
                raise InputError(
                    f"{key}[{i}]",
                    f"task '{name}' has no {kind.value} floor: it is for similarity (regression) tasks of two texts",
                )
        chosen[kind] = tuple(dict.fromkeys(value))
    return FloorSettings(chosen[FloorKind.ZERO_SHOT], chosen[FloorKind.PROBE])
