"""The Ray glue: a Tune `Tuner` runs the trial plan; each trial is a Ray Train `TorchTrainer` running `trainer.train`.

The driver records every trial in the run store the moment it ends (a Tune callback), so nothing finished
depends on the driver living to the end.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import ray
import ray.train
from ray import tune

from benchmark.errors import InputError
from benchmark.plan import data_key
from benchmark.store import RunStore, trial_record
from tasks.encoding import TaskData
from tasks.metrics import OBJECTIVE, OBJECTIVE_MODE

CHECKPOINT_PATH_KEY = "checkpoint_path"   # where TuneReportCallback puts the Train checkpoint's location
# The Tune trial only drives its TorchTrainer; the Train workers hold the CPUs. Tune refuses an all-zero
# request, so the driver asks for one byte of memory: trials then pack as tightly as their workers allow.
DRIVER_RESOURCES = {"CPU": 0, "memory": 1}


def connect(address: str | None) -> None:
    """Start Ray locally, or join the cluster at `address`."""
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    if address:
        import benchmark
        import ensembles
        import tasks

        # The cluster's nodes may not have bench installed: ship its code with the job (the suite module,
        # which trials import, reads the ensemble section's schema from ensembles/).
        kwargs["runtime_env"] = {"py_modules": [Path(m.__file__).parent for m in (benchmark, tasks, ensembles)]}
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError("--address", f"cannot connect to Ray at {address}: {str(e).splitlines()[0]}") from None
    else:
        ray.init(**kwargs)


def concurrency(resources, cluster: dict, nodes: list[dict]) -> int:
    """How many trials fit at once; refuse a trial that can never be placed instead of waiting forever."""
    per_trial_cpu = resources.workers_per_trial * resources.cpus_per_worker
    per_trial_gpu = resources.workers_per_trial * resources.gpus_per_worker
    biggest_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
    biggest_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
    if resources.cpus_per_worker > biggest_cpu:
        raise InputError("resources.cpus_per_worker", f"{resources.cpus_per_worker:g} CPUs per worker, but the largest node has {biggest_cpu:g}")
    if resources.gpus_per_worker > biggest_gpu:
        raise InputError("resources.gpus_per_worker", f"{resources.gpus_per_worker:g} GPUs per worker, but the largest node has {biggest_gpu:g}")
    total_cpu = cluster.get("CPU", 0)
    if per_trial_cpu > total_cpu:
        raise InputError("resources", f"one trial needs {per_trial_cpu:g} CPUs ({resources.workers_per_trial} workers x "
                         f"{resources.cpus_per_worker:g}), but the cluster has {cluster.get('CPU', 0):g}")
    fits = math.floor(total_cpu / per_trial_cpu)
    if per_trial_gpu:
        fits = min(fits, math.floor(cluster.get("GPU", 0) / per_trial_gpu))
    if resources.max_concurrent_trials:
        fits = min(fits, resources.max_concurrent_trials)
    return max(1, fits)


def run_trials(suite, trials: list, task_data: dict[str, TaskData], store: RunStore, address: str | None,
               callbacks: list = ()) -> None:
    connect(address)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"   # Tune's own console report; bench shows its own display instead
    resources = suite.config.resources
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    max_concurrent = concurrency(resources, ray.cluster_resources(), nodes)
    refs = {key: ray.put(data) for key, data in task_data.items()}
    storage = suite.config.storage or str(store.root / "ray")
    trainable = tune.with_parameters(
        _tune_trial,
        data_refs=refs,
        storage=storage,
        resources=(resources.workers_per_trial, resources.cpus_per_worker, resources.gpus_per_worker),
        trust_remote_code=suite.config.trust_remote_code,
    )
    recorder = TrialRecorder(store, {t.trial_id: t for t in trials}, {t.name: t for t in suite.tasks}, storage)
    tuner = tune.Tuner(
        tune.with_resources(trainable, DRIVER_RESOURCES),
        param_space={"trial": tune.grid_search([t.to_dict() for t in trials])},
        tune_config=tune.TuneConfig(metric=OBJECTIVE, mode=OBJECTIVE_MODE, max_concurrent_trials=max_concurrent,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=storage, callbacks=[recorder, *callbacks], verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    tuner.fit()


def _trial_name(trial) -> str:
    return trial.config["trial"]["trial_id"]


def _tune_trial(config: dict, data_refs: dict, storage: str, resources: tuple, trust_remote_code: bool) -> None:
    """One Tune trial: start a TorchTrainer whose workers run the trainer, and relay its reports to Tune."""
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    spec = config["trial"]
    workers, cpus, gpus = resources
    worker_resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"spec": spec, "data": data_refs[data_key(spec["model_name"], spec["task"], spec["training"]["max_seq_length"])],
                           "threads": max(1, int(cpus)), "trust_remote_code": trust_remote_code},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=worker_resources),
        run_config=ray.train.RunConfig(
            # A fresh name per attempt: Ray Train would otherwise resume an earlier attempt's state.
            name=f"train-{spec['trial_id']}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=storage,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=0),
        ),
    )
    trainer.fit()


def _train_worker(config: dict) -> None:
    """Runs on each Ray Train worker."""
    from benchmark.hyperparams import TrainingConfig
    from benchmark.quiet import quiet_libraries
    from benchmark.trainer import train

    quiet_libraries()
    spec = config["spec"]
    data = ray.get(config["data"])
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec['trial_id']}-"))
    try:
        train(TrainingConfig(**spec["training"]), spec["model_path"], spec["seed"], data, workdir, report_to_ray,
              trust_remote_code=config["trust_remote_code"], meta={"trial_id": spec["trial_id"]}, threads=config["threads"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report_to_ray(metrics: dict, checkpoint: Path | None) -> None:
    """The one place that calls Ray's reporting API (renamed often across Ray releases)."""
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None)
    if checkpoint:
        shutil.rmtree(checkpoint, ignore_errors=True)   # Ray has persisted it to storage


