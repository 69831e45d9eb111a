"""The Ray glue: Ray Tune runs the trial plan, one study (Tuner) per model and task; each trial is a Ray Train
`TorchTrainer` whose workers run `trainer.train`.

Reports travel worker -> Train controller -> (a queue) -> the Tune trial -> Tune. Each report that carries a
saved state also gives Tune a small pointer checkpoint, so Tune's schedulers can pause, resume and (PBT)
clone trials, and a retried trial continues from its last state. The driver records every trial in the run
store as results arrive (a Tune callback), so nothing finished depends on the driver living to the end.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.train
from ray import tune
from ray.util.queue import Empty, Queue

from benchmark.common.errors import InputError, TrialDiverged
from benchmark.config.search import MUTABLE_KEYS, tune_distribution
from benchmark.plan.trials import TrialSpec, data_key
from benchmark.records.store import DONE_STATUSES, RAY_STORAGE_DIR, RunStore, trial_record
from benchmark.train.checkpoints import parameter_count
from benchmark.train.curves import CURVES_DIR, CurveWriter
from benchmark.train.trainer import BEST_DIR, STATE_DIR
from benchmark.train.training_state import read_client_state
from tasks.encoding import TaskData
from tasks.metrics import OBJECTIVE, OBJECTIVE_MODE

CHECKPOINT_PATH_KEY = "checkpoint_path"
POINTER_FILE = "pointer.json"
# The Tune trial only drives its TorchTrainer; the Train workers hold the CPUs. Tune refuses an all-zero
# request, so the driver asks for one byte of memory: trials then pack as tightly as their workers allow.
DRIVER_RESOURCES = {"CPU": 0, "memory": 1}

# Each Ray Train run starts its own helper actors, one process each, for every trial. bench needs neither of
# these two: node loss is handled by Tune's retry from the trial's last saved state, and Train's metrics go to
# a dashboard bench does not start. Printing through Ray's patched print would interleave with bench's display.
RAY_TRAIN_SETTINGS = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}

logger = logging.getLogger(__name__)


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


def connect(address: str | None) -> None:
    """Start Ray locally, or join the cluster at `address`."""
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    os.environ.update(RAY_TRAIN_SETTINGS)  # a local cluster's processes inherit the driver's environment
    if address:
        import benchmark
        import ensembles
        import tasks

        # The cluster's nodes may not have bench installed: ship its code with the job (the suite module,
        # which trials import, reads the ensemble section's schema from ensembles/).
        kwargs["runtime_env"] = {
            "py_modules": [Path(m.__file__).parent for m in (benchmark, tasks, ensembles)],
            "env_vars": RAY_TRAIN_SETTINGS,
        }
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
        raise InputError(
            "resources.cpus_per_worker",
            f"{resources.cpus_per_worker:g} CPUs per worker, but the largest node has {biggest_cpu:g}",
        )
    if resources.gpus_per_worker > biggest_gpu:
        raise InputError(
            "resources.gpus_per_worker",
            f"{resources.gpus_per_worker:g} GPUs per worker, but the largest node has {biggest_gpu:g}",
        )
    total_cpu = cluster.get("CPU", 0)
    if per_trial_cpu > total_cpu:
        raise InputError(
            "resources",
            f"one trial needs {per_trial_cpu:g} CPUs ({resources.workers_per_trial} workers x "
            f"{resources.cpus_per_worker:g}), but the cluster has {cluster.get('CPU', 0):g}",
        )
    fits = math.floor(total_cpu / per_trial_cpu)
    if per_trial_gpu:
        fits = min(fits, math.floor(cluster.get("GPU", 0) / per_trial_gpu))
    if resources.max_concurrent_trials:
        fits = min(fits, resources.max_concurrent_trials)
    return max(1, fits)


def run_trials(
    suite,
    trials: list[TrialSpec],
    task_data: dict[str, TaskData],
    store: RunStore,
    address: str | None,
    callbacks: list = (),
    resume: dict[str, str] | None = None,
) -> None:
    """Run `trials` (the plan's pending ones); `resume` maps trial ids to the saved state they continue from."""
    connect(address)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's own console report; bench shows its own display instead
    # Tune's Ctrl-C handler ends the study quietly and lets bench go on to the next one and the leaderboard;
    # bench stops instead (the CLI's KeyboardInterrupt): finished trials are kept, the rest resume next time.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    resources, search = suite.config.resources, suite.config.search
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    max_concurrent = concurrency(resources, ray.cluster_resources(), nodes)
    storage = suite.config.storage or str(store.root / RAY_STORAGE_DIR)
    options = TrialOptions(
        storage,
        resources.workers_per_trial,
        resources.cpus_per_worker,
        resources.gpus_per_worker,
        suite.config.trust_remote_code,
        search.eval_every_steps,
        search.save_state,
        search.max_failures,
        states_to_keep=None if search.scheduler.type == "pbt" else 2,
        log_every_steps=search.log_every_steps,
    )
    refs = {key: ray.put(data) for key, data in task_data.items()}
    recorder = TrialRecorder(
        store,
        {t.name: t for t in suite.tasks},
        storage,
        {k: getattr(resources, k) for k in ("workers_per_trial", "cpus_per_worker", "gpus_per_worker")},
    )
    for study in _studies(suite, trials):
        specs = [{**t.to_dict(), "resume_from": (resume or {}).get(t.trial_id)} for t in study]
        recorder.expect(study)
        _run_study(
            suite,
            specs,
            refs,
            options,
            task_data,
            max_concurrent,
            [recorder, ReleaseStoppedTrials(), *callbacks],
            store,
        )
    if "://" not in storage:  # every kept checkpoint now lives in the run directory
        for folder in Path(storage).glob("train-*"):
            shutil.rmtree(folder, ignore_errors=True)


def _studies(suite, trials: list[TrialSpec]) -> list[list[TrialSpec]]:
    """Trials that a scheduler or search algorithm may compare: one model on one task (and, for Optuna, one grid
    point, since each Optuna study samples the space around fixed grid values)."""
    groups: dict[tuple, list[TrialSpec]] = {}
    grid_keys = list(suite.config.search.grid)
    for t in trials:
        key = (t.model_name, t.task, t.kind, t.chain)  # a chain's trials are compared with each other only
        if suite.config.search.resolved_algorithm == "optuna":
            key += tuple(t.point.get(k) for k in grid_keys)
        groups.setdefault(key, []).append(t)
    return list(groups.values())


def _run_study(
    suite,
    specs: list[dict],
    refs: dict,
    options: TrialOptions,
    task_data: dict,
    max_concurrent: int,
    callbacks: list,
    store: RunStore,
) -> None:
    search = suite.config.search
    trainable = tune.with_parameters(_tune_trial, data_refs=refs, options=options)
    names = [s["trial_id"] for s in specs]
    search_alg, num_samples = None, 1
    if search.resolved_algorithm == "optuna":
        base = {k: v for k, v in specs[0].items() if k not in ("trial_id", "resume_from")}
        param_space = {"trial": base, "sampled": {k: tune_distribution(d) for k, d in search.space.items()}}
        search_alg, num_samples = _optuna(search, specs[0], store), len(specs)
    else:
        param_space = {"trial": tune.grid_search(specs)}
    evaluations = max(_evaluations_per_trial(s, task_data, options) for s in specs)
    metric = OBJECTIVE if search.scheduler.type == "pbt" else "best_score"  # PBT copies a trial's current state
    tuner = tune.Tuner(
        tune.with_resources(trainable, DRIVER_RESOURCES),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=OBJECTIVE_MODE,
            scheduler=_scheduler(search, evaluations),
            search_alg=search_alg,
            num_samples=num_samples,
            max_concurrent_trials=max_concurrent,
            trial_name_creator=_namer(names),
            trial_dirname_creator=_namer(names),
        ),
        run_config=tune.RunConfig(
            name=f"tune-{specs[0]['task']}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=options.storage,
            # Retries happen here, for any crash (a worker, a node, the trial itself); the retried trial continues
            # from its last saved state through the pointer checkpoint.
            callbacks=callbacks,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=options.states_to_keep),
        ),
    )
    if search.scheduler.type == "pbt":
        random.seed(search.sample_seed)  # PBT draws its exploits and perturbations from the global generator
    tuner.fit()


