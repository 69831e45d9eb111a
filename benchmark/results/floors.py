"""The floors of a run: zero-shot and probe records (benchmark/train/floors.py computes them), written once per model,
task and seed into `floors/<id>/` beside the trials, in the trials' record shape, so that rows, statistics and tables
treat them as any other row (kinds `zero-shot` and `probe`).

They see the data a trial sees: the same training slice, dev slice and labelled test split. The probe keeps the epoch
that a trial would choose by (the selection half under the split-half protocol, else all of validation); test
reports, once. A floor whose settings and data are unchanged is kept on a rerun.
"""

from __future__ import annotations

import sys
import time

from benchmark.common.atomic import atomic_write_bytes
from benchmark.common.errors import first_line
from benchmark.common.hardware import device_name
from benchmark.common.hashing import fingerprint
from benchmark.config.suite import Suite, cache_dir
from benchmark.plan.trials import selection_seed, trial_id
from benchmark.records.final_predictions import test_prediction_path
from benchmark.records.store import RunStore
from benchmark.train.checkpoints import PREDICTIONS_FILE, prediction_bytes
from benchmark.train.floors import (
    FLOOR_VERSION,
    FloorKind,
    FrozenEncoder,
    embed_split,
    fit_probe,
    zero_shot_logits,
)
from benchmark.train.pooling import resolved_pooling
from tasks.encoding import content_hash
from tasks.loading import load_split, resolve_glue_dir
from tasks.metrics import compute_metrics, task_score
from tasks.spec import TaskSpec
from tasks.splits import split_dev

FLOOR_PREFIX = "floor-"


def compute_floors(suite: Suite, store: RunStore, log=print) -> int:
    """Every floor the suite asks for that is not yet recorded with these settings; returns how many were made."""
    settings = suite.floors
    if settings is None or not (settings.zero_shot or settings.probe):
        return 0
    kept = {r["trial_id"]: r.get("fingerprint") for r in store.floor_records()}
    made = 0
    for model in suite.models:
        try:
            made += _model_floors(suite, store, model, settings, kept)
        except Exception as e:  # a floor is a reference row: a model it cannot read costs the row, not the run
            print(f"warning: no floors for {model.name}: {first_line(e)}", file=sys.stderr)
    if made:
        log(f"Floors: {made} record(s) of the untrained encoder (zero-shot, probe) in {store.root / 'floors'}.")
    return made


def _model_floors(suite: Suite, store: RunStore, model, settings, kept: dict) -> int:
    """One model's floors not yet recorded with these settings (`kept`: floor id -> its fingerprint)."""
    made = 0
    # The untrained model as it is meant to be read (its own pooling), whatever the trained rows pool by.
    pooling = resolved_pooling(model.path, "model", True, suite.config.trust_remote_code)
    encoder = None  # loaded only when a floor must be computed
    for task in suite.tasks:
        kinds = [k for k, names in ((FloorKind.ZERO_SHOT, settings.zero_shot), (FloorKind.PROBE, settings.probe))
                 if task.name in names]  # fmt: skip
        if not kinds:
            continue
        splits = _splits(suite, task)
        base = {
            "version": FLOOR_VERSION, "model": model.path, "task": task.to_dict(), "pooling": pooling,
            "max_seq_length": suite.config.training.max_seq_length,
            "data": {s: content_hash(ds) for s, ds in splits.items()},
            "selection_seed": selection_seed(suite),
        }  # fmt: skip
        seeds = suite.config.search.seeds
        named = model.name if len(suite.models) > 1 else None
        wanted = [  # (kind, seed, floor id, fingerprint); zero-shot has no seed to vary
            (
                kind,
                seed,
                _floor_id(kind, task.name, named, seed),
                fingerprint({**base, "kind": kind.value, "seed": seed}),
            )
            for kind in kinds
            for seed in (seeds[:1] if kind is FloorKind.ZERO_SHOT else seeds)
        ]
        todo = [w for w in wanted if kept.get(w[2]) != w[3]]
        if not todo:
            continue
        started = time.perf_counter()
        if encoder is None:
            encoder = FrozenEncoder(
                model.path, pooling, suite.config.training.max_seq_length, suite.config.trust_remote_code
            )
        embedded = {s: embed_split(encoder, task, ds) for s, ds in splits.items()}
        seconds = time.perf_counter() - started
        for kind, seed, floor_id, print_ in todo:
            record = _floor_record(suite, store, task, model, kind, seed, floor_id, embedded, pooling)
            record["fingerprint"] = print_
            record["wall_seconds"] += seconds / len(todo)
            store.save_floor_record(record)
            made += 1
    return made


