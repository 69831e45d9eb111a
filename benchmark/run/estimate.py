"""What a study will cost before it runs: trial-hours, wall time and disk on the resources given (`bench run
--dry-run`; `bench validate` once a calibration is cached).

A calibration runs the real trainer (`train.local.run_local_trial`) for CALIBRATION_EPOCHS epochs on
CALIBRATION_EXAMPLES training and dev examples of a task, with a trial's threads (`cpus_per_worker`), once per
model, task and the settings that set the speed (length, batch sizes, precision, pooling, pair encoding, LoRA,
freezing), and caches it per machine in the cache folder (`calibration.json`, with each task's example counts by
the stamp of its data files). From it, per planned trial:

    seconds = epochs x (training examples x train s/example + dev examples x eval s/example) + fixed + TRIAL_START_S

where the rates are the last epoch's (the first one's warm-up, a few batches' worth, would count for hundreds),
`fixed` is the calibration's time besides training and evaluation (the model's load, the engine, the checkpoint's
save, that warm-up; the libraries are imported before the clock starts) and TRIAL_START_S a trial actor's start
(results/overhead/). A joint multi-task trial costs its
tasks' sum; a trial of several workers divides by their number (ideal data parallelism). Wall time places the
trials longest first on as many slots as fit at once (`resources`, on this machine's CPUs), two-stage and chain
trials after the rest, plus RUN_START_S. Disk: per trial, the calibration's checkpoint folder, its dev predictions
scaled to the dev set. Not counted: floors, test scoring, ensembles and merges after the trials, and trials a
scheduler (ASHA, HyperBand, PBT) stops early: the estimate is for every epoch of every trial.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark.common.atomic import atomic_write_json
from benchmark.common.checks import file_stats
from benchmark.common.hardware import cpu_model
from benchmark.common.hashing import fingerprint
from benchmark.config.suite import Suite, cache_dir
from benchmark.plan.trials import TrialSpec
from benchmark.train.checkpoints import PREDICTIONS_FILE
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.modeling import load_tokenizer
from tasks.encoding import encode_task
from tasks.loading import data_files, load_split, resolve_glue_dir
from tasks.spec import Windowing

CALIBRATION_EXAMPLES = 128
CALIBRATION_EPOCHS = 2
CALIBRATION_FILE = "calibration.json"
TRIAL_START_S = 1.0  # a trial actor's start and Tune's bookkeeping per trial (results/overhead/: 0.9 s median)
RUN_START_S = 6.0  # `bench run` to its first trial (results/startup/)
# Settings that do not change how long a step takes: one calibration serves every value of them.
NOT_SPEED = ("learning_rate", "epochs", "warmup_ratio", "weight_decay", "adam_epsilon", "max_grad_norm", "init_seed")
LATER_KINDS = ("two-stage", "chain")


@dataclass(frozen=True)
class Rates:
    """One calibration: seconds per training and per dev example, fixed seconds per trial, bytes per checkpoint
    (without its dev predictions) and per dev example's prediction."""

    train_s: float
    eval_s: float
    fixed_s: float
    checkpoint_bytes: int
    prediction_bytes: float


@dataclass(frozen=True)
class Estimate:
    trials: int
    trial_hours: float
    wall_s: float
    slots: int
    disk_bytes: int

    def lines(self) -> list[str]:
        return [
            f"Estimate: {self.trials} trials, {self.trial_hours:.2f} trial-hours; wall about {clock(self.wall_s)} "
            f"with {self.slots} at once; disk about {self.disk_bytes / 2**30:.2f} GiB of checkpoints.",
            "  (every epoch of every trial, from short calibrations on this machine's CPU; floors, test "
            "scoring, ensembles and merges not counted: docs/performance.md)",
        ]


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def estimate(suite: Suite, plan: list[TrialSpec], calibrate: bool = True, log=print) -> Estimate | None:
    """The cost of a plan of CPU trials (a CPU calibration says nothing of GPUs); None when a calibration it needs
    is not cached and `calibrate` is off."""
    resources = suite.config.resources
    cached = _read_cache(suite)
    counts: dict[str, tuple[int, list[int]]] = {}
    stamps = {m.name: _config_stamp(m.path) for m in suite.models}  # read once, not per trial
    seconds, disk = {}, 0
    for spec in plan:
        total = 0.0
        for name in spec.tasks or (spec.task,):
            key = _key(suite, spec, stamps[spec.model_name], name, resources.cpus_per_worker)
            if key not in cached and not calibrate:
                return None
            if name not in counts:
                counts[name] = _counts(suite, name, cached)
            train, devs = counts[name]
            if key in cached:
                rates = Rates(**cached[key])
            else:
                log(
                    f"Calibrating {spec.model_name} on {name} ({CALIBRATION_EXAMPLES} examples, "
                    f"{CALIBRATION_EPOCHS} epochs)..."
                )
                rates = _calibrate(suite, spec, name, resources.cpus_per_worker, train, devs)
                cached[key] = dataclasses.asdict(rates)
                _write_cache(suite, cached)
            dev = sum(devs)
            epoch = train * rates.train_s + dev * rates.eval_s
            total += spec.training["epochs"] * epoch + rates.fixed_s
            disk += rates.checkpoint_bytes + int(dev * rates.prediction_bytes)
        seconds[spec.trial_id] = total / resources.workers_per_trial + TRIAL_START_S
    slots = _slots(resources)
    first = [seconds[t.trial_id] for t in plan if t.kind not in LATER_KINDS]
    later = [seconds[t.trial_id] for t in plan if t.kind in LATER_KINDS]
    wall = RUN_START_S + _makespan(first, slots) + _makespan(later, slots)
    return Estimate(len(plan), sum(seconds.values()) / 3600, wall, slots, disk)