def _namer(names: list[str]):
    """Name each Tune trial by its planned id (Optuna's trials take the study's pending ids in creation order)."""
    given: dict[str, str] = {}

    def name(trial) -> str:
        planned = trial.config["trial"].get("trial_id")
        if planned:
            return planned
        if trial.trial_id not in given:
            given[trial.trial_id] = names[len(given)]
        return given[trial.trial_id]

    return name


def _optuna(search, spec: dict, store: RunStore):
    """Optuna TPE, warm-started with the finished trials of this study (from an earlier, interrupted run)."""
    from ray.tune.search.optuna import OptunaSearch

    done = [
        r
        for r in store.finished().values()
        if r["task"] == spec["task"]
        and r["model"] == spec["model_name"]
        and "optuna" in r["grid_point"]
        and all(r["grid_point"].get(k) == spec["point"].get(k) for k in search.grid)
    ]
    points = [{"sampled": {k: r["grid_point"][k] for k in search.space}} for r in done]
    return OptunaSearch(
        metric="best_score",
        mode=OBJECTIVE_MODE,
        seed=search.sample_seed,
        points_to_evaluate=points or None,
        evaluated_rewards=[r["best_score"] for r in done] or None,
    )


def _evaluations_per_trial(spec: dict, task_data: dict, options: TrialOptions) -> int:
    """How many evaluation points (Tune iterations) a trial reports: a scheduler's time budget."""
    training = spec["training"]
    if spec["kind"] == "multitask":  # evaluates once per epoch (the suite refuses eval_every_steps with it)
        return training["epochs"]
    data = task_data[data_key(spec["model_name"], spec["task"], training)]
    steps = max(1, -(-len(data.train) // training["batch_size"]))
    if not options.eval_every_steps:
        return training["epochs"]
    return sum(
        1
        for step in range(1, steps * training["epochs"] + 1)
        if step % steps == 0 or step % options.eval_every_steps == 0
    )


def _scheduler(search, evaluations: int):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, PopulationBasedTraining

    s = search.scheduler
    if s.type == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=evaluations,
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
            brackets=s.brackets,
        )
    if s.type == "hyperband":
        return HyperBandScheduler(
            time_attr="training_iteration", max_t=evaluations, reduction_factor=s.reduction_factor
        )
    if s.type == "pbt":
        varied = {
            k: (tune_distribution(search.space[k]) if k in search.space else search.grid[k])
            for k in (*search.space, *search.grid)
            if k in MUTABLE_KEYS
        }
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=s.perturbation_interval,
            hyperparam_mutations={"trial": {"training": varied}},
            quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability,
            synch=False,
        )
    return FIFOScheduler()


