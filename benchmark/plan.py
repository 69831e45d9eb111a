"""The trial plan: models x tasks x grid points x seeds, each trial with a stable, readable id."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from benchmark.suite import Suite

SHORT_KEYS = {"learning_rate": "lr", "batch_size": "bs", "epochs": "ep", "warmup_ratio": "warmup",
              "weight_decay": "wd", "max_seq_length": "len", "gradient_accumulation_steps": "accum"}


@dataclass(frozen=True)
class TrialSpec:
    trial_id: str
    model_name: str
    model_path: str
    task: str
    point: dict          # the grid point: the hyperparameters this trial varies
    seed: int
    training: dict       # every hyperparameter, the grid point applied
    fingerprint: str     # changes when anything that shapes the result changes

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @property
    def point_key(self) -> str:
        return canonical(self.point)


def data_key(model_name: str, task: str, max_seq_length: int) -> str:
    """Trials that share this key share one tokenised copy of the task."""
    return f"{model_name}/{task}/{max_seq_length}"


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def make_plan(suite: Suite) -> list[TrialSpec]:
    plan = []
    data = {k: v for k, v in suite.config.data.__dict__.items() if k != "cache_dir"}
    for model in suite.models:
        for task in suite.tasks:
            for point in suite.grid_points():
                training = suite.training_for(point).to_dict()
                for seed in suite.config.search.seeds:
                    fingerprint = hashlib.sha256(canonical({
                        "model": model.path, "task": task.to_dict(), "training": training, "seed": seed,
                        "data": data, "workers": suite.config.resources.workers_per_trial,
                    }).encode()).hexdigest()[:16]
                    plan.append(TrialSpec(
                        trial_id=trial_id(task.name, model.name if len(suite.models) > 1 else None, point, seed),
                        model_name=model.name, model_path=model.path, task=task.name, point=point, seed=seed,
                        training=training, fingerprint=fingerprint,
                    ))
    return plan


def trial_id(task: str, model: str | None, point: dict, seed: int) -> str:
    parts = [task] + ([model] if model else [])
    parts += [f"{SHORT_KEYS.get(k, k)}={_short(v)}" for k, v in sorted(point.items())]
    parts.append(f"seed={seed}")
    text = re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts))
    if len(text) > 120:   # keep folder names short; the hash keeps them unique
        text = text[:100] + "_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return text


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower()
