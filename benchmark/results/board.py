"""Run directories into a finished leaderboard: rows from the trial records, then their statistics.

The one path that `bench run`, `bench table`, `bench report` and `bench predict` share, so that
`bench table RUN_DIR` prints exactly the leaderboard.md that `bench run` wrote.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from benchmark.common.errors import InputError
from benchmark.config.statistics import MARGIN_KEY, check_equivalence_margin
from benchmark.records.store import ROW_KEYS, RunStore
from benchmark.results.bootstrap import LEVEL, SeedPredictions, SplitPredictions
from benchmark.results.final_scores import with_ensemble_test, with_test_metrics
from benchmark.results.leaderboard import build_leaderboard
from benchmark.results.statistics import CORRECTION, Loader, add_statistics
from benchmark.train.checkpoints import read_prediction_file
from benchmark.train.floors import FLOOR_KINDS
from ensembles.calibration import add_trial_calibration, ensemble_calibration
from ensembles.rows import load_ensemble_rows, read_state
from tasks.spec import TaskSpec
from tasks.splits import score_on


def _system_key(record: dict) -> tuple:
    return record["model"], record.get("kind", "single"), record.get("chain"), record.get("system"), record["task"]


def _row_records(store: RunStore) -> list[dict]:
    """What rows are made of: the trials' records, and the floors' (zero-shot, probe) in the same shape; a record
    without what a row needs is skipped with a warning."""
    return store.records(ROW_KEYS) + store.floor_records(ROW_KEYS)


def _floors_once(stored: dict[Path, list[dict]]) -> dict[Path, list[dict]]:
    """Each floor once: runs of one model on the same data (a study's arms) compute the same floors (one
    fingerprint); the first run's records stand for all, as one row."""
    seen, out = set(), {}
    for folder, records in stored.items():
        out[folder] = [r for r in records if r.get("kind") not in FLOOR_KINDS or r["fingerprint"] not in seen]
        seen |= {r["fingerprint"] for r in records if r.get("kind") in FLOOR_KINDS}
    return out


def _in_several_runs(stored: dict[Path, list[dict]]) -> tuple[set[tuple], set[str]]:
    """(Row, task) pairs, and trial ids, that more than one of the merged runs has. The same model trained the same
    way on one task in two runs (one suite per arm of a study, say): each run's trials make a row of their own,
    named by its suite, instead of one row pooling them; runs of different tasks still pool into one row. Where a
    trial id is in two runs, every id is qualified by its run's suite name, so that no lookup by id mixes runs."""
    systems: dict[tuple, set] = {}
    ids: dict[str, set] = {}
    for folder, records in stored.items():
        for record in records:
            systems.setdefault(_system_key(record), set()).add(folder)
            ids.setdefault(record["trial_id"], set()).add(folder)
    return {k for k, f in systems.items() if len(f) > 1}, {i for i, f in ids.items() if len(f) > 1}


def _qualified(record: dict, run_name: str) -> dict:
    """The record with its trial id, and the ids it names of its own run's trials, prefixed `run_name/`
    (`run_trial_id` gives back the id its files go by in its run directory)."""
    out = {**record, "trial_id": f"{run_name}/{record['trial_id']}"}
    for key in ("joint_trial", "stage_one"):
        if record.get(key):
            out[key] = f"{run_name}/{record[key]}"
    if record.get("source_trials"):
        out["source_trials"] = [f"{run_name}/{i}" for i in record["source_trials"]]
    return out


def leaderboard_from_runs(
    run_dirs: list[Path],
    baseline: str | None = None,
    resamples: int | None = None,
    correction: str = CORRECTION,
    level: str = LEVEL,
    margin: float | None = None,
) -> tuple[dict, list[dict]]:
    """The leaderboard of one or more run directories (their trials merged), and the trial records.

    `baseline`, `resamples`, `correction`, `level` (what a bootstrap resample draws) and `margin`: as
    add_statistics; without a margin, the one the runs' suites fix (statistics.equivalence_margin), if any."""
    records, names, order, ensemble_rows, margins = [], [], [], [], set()
    roots, split_seeds, tasks = {}, {}, {}  # per trial id: its run directory and split seed (for calibration)
    several = len(run_dirs) > 1
    stored = _floors_once({Path(folder): _row_records(RunStore(Path(folder))) for folder in run_dirs})
    shared, shared_ids = _in_several_runs(stored) if several else (set(), set())
    for folder, run_records in stored.items():
        store = RunStore(folder)
        suite = store.read_suite()
        names.append(suite.get("name", Path(folder).name))
        margins.add(check_equivalence_margin((suite.get("statistics") or {}).get("equivalence_margin"), MARGIN_KEY))
        order += [t if isinstance(t, str) else t.get("name") for t in suite.get("tasks", [])]
        run_records = with_test_metrics(run_records, store.root)
        run_tasks = {r["task"]: TaskSpec.from_dict(r["task_spec"]) for r in run_records}
        tasks.update(run_tasks)
        split_seed = (suite.get("ensemble") or {}).get("split_seed", 0)
        for record in run_records:
            if several and record.get("checkpoint"):
                # Rows name prediction files relative to one run directory; merged rows need full paths.
                record = {**record, "checkpoint": str((store.root / record["checkpoint"]).resolve())}
            for key in ("test_predictions", "predictions_file"):  # a floor's or a merge's own dev file too
                if several and record.get(key):
                    record = {**record, key: str((store.root / record[key]).resolve())}
            if _system_key(record) in shared:  # the same model trained the same way in two runs: two rows
                record = {**record, "system": f"{record['model']} ({record.get('kind', 'single')}, {names[-1]})"}
            if shared_ids:  # every record, so that the ids records name of each other stay consistent
                record = _qualified(record, names[-1])
            roots[record["trial_id"]], split_seeds[record["trial_id"]] = store.root, split_seed
            records.append(record)
        state = read_state(store.root)
        for row in with_ensemble_test(load_ensemble_rows(store.root), store.root, run_tasks):
            row = {**row, "calibration": ensemble_calibration(row, store.root, run_tasks, state and state["key"])}
            if several:
                row = {**row, "predictions": _resolved(store.root, row["predictions"])}
                if row.get("test"):
                    row["test"] = {**row["test"], "predictions": _resolved(store.root, row["test"]["predictions"])}
            ensemble_rows.append(row)
    board = build_leaderboard(" + ".join(names), records, order, extra_rows=ensemble_rows)
    add_trial_calibration(board["rows"], {r["trial_id"]: r for r in records}, roots, split_seeds, tasks)
    root = Path(run_dirs[0])
    mark_floors_on_the_same_examples(board["rows"], tasks, prediction_loader(root))
    margin = margin if margin is not None else _suites_margin(margins - {None})
    return finish_leaderboard(board, records, root, baseline, resamples, correction, level, margin), records