def _tune_trial(config: dict, data_refs: dict, options: TrialOptions) -> None:
    """One Tune trial: run a TorchTrainer whose workers run the trainer, and relay its reports to Tune."""
    from ray.train.torch import TorchTrainer

    spec = _resolved_spec(config)
    trial_id = tune.get_context().get_trial_name()
    resume_from, resumed_trial = spec.get("resume_from"), trial_id
    pointer = tune.get_checkpoint()  # set when Tune restores this trial: a retry, HyperBand's pause, PBT's exploit
    if pointer is not None:
        with pointer.as_directory() as folder:
            saved = json.loads((Path(folder) / POINTER_FILE).read_text())
        resume_from, resumed_trial = saved["path"], saved["trial_id"]
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    worker_resources = {"CPU": options.cpus, **({"GPU": options.gpus} if options.gpus else {})}
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "spec": {**spec, "trial_id": trial_id},
            "data": {
                t: data_refs[data_key(spec["model_name"], t, spec["training"])]
                for t in (spec["tasks"] or (spec["task"],))
            },
            "options": options,
            "resume_from": resume_from,
            "resumed_trial": resumed_trial,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=options.workers, use_gpu=options.gpus > 0, resources_per_worker=worker_resources
        ),
        run_config=ray.train.RunConfig(
            # A fresh name per attempt: the state to continue from is passed explicitly.
            name=f"train-{trial_id}-{uuid.uuid4().hex[:8]}",
            storage_path=options.storage,
            callbacks=[_RelayToTune(queue)],
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
        _report_to_tune(item, trial_id)
    if errors:
        raise errors[0]


def _resolved_spec(config: dict) -> dict:
    spec = dict(config["trial"])
    sampled = config.get("sampled") or {}
    spec["training"] = {**spec["training"], **sampled}
    spec["point"] = {**spec["point"], **sampled}
    return spec


def _fit(trainer, errors: list) -> None:
    try:
        trainer.fit()
    except BaseException as e:  # re-raised in the Tune trial's thread
        errors.append(e)


class _RelayToTune(ray.train.UserCallback):
    """Runs in the Train controller: hands each report (rank 0's metrics, the checkpoint's location) to the trial."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def after_report(self, run_context, metrics, checkpoint):
        self.queue.put({"metrics": metrics[0], "checkpoint": checkpoint.path if checkpoint else None})


def _report_to_tune(item: dict, trial_id: str) -> None:
    metrics = dict(item["metrics"])
    if item["checkpoint"] is None:
        tune.report(metrics)
        return
    metrics[CHECKPOINT_PATH_KEY] = item["checkpoint"]
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / POINTER_FILE).write_text(json.dumps({"path": item["checkpoint"], "trial_id": trial_id}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _train_worker(config: dict) -> None:
    """Runs on each Ray Train worker."""
    from benchmark.common.quiet import quiet_libraries
    from benchmark.train.hyperparams import TrainingConfig
    from benchmark.train.trainer import train

    quiet_libraries()
    spec, options = config["spec"], config["options"]
    if spec["kind"] == "multitask":
        _train_multitask_worker(spec, options, {t: ray.get(ref) for t, ref in config["data"].items()})
        return
    data = ray.get(config["data"][spec["task"]])
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec['trial_id']}-"))
    resumed_trial = config["resumed_trial"]
    state = None
    if config["resume_from"]:
        _checkpoint_at(config["resume_from"], options.storage).to_directory(str(workdir / "resume"))
        state = workdir / "resume" / STATE_DIR
        state = state if state.is_dir() else None  # a checkpoint without state: start over
    # Each attempt names itself, so the driver tells a new exploit from the next report of the same one.
    restored = {"attempt": uuid.uuid4().hex[:8]}
    if state is not None:
        restored.update(restored_from_trial=resumed_trial, restored_from_step=read_client_state(state)["global_steps"])
    group = ray.util.get_current_placement_group()
    if group is not None:
        restored["placement_group"] = group.id.hex()
    try:
        train(
            TrainingConfig(**spec["training"]),
            spec["model_path"],
            spec["seed"],
            data,
            workdir,
            lambda metrics, folder: report_to_ray({**metrics, **restored}, folder),
            trust_remote_code=options.trust_remote_code,
            meta={"trial_id": spec["trial_id"]},
            threads=max(1, int(options.cpus)),
            eval_every_steps=options.eval_every_steps,
            save_state=options.save_state,
            resume_from=state,
            log_every_steps=options.log_every_steps,
            reset_best=state is not None and resumed_trial != spec["trial_id"],
            new_head=spec["kind"] == "chain",
        )
    except TrialDiverged as e:  # raised on every rank at the same step: a result, not a crash to retry
        # Tune checks every result for the objective; a diverged trial scores the worst possible.
        report_to_ray({"diverged": 1, "error": str(e), OBJECTIVE: -math.inf, "best_score": -math.inf}, None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _train_multitask_worker(spec: dict, options: TrialOptions, data: dict) -> None:
    """A joint trial on a Ray Train worker. It saves no training state: a retry starts over."""
    from benchmark.train.hyperparams import TrainingConfig
    from benchmark.train.mixing import Mixture
    from benchmark.train.multitask import train_multitask

    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{spec['trial_id']}-"))
    attempt = {"attempt": uuid.uuid4().hex[:8]}
    try:
        train_multitask(
            TrainingConfig(**spec["training"]),
            spec["model_path"],
            spec["seed"],
            data,
            Mixture.from_dict(spec["mixture"]),
            workdir,
            lambda metrics, folder: report_to_ray({**metrics, **attempt}, folder),
            trust_remote_code=options.trust_remote_code,
            meta={"trial_id": spec["trial_id"]},
            threads=max(1, int(options.cpus)),
        )
    except TrialDiverged as e:
        report_to_ray({"diverged": 1, "error": str(e), OBJECTIVE: -math.inf, "best_score": -math.inf}, None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report_to_ray(metrics: dict, folder: Path | None) -> None:
    """The one place that calls Ray's reporting API (renamed often across Ray releases)."""
    metrics = {**metrics, "node_id": ray.get_runtime_context().get_node_id()}
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(folder)) if folder else None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)  # Ray has persisted it to storage


