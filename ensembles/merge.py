"""Cross-task merging: one encoder from the single-task fine-tunes of several tasks, each task keeping its own head.

For each model and seed, each task's chosen single-task checkpoint gives a task vector, its encoder weights less
the pre-trained ones (τ_t = θ_t - θ_0). The merged encoder is θ_0 + λ τ, where τ is
- task_arithmetic (Ilharco et al. 2023): the sum of the task vectors;
- ties (Yadav et al. 2023): each task vector trimmed to its largest `ties_density` share of entries by magnitude
  (per weight tensor), a sign elected per entry (the sign of the trimmed vectors' sum), and the mean of the
  trimmed entries that agree with it.
The arithmetic runs in float64, so a merge of one task at λ = 1 (and, for ties, density 1) is that task's
checkpoint, bit for bit. Only encoder weights that the pre-trained model holds are merged; anything the
fine-tunes initialised themselves (the classifier, a pooler the base model lacks) is each task's own head.

Selection and report never share data (ensembles/protocol.py): each task's checkpoint is the grid point with
the best mean selection-half score over seeds, λ is the scale with the best mean selection-half task score over
the merged tasks, and the rows' dev scores are on the report half; tasks with a labelled test split are then
scored on it once, like every chosen checkpoint.

Each merge is exported like a multi-task trial's: one record and one plain Hugging Face checkpoint folder per task
(`trials/<id>/checkpoint/`, with its dev predictions), of kind `merged`; so `bench table`, `bench predict` and the
ensembles treat it like any checkpoint. `trials/<id>/report_predictions.safetensors` holds the report half that
the row's statistics read.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.common.atomic import atomic_write_bytes
from benchmark.common.errors import InputError
from benchmark.config.merge import MergeSettings
from benchmark.plan.trials import canonical, trial_id
from benchmark.records.store import RunStore, trial_record
from benchmark.train.checkpoints import (
    HASH_FILE,
    checkpoint_problem,
    parameter_count,
    prediction_bytes,
    save_checkpoint,
)
from ensembles.build import make_soup_runner
from ensembles.candidates import Candidate, find_candidates
from ensembles.soups import SoupRunner, check_ingredients, read_weights, weight_shapes
from tasks.splits import DevHalves, score_on, split_dev

KIND = "merged"
FORMAT = 2  # bump when what a merge computes changes, so saved merges are rebuilt (2: scored at the trained precision)
REPORT_PREDICTIONS = "report_predictions.safetensors"
# Config keys of a classifier's head: tasks differ in them, their encoders do not.
# `architectures`: tasks of several families (a token classifier beside a sequence classifier) merge their encoders.
HEAD_CONFIG = frozenset(
    {"num_labels", "id2label", "label2id", "problem_type", "finetuning_task", "pair_label_range", "architectures"}
)


# ---- the arithmetic: pure functions of weights ----


def trim(vector: torch.Tensor, density: float) -> torch.Tensor:
    """The entries with the largest magnitudes, ceil(density x size) of them (ties at the cut kept); the rest 0."""
    keep = math.ceil(density * vector.numel())
    if keep >= vector.numel():
        return vector
    threshold = vector.abs().flatten().kthvalue(vector.numel() - keep + 1).values
    return torch.where(vector.abs() >= threshold, vector, torch.zeros_like(vector))


def ties_vector(vectors: list[torch.Tensor], density: float) -> torch.Tensor:
    """Trim, elect the sign of the sum, and average the entries that agree with it (disjoint mean)."""
    trimmed = torch.stack([trim(v, density) for v in vectors])
    elected = torch.sign(trimmed.sum(dim=0))
    agree = (torch.sign(trimmed) == elected) & (trimmed != 0)
    return (trimmed * agree).sum(dim=0) / agree.sum(dim=0).clamp(min=1)


def merged_vector(method: str, vectors: dict[str, list[torch.Tensor]], density: float) -> dict[str, torch.Tensor]:
    """τ per weight name, from each task's float64 task vector."""
    if method == "task_arithmetic":
        return {name: torch.stack(vs).sum(dim=0) for name, vs in vectors.items()}
    if method == "ties":
        return {name: ties_vector(vs, density) for name, vs in vectors.items()}
    raise ValueError(f"no merge method {method}")  # the config check lists every method; reaching here is a bug