def _slots(resources) -> int:
    per_trial = resources.workers_per_trial * resources.cpus_per_worker
    fits = max(1, int((os.cpu_count() or 1) // per_trial))
    return min(fits, resources.max_concurrent_trials) if resources.max_concurrent_trials else fits


def _makespan(durations: list[float], slots: int) -> float:
    """Longest first, each on the slot that frees first (how Tune fills free resources)."""
    ends = [0.0] * slots
    for d in sorted(durations, reverse=True):
        i = ends.index(min(ends))
        ends[i] += d
    return max(ends) if durations else 0.0


def _config_stamp(path: str) -> str:
    config = Path(path) / "config.json"
    return fingerprint(config.read_text()) if config.is_file() else ""


def _key(suite: Suite, spec: TrialSpec, stamp: str, task: str, cpus: float) -> str:
    """The machine, the suite's model (its path and config's `stamp`: two-stage and chain trials start from
    checkpoints of it), the task and the settings that set the speed."""
    model = _model(suite, spec)
    speed = {k: v for k, v in sorted(spec.training.items()) if k not in NOT_SPEED}
    return json.dumps([cpu_model(), cpus, model.path, stamp, task, speed], sort_keys=True, default=str)


def _counts(suite: Suite, name: str, cached: dict) -> tuple[int, list[int]]:
    """A task's training examples and each dev split's, as the suite caps them; kept in the calibration cache by
    the task, its caps and its files' sizes and times (reading the data imports datasets: a second of `bench
    validate`), read afresh where the data comes from the hub."""
    data, task = suite.config.data, _task(suite, name)
    glue_dir = resolve_glue_dir(data.glue_dir, data.data_dir)
    files = data_files(task, glue_dir)
    stats = file_stats(files.values()) if files is not None else None
    caps = (data.train_cap(name), data.max_eval_samples, data.sample_seed)
    key = f"examples {fingerprint([task.to_dict(), caps, stats])}" if stats is not None else None
    if key in cached:
        return cached[key]["train"], cached[key]["dev"]

    def size(split: str, cap) -> int:
        return len(load_split(task, split, glue_dir, cache_dir(suite), cap, data.sample_seed))

    train, devs = size("train", caps[0]), [size(s, caps[1]) for s in task.eval_splits]
    if key is not None:
        cached[key] = {"train": train, "dev": devs}
        _write_cache(suite, cached)
    return train, devs


def _model(suite: Suite, spec: TrialSpec):
    return next(m for m in suite.models if m.name == spec.model_name)


def _task(suite: Suite, name: str):
    return next(t for t in suite.tasks if t.name == name)


def _calibrate(suite: Suite, spec: TrialSpec, name: str, cpus: float, train: int, devs: list[int]) -> Rates:
    """`train` and `devs`: the task's example counts (`_counts`), of which the calibration takes at most
    CALIBRATION_EXAMPLES per split."""
    # Imported here for start-up speed (torch, deepspeed): only a calibration trains.
    import torch

    # Imported here for start-up speed (torch, deepspeed).
    from benchmark.train.engine import import_deepspeed
    from benchmark.train.local import run_local_trial

    task, model, data_cfg = _task(suite, name), _model(suite, spec), suite.config.data
    training = {**spec.training, "epochs": CALIBRATION_EPOCHS}
    tokenizer = load_tokenizer(model.path, suite.config.trust_remote_code)
    data = encode_task(
        task, tokenizer, training["max_seq_length"], resolve_glue_dir(data_cfg.glue_dir, data_cfg.data_dir),
        cache_dir(suite), CALIBRATION_EXAMPLES, CALIBRATION_EXAMPLES, data_cfg.sample_seed,
        pair_encoding=training.get("pair_encoding", "cross"), windowing=Windowing.of(training),
    )  # fmt: skip
    train_n, dev_n = min(CALIBRATION_EXAMPLES, train), sum(min(CALIBRATION_EXAMPLES, n) for n in devs)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(cpus)))  # as a trial's worker runs
    out = Path(tempfile.mkdtemp(prefix="bench-calibration-"))
    try:
        import_deepspeed()  # as a trial's actor has by the time it trains: not the trial's own time
        started = time.perf_counter()
        result = run_local_trial(
            TrainingConfig(**training), model.path, 1, data, out, suite.config.trust_remote_code, log=lambda _: None
        )
        wall = time.perf_counter() - started
        last = result.epochs[-1]
        folder = out / "checkpoint"
        predictions = (folder / PREDICTIONS_FILE).stat().st_size
        weights = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) - predictions
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(out, ignore_errors=True)
    # The fixed part: the calibration's time besides its epochs' training and evaluation at the last epoch's rate.
    steady = CALIBRATION_EPOCHS * (last["train_seconds"] + last["eval_seconds"])
    return Rates(last["train_seconds"] / train_n, last["eval_seconds"] / max(1, dev_n), max(0.0, wall - steady),
                 weights, predictions / max(1, dev_n))  # fmt: skip


def _cache_path(suite: Suite) -> Path:
    return cache_dir(suite) / CALIBRATION_FILE


def _read_cache(suite: Suite) -> dict:
    try:
        return json.loads(_cache_path(suite).read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(suite: Suite, cached: dict) -> None:
    _cache_path(suite).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(_cache_path(suite), cached)
