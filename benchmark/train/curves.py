"""Training curves in TensorBoard's event format: `<run>/tensorboard/<trial id>/`, one folder per trial.

The trainer sends its logging-step points (training loss and learning rate every `search.log_every_steps`
optimizer steps) with each evaluation's report; whoever receives the reports writes them here: the driver
of `bench run` (so workers on other machines need no shared disk) and the process of `bench trial`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tasks.metrics import OBJECTIVE

CURVES_DIR = "tensorboard"
CURVE_KEY = "curve"  # a JSON list of {"step", "train_loss", "learning_rate"}: Tune's own loggers skip text


def encode_curve(points: list[dict]) -> str:
    return json.dumps(points)


class CurveWriter:
    """Writes one trial's reports as scalars: `train/loss` and `train/learning_rate` per logging step (at each
    evaluation when a report carries no curve), `dev/<metric>` (`dev/<task>/<metric>` for a joint trial) and
    `train/trainable_parameters` per evaluation, all against the optimizer step."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._writer = None

    def write(self, report: dict, metric_keys: list[str]) -> None:
        step = report.get("optimizer_steps")
        if step is None:
            return
        points = json.loads(report.get(CURVE_KEY) or "[]") or [
            {"step": step, "train_loss": report.get("train_loss"), "learning_rate": report.get("learning_rate")}
        ]
        for p in points:
            self._scalar("train/loss", p["train_loss"], p["step"])
            self._scalar("train/learning_rate", p["learning_rate"], p["step"])
        for key in (OBJECTIVE, *metric_keys):
            self._scalar(f"dev/{key}", report.get(key), step)
        for task, values in (report.get("tasks") or {}).items():
            for key, value in values.items():
                if key not in ("train_loss", "train_steps"):
                    self._scalar(f"dev/{task}/{key}", value, step)
        self._scalar("train/trainable_parameters", report.get("trainable_parameters"), step)
        if self._writer is not None:
            self._writer.flush()

    def _scalar(self, tag: str, value, step: int) -> None:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        if self._writer is None:
            # Imported here for start-up speed (tensorboardX).
            from tensorboardX import SummaryWriter

            self.folder.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.folder))
        self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
