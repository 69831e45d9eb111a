"""The run directory: the resolved suite, one record and one checkpoint folder per trial, the leaderboards.

Every record is written atomically when its trial ends, so a driver that dies loses no finished trial.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TypedDict

import yaml

from benchmark.common.atomic import atomic_replace_dir, atomic_write_json, atomic_write_text, staging_dir_for
from benchmark.common.errors import InputError, first_line
from benchmark.common.paths import check_name
from benchmark.common.yamlfile import read_yaml
from benchmark.train.checkpoints import write_hashes
from benchmark.train.hyperparams import init_seed_of
from tasks.metrics import OBJECTIVE

SUITE_FILE = "suite.yaml"
DONE_STATUSES = ("finished", "stopped", "diverged")
RECORD_FILE = "record.json"
PROGRESS_FILE = "progress.json"  # a running trial's history and latest saved state; replaced by the record
CHECKPOINT_DIR = "checkpoint"
FLOORS_DIR = "floors"  # floor records (zero-shot, probe): rows like trials', made without training the encoder
RAY_STORAGE_DIR = "ray"  # Ray Tune's storage, unless the suite names another: Ray writes there, not bench


class TrialRecord(TypedDict, total=False):
    """What `trials/<id>/record.json` holds of one trial (`trial_record` writes it): rows, tables, statistics and
    ensembles need nothing else. Scores are 0-100 in `epochs` and `best_*`, and metric names are the task's own,
    declared once in its spec (`metric_keys`)."""

    trial_id: str
    status: str  # finished, stopped (by a scheduler), diverged or failed
    kind: str  # single, multitask (one task's share of a joint trial), two-stage, chain or merged
    task: str
    task_spec: dict  # the task's declaration, tasks.spec.TaskSpec.to_dict()
    metric_keys: list[str]
    model: str
    model_path: str
    grid_point: dict
    seed: int
    init_seed: int  # the seed its new head (and LoRA adapters) were drawn from: training.init_seed, else the seed
    training: dict  # the training hyperparameters that ran
    selection_seed: int | None  # the split-half seed whose selection half chose the kept epoch; None: all of dev
    fingerprint: str  # changes when anything that shapes the result changes
    epochs: list[dict]  # one row per evaluation point: train.evaluation's scores and the compute since the last
    best_epoch: float | None  # the kept evaluation, chosen by its selection score
    best_score: float | None
    best_metrics: dict[str, float] | None
    checkpoint: str | None  # the kept checkpoint folder, relative to the run directory
    wall_seconds: float
    train_samples: int
    optimizer_steps: int
    train_samples_per_s: float | None
    peak_memory_mb: float | None
    precision: str | None  # what ran: `auto` resolved on the trial's device
    pooling: str | None  # what ran: cls or mean, `training.pooling` resolved for the model
    pair_encoding: str | None  # what ran: cross, or bi (a pair task with `training.pair_encoding: bi`)
    device_name: str | None
    resources: dict | None  # workers_per_trial, cpus_per_worker, gpus_per_worker
    parameters: int | None  # of the kept model
    error: str | None
    # Only some kinds or paths write these.
    augmented_examples: int
    exploits: list  # PBT's exploits of other trials' states
    failures: int  # retries from the last saved state
    final_training: dict  # hyperparameters at the end, where PBT changed them
    node_ids: list[str]
    chain: str  # chain trials: `source→target`
    stage_one: str  # two-stage trials: the joint trial they start from
    joint_trial: str  # a joint trial's per-task records: the trial they share
    joint_wall_seconds: float
    mixture: dict
    merge: dict  # merged records: method, λ, sources, and what chose λ
    system: str  # the row's name where the kind has several (merges: `model method`)
    source_trials: list[str]
    predictions_file: str  # merged records: their report-half predictions
    test_metrics: dict  # added when the row is built: the chosen checkpoint scored once on test
    test_predictions: str


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.trials = self.root / "trials"

    def trial_dir(self, trial_id: str) -> Path:
        return self.trials / check_name(trial_id, str(self.trials), "trial id")

    def checkpoint_dir(self, trial_id: str) -> Path:
        return self.trial_dir(trial_id) / CHECKPOINT_DIR

    def write_suite(self, suite_dict: dict) -> None:
        atomic_write_text(self.root / SUITE_FILE, yaml.safe_dump(suite_dict, sort_keys=False))

    def read_suite(self) -> dict:
        path = self.root / SUITE_FILE
        if not path.is_file():
            raise InputError(str(self.root), "not a bench run directory (no suite.yaml)")
        suite = read_yaml(path, "run's suite")
        if not isinstance(suite, dict):
            raise InputError(str(path), "holds no suite (not a mapping); it was edited or damaged")
        return suite

    def save_record(self, record: dict) -> None:
        atomic_write_json(self.trial_dir(record["trial_id"]) / RECORD_FILE, record)
        if record["status"] in DONE_STATUSES:  # the record supersedes it; a failed trial may still resume from it
            (self.trial_dir(record["trial_id"]) / PROGRESS_FILE).unlink(missing_ok=True)

    def clear_progress(self, trial_id: str) -> None:
        (self.trial_dir(trial_id) / PROGRESS_FILE).unlink(missing_ok=True)
        if self.trial_dir(trial_id).is_dir() and not any(self.trial_dir(trial_id).iterdir()):
            self.trial_dir(trial_id).rmdir()

    def save_progress(self, trial_id: str, progress: dict) -> None:
        atomic_write_json(self.trial_dir(trial_id) / PROGRESS_FILE, progress)

    def read_progress(self, trial_id: str) -> dict | None:
        path = self.trial_dir(trial_id) / PROGRESS_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def records(self, required: tuple[str, ...] = ()) -> list[TrialRecord]:
        """The trials' records; `required`: keys beyond REQUIRED that a record must hold to be used."""
        return _read_records(sorted(self.trials.glob(f"*/{RECORD_FILE}")), required)

    def floor_dir(self, floor_id: str) -> Path:
        return self.root / FLOORS_DIR / check_name(floor_id, FLOORS_DIR, "floor id")

    def floor_records(self, required: tuple[str, ...] = ()) -> list[TrialRecord]:
        """The floors' records (benchmark/results/floors.py): shaped as trial records, of kinds zero-shot and probe."""
        return _read_records(sorted((self.root / FLOORS_DIR).glob(f"*/{RECORD_FILE}")), required)

    def save_floor_record(self, record: dict) -> None:
        atomic_write_json(self.floor_dir(record["trial_id"]) / RECORD_FILE, record)

    def finished(self) -> dict[str, TrialRecord]:
        """Trials that ran to their end: completed, stopped early by a scheduler, or diverged. Failed ones rerun."""
        return {r["trial_id"]: r for r in self.records() if r.get("status") in DONE_STATUSES}

    def install_checkpoint(self, trial_id: str, fetch) -> Path:
        """Place a trial's checkpoint atomically, with its files' hashes; `fetch(folder)` fills a staging folder
        beside the target."""
        target = self.checkpoint_dir(trial_id)
        staging = staging_dir_for(target)
        try:
            fetch(staging)
            write_hashes(staging)  # checked wherever the checkpoint is used: damage is never used silently
            atomic_replace_dir(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


# What trial_record writes, by type: a record read back with one of these of another type is not used.
RECORD_SHAPE = {
    "trial_id": str, "status": str, "task": str, "model": str, "fingerprint": str, "task_spec": dict,
    "metric_keys": list, "epochs": list, "best_metrics": (dict, type(None)),
}  # fmt: skip
REQUIRED = ("trial_id", "status")  # what resuming reads
ROW_KEYS = ("task", "model")  # what every row reads besides (results/board.py); the rest where present


def record_problem(record, required: tuple[str, ...] = REQUIRED) -> str | None:
    """Why a record read back is not one (valid JSON of another shape: edited, or from another tool), else None.
    Keys beyond `required` may be missing (records of older runs lack some), never of another type."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for key, kind in RECORD_SHAPE.items():
        if (key in required or key in record) and not isinstance(record.get(key), kind):
            return f"its {key} is missing or not a {getattr(kind, '__name__', 'mapping or null')}"
    if not all(isinstance(e, dict) for e in record.get("epochs", [])):
        return "an entry of its epochs is not an object"
    numbers = [*(record.get("best_metrics") or {}).values(), *(record.get(k) for k in ("best_score", "best_epoch"))]
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in numbers):
        return "its best_score, best_epoch or best_metrics hold something other than numbers"
    return None


def _read_records(paths: list[Path], required: tuple[str, ...]) -> list[TrialRecord]:
    """The records that read back whole, with REQUIRED and `required`; each other one is a warning on stderr (never
    stdout, which may be a table in JSON or CSV) and is skipped: atomic writes make this rare, and it is never
    fatal for the rest."""
    out = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problem = first_line(e)
        else:
            if (problem := record_problem(record, (*REQUIRED, *required))) is None:
                out.append(record)
                continue
        print(f"warning: skipping unreadable record {path}: {problem}", file=sys.stderr)
    return out


def run_trial_id(trial_id: str) -> str:
    """A trial's id in its own run directory: a leaderboard merging runs may qualify ids as `suite-name/id`."""
    return trial_id.rsplit("/", 1)[-1]


def trial_record(
    spec: dict,
    task: dict,
    metric_keys: list[str],
    epochs: list[dict],
    status: str,
    checkpoint: str | None,
    wall_seconds: float,
    error: str | None = None,
    resources: dict | None = None,
    parameters: int | None = None,
    **extra,
) -> TrialRecord:
    """What the run directory keeps of one trial; `bench table` needs nothing else."""
    # The kept epoch: the best by the score that chose it (the selection half's, or the whole dev set's).
    best = max(epochs, key=lambda e: e.get("selection_score", e[OBJECTIVE])) if epochs else None
    last = epochs[-1] if epochs else {}
    train_seconds = sum(e.get("train_seconds", 0.0) for e in epochs)
    return {
        "trial_id": spec["trial_id"],
        "status": status,
        "kind": "single",
        "task": spec["task"],
        "task_spec": task,
        "metric_keys": metric_keys,
        "model": spec["model_name"],
        "model_path": spec["model_path"],
        "grid_point": spec["point"],
        "seed": spec["seed"],
        "init_seed": init_seed_of(spec["training"], spec["seed"]),
        "training": spec["training"],
        # What chose the kept epoch, as the trainer's selection_half: a task with a labelled test split, all of dev.
        "selection_seed": spec.get("selection_seed") if task.get("final_test") is None else None,
        "fingerprint": spec["fingerprint"],
        "epochs": epochs,
        "best_epoch": best["epoch"] if best else None,
        "best_score": best[OBJECTIVE] if best else None,
        "best_metrics": {k: best[k] for k in metric_keys} if best else None,
        "checkpoint": checkpoint,
        "wall_seconds": wall_seconds,
        "train_samples": last.get("train_samples", 0),  # a joint trial's task: that task's batches only
        "optimizer_steps": last.get("optimizer_steps", 0),
        "train_samples_per_s": last.get("train_samples", 0) / train_seconds if train_seconds else None,
        "peak_memory_mb": max((e.get("peak_memory_mb", 0.0) for e in epochs), default=None),
        "precision": ran_precision(last),  # what ran: `auto` resolved on the trial's device
        "pooling": last.get("pooling"),  # what ran: `training.pooling` resolved for the model
        "pair_encoding": last.get("pair_encoding"),
        "device_name": last.get("device"),
        "resources": resources,  # what the trial held: workers_per_trial, cpus_per_worker, gpus_per_worker
        "parameters": parameters,  # of the kept model
        "error": error,
        **extra,
    }


def ran_precision(epoch: dict) -> str | None:
    """The precision an evaluation's training ran at. Epoch rows before tagging tasks named it `precision`, which
    is now also a tagging metric (a number, not a name like "bf16")."""
    found = epoch.get("train_precision", epoch.get("precision"))
    return found if isinstance(found, str) else None
