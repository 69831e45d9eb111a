"""Build a run's ensembles: candidates, the split-half protocol, every method for every pool size, the rows.

Everything is written to a staging folder that then replaces <run>/ensembles/ in one rename, so a reader
sees the old ensembles or the new ones, never a mix of both:

    ensembles/ensembles.json                           settings, protocol, candidates and their selection scores, rows
    ensembles/predictions/<system>/<task>.safetensors  each row's report-half `{split}/logits`, `/labels`, `/indices`
    ensembles/soups/<system>/<task>/                   each soup: a Hugging Face checkpoint folder, like a trial's
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.common.atomic import atomic_replace_dir, atomic_write_bytes, atomic_write_json, staging_dir_for
from benchmark.common.errors import InputError
from benchmark.common.hashing import canonical
from benchmark.config.ensemble import SOUP_METHODS, EnsembleSettings
from benchmark.config.suite import Suite, cache_dir
from benchmark.records.store import RunStore
from benchmark.train.checkpoints import prediction_bytes, save_checkpoint
from benchmark.train.modeling import load_tokenizer
from benchmark.train.pair_encoding import saved_pair_encoding
from ensembles.calibration import concat, fit_temperature
from ensembles.candidates import Candidate, find_candidates
from ensembles.combine import GREEDY_ROUNDS, greedy_selection, mean_prob, vote
from ensembles.protocol import NAME as PROTOCOL_NAME
from ensembles.protocol import describe
from ensembles.rows import ENSEMBLES_DIR, STATE_FILE, TaskOutcome, make_row, read_state
from ensembles.soups import SoupRunner, check_ingredients, greedy_soup, same_init, uniform_soup
from tasks.encoding import encode_task
from tasks.loading import resolve_glue_dir
from tasks.spec import Windowing
from tasks.splits import DevHalves, score_on, split_dev

STATE_FORMAT = 4  # bump when what a method computes changes, so saved ensembles are rebuilt (3: soups at the
# ingredients' precision, the protocol's text from what chose each task's epochs; 4: soups of one init seed)


@dataclass
class _Context:
    run_dir: Path
    staging: Path  # becomes <run>/ensembles at the end
    suite: Suite
    halves: dict[str, DevHalves]  # task -> selection and report halves of its dev set
    runners: dict[str, SoupRunner] = field(default_factory=dict)  # task -> its soup runner, made on first use


def build_ensembles(store: RunStore, suite: Suite, settings: EnsembleSettings, log=print) -> dict:
    """Build every method for every pool size, write them to <run>/ensembles/, and return the state written."""
    started = time.perf_counter()
    candidates = find_candidates(store)
    suite_tasks = [t.name for t in suite.tasks]
    tasks = [t for t in suite_tasks if t in candidates] + sorted(t for t in candidates if t not in suite_tasks)
    key = _state_key(settings, candidates)
    old = read_state(store.root)
    if old is not None and old.get("key") == key:
        log("Ensembles: up to date (same settings and checkpoints).")
        return old

    halves = {
        t: split_dev(
            candidates[t][0].task, {s: len(v) for s, v in candidates[t][0].labels.items()}, settings.split_seed
        )
        for t in tasks
    }
    selection, ranked = _ranked(candidates, tasks, halves, settings.pool_sizes)

    finished = store.finished()
    trained = {
        k: sum(finished[c.trial_id].get(k, 0) for t in tasks for c in candidates[t])
        for k in ("train_samples", "optimizer_steps")
    }
    protocol = describe(settings.split_seed, *_epochs_chosen_on_all_of_dev(candidates, tasks, settings.split_seed))
    prefix = "+".join(sorted({c.model for t in tasks for c in ranked[t]}))
    target = store.root / ENSEMBLES_DIR
    staging = staging_dir_for(target)
    try:
        ctx = _Context(store.root, staging, suite, halves)
        log(f"Ensembles of {', '.join(f'{t} ({len(ranked[t])})' for t in tasks)} candidates; {protocol['description']}")
        best = {t: _best_single(ctx, t, ranked[t]) for t in tasks}
        rows = [
            make_row(
                f"{prefix} best single checkpoint",
                "single",
                best,
                suite_tasks,
                {t: {"method": "best_single", "pool": len(ranked[t])} for t in tasks},
                protocol,
                trained,
            )
        ]
        _log_row(log, rows[-1])
        for k in settings.pool_sizes:
            for method in settings.methods:
                slug = f"{method}-top{k}" if k else f"{method}-all"
                outcomes = {t: _task_outcome(ctx, method, slug, t, ranked[t][:k] if k else ranked[t]) for t in tasks}
                config = {t: {"method": method, "pool": len(ranked[t][:k] if k else ranked[t])} for t in tasks}
                rows.append(
                    make_row(
                        f"{prefix} {method} ({f'top {k}' if k else 'all'})",
                        "ensemble",
                        outcomes,
                        suite_tasks,
                        config,
                        protocol,
                        trained,
                    )
                )
                _log_row(log, rows[-1])
        state = {
            "key": key,
            "settings": settings.to_dict(),
            "protocol": protocol,
            "greedy_rounds": GREEDY_ROUNDS,
            "tasks": tasks,
            "candidates": {
                t: [{**_describe(c), "selection_score": selection[(t, c.trial_id)]} for c in ranked[t]] for t in tasks
            },
            "rows": rows,
            "build_seconds": time.perf_counter() - started,
        }
        atomic_write_json(staging / STATE_FILE, state)
        atomic_replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return state


def _ranked(candidates: dict, tasks: list[str], halves: dict, pool_sizes: list) -> tuple[dict, dict]:
    """Every candidate's selection-half score, and each task's candidates best first (ties keep trial-id order:
    sorted is stable); a pool larger than a task's candidates is refused."""
    selection = {
        (t, c.trial_id): score_on(c.task, c.logits, c.labels, halves[t].selection)[1]
        for t in tasks
        for c in candidates[t]
    }
    ranked = {t: sorted(candidates[t], key=lambda c, t=t: -selection[(t, c.trial_id)]) for t in tasks}
    for k in pool_sizes:
        for t in tasks:
            if k is not None and k > len(ranked[t]):
                raise InputError("k", f"{k} is larger than the {len(ranked[t])} candidate checkpoints of task {t}")
    return selection, ranked


