"""The Ray Tune glue: one study (a `Tuner`) per model and task, its search algorithm and scheduler, and the Tune
callbacks that hand trial events to the recorder and the live display. A trial itself is `run.trial.tune_trial`.
The driver records every trial in the run store as results arrive, so nothing finished depends on the driver
living to the end.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import ray
from ray import tune
from ray.air._internal import usage as air_usage
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, PopulationBasedTraining

from benchmark.config.search import MUTABLE_KEYS
from benchmark.plan.trials import TrialSpec, data_key
from benchmark.records.store import RAY_STORAGE_DIR, RunStore
from benchmark.run.cluster import ReleaseStoppedTrials, concurrency, connect
from benchmark.run.recorder import TrialEnd, TrialRecorder, error_text
from benchmark.run.trial import ProgressBoard, TrialOptions, resolved_spec, trial_resources, tune_trial
from tasks.encoding import TaskData
from tasks.metrics import OBJECTIVE, OBJECTIVE_MODE

PROGRESS_POLL_S = 2.0  # how often the driver reads the running trials' in-epoch progress


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
    # Tune's own CSV, JSON and TensorBoard logs of every result: bench keeps its records and curves itself, and
    # Tune's TensorBoard logger imports torch into the driver (2.5 s of start-up).
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    _skip_callback_census()
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
        final_state=search.scheduler.type == "pbt",
    )
    refs = {key: ray.put(data) for key, data in task_data.items()}
    recorder = TrialRecorder(
        store,
        {t.name: t for t in suite.tasks},
        storage,
        {k: getattr(resources, k) for k in ("workers_per_trial", "cpus_per_worker", "gpus_per_worker")},
    )
    # Ray Train's placement groups outlive a stopped trial; one-worker trials have none.
    extra = [ReleaseStoppedTrials()] if options.workers > 1 else []
    board = ProgressBoard.remote()
    extra += [PollProgress(board, [c for c in callbacks if hasattr(c, "progress_update")])]
    for study in _studies(suite, trials):
        specs = [{**t.to_dict(), "resume_from": (resume or {}).get(t.trial_id)} for t in study]
        recorder.expect(study)
        _run_study(
            suite,
            specs,
            refs,
            board,
            options,
            task_data,
            max_concurrent,
            [RecordTrials(recorder), *extra, *callbacks],
            store,
        )
    if "://" not in storage:  # every kept checkpoint now lives in the run directory
        for folder in Path(storage).glob("train-*"):
            shutil.rmtree(folder, ignore_errors=True)


def _skip_callback_census() -> None:
    """Tune counts the callbacks it is given for Ray's usage statistics, which bench turns off
    (`cluster.RAY_SETTINGS`); counting imports the MLflow, W&B and Comet integrations to compare classes, 2 s of
    start-up where mlflow is installed. With statistics off the count is never sent, so bench skips it."""
    if os.environ.get("RAY_USAGE_STATS_ENABLED") == "0" and hasattr(air_usage, "tag_callbacks"):
        air_usage.tag_callbacks = lambda callbacks: False


def _studies(suite, trials: list[TrialSpec]) -> list[list[TrialSpec]]:
    """Trials that a scheduler or search algorithm may compare: one model on one task (and, for Optuna, one grid
    point, since each Optuna study samples the space around fixed grid values). Where nothing compares trials
    (FIFO over a grid or random samples) every trial runs in one study, so trial actors are reused across tasks."""
    search = suite.config.search
    if search.scheduler.type == "fifo" and search.resolved_algorithm != "optuna":
        return [list(trials)]
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
    board,
    options: TrialOptions,
    task_data: dict,
    max_concurrent: int,
    callbacks: list,
    store: RunStore,
) -> None:
    search = suite.config.search
    trainable = tune.with_parameters(tune_trial, data_refs=refs, options=options, board=board)
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
        tune.with_resources(trainable, trial_resources(options)),
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
            # A one-worker trial runs in its actor, and the next trial reuses it: torch, transformers, DeepSpeed
            # and its compiled op stay loaded (Ray 2.60 defaults to a new actor per trial).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{_study_name(specs)}-{time.strftime('%Y%m%d-%H%M%S')}",
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


def _study_name(specs: list[dict]) -> str:
    tasks = {s["task"] for s in specs}
    return specs[0]["task"] if len(tasks) == 1 else "all"


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
    # optuna: an optional dependency, imported only where it is used (Ray's searcher imports it).
    from ray.tune.search.optuna import OptunaSearch

    done = [
        r
        for r in store.finished().values()
        if r["task"] == spec["task"]
        and r["model"] == spec["model_name"]
        and "optuna" in r["grid_point"]
        and all(r["grid_point"].get(k) == spec["point"].get(k) for k in search.grid)
    ]
    # optuna: an optional dependency, imported only where it is used.
    from optuna.samplers import TPESampler

    # Ray's OptunaSearch flattens the space ("sampled/learning_rate"); a warm-start point must be named the same.
    points = [{f"sampled/{k}": r["grid_point"][k] for k in search.space} for r in done]
    # Optuna's default, 10 random trials before TPE starts, would make a small study plain random search.
    startup = min(10, max(2, search.num_samples // 3))
    return OptunaSearch(
        metric="best_score",
        mode=OBJECTIVE_MODE,
        sampler=TPESampler(seed=search.sample_seed, n_startup_trials=startup),
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


class RecordTrials(tune.Callback):
    """Hands Tune's trial events to the recorder as plain values."""

    def __init__(self, recorder: TrialRecorder):
        self.recorder = recorder

    def on_trial_start(self, iteration, trials, trial, **info):
        self.recorder.started(str(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.recorder.result(str(trial), resolved_spec(trial.config)["training"], result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.recorder.completed(str(trial), _end(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.recorder.failed(str(trial), _end(trial), error_text(trial.error_file))


def _end(trial) -> TrialEnd:
    return TrialEnd(resolved_spec(trial.config)["training"], trial.num_failures, trial.config.get("sampled"))


class PollProgress(tune.Callback):
    """Reads the running trials' in-epoch progress from the board every few seconds, for the live display. It never
    waits on the board: Tune's loop runs on while a read is in flight (the first waits for the board's actor)."""

    def __init__(self, board, displays: list):
        self.board, self.displays, self.last, self.pending = board, displays, 0.0, None

    def on_step_begin(self, iteration, trials, **info):
        if not self.displays:
            return
        if self.pending is None:
            if time.monotonic() - self.last >= PROGRESS_POLL_S:
                self.pending, self.last = self.board.read.remote(), time.monotonic()
            return
        if not ray.wait([self.pending], timeout=0)[0]:
            return
        read, self.pending = self.pending, None
        try:
            latest = ray.get(read)
        except Exception:  # progress is a nicety: a lost board never stops the run
            return
        for display in self.displays:
            display.progress_update(latest)


def tune_distribution(spec: dict):
    """The Ray Tune object for one of our distributions (for Optuna and PBT's mutations)."""
    ((kind, args),) = spec.items()
    return {"choice": tune.choice, "uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[
        kind
    ](*([args] if kind == "choice" else args))
