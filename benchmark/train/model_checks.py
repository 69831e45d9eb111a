"""Model folders already checked (config, weights' headers, tokenizer), remembered in the cache directory.

Checking a folder loads transformers, and transformers 5 imports torch: seconds on a small machine. A folder whose
files (names, sizes, modification times) are as they were when it passed needs no second look, so `bench
validate` and `bench run` skip it.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.common.atomic import atomic_write_json
from benchmark.common.paths import resolve_cache_dir

CHECKS_FILE = "model-checks.json"
FORMAT = 1  # bump when what a check covers changes


def _fingerprint(folder: Path, trust_remote_code: bool) -> str | None:
    try:
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    except OSError:
        return None
    return json.dumps([FORMAT, trust_remote_code, files])


def _path() -> Path:
    return resolve_cache_dir(None) / CHECKS_FILE


def _read() -> dict:
    try:
        return json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}


def checked_before(folder: Path, trust_remote_code: bool) -> bool:
    fingerprint = _fingerprint(folder, trust_remote_code)
    return fingerprint is not None and _read().get(str(folder.resolve())) == fingerprint


def remember_checked(folder: Path, trust_remote_code: bool) -> None:
    fingerprint = _fingerprint(folder, trust_remote_code)
    if fingerprint is None:
        return
    known = _read()
    known[str(folder.resolve())] = fingerprint
    try:
        atomic_write_json(_path(), known)
    except OSError:  # a read-only cache only costs the next command the check again
        pass
