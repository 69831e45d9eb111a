"""`bench run`: plan, prepare data once, run the trials through Ray, and write the leaderboard."""

from __future__ import annotations

import dataclasses
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmark.common.atomic import atomic_write_json
from benchmark.common.checks import checked_before, remember_checked
from benchmark.common.errors import InputError
from benchmark.common.hashing import fingerprint
from benchmark.common.paths import check_writable_dir
from benchmark.config.suite import Suite, cache_dir, window_settings
from benchmark.plan.trials import TrialSpec, data_key, make_plan
from benchmark.records.lock import run_lock
from benchmark.records.store import RunStore
from benchmark.results.board import leaderboard_from_runs
from benchmark.results.final_scores import score_chosen_on_test, score_ensembles_on_test
from benchmark.results.floors import compute_floors
from benchmark.results.leaderboard import best_source_checkpoint
from benchmark.results.tables import rich_table, write_leaderboard
from benchmark.run.data import data_reports, report_is_current, write_data_report
from benchmark.run.estimate import estimate
from benchmark.run.tracking import finish_tracking, open_tracker
from benchmark.train.checkpoints import checkpoint_problem
from benchmark.train.curves import CURVES_DIR
from benchmark.train.modeling import load_tokenizer
from tasks.augment import Augmentation
from tasks.encoding import TaskData, cached_task, encode_task, source_stamp, windows_note
from tasks.loading import data_files, holdout_record, load_split, resolve_glue_dir
from tasks.spans import check_windows
from tasks.spec import TaskType, Windowing

SPLITS_FILE = "splits.json"
TRUST_WARNING = (
    "warning: trust_remote_code is true: the model folders' own Python code will run in this process "
    "and in every trial; use it only with models whose code you trust"
)