class TrialRecorder(tune.Callback):
    """Writes each trial's record and checkpoint into the run store as the trial ends."""

    def __init__(self, store: RunStore, specs: dict, tasks: dict, storage: str):
        self.store, self.specs, self.tasks, self.storage = store, specs, tasks, storage
        self.history: dict[str, list[dict]] = {}
        self.checkpoints: dict[str, str] = {}
        self.started: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[_trial_name(trial)] = time.time()
        self.history[_trial_name(trial)] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = _trial_name(trial)
        if CHECKPOINT_PATH_KEY in result:
            self.checkpoints[name] = result[CHECKPOINT_PATH_KEY]
        keep = {k: v for k, v in result.items() if isinstance(v, (int, float, str)) and k != CHECKPOINT_PATH_KEY}
        self.history.setdefault(name, []).append(keep)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, "failed", _error_text(trial))

    def _record(self, trial, status: str, error: str | None = None) -> None:
        name = _trial_name(trial)
        spec = self.specs[name]
        task = self.tasks[spec.task]
        epochs = [_epoch_fields(r, task.metric_keys()) for r in self.history.get(name, []) if "epoch" in r]
        checkpoint = None
        if status == "finished" and name in self.checkpoints:
            self.store.install_checkpoint(name, lambda folder: _fetch_checkpoint(self.checkpoints[name], self.storage, folder))
            checkpoint = str(self.store.checkpoint_dir(name).relative_to(self.store.root))
            if "://" not in self.storage:   # the run directory now holds it; don't keep two copies on disk
                shutil.rmtree(self.checkpoints[name], ignore_errors=True)
        if status == "finished" and not epochs:
            status, error = "failed", "the trial reported no epoch"
        wall = time.time() - self.started.get(name, time.time())
        self.store.save_record(trial_record(spec.to_dict(), task.to_dict(), task.metric_keys(), epochs, status,
                                            checkpoint, wall, error))


def _epoch_fields(result: dict, metric_keys: list[str]) -> dict:
    keep = ["epoch", OBJECTIVE, *metric_keys, "train_loss", "learning_rate", "optimizer_steps", "train_samples", "train_seconds",
            "train_samples_per_s", "eval_seconds", "eval_samples_per_s", "peak_memory_mb"]
    return {k: result[k] for k in keep if k in result}


def _fetch_checkpoint(path: str, storage: str, folder: Path) -> None:
    import pyarrow.fs

    filesystem, _ = pyarrow.fs.FileSystem.from_uri(storage) if "://" in storage else (None, None)
    checkpoint = ray.train.Checkpoint(path, filesystem=filesystem)
    checkpoint.to_directory(str(folder))


def _error_text(trial) -> str:
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:2000] if lines else "the trial failed (no error text)"
