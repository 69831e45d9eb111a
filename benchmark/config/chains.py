"""Intermediate-task transfer (STILTs, Phang et al. 2018): the suite's `chains:`, e.g. `mrpc -> rte`.

A chain's target trials start from the encoder of the source task's best checkpoint, with a new head. The source
is a task of the same run (its trials run first; the best is its leaderboard row's chosen grid point, and of that
point's seeds the one with the best validation score) or a checkpoint folder given as a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark.common.errors import InputError
from benchmark.common.paths import is_dir, local_path
from benchmark.train.modeling import check_local_model

ARROW = "->"


@dataclass(frozen=True)
class Chain:
    source: str  # a task of the suite, or the name shown for a path
    target: str  # a task of the suite
    path: str | None = None  # the source checkpoint folder, when given as a path

    @property
    def label(self) -> str:
        """What the leaderboard's row shows: `model [mrpc→rte]`."""
        return f"{self.source}→{self.target}"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def check_chains(entries: list[Any], task_names: list[str], models: int, trust_remote_code: bool) -> list[Chain]:
    """Each entry is `source -> target`, or a mapping {source: TASK_OR_FOLDER, target: TASK, name: LABEL}."""
    chains: list[Chain] = []
    for i, entry in enumerate(entries):
        where = f"chains[{i}]"
        if isinstance(entry, str) and entry.count(ARROW) == 1:
            source, target = (part.strip() for part in entry.split(ARROW))
            name = None
        elif (
            isinstance(entry, dict)
            and set(entry) <= {"source", "target", "name"}
            and {"source", "target"} <= set(entry)
        ):
            source, target, name = entry["source"], entry["target"], entry.get("name")
        else:
            raise InputError(where, "write a chain as 'source -> target' or {source: ..., target: ..., name: ...}")
        if not all(isinstance(v, str) and v for v in (source, target)) or not (name is None or isinstance(name, str)):
            raise InputError(where, "source, target and name are non-empty strings")
        if target not in task_names:
            raise InputError(where, f"target '{target}' is not one of the suite's tasks ({', '.join(task_names)})")
        if source in task_names:
            if source == target:
                raise InputError(where, f"'{source}' cannot be its own source")
            if name not in (None, source):
                raise InputError(f"{where}.name", "names a source given as a folder; a task source is named by itself")
            chain = Chain(source, target)
        elif is_dir(local_path(source, f"{where}.source")):
            folder = local_path(source, f"{where}.source")
            check_local_model(str(folder), trust_remote_code, f"{where}.source")
            if models > 1:
                raise InputError(
                    where, "a source given as a folder is one model's checkpoint; use a suite with one model"
                )
            chain = Chain(name or folder.name, target, str(folder))
        else:
            raise InputError(
                where,
                f"source '{source}' is neither a task of the suite nor a model folder; "
                "list the source task under tasks:",
            )
        if any(c.label == chain.label for c in chains):
            raise InputError(where, f"the chain {chain.label} is listed twice")
        chains.append(chain)
    targets = {c.target for c in chains}
    for i, c in enumerate(chains):
        if c.path is None and c.source in targets:
            raise InputError(
                f"chains[{i}]", f"'{c.source}' is itself a chain's target; chains of chains are not supported"
            )
    return chains