def make_console() -> Console:
    """A terminal gets rich output at its own width; a log file gets lines wide enough for trial ids."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def check_data(suite: Suite) -> None:
    """Read every split of every task, so that a missing file, column or label fails before anything starts."""
    glue_dir = resolve_glue_dir(suite.config.data.glue_dir, suite.config.data.data_dir)
    for task in suite.tasks:
        files = list((data_files(task, glue_dir) or {}).values())  # none: read from the hub, checked every time
        what = f"data {task.name} {fingerprint(task.to_dict())}"
        if files and checked_before(what, files, None):
            continue
        for split in (*task.splits, *([task.final_test] if task.final_test else [])):
            load_split(task, split, glue_dir, cache_dir(suite))
        if files:
            remember_checked(what, files, None)
    if any(t.type is TaskType.EXTRACTIVE_QA for t in suite.tasks):
        check_windows_of(suite)


def check_windows_of(suite: Suite) -> None:
    """An extractive QA task's windows must cut every context: each model's tokenizer (a fast one, which maps
    tokens to characters) with every window setting the plan can give."""
    for model in suite.models:
        tokenizer = load_tokenizer(model.path, suite.config.trust_remote_code)
        if not tokenizer.is_fast:
            raise InputError(
                f"model {model.name}", "extractive QA needs a fast tokenizer: it maps tokens to characters"
            )
        for length, stride, query in window_settings(suite.config):
            if why := check_windows(tokenizer, length, stride, query):
                raise InputError("training.doc_stride", why)


def write_split_records(suite: Suite, store: RunStore) -> None:
    """splits.json: for each task that holds validation or test data out of its training file, which rows."""
    glue_dir = resolve_glue_dir(suite.config.data.glue_dir, suite.config.data.data_dir)
    records = {t.name: holdout_record(t, cache_dir(suite), glue_dir) for t in suite.tasks if t.holdout}
    if records:
        atomic_write_json(store.root / SPLITS_FILE, records)


def prepare_data(suite: Suite, trials: list[TrialSpec]) -> dict[str, TaskData]:
    """Tokenise each (model, task, max length) the trials need, once (and from the cache when done before)."""
    data_cfg = suite.config.data
    glue_dir = resolve_glue_dir(data_cfg.glue_dir, data_cfg.data_dir)
    tasks = {t.name: t for t in suite.tasks}
    out = {}
    for model in suite.models:
        needed = {
            data_key(model.name, task, t.training): (task, t.training)
            for t in trials
            if t.model_name == model.name
            for task in (t.tasks or (t.task,))
        }
        tokenizer = None  # loaded (seconds: it imports transformers) only when something must be encoded
        for key, (name, training) in sorted(needed.items()):
            task, length = tasks[name], training["max_seq_length"]
            caps = (data_cfg.train_cap(name), data_cfg.max_eval_samples, data_cfg.sample_seed)
            aug = Augmentation.of(training)
            pairs = training.get("pair_encoding", "cross")
            windows = Windowing.of(training)  # an extractive QA task's; others ignore it
            stamp = source_stamp(task, model.path, length, glue_dir, *caps, aug, pairs, windows)
            data = stamp and cached_task(task, stamp, cache_dir(suite))
            if data is None:
                tokenizer = tokenizer or load_tokenizer(model.path, suite.config.trust_remote_code)
                data = encode_task(
                    task, tokenizer, length, glue_dir, cache_dir(suite), *caps, aug, stamp=stamp, pair_encoding=pairs,
                    windowing=windows,
                )  # fmt: skip
            out[key] = data
    return out


def start_ray(address: str | None) -> Future:
    """Start Ray (or join the cluster) in a thread: it takes seconds, which overlap the driver reading the data and
    importing the Tune glue. The thread then stays alive: Ray ties its processes' lives to the thread that started
    them (Linux's parent-death signal is per thread), so they must not outlive it."""
    started: Future = Future()

    def start() -> None:
        try:
            # Imported here for start-up speed (ray).
            from benchmark.run.cluster import connect

            connect(address)
            started.set_result(None)
        except BaseException as e:  # the driver raises it where it waits
            started.set_exception(e)
        threading.Event().wait()

    threading.Thread(target=start, name="ray-start", daemon=True).start()
    return started


def pending_trials(store: RunStore, plan: list[TrialSpec]) -> list[TrialSpec]:
    """Trials without a finished record. A finished record made by different settings is refused, not overwritten."""
    finished = store.finished()
    pending = []
    for spec in plan:
        records = [finished.get(i) for i in spec.record_ids]  # a joint trial is done when every task's record is
        if any(r is None for r in records):
            pending.append(spec)
        elif any(r.get("fingerprint") != spec.fingerprint for r in records):
            raise InputError(
                str(store.root),
                f"holds trial {spec.trial_id} run with other settings; use another --output, or remove that folder",
            )
        elif problem := _damaged_checkpoint(store, records):  # never kept silently: the trial runs again
            print(f"warning: {spec.trial_id} runs again: {problem}", file=sys.stderr)
            pending.append(spec)
    return pending


def _damaged_checkpoint(store: RunStore, records: list[dict]) -> str | None:
    for record in records:
        problem = record.get("checkpoint") and checkpoint_problem(store.root / record["checkpoint"])
        if problem:
            return f"its checkpoint {record['checkpoint']}: {problem}"
    return None


def resumable_states(store: RunStore, pending: list[TrialSpec]) -> dict[str, str]:
    """Unfinished trials of an interrupted run whose last saved state can be continued."""
    states = {}
    for spec in pending:
        progress = store.read_progress(spec.trial_id)
        if progress and progress.get("fingerprint") == spec.fingerprint and progress.get("state"):
            if "://" in progress["state"] or Path(progress["state"], "state").is_dir():
                states[spec.trial_id] = progress["state"]
    return states


def print_plan(console: Console, suite: Suite, plan: list[TrialSpec], pending: list[TrialSpec]) -> None:
    r = suite.config.resources
    table = Table(title=f"{suite.name}: {len(plan)} trials ({len(pending)} to run)")
    for col in ("trial", "model", "task", "grid point", "seed", "state"):
        table.add_column(col)
    todo = {t.trial_id for t in pending}
    for t in plan:
        point = ", ".join(f"{k}={v}" for k, v in t.point.items()) or "—"
        table.add_row(
            t.trial_id,
            t.model_name,
            "+".join(t.tasks) if t.tasks else t.chain or t.task,
            point,
            str(t.seed),
            "to run" if t.trial_id in todo else "done",
        )
    console.print(table)
    limit = f", at most {r.max_concurrent_trials} at once" if r.max_concurrent_trials else ", as many at once as fit"
    console.print(
        f"Resources per trial: {r.workers_per_trial} worker(s) x ({r.cpus_per_worker:g} CPU, "
        f"{r.gpus_per_worker:g} GPU){limit}. Output: {suite.output}"
    )
    if suite.ensemble.methods:
        pools = ", ".join("all" if k is None else f"top {k}" for k in suite.ensemble.pool_sizes)
        console.print(
            f"Then ensembles: {', '.join(suite.ensemble.methods)}; pools {pools}; "
            f"split seed {suite.ensemble.split_seed}."
        )
    if suite.merge is not None and suite.merge.methods:
        console.print(
            f"Then merges of {', '.join(suite.merge.tasks)}: {', '.join(suite.merge.methods)}; "
            f"λ in {', '.join(f'{s:g}' for s in suite.merge.scales)}, chosen on the selection half."
        )


def print_estimate(console: Console, suite: Suite, pending: list[TrialSpec], calibrate: bool) -> None:
    """The pending trials' cost (`run/estimate.py`); without `calibrate`, only from cached calibrations."""
    if not pending:
        return
    if suite.config.resources.gpus_per_worker > 0:
        console.print("Estimate: none for GPU trials (the calibration runs on this machine's CPU).")
        return
    found = estimate(suite, pending, calibrate=calibrate, log=console.print)
    if found is None:
        console.print("Estimate: `bench run --dry-run` calibrates this machine once (seconds per model and task).")
        return
    for line in found.lines():
        console.print(line, highlight=False)


def run_suite(
    suite: Suite, address: str | None = None, dry_run: bool = False, console: Console | None = None
) -> dict | None:
    console = console or make_console()
    plan = make_plan(suite)
    store = RunStore(suite.output)
    if dry_run:
        pending = pending_trials(store, plan) if store.root.exists() else plan
        print_plan(console, suite, plan, pending)
        print_estimate(console, suite, pending, calibrate=True)
        return None
    check_writable_dir(store.root, "output")
    with run_lock(store.root):  # before Ray starts: a second command on this directory fails at once
        if suite.config.trust_remote_code:
            console.print(TRUST_WARNING)
        return _run_locked(suite, plan, store, address, console)


def _run_locked(suite: Suite, plan: list[TrialSpec], store: RunStore, address: str | None, console: Console) -> dict:
    pending = pending_trials(store, plan)
    ray_started = start_ray(address) if pending else None
    task_data = prepare_data(suite, pending) if pending else {}  # reads every split: bad data fails here
    for key, data in sorted(task_data.items()):
        if note := windows_note(data):
            console.print(f"{key}: {note}")
    store.write_suite(suite.to_dict())
    write_split_records(suite, store)
    tracker = open_tracker(suite.tracking, store.root, console.print)
    if pending:
        # Imported here for start-up speed (ray).
        from benchmark.run.live import LiveDisplay
        from benchmark.run.mlflow_callback import tracking_callbacks
        from benchmark.run.tune import run_trials

        resume = resumable_states(store, pending)
        planned = {t.trial_id for t in plan}
        if len(pending) < len(plan) or resume:
            console.print(
                f"Resuming: {len(plan) - len(pending)} finished trials kept; {len(pending)} to run, "
                f"{len(resume)} of them from their last saved state."
            )
        console.print(f"Training curves: tensorboard --logdir {store.root / CURVES_DIR}")
        display = LiveDisplay(
            console,
            total=len(pending),
            skipped=len(plan) - len(pending),
            epochs_per_trial=max(t.training["epochs"] for t in pending),
            kept=[r for r in store.finished().values() if r["trial_id"] in planned],
        )
        callbacks = [display, *tracking_callbacks(tracker)]
        # Two-stage and chain trials start from checkpoints of other trials, so they run after every other trial.
        later_kinds = ("two-stage", "chain")
        first = [t for t in pending if t.kind not in later_kinds]
        ray_started.result()  # re-raises a failed connection (--address)
        try:
            if first:
                run_trials(suite, first, task_data, store, address, callbacks=callbacks, resume=resume)
            ready = []
            for t in (chain_start(store, t) for t in pending if t.kind in later_kinds):
                if (Path(t.model_path) / "config.json").is_file():
                    ready.append(t)
                else:
                    start = t.stage_one or t.source_task or t.model_path
                    console.print(f"skipped {t.trial_id}: {start} left no checkpoint to start {t.task} from")
            if ready:
                run_trials(suite, ready, task_data, store, address, callbacks=callbacks, resume=resume)
        finally:
            display.close()
    # What is in the data, once for each state of it: after the trials, which need none of it, so it does not
    # delay their start (seconds: the tokenizer's import).
    if not report_is_current(store.root, suite):
        write_data_report(store.root, suite, data_reports(suite))
    score_chosen_on_test(store, log=console.print)
    compute_floors(suite, store, log=console.print)
    # The trials' leaderboard is written first: an ensemble that fails cannot cost it.
    board = write_run_leaderboard(store)
    if suite.merge is not None:  # before the ensembles: merged checkpoints are candidates like any other
        # Imported here for start-up speed (torch).
        from ensembles.merge import build_merges

        if build_merges(store, suite, suite.merge, log=console.print):
            score_chosen_on_test(store, log=console.print)
        board = write_run_leaderboard(store)
    if suite.ensemble.methods:
        # Imported here for start-up speed (torch).
        from ensembles.build import build_ensembles

        build_ensembles(store, suite, suite.ensemble, log=console.print)
        score_ensembles_on_test(store, log=console.print)
        board = write_run_leaderboard(store)
    console.print(rich_table(board))
    console.print(f"Leaderboard: {store.root / 'leaderboard.md'}  (a report with plots: bench report {store.root})")
    if tracker is not None:
        finish_tracking(tracker, store.root, console.print)
    return board


def chain_start(store: RunStore, trial: TrialSpec) -> TrialSpec:
    """A chain trial whose source is a task of this run, with the source's best checkpoint as its model (its
    model_path stays empty when the source left none); any other trial as it is."""

    if trial.kind != "chain" or not trial.source_task:
        return trial
    source = best_source_checkpoint(store.records(), trial.model_name, trial.source_task)
    return dataclasses.replace(trial, model_path=str(store.root / source["checkpoint"]) if source else "")


def write_run_leaderboard(store: RunStore) -> dict:
    """The leaderboard of a run directory (its trials' rows and the ensemble rows it holds), written into it:
    what `bench table RUN_DIR` prints too, to the byte."""
    board, _ = leaderboard_from_runs([store.root])
    write_leaderboard(board, store.root)
    return board