def _describe(c: Candidate) -> dict:
    return {"trial_id": c.trial_id, "checkpoint": c.relpath, "kind": c.kind, "init_seed": c.init_seed}


def _best_single(ctx: _Context, task: str, ranked: list[Candidate]) -> TaskOutcome:
    """The comparison every ensemble must beat: the checkpoint with the best selection-half score."""
    best = ranked[0]
    metrics, score = score_on(best.task, best.logits, best.labels, ctx.halves[task].report)
    path = _write_predictions(ctx, "best-single", task, best.logits, best.labels)
    return TaskOutcome(
        [best],
        [1.0],
        1,
        metrics,
        score,
        path,
        temperature=_selection_temperature(ctx, best.task, best.logits, best.labels),
    )


def _task_outcome(ctx: _Context, method: str, slug: str, task: str, pool: list[Candidate]) -> TaskOutcome:
    """One method on one task's pool (best candidate first)."""
    spec, labels, halves = pool[0].task, pool[0].labels, ctx.halves[task]

    def selection_score(logits: dict) -> float:
        return score_on(spec, logits, labels, halves.selection)[1]

    uniform = [1.0 / len(pool)] * len(pool)
    soup = None
    if method == "mean_prob":
        members, weights, logits = pool, uniform, mean_prob(spec, [c.logits for c in pool])
    elif method == "vote":
        members, weights, logits = pool, uniform, vote(spec, [c.logits for c in pool], pool[0].labels)
    elif method == "greedy":
        counts = greedy_selection(spec, [c.logits for c in pool], selection_score)
        members = [c for c, n in zip(pool, counts) if n]
        weights = [float(n / counts.sum()) for n in counts if n]
        logits = mean_prob(spec, [c.logits for c in members], weights)
    elif method == "soup_uniform":
        ingredients = same_init(pool)
        check_ingredients(ingredients)
        members, soup = ingredients, uniform_soup(ingredients)
        weights, logits = [1.0 / len(members)] * len(members), _soup_runner(ctx, pool[0]).logits(soup)
    elif method == "soup_greedy":
        ingredients = same_init(pool)
        check_ingredients(ingredients)
        members, soup, logits = greedy_soup(ingredients, _soup_runner(ctx, pool[0]), selection_score)
        weights = [1.0 / len(members)] * len(members)
    else:  # the config check lists every method; reaching here is a bug
        raise ValueError(f"no builder for method {method}")
    metrics, score = score_on(spec, logits, labels, halves.report)
    path = _write_predictions(ctx, slug, task, logits, labels)
    soup_path = _save_soup(ctx, slug, task, method, members, soup, logits, metrics, score) if soup else None
    return TaskOutcome(
        members,
        weights,
        1 if method in SOUP_METHODS else len(members),
        metrics,
        score,
        path,
        soup_path,
        _selection_temperature(ctx, spec, logits, labels),
    )


