"""Inputs already checked, remembered in the cache directory by their files' paths, sizes and modification times.

Checking a model folder loads transformers (which imports torch), and checking a task's data reads every row
through `datasets`: seconds each on a small machine. An input whose files are as they were when it passed needs no
second look, so `bench validate` and `bench run` skip it; a changed file is checked again.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.common.atomic import atomic_write_json
from benchmark.common.paths import resolve_cache_dir

CHECKS_FILE = "checks.json"
FORMAT = 2  # bump when what a check covers changes


def file_stats(paths) -> list | None:
    """(resolved path, size, modification time) of each file, sorted; None when one cannot be read."""
    try:
        return sorted((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    except OSError:
        return None


def folder_files(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_file()]
    except OSError:
        return []


def _stamp(paths, settings) -> str | None:
    stats = file_stats(paths)
    return None if not stats else json.dumps([FORMAT, settings, stats], default=str)


def _path() -> Path:
    return resolve_cache_dir(None) / CHECKS_FILE


def _read() -> dict:
    try:
        return json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}


def checked_before(what: str, paths, settings) -> bool:
    """`what` (a key naming the check) passed before with these files unchanged and these settings."""
    stamp = _stamp(paths, settings)
    return stamp is not None and _read().get(what) == stamp


def remember_checked(what: str, paths, settings) -> None:
    stamp = _stamp(paths, settings)
    if stamp is None:
        return
    known = _read()
    known[what] = stamp
    try:
        atomic_write_json(_path(), known)
    except OSError:  # a read-only cache only costs the next command the check again
        pass
