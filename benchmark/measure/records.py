"""The records a study's tables are computed from, committed beside its README in `results/<study>/records/`.

A study's tables come from `leaderboard_from_runs` over its run directories. Those hold model weights (hundreds of
MB) and are not kept; what the tables read is small: each trial's and floor's record, the dev and test predictions
the statistics resample, the ensembles' state, the suite and the splits. `board_from_records` copies exactly that
out of each run into `records/<name>/`, notes in `records/boards.json` how the table was called, and computes the
table from the copies, so that the README is built from committed files by construction. `rebuilt_tables` computes
every table again from them (tests/test_study_records.py compares it with the README):

    python -m benchmark.measure.records results/freezing
    python -m benchmark.measure.records --write results/freezing   # put the rebuilt tables into its README

`--write` is for a table whose numbers hold but whose wording changed with the code (the run directories that
the study script resumes from are not kept, so re-running it retrains).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from benchmark.common.atomic import atomic_replace_dir, atomic_write_json, atomic_write_text, staging_dir_for
from benchmark.records.lock import LOCK_FILE
from benchmark.records.store import PROGRESS_FILE, RAY_STORAGE_DIR
from benchmark.results.board import leaderboard_from_runs
from benchmark.results.tables import format_markdown
from benchmark.train.checkpoints import HASH_FILE, PREDICTIONS_FILE, TRIAL_FILE
from benchmark.train.curves import CURVES_DIR

RECORDS_DIR = "records"
BOARDS_FILE = "boards.json"
_NOT_KEPT_DIRS = {RAY_STORAGE_DIR, CURVES_DIR, "mlruns"}  # Ray's storage, training curves, tracking
_NOT_KEPT_FILES = {LOCK_FILE, PROGRESS_FILE}
_KEPT_IN_CHECKPOINTS = {PREDICTIONS_FILE, TRIAL_FILE, HASH_FILE}  # of a model folder: no weights, no tokenizer
_WEIGHTS = ("model.safetensors", "adapter_model.safetensors")  # what makes a folder a model folder, with HASH_FILE


def kept_records(run: Path, target: Path) -> Path:
    """Copy what a table reads of run directory `run` into `target` (replaced atomically): everything but Ray's
    storage, training curves, locks and progress files, and of each model folder (a trial's checkpoint, a soup) all
    but its dev predictions and trial.json; its HASH_FILE keeps the hashes of the files kept, so damage still shows."""
    run, target = Path(run), Path(target)
    checkpoints = {p.parent for name in (HASH_FILE, *_WEIGHTS) for p in run.rglob(name)}
    staging = staging_dir_for(target)
    try:
        for path in sorted(p for p in run.rglob("*") if p.is_file()):
            rel = path.relative_to(run)
            hidden = any(part.startswith(".") for part in rel.parts)  # staging folders, `.old` leftovers
            if rel.parts[0] in _NOT_KEPT_DIRS or path.name in _NOT_KEPT_FILES or hidden:
                continue
            if path.parent in checkpoints and path.name not in _KEPT_IN_CHECKPOINTS:
                continue
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staging / rel)
        for folder in (f for f in checkpoints if (f / HASH_FILE).is_file()):
            hashes = json.loads((folder / HASH_FILE).read_text())["files"]
            kept = {name: digest for name, digest in hashes.items() if Path(name).name in _KEPT_IN_CHECKPOINTS}
            if (staging / folder.relative_to(run)).is_dir():
                atomic_write_json(staging / folder.relative_to(run) / HASH_FILE, {"files": kept})
        atomic_replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def board_from_records(
    out: str | Path,
    name: str,
    runs: dict[str, Path],
    baseline: str | None = None,
    compute: bool = True,
    calibration: bool = False,
) -> tuple[dict, list[dict], dict[str, Path]]:
    """The leaderboard `name` of a study written to `out`, computed from its runs' records copied into
    `out/records/<run name>/` (see `kept_records`); its call is noted in `out/records/boards.json`. Returns the board,
    its trial records and the copies by run name."""
    folder = Path(out) / RECORDS_DIR
    copies = {run_name: kept_records(run, folder / run_name) for run_name, run in runs.items()}
    path = folder / BOARDS_FILE
    boards = json.loads(path.read_text()) if path.is_file() else {}
    boards[name] = {"runs": list(runs), "baseline": baseline, "compute": compute, "calibration": calibration}
    atomic_write_json(path, boards)
    board, records = leaderboard_from_runs(list(copies.values()), baseline=baseline)
    return board, records, copies


def table_markdown(board: dict, compute: bool = True, calibration: bool = False) -> str:
    """A study board as its README prints it (compute columns unless it is a run's own leaderboard.md)."""
    return format_markdown(board, compute=compute, calibration=calibration)


def rebuilt_tables(out: str | Path) -> dict[str, str]:
    """Every table of the study in `out`, computed again from its committed records, by board name."""
    folder = Path(out) / RECORDS_DIR
    tables = {}
    for name, call in json.loads((folder / BOARDS_FILE).read_text()).items():
        board, _ = leaderboard_from_runs([folder / r for r in call["runs"]], baseline=call["baseline"])
        tables[name] = table_markdown(board, call["compute"], call["calibration"])
    return tables


def with_table(readme: str, table: str) -> str:
    """`readme` with the table that has `table`'s heading replaced by `table`: from that heading to the first
    'Trials: ' line after it, the line every board ends with."""
    heading = table.splitlines()[0]
    start = readme.index(f"{heading}\n")
    end = readme.index("\n", readme.index("\nTrials: ", start) + 1) + 1
    return readme[:start] + table + readme[end:]


def main(argv=None) -> int:
    """Rebuild a study's tables from its records; exit 1 where its README does not hold one of them (with
    `--write`, put them into it instead)."""
    args = list(argv if argv is not None else sys.argv[1:])
    write = "--write" in args
    studies = [a for a in args if a != "--write"] or sorted(
        str(p.parent.parent) for p in Path("results").glob(f"*/{RECORDS_DIR}/{BOARDS_FILE}")
    )
    failed = 0
    for study in studies:
        path = Path(study) / "README.md"
        readme = path.read_text()
        for name, table in rebuilt_tables(study).items():
            holds = table in readme
            if not holds and write:
                readme, holds = with_table(readme, table), True
                print(f"{study} {name}: written into its README")
            failed += not holds
            print(f"{study} {name}: {'rebuilt, as its README has it' if holds else 'DIFFERS from its README'}")
        if write:
            atomic_write_text(path, readme)
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main())
