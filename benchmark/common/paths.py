"""Names that become file names in a run directory must stay inside it.

Task, trial and split names are joined to the run directory's path (`trials/<trial id>`, `<task>.safetensors`,
`submission/<split>.tsv`); they can also come from files in a run directory, which anyone may have edited. A
name that is not a single plain path component could write outside the directory, so it is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.common.errors import InputError


def check_name(name, where: str, what: str = "name") -> str:
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or any(c in name for c in "/\\\0")
        or len(name.encode("utf-8", "surrogatepass")) > 255
    ):
        raise InputError(
            where,
            f"{what} {name!r} is not a plain file name (no '/', '\\', NUL, '.' or '..'; at most "
            "255 bytes), so it could write outside the run directory",
        )
    return name


def local_path(text: str, where: str, base: Path | None = None) -> Path:
    """A path from the input, `~` expanded and made absolute (against `base` when relative). One the OS cannot
    take (a NUL, an unknown user's `~`) is an InputError, not a crash."""
    try:
        return ((base or Path.cwd()) / Path(text).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(where, f"not a usable path {text!r}: {e}") from None


def check_writable_dir(path: Path, where: str) -> None:
    """A folder bench will write into (made where missing): its nearest existing ancestor must be a folder this
    process may write, else one line at validate, before anything starts."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(where, f"{path} cannot be made: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(where, f"{path}: {existing} is not writable by this user")


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system is no file
        return False


def is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def resolve_cache_dir(value: str | None) -> Path:
    """The suite's `data.cache_dir`, else $BENCH_CACHE_DIR, else ~/.cache/bench."""
    return Path(value or os.environ.get("BENCH_CACHE_DIR") or "~/.cache/bench").expanduser().resolve()