def _checkpoint_at(path: str, storage: str) -> ray.train.Checkpoint:
    import pyarrow.fs

    filesystem = pyarrow.fs.FileSystem.from_uri(storage)[0] if "://" in storage else None
    return ray.train.Checkpoint(path, filesystem=filesystem)


class ReleaseStoppedTrials(tune.Callback):
    """Frees the workers of trials that Tune ended from outside: a scheduler's stop or pause ends the trial's
    actor while its Train run is still going, and that run's placement group lives as long as the job. Ray Train
    reaps such groups only where the dashboard's state API runs, so without this a stopped trial holds its CPUs
    for the rest of the run."""

    def __init__(self):
        self.groups: dict[str, set[str]] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        group = result.get("placement_group")
        if group:
            held = self.groups.setdefault(str(trial), set())
            _remove_placement_groups(held - {group})  # a restored trial's earlier attempts
            held.intersection_update({group})
            held.add(group)

    def on_step_end(self, iteration, trials, **info):
        for trial in trials:
            if trial.status != "RUNNING" and self.groups.get(str(trial)):
                _remove_placement_groups(self.groups.pop(str(trial)))


def _remove_placement_groups(ids) -> None:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup

    for hex_id in ids:
        group = PlacementGroup(PlacementGroupID(bytes.fromhex(hex_id)))
        try:
            if ray.util.placement_group_table(group).get("state") not in (None, "REMOVED"):
                ray.util.remove_placement_group(group)
        except Exception as e:  # already gone with its job or node
            logger.debug("placement group %s: %s", hex_id, e)