def task_vectors(
    base: dict[str, torch.Tensor], finetuned: list[dict[str, torch.Tensor]]
) -> dict[str, list[torch.Tensor]]:
    """θ_t - θ_0 for every weight of `base`, one per fine-tune, in float64 (exact for float32 and bf16 weights)."""
    return {name: [ft[name].double() - value.double() for ft in finetuned] for name, value in base.items()}


def apply(
    base: dict[str, torch.Tensor], tau: dict[str, torch.Tensor], scale: float, dtypes: dict[str, torch.dtype]
) -> dict[str, torch.Tensor]:
    """θ_0 + λ τ, in float64, cast to the checkpoints' own dtypes."""
    return {name: (base[name].double() + scale * tau[name]).to(dtypes[name]) for name in tau}


def base_encoder(model_path: str, trust_remote_code: bool = False) -> dict[str, torch.Tensor]:
    """The pre-trained weights of the encoder, named as in a fine-tuned classifier: what the pre-trained model holds
    (what transformers loaded rather than initialised)."""
    # Imported here for start-up speed (transformers).
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier.weight" is expected: the head is not used
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_path,
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
            dtype=torch.float32,
            output_loading_info=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    fresh = set(info["missing_keys"])
    prefix = model.base_model_prefix + "."
    return {n: v.detach().clone() for n, v in model.state_dict().items() if n.startswith(prefix) and n not in fresh}


# ---- choosing what to merge ----


def choose_checkpoints(
    candidates: dict[str, list[Candidate]],
    records: dict[str, dict],
    model: str,
    tasks: tuple[str, ...],
    halves: dict[str, DevHalves],
) -> dict[int, dict[str, Candidate]]:
    """Per seed, each task's single-task checkpoint of `model` at the grid point with the best mean selection-half
    score over seeds (ties: the first point); seeds that lack a task are left out."""
    by_seed: dict[int, dict[str, Candidate]] = defaultdict(dict)
    for task in tasks:
        by_point: dict[str, list[Candidate]] = defaultdict(list)
        for c in candidates.get(task, []):
            if c.kind == "single" and c.model == model:
                by_point[canonical(records[c.trial_id]["grid_point"])].append(c)
        if not by_point:
            return {}
        best = max(
            by_point.values(),
            key=lambda cs: np.mean([score_on(c.task, c.logits, c.labels, halves[task].selection)[1] for c in cs]),
        )
        for c in best:
            by_seed[records[c.trial_id]["seed"]][task] = c
    return {seed: chosen for seed, chosen in sorted(by_seed.items()) if set(chosen) == set(tasks)}


@dataclass
class _Seed:
    """One model and seed: its chosen checkpoints, their runners, and the task vectors shared by every method."""

    model: str
    seed: int
    chosen: dict[str, Candidate]
    runners: dict[str, SoupRunner]
    own: dict[str, dict[str, torch.Tensor]]  # task -> the checkpoint's weights
    base: dict[str, torch.Tensor]  # the encoder weights to merge, pre-trained
    vectors: dict[str, list[torch.Tensor]]  # name -> one task vector per task, in the settings' task order


def build_merges(store: RunStore, suite, settings: MergeSettings, log=print) -> list[str]:
    """Every method for every model and seed, exported into the run directory; returns the merged records' ids.
    Merges whose settings and checkpoints are unchanged are kept; merged records of other settings are removed."""
    if not settings.methods:
        _remove_stale(store, set())
        return []
    try:
        candidates = find_candidates(store)
    except InputError:  # no checkpoint at all: the trials' leaderboard says why
        return []
    missing = [t for t in settings.tasks if t not in candidates]
    if missing:
        log(f"Merges: none; task {missing[0]} has no checkpoint to merge")
        return []
    records = store.finished()
    halves = {
        t: split_dev(
            candidates[t][0].task, {s: len(v) for s, v in candidates[t][0].labels.items()}, suite.ensemble.split_seed
        )
        for t in settings.tasks
    }
    made: list[str] = []
    for model in suite.models:
        for seed, chosen in choose_checkpoints(candidates, records, model.name, settings.tasks, halves).items():
            made += _merge_seed(store, suite, settings, model.name, seed, chosen, halves, records, log)
    _remove_stale(store, set(made))
    return made


