"""What the study-running measurements share: their command line, and one `bench run` of a suite, timed."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.common.atomic import atomic_write_json
from benchmark.common.quiet import quiet_libraries
from benchmark.config.suite import Suite, load_suite
from benchmark.records.final_predictions import read_test_file, test_prediction_path
from benchmark.records.store import run_trial_id
from benchmark.results.tables import p_text
from benchmark.run.runner import run_suite
from benchmark.train.checkpoints import load_predictions
from benchmark.train.floors import FLOOR_KINDS
from tasks.metrics import compute_metrics, task_score
from tasks.metrics.squad import squad_metrics
from tasks.qa_baselines import first_sentence
from tasks.spans import QALabels
from tasks.spec import TaskSpec, TaskType
from tasks.words import IGNORE


@dataclass
class Study:
    args: argparse.Namespace
    suite: Suite
    wall_seconds: float  # every timed part of the study's `bench run` so far (a study may run in parts that resume)
    command: str  # what reproduces it
    parts: int = 1
    untimed: int = 0  # earlier parts that stopped before they could write their time (kill -9, or older code)

    def wall_text(self) -> str:
        return wall_text(self.wall_seconds, self.parts, self.untimed)


def wall_text(seconds: float, parts: int, untimed: int) -> str:
    """How long a study ran, for its README's header: timed parts, and the parts that died untimed."""
    text = f"wall time {seconds / 60:.1f} min over {parts} part(s)"
    if untimed:
        text += (
            f", plus {untimed} part(s) stopped before they could be timed "
            "(their finished trials count in the compute columns)"
        )
    return text


def walls_text(walls: list[tuple[float, int, int]]) -> str:
    """`wall_text` of a study with several runs behind one table (a run per arm): their (seconds, parts, untimed)
    from `timed_run`, summed; the parts are the most any run took."""
    seconds, parts, untimed = zip(*walls)
    return wall_text(sum(seconds), max(parts), sum(untimed))


def run_study(module: str, doc: str, default_suite: str, default_out: str, argv=None) -> Study:
    """Parse `--suite --output --set --out`, run the suite as `bench run` does, and time it."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default=default_suite)
    p.add_argument("--output", default=None, help="run directory (default: the suite's output)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a suite key")
    p.add_argument("--out", default=default_out)
    args = p.parse_args(argv)
    quiet_libraries()
    suite = load_suite(args.suite, args.set, output=args.output)
    wall, parts, untimed = timed_run(suite)
    command = f"python -m {module} " + " ".join(sys.argv[1:] if argv is None else argv)
    return Study(args, suite, wall, command, parts, untimed)


def timed_run(suite: Suite) -> tuple[float, int, int]:
    """Run the suite as `bench run` does; the wall time of every timed part of its run so far, this one added, the
    number of timed parts and of untimed ones (see `add_part`)."""
    run = Path(suite.output)
    untimed = untimed_before(run)
    started = time.perf_counter()
    # A part stopped by Ctrl-C or kill (not -9) still writes its time: a study may run in parts across sessions.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_suite(suite)  # trials, then the suite's ensemble section, then the leaderboard
    finally:
        signal.signal(signal.SIGTERM, previous)
        timed = add_part(run, time.perf_counter() - started, untimed)
    return timed


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def untimed_before(run: Path) -> int:
    """1 when the run directory holds finished trials but no part's time: an earlier part died untimed."""
    if (run / "study_wall.json").is_file():
        return 0
    return int(any((run / "trials").glob("*/record.json")))


def add_part(run: Path, seconds: float, untimed: int = 0) -> tuple[float, int, int]:
    """The wall time of every timed part of this run so far, this one added (kept in the run directory), the number
    of timed parts and of untimed ones."""

    path = run / "study_wall.json"
    before = json.loads(path.read_text()) if path.is_file() else {"seconds": 0.0, "parts": 0}
    total = {
        "seconds": before["seconds"] + seconds,
        "parts": before["parts"] + 1,
        "untimed": before.get("untimed", 0) + untimed,
    }
    atomic_write_json(path, total)
    return total["seconds"], total["parts"], total["untimed"]


def write_trial_scores(out: str, records: list[dict], arm_of=None) -> None:
    """`trial_scores.json` beside a study's README: per trial (and floor) its arm, task, seed, kind, grid point, how
    it read the data, and its validation and test scores (0-100), so that the README's numbers can be recomputed
    from `results/` alone. `arm_of(record)`: the arm a record belongs to (None: a study of one run)."""
    rows = []
    for r in sorted(records, key=lambda r: (r["task"], r.get("kind", "single"), r["trial_id"])):
        test = r.get("test_metrics")
        rows.append({
            "arm": arm_of(r) if arm_of else None, "trial_id": r["trial_id"], "task": r["task"],
            "kind": r.get("kind", "single"), "seed": r.get("seed"), "grid_point": r.get("grid_point"),
            "pooling": r.get("pooling"), "pair_encoding": r.get("pair_encoding"), "precision": r.get("precision"),
            "status": r.get("status"), "best_epoch": r.get("best_epoch"), "validation_score": r.get("best_score"),
            "validation_metrics": {k: 100 * v for k, v in (r.get("best_metrics") or {}).items()},
            "test_score": task_score(test, TaskSpec.from_dict(r["task_spec"])) if test else None,
            "test_metrics": {k: 100 * v for k, v in test.items()} if test else None,
        })  # fmt: skip
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(out) / "trial_scores.json", {"trials": rows})