class TrialRecorder(tune.Callback):
    """Keeps the run store current: progress as results arrive, the best checkpoint as it improves, a record
    when a trial ends."""

    def __init__(self, store: RunStore, tasks: dict, storage: str, resources: dict):
        self.store, self.tasks, self.storage, self.resources = store, tasks, storage, resources
        self.specs: dict[str, TrialSpec] = {}
        self.live: dict[str, dict] = {}
        self.curves: dict[str, CurveWriter] = {}
        self.ended: set[str] = set()  # recorded since they last started: an ending told twice is recorded once

    def expect(self, specs: list[TrialSpec]) -> None:
        self.specs.update({s.trial_id: s for s in specs})

    def _state(self, trial) -> dict:
        name = str(trial)
        if name not in self.live:
            saved = self.store.read_progress(name) or {}
            self.live[name] = {
                "history": saved.get("history", []),
                "best": saved.get("best", -math.inf),
                "state": saved.get("state"),
                "exploits": saved.get("exploits", []),
                "started": time.time() - saved.get("seconds", 0.0),
            }
        return self.live[name]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.ended.discard(str(trial))
        self._state(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name, state = str(trial), self._state(trial)
        if result.get("diverged"):
            state["diverged"] = result.get("error", "diverged")
            return
        if "epoch" not in result:
            return
        if name not in self.curves:
            self.curves[name] = CurveWriter(self.store.root / CURVES_DIR / name)
        if self.specs[name].kind == "multitask":
            self._multitask_result(name, state, result)
            self.curves[name].write(result, [])
            return
        task = self.tasks[self.specs[name].task]
        row = _epoch_fields(result, task.metric_keys())
        donor, new_attempt = result.get("restored_from_trial"), result.get("attempt") != state.get("attempt")
        state["attempt"] = result.get("attempt")
        if new_attempt and donor and donor != name:
            # PBT's exploit: from here the trial continues another trial's state, so its step count may go back.
            state["exploits"].append(
                {
                    "donor": donor,
                    "from_step": result["restored_from_step"],
                    "at_index": len(state["history"]),
                    "training": _resolved_spec(trial.config)["training"],
                }
            )
        since = state["exploits"][-1]["at_index"] if state["exploits"] else 0
        if any(h.get("optimizer_steps") == row.get("optimizer_steps") for h in state["history"][since:]):
            return  # a trial resumed from its own state repeating an evaluation it had reported
        state["history"].append(row)
        state["augmented_examples"] = result.get("augmented_examples", 0)
        self.curves[name].write(result, task.metric_keys())
        path = result.get(CHECKPOINT_PATH_KEY)
        if path and result.get("is_best") and result[OBJECTIVE] > state["best"]:
            try:
                self.store.install_checkpoint(name, lambda folder: _fetch(f"{path}/{BEST_DIR}", self.storage, folder))
                state["best"] = result[OBJECTIVE]
            except OSError as e:  # a full or failing disk: the old checkpoint stays; the trial is recorded failed
                state["write_error"] = f"cannot write its checkpoint: {e}"
        if path:
            state["state"] = path
        self.store.save_progress(
            name,
            {
                "trial_id": name,
                "fingerprint": self.specs[name].fingerprint,
                "history": state["history"],
                "best": state["best"],
                "state": state["state"],
                "exploits": state["exploits"],
                "seconds": time.time() - state["started"],
            },
        )

    def _multitask_result(self, name: str, state: dict, result: dict) -> None:
        """A joint trial's evaluation: install the export of each task that improved; a retry starts over."""
        spec = self.specs[name]
        if result.get("attempt") != state.get("attempt"):
            state["attempt"], state["history"] = result.get("attempt"), []
        row = _epoch_fields(result, [])
        row["tasks"] = {
            t: {
                k: v
                for k, v in result["tasks"][t].items()
                if k in (OBJECTIVE, "train_loss", "train_steps", *self.tasks[t].metric_keys())
            }
            for t in spec.tasks
        }
        state["history"].append(row)
        path = result.get(CHECKPOINT_PATH_KEY)
        for task in result.get("improved", []) if path else []:
            try:
                self.store.install_checkpoint(
                    spec.task_ids[task], lambda folder, t=task: _fetch(f"{path}/{BEST_DIR}/{t}", self.storage, folder)
                )
            except OSError as e:  # as for one task: the old export stays, and the joint trial is recorded failed
                state["write_error"] = f"cannot write its checkpoint for {task}: {e}"
        state["best"] = max(state["best"], result[OBJECTIVE])
        self.store.save_progress(
            name,
            {
                "trial_id": name,
                "fingerprint": spec.fingerprint,
                "history": state["history"],
                "best": state["best"],
                "state": None,
                "exploits": [],
                "seconds": time.time() - state["started"],
            },
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        name, state = str(trial), self._state(trial)
        epochs = self.specs[name].training["epochs"]
        if state.get("write_error"):
            # The kept checkpoint may be an older epoch than the history's best: the next `bench run` starts the
            # trial over rather than resume it.
            self._record(trial, "failed", state["write_error"])
            self.store.clear_progress(name)
        elif state.get("diverged"):
            self._record(trial, "diverged", state["diverged"])
        elif state["history"] and state["history"][-1]["epoch"] < epochs:
            self._record(trial, "stopped")
        else:
            self._record(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, "failed", _error_text(trial))

    def _record(self, trial, status: str, error: str | None = None) -> None:
        if str(trial) in self.ended:
            return
        self.ended.add(str(trial))
        name, state = str(trial), self._state(trial)
        if name in self.curves:
            self.curves.pop(name).close()
        spec = self.specs[name]
        if "sampled" in trial.config:  # Optuna chose this trial's values when it started
            spec = spec.with_sampled(trial.config["sampled"])
        if status in ("finished", "stopped") and not state["history"]:
            status, error = "failed", "the trial reported no evaluation"
        if spec.kind == "multitask":
            self._record_multitask(trial, spec, state, status, error)
            return
        task = self.tasks[spec.task]
        has_checkpoint = self.store.checkpoint_dir(name).is_dir()
        self.store.save_record(
            trial_record(
                spec.to_dict(),
                task.to_dict(),
                task.metric_keys(),
                state["history"],
                status,
                str(self.store.checkpoint_dir(name).relative_to(self.store.root)) if has_checkpoint else None,
                time.time() - state["started"],
                error,
                self.resources,
                parameter_count(self.store.checkpoint_dir(name)) if has_checkpoint else None,
                final_training=_resolved_spec(trial.config)["training"],
                exploits=state["exploits"],
                node_ids=sorted({h["node_id"] for h in state["history"] if h.get("node_id")}),
                failures=trial.num_failures,
                kind=spec.kind,
                augmented_examples=state.get("augmented_examples", 0),
                **({"stage_one": spec.stage_one} if spec.stage_one else {}),
                **({"chain": spec.chain} if spec.chain else {}),
            )
        )
        self.live.pop(name, None)

    def _record_multitask(self, trial, spec: TrialSpec, state: dict, status: str, error: str | None) -> None:
        """One record per task, as a single-task trial's, under the task's own id: leaderboards, tables and
        ensembles then treat each task's export like any checkpoint. The joint trial's time is split evenly."""
        name, wall = str(trial), time.time() - state["started"]
        shared = [
            "epoch",
            "learning_rate",
            "optimizer_steps",
            "train_samples",
            "train_seconds",
            "train_samples_per_s",
            "eval_seconds",
            "eval_samples_per_s",
            "peak_memory_mb",
            "node_id",
        ]
        for t in spec.tasks:
            record_id, task = spec.task_ids[t], self.tasks[t]
            epochs = [
                {**{k: h[k] for k in shared if k in h}, **h["tasks"][t], "mean_score": h[OBJECTIVE]}
                for h in state["history"]
            ]
            folder = self.store.checkpoint_dir(record_id)
            has_checkpoint = folder.is_dir()
            self.store.save_record(
                trial_record(
                    {**spec.to_dict(), "trial_id": record_id, "task": t},
                    task.to_dict(),
                    task.metric_keys(),
                    epochs,
                    status,
                    str(folder.relative_to(self.store.root)) if has_checkpoint else None,
                    wall / len(spec.tasks),
                    error,
                    self.resources,
                    parameter_count(folder) if has_checkpoint else None,
                    final_training=_resolved_spec(trial.config)["training"],
                    kind="multitask",
                    joint_trial=name,
                    joint_wall_seconds=wall,
                    mixture=spec.mixture,
                    node_ids=sorted({h["node_id"] for h in state["history"] if h.get("node_id")}),
                    failures=trial.num_failures,
                )
            )
        if status in DONE_STATUSES:  # the per-task records supersede the joint trial's progress file
            self.store.clear_progress(name)
        self.live.pop(name, None)


def _epoch_fields(result: dict, metric_keys: list[str]) -> dict:
    keep = [
        "epoch",
        OBJECTIVE,
        *metric_keys,
        "train_loss",
        "learning_rate",
        "optimizer_steps",
        "train_samples",
        "train_seconds",
        "train_samples_per_s",
        "eval_seconds",
        "eval_samples_per_s",
        "peak_memory_mb",
        "node_id",
        "trainable_parameters",
    ]
    return {k: result[k] for k in keep if k in result}


def _fetch(path: str, storage: str, folder: Path) -> None:
    _checkpoint_at(path, storage).to_directory(str(folder))


def _error_text(trial) -> str:
    try:
        text = Path(trial.error_file).read_text() if trial.error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:2000] if lines else "the trial failed (no error text)"