def _floor_id(kind: FloorKind, task: str, model: str | None, seed: int) -> str:
    return FLOOR_PREFIX + trial_id(f"{kind.value}-{task}", model, {}, seed)


def _splits(suite: Suite, task: TaskSpec) -> dict:
    """The slices a trial of `task` sees: train, each dev split, and the labelled test split if there is one."""
    data = suite.config.data
    glue_dir, cache = resolve_glue_dir(data.glue_dir, data.data_dir), cache_dir(suite)
    out = {"train": load_split(task, "train", glue_dir, cache, data.train_cap(task.name), data.sample_seed)}
    for split in task.eval_splits:
        out[split] = load_split(task, split, glue_dir, cache, data.max_eval_samples, data.sample_seed)
    if task.final_test is not None:
        out["test"] = load_split(task, task.final_test, glue_dir, cache, data.max_eval_samples, data.sample_seed)
    return out


def _floor_record(suite, store, task, model, kind, seed, floor_id, embedded, pooling) -> dict:
    started = time.perf_counter()
    dev = {s: embedded[s] for s in task.eval_splits}
    wanted = {**dev, **({"test": embedded["test"]} if "test" in embedded else {})}
    epoch = None
    if kind is FloorKind.ZERO_SHOT:
        logits = {s: zero_shot_logits(e) for s, e in wanted.items()}
    else:
        split_seed = selection_seed(suite)
        choose = None
        if split_seed is not None and task.final_test is None:  # as a trial chooses its epoch (train/evaluation.py)
            choose = split_dev(task, {s: len(e.labels) for s, e in dev.items()}, split_seed).selection
        probe = fit_probe(task, embedded["train"], dev, choose, wanted, seed)
        logits, epoch = probe.logits, probe.epoch
    dev_logits, dev_labels = {s: logits[s] for s in dev}, {s: e.labels for s, e in dev.items()}
    metrics = compute_metrics(task, dev_logits, dev_labels)
    predictions = store.floor_dir(floor_id) / PREDICTIONS_FILE
    atomic_write_bytes(predictions, prediction_bytes(dev_logits, dev_labels))
    if "test" in wanted:
        test = test_prediction_path(store.root, floor_id)
        atomic_write_bytes(test, prediction_bytes({"test": logits["test"]}, {"test": embedded["test"].labels}))
    train = embedded["train"]
    features, outputs = train.features().shape[-1], 1 if train.choices else task.num_labels
    described = (
        "first sub-token's hidden state per word" if train.words is not None
        else "(u, v, |u - v|, u * v) of context and choice" if train.choices
        else "pooled embedding" if len(train.columns) == 1
        else "(u, v, |u - v|, u * v)"
    )  # fmt: skip
    return {
        "trial_id": floor_id, "status": "finished", "kind": kind.value, "task": task.name,
        "task_spec": task.to_dict(), "metric_keys": task.metric_keys(), "model": model.name,
        "model_path": model.path, "grid_point": {}, "seed": seed,
        "training": {"pooling": pooling, "max_seq_length": suite.config.training.max_seq_length},
        "pooling": pooling, "epochs": [], "best_epoch": epoch, "best_score": task_score(metrics, task),
        "best_metrics": metrics, "checkpoint": None,
        "predictions_file": str(predictions.relative_to(store.root)),
        "wall_seconds": time.perf_counter() - started, "train_samples": 0, "optimizer_steps": 0,
        "precision": "fp32", "device_name": device_name(), "resources": None,
        "parameters": None if kind is FloorKind.ZERO_SHOT else features * outputs + outputs,
        "floor": {
            "kind": kind.value,
            "features": described,
            "head_train_examples": int(len(train.labels)),
        },
    }  # fmt: skip