def _merge_seed(
    store: RunStore,
    suite,
    settings: MergeSettings,
    model: str,
    seed: int,
    chosen: dict[str, Candidate],
    halves: dict[str, DevHalves],
    records: dict[str, dict],
    log,
) -> list[str]:
    several = len(suite.models) > 1
    made, state = [], None
    for method in settings.methods:
        ids = {t: trial_id(f"merged-{method}-{t}", model if several else None, {}, seed) for t in settings.tasks}
        fingerprint = _fingerprint(settings, method, chosen)
        made += ids.values()
        if _up_to_date(store, ids, fingerprint):
            continue
        started = time.perf_counter()  # the merge's own time: loading, merging, choosing λ
        state = state or _load_seed(suite, settings, model, seed, chosen)
        scale, scores, encoder, logits = _choose_scale(state, settings, method, halves)
        seconds = (time.perf_counter() - started) / len(settings.tasks)
        reported = {
            t: _export(
                store,
                state,
                t,
                ids[t],
                method,
                scale,
                scores,
                encoder,
                logits[t],
                halves[t],
                records,
                settings,
                fingerprint,
                seconds,
            )
            for t in settings.tasks
        }
        log(
            f"  {model} {method}, seed {seed}: λ = {scale:g} (selection-half mean score {scores[scale]:.2f}); "
            "report half: " + ", ".join(f"{t} {s:.1f}" for t, s in reported.items())
        )
    return made


def _load_seed(suite, settings: MergeSettings, model: str, seed: int, chosen: dict[str, Candidate]) -> _Seed:
    """Runners, weights and task vectors; refuses checkpoints that do not share a base, naming one."""
    ordered = [chosen[t] for t in settings.tasks]
    runners = {t: make_soup_runner(suite, chosen[t]) for t in settings.tasks}
    prefix = runners[settings.tasks[0]].model.base_model_prefix + "."
    # The encoder weights every checkpoint holds: a token classifier has no pooler, which is then each task's own.
    shared = set.intersection(*(set(weight_shapes(c.folder)) for c in ordered))
    check_ingredients(
        ordered, HEAD_CONFIG, lambda name: name.startswith(prefix) and name in shared, "a cross-task merge"
    )
    own = {t: read_weights(chosen[t].folder) for t in settings.tasks}
    pre_trained = base_encoder(ordered[0].meta["model_path"], suite.config.trust_remote_code)
    base = {n: v for n, v in pre_trained.items() if all(n in w for w in own.values())}
    for name, value in base.items():
        if own[settings.tasks[0]][name].shape != value.shape:
            raise InputError(
                ordered[0].relpath,
                f"its weight {name} has another shape than the pre-trained model's "
                f"({ordered[0].meta['model_path']}): it was not fine-tuned from it",
            )
    return _Seed(model, seed, chosen, runners, own, base, task_vectors(base, [own[t] for t in settings.tasks]))


def _choose_scale(state: _Seed, settings: MergeSettings, method: str, halves: dict[str, DevHalves]):
    """λ with the best mean selection-half task score (ties: the first in the grid); its encoder and every task's
    dev logits."""
    tau = merged_vector(method, state.vectors, settings.ties_density)
    dtypes = {n: state.own[settings.tasks[0]][n].dtype for n in tau}
    scores, best = {}, None
    for scale in settings.scales:
        encoder = apply(state.base, tau, scale, dtypes)
        logits = {t: state.runners[t].logits({**state.own[t], **encoder}) for t in settings.tasks}
        scores[scale] = float(
            np.mean(
                [
                    score_on(state.chosen[t].task, logits[t], state.chosen[t].labels, halves[t].selection)[1]
                    for t in settings.tasks
                ]
            )
        )
        if best is None or scores[scale] > scores[best[0]]:
            best = (scale, encoder, logits)
    return best[0], scores, best[1], best[2]