def against_baseline(row: dict, base: dict, base_name: str) -> str:
    """`against NAME: test average +x (its corrected test); validation average +y (its corrected test)`: a row of a
    leaderboard with statistics, against the baseline row `base`; test first, where nothing was chosen."""
    parts = []
    test, base_test = row.get("test") or {}, base.get("test") or {}
    if test.get("average") is not None and base_test.get("average") is not None:
        sig = (test.get("significance") or {}).get("average") or {}
        parts.append(f"test average {test['average'] - base_test['average']:+.2f} ({shown(sig)})")
    sig = (row.get("significance") or {}).get("average") or {}
    parts.append(f"validation average {row['average'] - base['average']:+.2f} ({shown(sig)})")
    return f"against {base_name}: " + "; ".join(parts)


def trained_against_single(row: dict, single: dict) -> str:
    """One line: the row against the single-task row (test, then validation), and the samples each trained."""
    return (
        f"- {row['system']}: {against_baseline(row, single, 'single-task')}; trained "
        f"{row['compute'].get('train_samples', 0):,} samples against single-task's "
        f"{single['compute'].get('train_samples', 0):,}."
    )


def shown(test: dict) -> str:
    """What a corrected test of the table shows."""
    if test.get("p_adjusted") is None:
        return "not tested"
    shown = "no difference shown"
    if test["significant"]:
        shown = "significantly " + ("above" if test["delta"] > 0 else "below")
    return f"{shown}, adjusted {p_text(test['p_adjusted'])}"


def constant_score(task, labels: np.ndarray) -> float:
    """The task score (0-100) of predicting one value for every example: the majority class (tagging: the majority
    tag for every word, `O`, which finds no entity: F1 0), or the mean; extractive QA: the context's first sentence
    (tasks/qa_baselines.py), whatever the question."""
    if task.is_regression:
        return 0.0  # a correlation with a constant is undefined; the convention is 0
    if task.type is TaskType.EXTRACTIVE_QA:
        view = QALabels.unpack(labels)
        return task_score(squad_metrics([first_sentence(c) for c in view.contexts], view.golds()), task)
    words = labels[labels != IGNORE]  # tagging: a row per sentence, IGNORE past its end; its majority is `O`
    logits = np.zeros((*labels.shape, task.num_labels), dtype=np.float32)
    logits[..., np.bincount(words, minlength=task.num_labels).argmax()] = 1.0
    return task_score(compute_metrics(task, {"validation": logits}, {"validation": labels}), task)


def learning_lines(board: dict, run: Path, margin: float = 5.0, system: str | None = None) -> list[str]:
    """Whether the trial row `(single)` (or the row named `system`, trained in `run`) learns: per task, its score
    (test where scored, else dev) against the constant prediction's and its model's floors (zero-shot, probe) on the
    same examples; the goal is `margin` points above the constant and above every floor."""

    row = next(r for r in board["rows"] if r["kind"] == "single" and "trial_ids" in r and system in (None, r["system"]))
    floors = {f["kind"]: f for f in board["rows"] if f["kind"] in FLOOR_KINDS and f["model"] == row["model"]}
    lines = [
        f"Does the baseline learn? {row['system']} against the constant prediction (majority class for accuracy "
        f"and F1; 0 for MCC and correlations) and its floors (zero-shot: the untrained encoder's cosine; probe: a "
        f"linear head on the frozen encoder; docs/statistics.md) on the same examples; goal: at least {margin:g} "
        "points above the constant, and above every floor.",
        "",
        "| task | split | baseline | constant | zero-shot | probe | margin over the highest | goal |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for task, trial_ids in row["trial_ids"].items():
        trial_id = run_trial_id(trial_ids[0])
        record = json.loads((run / "trials" / trial_id / "record.json").read_text())
        spec = TaskSpec.from_dict(record["task_spec"])
        test = read_test_file(test_prediction_path(run, trial_id))
        on_test = test is not None and task in (row.get("test") or {}).get("task_scores", {})
        if on_test:
            split, score, labels = "test", row["test"]["task_scores"][task], test["labels"]
        else:
            split, score = "dev", row["task_scores"][task]
            labels = next(iter(load_predictions(run / record["checkpoint"])[1].values()))
        constant = constant_score(spec, np.asarray(labels))
        floor = {
            k: ((f.get("test") or {}) if on_test else f).get("task_scores", {}).get(task) for k, f in floors.items()
        }
        highest = max([constant, *(v for v in floor.values() if v is not None)])
        met = score - constant >= margin and score > highest
        cells = [f"{floor[k]:.1f}" if floor.get(k) is not None else "—" for k in FLOOR_KINDS]
        lines.append(
            f"| {task} | {split} | {score:.1f} | {constant:.1f} | {' | '.join(cells)} | {score - highest:+.1f} | "
            f"{'met' if met else 'MISSED'} |"
        )
    return lines
