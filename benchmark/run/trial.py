"""One Tune trial, a plain function of its config. With one worker the trainer runs right here, in the trial's
actor, which Tune reuses between trials: torch, transformers and DeepSpeed load once per actor, not once per
trial. With several workers the trial drives a Ray Train `TorchTrainer` whose workers run the same `run_trial`
(data-parallel DeepSpeed across GPUs or nodes), and relays their reports.

Both paths report the same way: each evaluation's saved folder (`best/`, `state/`) is put in Ray's storage, and
Tune gets the metrics with that folder's path and a small pointer checkpoint, so its schedulers can pause,
resume and (PBT) clone trials, and a retried trial continues from its last state.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import ray
from ray import tune

from benchmark.common.errors import TrialDiverged
from benchmark.common.quiet import quiet_libraries
from benchmark.plan.trials import data_key
from benchmark.run.recorder import CHECKPOINT_PATH_KEY
from benchmark.run.storage import download, remove, upload
from benchmark.train.checkpoints import STATE_DIR
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.mixing import Mixture
from tasks.metrics import OBJECTIVE

POINTER_FILE = "pointer.json"
# A trial with several workers only drives its TorchTrainer; the Train workers hold the CPUs. Tune refuses an
# all-zero request, so it asks for one byte of memory: trials then pack as tightly as their workers allow.
DRIVER_RESOURCES = {"CPU": 0, "memory": 1}
PROGRESS_EVERY_S = 5.0  # how often a running trial tells the driver where it is within its epoch


@dataclass(frozen=True)
class TrialOptions:
    """What every trial of a run needs besides its own spec."""

    storage: str
    workers: int
    cpus: float
    gpus: float
    trust_remote_code: bool
    eval_every_steps: int | None
    save_state: bool
    max_failures: int
    # A PBT recipient copies its donor's state some seconds after the exploit is decided, while the donor trains
    # on: PBT keeps every state until its study ends. Otherwise the last two (one may still be being copied).
    states_to_keep: int | None = 2
    log_every_steps: int = 10
    final_state: bool = False  # the state at a trial's last evaluation point: only PBT copies a finished trial


def trial_resources(options: TrialOptions) -> dict:
    """What Tune reserves for one trial: a one-worker trial holds its worker's CPUs (and GPU) itself."""
    if options.workers > 1:
        return DRIVER_RESOURCES
    return {"CPU": options.cpus, **({"GPU": options.gpus} if options.gpus else {})}


def resolved_spec(config: dict) -> dict:
    """A trial's spec with the values a search algorithm sampled for it."""
    spec = dict(config["trial"])
    sampled = config.get("sampled") or {}
    spec["training"] = {**spec["training"], **sampled}
    spec["point"] = {**spec["point"], **sampled}
    return spec


def tune_trial(config: dict, data_refs: dict, options: TrialOptions, board=None) -> None:
    """The Tune trainable. `board`: the driver's progress board (an actor), or None."""
    spec = resolved_spec(config)
    trial_id = tune.get_context().get_trial_name()
    spec["trial_id"] = trial_id
    resume_from, resumed_trial = spec.get("resume_from"), trial_id
    pointer = tune.get_checkpoint()  # set when Tune restores this trial: a retry, HyperBand's pause, PBT's exploit
    if pointer is not None:
        with pointer.as_directory() as folder:
            saved = json.loads((Path(folder) / POINTER_FILE).read_text())
        resume_from, resumed_trial = saved["path"], saved["trial_id"]
    refs = {t: data_refs[data_key(spec["model_name"], t, spec["training"])] for t in spec["tasks"] or (spec["task"],)}
    if options.workers > 1:
        _run_on_ray_train(spec, options, refs, resume_from, resumed_trial, board)
        return
    data = {t: ray.get(ref) for t, ref in refs.items()}
    report = InlineReporter(trial_id, options)
    run_trial(spec, options, data, resume_from, resumed_trial, report, progress_sender(board, trial_id))