def _export(
    store: RunStore,
    state: _Seed,
    task: str,
    record_id: str,
    method: str,
    scale: float,
    scores: dict,
    encoder: dict,
    logits: dict[str, np.ndarray],
    halves: DevHalves,
    records: dict[str, dict],
    settings: MergeSettings,
    fingerprint: str,
    seconds: float,
) -> float:
    """One task of one merge: its checkpoint folder (merged encoder, own head), report-half predictions, record.
    Returns the task's report-half score."""
    source, runner = state.chosen[task], state.runners[task]
    source_record = records[source.trial_id]
    merge = _description(state, method, scale, scores, settings)
    runner.model.load_state_dict({**state.own[task], **encoder}, strict=True)
    store.install_checkpoint(
        record_id,
        lambda folder: save_checkpoint(
            folder,
            runner.model,
            runner.tokenizer,
            logits,
            source.labels,
            {
                **{k: source.meta[k] for k in ("task", "model_path", "training", "init_seed") if k in source.meta},
                "kind": KIND,
                "merge": merge,
                "seed": state.seed,
            },
        ),
    )
    metrics, score = score_on(source.task, logits, source.labels, halves.report)
    predictions = prediction_bytes(logits, source.labels, halves.report)
    atomic_write_bytes(store.trial_dir(record_id) / REPORT_PREDICTIONS, predictions)
    checkpoint = store.checkpoint_dir(record_id)
    record = trial_record(
        {
            "trial_id": record_id,
            "task": task,
            "model_name": state.model,
            "model_path": source_record["model_path"],
            "point": {"merge": method},
            "seed": state.seed,
            "training": source_record["training"],
            "fingerprint": fingerprint,
        },
        source.task.to_dict(),
        source.task.metric_keys(),
        [],
        "finished",
        str(checkpoint.relative_to(store.root)),
        seconds,
        None,
        source_record.get("resources"),
        parameter_count(checkpoint),
        kind=KIND,
        pooling=source_record.get("pooling"),  # what the merged checkpoints ran
        pair_encoding=source_record.get("pair_encoding"),
        system=f"{state.model} {method}",
        merge=merge,
        source_trials=sorted(merge["sources"].values()),
        predictions_file=str((store.trial_dir(record_id) / REPORT_PREDICTIONS).relative_to(store.root)),
    )
    record.update(best_score=score, best_metrics=metrics)
    store.save_record(record)
    return score


def _description(state: _Seed, method: str, scale: float, scores: dict, settings: MergeSettings) -> dict:
    """What a merged record says of its merge: method, λ and every λ's selection-half score, sources, protocol."""
    return {
        "method": method,
        "scale": scale,
        "selection_scores": {f"{s:g}": v for s, v in scores.items()},
        "ties_density": settings.ties_density if method == "ties" else None,
        "tasks": list(settings.tasks),
        "sources": {t: c.trial_id for t, c in state.chosen.items()},
        "chosen_on": "the selection half of each task's dev set",
        "reported_on": "the report half of dev",
    }


def _fingerprint(settings: MergeSettings, method: str, chosen: dict[str, Candidate]) -> str:
    payload = {
        "format": FORMAT,
        "method": method,
        "scales": list(settings.scales),
        "tasks": list(settings.tasks),
        "ties_density": settings.ties_density if method == "ties" else None,
        "sources": {t: [c.trial_id, c.fingerprint, _content(c)] for t, c in sorted(chosen.items())},
    }
    return hashlib.sha256(canonical(payload).encode()).hexdigest()[:16]


def _content(candidate: Candidate) -> str | None:
    """The checkpoint's recorded file hashes: a trial run again (same id and settings) has new weights."""
    path = candidate.folder / HASH_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _up_to_date(store: RunStore, ids: dict[str, str], fingerprint: str) -> bool:
    finished = store.finished()
    return all(
        i in finished
        and finished[i].get("fingerprint") == fingerprint
        and not checkpoint_problem(store.checkpoint_dir(i))
        for i in ids.values()
    )


def _remove_stale(store: RunStore, made: set[str]) -> None:
    """Merged records of settings no longer asked for would still be rows: they go."""
    for record in store.records():
        if record.get("kind") == KIND and record["trial_id"] not in made:
            shutil.rmtree(store.trial_dir(record["trial_id"]), ignore_errors=True)
