"""Run one trial in this process, without Ray: for debugging, parity checks and GPU checks."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from benchmark.common.atomic import atomic_replace_dir
from benchmark.train.checkpoints import BEST_DIR
from benchmark.train.curves import CURVE_KEY, CURVES_DIR, CurveWriter
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.multitask import train_multitask
from benchmark.train.trainer import TrialResult, train
from tasks.encoding import TaskData


def run_local_trial(
    hp: TrainingConfig,
    model_path: str,
    seed: int,
    data: TaskData,
    output: Path,
    trust_remote_code: bool = False,
    log=print,
    log_every_steps: int = 10,
    selection_seed: int | None = None,
) -> TrialResult:
    """Train; the best epoch's checkpoint lands in `output/checkpoint`, the per-epoch metrics in `output/epochs.json`,
    the training curves in `output/tensorboard/<task>` (as `bench run` writes them). `selection_seed`: as
    `bench run` sets it (benchmark.plan.trials.selection_seed)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-local-", dir=output))
    curves = CurveWriter(output / CURVES_DIR / data.task.name)

    def report(metrics: dict, folder: Path | None) -> None:
        curves.write(metrics, data.task.metric_keys())
        log(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items() if k != CURVE_KEY}))
        if folder is not None and (folder / BEST_DIR).is_dir():
            atomic_replace_dir(folder / BEST_DIR, output / "checkpoint")
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    try:
        result = train(
            hp,
            model_path,
            seed,
            data,
            workdir,
            report,
            trust_remote_code=trust_remote_code,
            log_every_steps=log_every_steps,
            selection_seed=selection_seed,
        )
    finally:
        curves.close()
        shutil.rmtree(workdir, ignore_errors=True)
    (output / "epochs.json").write_text(json.dumps(result.epochs, indent=2))
    return result


def run_local_multitask_trial(
    hp: TrainingConfig,
    model_path: str,
    seed: int,
    data: dict[str, TaskData],
    mixture,
    output: Path,
    trust_remote_code: bool = False,
    log=print,
    selection_seed: int | None = None,
):
    """Train tasks jointly; each task's export (at its own best epoch) lands in `output/<task>/checkpoint`, the
    curves in `output/tensorboard/multitask`."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-local-", dir=output))
    curves = CurveWriter(output / CURVES_DIR / "multitask")

    def report(metrics: dict, folder: Path | None) -> None:
        curves.write(metrics, [])
        log(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in metrics.items() if k != "tasks"}))
        if folder is not None:
            for task_folder in sorted((folder / BEST_DIR).iterdir()):
                (output / task_folder.name).mkdir(exist_ok=True)
                atomic_replace_dir(task_folder, output / task_folder.name / "checkpoint")
            shutil.rmtree(folder, ignore_errors=True)

    try:
        result = train_multitask(
            hp, model_path, seed, data, mixture, workdir, report, trust_remote_code=trust_remote_code,
            selection_seed=selection_seed,
        )  # fmt: skip
    finally:
        curves.close()
        shutil.rmtree(workdir, ignore_errors=True)
    (output / "epochs.json").write_text(json.dumps(result.epochs, indent=2))
    return result