def _suites_margin(margins: set[float]) -> float | None:
    """The equivalence margin the merged runs' suites fix: one, or none; different ones are an input error."""
    if len(margins) > 1:
        found = ", ".join(f"{m:g}" for m in sorted(margins))
        raise InputError(MARGIN_KEY, f"the runs fix different margins ({found}); pass --equivalence-margin")
    return next(iter(margins), None)


def _resolved(root: Path, files: dict[str, list[str]]) -> dict[str, list[str]]:
    """{task: files relative to `root`} as full paths: rows merged from several runs name files of each."""
    return {t: [str((root / p).resolve()) for p in paths] for t, paths in files.items()}


def finish_leaderboard(
    board: dict,
    records: list[dict],
    root: Path,
    baseline: str | None = None,
    resamples: int | None = None,
    correction: str = CORRECTION,
    level: str = LEVEL,
    margin: float | None = None,
) -> dict:
    """Add the statistics, reading the rows' prediction files relative to `root`."""
    task_specs = {r["task"]: TaskSpec.from_dict(r["task_spec"]) for r in records}
    loader = prediction_loader(root)
    return add_statistics(
        board, task_specs, loader, baseline, resamples, correction=correction, level=level, margin=margin
    )


def mark_floors_on_the_same_examples(rows: list[dict], tasks: dict[str, TaskSpec], load: Loader) -> None:
    """A row scored on part of a split (an ensemble or its best single: the report half of dev) is held against
    each floor rescored on those examples; build_leaderboard compared its score with the floors' over the whole
    split. Rows on the floors' own examples keep their marks."""
    floors = [r for r in rows if r["kind"] in FLOOR_KINDS]
    for row in rows:
        if row["kind"] in FLOOR_KINDS:
            continue
        for side, floor_side in ((row, lambda f: f), (row.get("test") or {}, lambda f: f.get("test") or {})):
            below = dict(side.get("below_floor") or {})
            for task, score in (side.get("task_scores") or {}).items():
                files = (side.get("predictions") or {}).get(task)
                mine = load(files[0]) if files else None
                if mine is None:
                    continue
                above = set(below.get(task, ()))
                for floor in (f for f in floors if f["model"] == row["model"]):
                    floor_files = (floor_side(floor).get("predictions") or {}).get(task)
                    seeds = [load(p) for p in floor_files or []]
                    if not seeds or any(s is None for s in seeds) or _same_examples(mine, seeds[0]):
                        continue  # no files to rescore, or the same examples: build_leaderboard's mark holds
                    spec = tasks[task] if side is row else dataclasses.replace(tasks[task], eval_splits={"test": ""})
                    above.discard(floor["kind"])  # held against it on the row's examples, or not at all
                    if _covers(seeds[0], mine):
                        if float(np.mean([score_on(spec, *_on(s, mine))[1] for s in seeds])) > score:
                            above.add(floor["kind"])
                if above:
                    below[task] = sorted(above, key=FLOOR_KINDS.index)
                else:
                    below.pop(task, None)
            if side:
                side["below_floor"] = below


def _same_examples(a: SeedPredictions, b: SeedPredictions) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[s].indices, b[s].indices) for s in a)


def _covers(floor: SeedPredictions, row: SeedPredictions) -> bool:
    return row.keys() <= floor.keys() and all(np.isin(row[s].indices, floor[s].indices).all() for s in row)


def _on(floor: SeedPredictions, row: SeedPredictions) -> tuple[dict, dict, dict]:
    """A floor seed's logits and labels, and the positions in them of the row's examples (by example index)."""
    positions = {}
    for split, part in row.items():
        where = {int(i): k for k, i in enumerate(floor[split].indices)}
        positions[split] = np.array([where[int(i)] for i in part.indices], dtype=np.int64)
    return (
        {s: floor[s].logits for s in row},
        {s: floor[s].labels for s in row},
        positions,
    )


def prediction_loader(root: Path) -> Loader:
    """Reads each prediction file once; a file that is gone gives None (its row then has no interval)."""
    cache: dict[str, SeedPredictions | None] = {}

    def load(path: str) -> SeedPredictions | None:
        if path not in cache:
            full = Path(root) / path  # an absolute path stays itself
            cache[path] = _seed_predictions(read_prediction_file(full)) if full.is_file() else None
        return cache[path]

    return load


def _seed_predictions(splits: dict[str, dict[str, np.ndarray]]) -> SeedPredictions:
    return {
        split: SplitPredictions(
            v["logits"], v["labels"], v["indices"].astype(np.int64) if "indices" in v else np.arange(len(v["labels"]))
        )
        for split, v in splits.items()
    }