def run_trial(spec: dict, options: TrialOptions, data: dict, resume_from: str | None, resumed_trial: str,
              report: Callable, progress: Callable | None = None) -> None:  # fmt: skip
    """Train one trial (on every worker of it): restore its saved state if any, train, report each evaluation."""
    # Imported here for start-up speed (torch).
    from benchmark.train.multitask import train_multitask
    from benchmark.train.trainer import train

    quiet_libraries()
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec['trial_id']}-"))
    # Each attempt names itself, so the driver tells a new exploit from the next report of the same one.
    restored = {"attempt": uuid.uuid4().hex[:8]}
    meta, threads = {"trial_id": spec["trial_id"]}, max(1, int(options.cpus))
    try:
        if spec["kind"] == "multitask":  # saves no training state: a retry starts over
            train_multitask(
                TrainingConfig(**spec["training"]), spec["model_path"], spec["seed"], data,
                Mixture.from_dict(spec["mixture"]), workdir, lambda m, folder: report({**m, **restored}, folder),
                trust_remote_code=options.trust_remote_code, meta=meta, threads=threads, on_step=progress,
                selection_seed=spec.get("selection_seed"),
            )  # fmt: skip
            return
        state = None
        if resume_from:
            download(resume_from, options.storage, workdir / "resume")
            state = workdir / "resume" / STATE_DIR
            state = state if state.is_dir() else None  # a checkpoint without state: start over
        if state is not None:
            # Imported here for start-up speed (torch): the driver need not load it.
            from benchmark.train.training_state import read_client_state

            step = read_client_state(state)["global_steps"]
            restored.update(restored_from_trial=resumed_trial, restored_from_step=step)
        train(
            TrainingConfig(**spec["training"]), spec["model_path"], spec["seed"], data[spec["task"]], workdir,
            lambda m, folder: report({**m, **restored}, folder), trust_remote_code=options.trust_remote_code,
            meta=meta, threads=threads, eval_every_steps=options.eval_every_steps, save_state=options.save_state,
            final_state=options.final_state, resume_from=state, log_every_steps=options.log_every_steps,
            on_step=progress, reset_best=state is not None and resumed_trial != spec["trial_id"],
            new_head=spec["kind"] == "chain",
            selection_seed=spec.get("selection_seed"),
        )  # fmt: skip
    except TrialDiverged as e:  # raised on every rank at the same step: a result, not a crash to retry
        # Tune checks every result for the objective; a diverged trial scores the worst possible.
        report({"diverged": 1, "error": str(e), OBJECTIVE: -math.inf, "best_score": -math.inf}, None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report_to_tune(metrics: dict, checkpoint_path: str | None, trial_id: str) -> None:
    """The one place that calls Tune's reporting API (renamed often across Ray releases)."""
    metrics = {**metrics, "node_id": metrics.get("node_id") or ray.get_runtime_context().get_node_id()}
    if checkpoint_path is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / POINTER_FILE).write_text(json.dumps({"path": checkpoint_path, "trial_id": trial_id}))
        pointer = tune.Checkpoint.from_directory(folder)
        tune.report({**metrics, CHECKPOINT_PATH_KEY: checkpoint_path}, checkpoint=pointer)


class InlineReporter:
    """A one-worker trial's reports: the saved folder goes to storage, then the metrics to Tune. Keeps the last
    `states_to_keep` folders of this attempt, as Ray Train's checkpoint manager does for several workers."""

    def __init__(self, trial_id: str, options: TrialOptions):
        self.trial_id, self.options = trial_id, options
        self.root = f"{options.storage.rstrip('/')}/train-{trial_id}-{uuid.uuid4().hex[:8]}"
        self.kept: list[str] = []

    def __call__(self, metrics: dict, folder: Path | None) -> None:
        path = None
        if folder is not None:
            path = f"{self.root}/{folder.name}"
            upload(folder, path, self.options.storage)
            shutil.rmtree(folder, ignore_errors=True)
            self.kept.append(path)
        report_to_tune(metrics, path, self.trial_id)
        keep = self.options.states_to_keep
        while keep is not None and len(self.kept) > keep:  # the driver has fetched what it needs of older ones
            remove(self.kept.pop(0), self.options.storage)


