"""Run directories into a finished leaderboard: rows from the trial records, then their statistics.

The one path that `bench run`, `bench table`, `bench report` and `bench predict` share, so that
`bench table RUN_DIR` prints exactly the leaderboard.md that `bench run` wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.records.store import RunStore
from benchmark.results.bootstrap import LEVEL, RESAMPLES, SeedPredictions, SplitPredictions
from benchmark.results.final_scores import with_ensemble_test, with_test_metrics
from benchmark.results.leaderboard import build_leaderboard
from benchmark.results.statistics import CORRECTION, Loader, add_statistics
from benchmark.train.checkpoints import read_prediction_file
from ensembles.calibration import add_trial_calibration, ensemble_calibration
from ensembles.rows import load_ensemble_rows, read_state
from tasks.spec import TaskSpec


def leaderboard_from_runs(
    run_dirs: list[Path],
    baseline: str | None = None,
    resamples: int = RESAMPLES,
    correction: str = CORRECTION,
    level: str = LEVEL,
) -> tuple[dict, list[dict]]:
    """The leaderboard of one or more run directories (their trials merged), and the trial records.

    `baseline`, `resamples`, `correction` and `level` (what a bootstrap resample draws): as add_statistics."""
    records, names, order, ensemble_rows = [], [], [], []
    roots, split_seeds, tasks = {}, {}, {}  # per trial id: its run directory and split seed (for calibration)
    several = len(run_dirs) > 1
    for folder in run_dirs:
        store = RunStore(Path(folder))
        suite = store.read_suite()
        names.append(suite.get("name", Path(folder).name))
        order += [t if isinstance(t, str) else t.get("name") for t in suite.get("tasks", [])]
        run_records = with_test_metrics(store.records(), store.root)
        run_tasks = {r["task"]: TaskSpec.from_dict(r["task_spec"]) for r in run_records}
        tasks.update(run_tasks)
        split_seed = (suite.get("ensemble") or {}).get("split_seed", 0)
        for record in run_records:
            roots[record["trial_id"]], split_seeds[record["trial_id"]] = store.root, split_seed
            if several and record.get("checkpoint"):
                # Rows name prediction files relative to one run directory; merged rows need full paths.
                record = {**record, "checkpoint": str((store.root / record["checkpoint"]).resolve())}
            records.append(record)
        state = read_state(store.root)
        for row in with_ensemble_test(load_ensemble_rows(store.root), store.root, run_tasks):
            row = {**row, "calibration": ensemble_calibration(row, store.root, run_tasks, state and state["key"])}
            if several:
                row = {
                    **row,
                    "predictions": {
                        t: [str((store.root / p).resolve()) for p in paths] for t, paths in row["predictions"].items()
                    },
                }
            ensemble_rows.append(row)
    board = build_leaderboard(" + ".join(names), records, order, extra_rows=ensemble_rows)
    add_trial_calibration(board["rows"], {r["trial_id"]: r for r in records}, roots, split_seeds, tasks)
    root = Path(run_dirs[0])
    return finish_leaderboard(board, records, root, baseline, resamples, correction, level), records


def finish_leaderboard(
    board: dict,
    records: list[dict],
    root: Path,
    baseline: str | None = None,
    resamples: int = RESAMPLES,
    correction: str = CORRECTION,
    level: str = LEVEL,
) -> dict:
    """Add the statistics, reading the rows' prediction files relative to `root`."""
    task_specs = {r["task"]: TaskSpec.from_dict(r["task_spec"]) for r in records}
    loader = prediction_loader(root)
    return add_statistics(board, task_specs, loader, baseline, resamples, correction=correction, level=level)


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