def _selection_temperature(ctx: _Context, task, logits: dict, labels: dict) -> float | None:
    """Temperature scaling of a row's task, fitted on the selection half only (the report half and test report)."""
    return None if not task.has_classes else fit_temperature(*concat(logits, labels, ctx.halves[task.name].selection))


def _soup_runner(ctx: _Context, first: Candidate) -> SoupRunner:
    if first.task.name not in ctx.runners:
        ctx.runners[first.task.name] = make_soup_runner(ctx.suite, first)
    return ctx.runners[first.task.name]


def make_soup_runner(suite: Suite, first: Candidate) -> SoupRunner:
    """The task's dev set, tokenised as the trials saw it (from the cache), and a model to run weights on."""
    data, trust = suite.config.data, suite.config.trust_remote_code
    tokenizer = load_tokenizer(str(first.folder), trust)
    # The best candidate's max length: a grid over max_seq_length gives ingredients several, the soup one.
    dev = encode_task(
        first.task,
        tokenizer,
        first.meta["training"]["max_seq_length"],
        resolve_glue_dir(data.glue_dir),
        cache_dir(suite),
        data.train_cap(first.task.name),
        data.max_eval_samples,
        data.sample_seed,
        pair_encoding=saved_pair_encoding(first.folder),  # a bi-encoder's texts apart
        windowing=Windowing.of(first.meta["training"]),  # a QA task's windows
    )
    return SoupRunner(first, tokenizer, dev, trust)


def _write_predictions(
    ctx: _Context, slug: str, task: str, logits: dict[str, np.ndarray], labels: dict[str, np.ndarray]
) -> str:
    """The report half of a row's dev predictions, in the form every row's prediction files share."""
    relative = Path("predictions") / slug / f"{task}.safetensors"
    atomic_write_bytes(ctx.staging / relative, prediction_bytes(logits, labels, ctx.halves[task].report))
    return str(Path(ENSEMBLES_DIR) / relative)


def _save_soup(
    ctx: _Context,
    slug: str,
    task: str,
    method: str,
    members: list[Candidate],
    weights: dict,
    logits: dict[str, np.ndarray],
    metrics: dict,
    score: float,
) -> str:
    runner = ctx.runners[task]
    runner.model.load_state_dict(weights, strict=True)  # the runner may hold a rejected greedy trial
    first = members[0]
    relative = Path("soups") / slug / task
    save_checkpoint(
        ctx.staging / relative,
        runner.model,
        runner.tokenizer,
        logits,
        first.labels,
        {
            "kind": "soup",
            "method": method,
            "members": [c.trial_id for c in members],
            "ingredients": [c.relpath for c in members],
            "task": first.task.to_dict(),
            "model_path": first.meta.get("model_path"),
            "training": first.meta["training"],
            "init_seed": first.init_seed,
            "report_metrics": metrics,
            "report_score": score,
            "protocol": PROTOCOL_NAME,
            "report_examples": {s: len(i) for s, i in ctx.halves[task].report.items()},
        },
    )
    return str(Path(ENSEMBLES_DIR) / relative)


def _epochs_chosen_on_all_of_dev(
    candidates: dict[str, list[Candidate]], tasks: list[str], seed: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the checkpoints say chose their epochs: the tasks with a candidate that did not keep the epoch best on this
    seed's selection half (trials run with ensembles or merges in the suite do, unless the task has a labelled test
    split), and those of them with a test split."""
    whole_dev = tuple(t for t in tasks if any(c.meta.get("selection_seed") != seed for c in candidates[t]))
    return whole_dev, tuple(t for t in whole_dev if candidates[t][0].task.final_test is not None)


def _state_key(settings: EnsembleSettings, candidates: dict[str, list[Candidate]]) -> str:
    """Same settings, same checkpoints, same code version: the saved ensembles still hold."""
    payload = {
        "format": STATE_FORMAT,
        "greedy_rounds": GREEDY_ROUNDS,
        "settings": settings.to_dict(),
        "candidates": {t: [(c.trial_id, c.relpath, c.fingerprint) for c in cs] for t, cs in sorted(candidates.items())},
    }
    return hashlib.sha256(canonical(payload).encode()).hexdigest()[:16]


def _log_row(log, row: dict) -> None:
    scores = ", ".join(f"{t} {s:.1f}" for t, s in row["task_scores"].items())
    average = "—" if row["average"] is None else f"{row['average']:.2f}"
    log(f"  {row['system']}: {scores}; average {average}; {row['compute']['inference_passes']:g} passes per example")