def progress_sender(board, trial_id: str) -> Callable | None:
    """A trainer's progress hook that tells the driver's board where the trial is, at most every few seconds."""
    if board is None:
        return None
    last = [0.0]

    def send(info: dict) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S or info.get("step") == info.get("steps"):
            last[0] = now
            board.update.remote(trial_id, info)  # fire and forget: progress never slows training

    return send


@ray.remote(num_cpus=0)
class ProgressBoard:
    """The latest in-epoch progress of each running trial; the driver reads it for its live display."""

    def __init__(self):
        self.latest: dict[str, dict] = {}

    def update(self, trial_id: str, info: dict) -> None:
        self.latest[trial_id] = {**info, "at": time.time()}

    def read(self) -> dict[str, dict]:
        return self.latest


# Several workers: a Ray Train run inside the Tune trial.


def _run_on_ray_train(spec: dict, options: TrialOptions, refs: dict, resume_from: str | None, resumed_trial: str,
                      board) -> None:  # fmt: skip
    """Workers report to the Train controller, which hands each report (rank 0's) to this thread through a queue;
    the checkpoint Train persisted is the folder Tune's pointer names."""
    # Imported here for start-up speed (ray.train, torch): a run whose trials have one worker never loads Ray Train.
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Empty, Queue

    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    worker_resources = {"CPU": options.cpus, **({"GPU": options.gpus} if options.gpus else {})}
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "spec": spec,
            "data": refs,
            "options": options,
            "resume_from": resume_from,
            "resumed_trial": resumed_trial,
            "board": board,
        },  # fmt: skip
        scaling_config=ray.train.ScalingConfig(
            num_workers=options.workers, use_gpu=options.gpus > 0, resources_per_worker=worker_resources
        ),
        run_config=ray.train.RunConfig(
            # A fresh name per attempt: the state to continue from is passed explicitly.
            name=f"train-{spec['trial_id']}-{uuid.uuid4().hex[:8]}",
            storage_path=options.storage,
            callbacks=[_relay_to_tune(queue)],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=options.states_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=0),  # Tune retries the whole trial instead
        ),
    )
    errors: list[BaseException] = []
    fit = threading.Thread(target=_fit, args=(trainer, errors), daemon=True)
    fit.start()
    while fit.is_alive() or not queue.empty():
        try:
            item = queue.get(timeout=0.5)
        except Empty:
            continue
        report_to_tune(item["metrics"], item["checkpoint"], spec["trial_id"])
    if errors:
        raise errors[0]


def _fit(trainer, errors: list) -> None:
    try:
        trainer.fit()
    except BaseException as e:  # re-raised in the Tune trial's thread
        errors.append(e)


def _relay_to_tune(queue):
    """A Train callback that runs in the Train controller and hands each report (rank 0's metrics, the checkpoint's
    location) to the Tune trial."""
    # Imported here for start-up speed (ray.train), as in _run_on_ray_train.
    import ray.train

    class RelayToTune(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            queue.put({"metrics": metrics[0], "checkpoint": checkpoint.path if checkpoint else None})

    return RelayToTune()


def _train_worker(config: dict) -> None:
    """Runs on each Ray Train worker."""
    # Imported here for start-up speed (ray.train), as in _run_on_ray_train.
    import ray.train

    spec, options = config["spec"], config["options"]
    extra = {"node_id": ray.get_runtime_context().get_node_id()}
    group = ray.util.get_current_placement_group()
    if group is not None:
        extra["placement_group"] = group.id.hex()

    def report(metrics: dict, folder: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(folder)) if folder else None
        ray.train.report({**metrics, **extra}, checkpoint=checkpoint)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)  # Ray has persisted it to storage

    rank0 = ray.train.get_context().get_world_rank() == 0
    progress = progress_sender(config["board"], spec["trial_id"]) if rank0 else None
    data = {t: ray.get(ref) for t, ref in config["data"].items()}
    run_trial(spec, options, data, config["resume_from"], config["resumed_trial"], report, progress)
