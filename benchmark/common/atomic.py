"""Atomic writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from pathlib import Path

TMP_SUFFIX, OLD_SUFFIX = ".tmp", ".old"  # of unfinished writes; recover_interrupted_writes knows them


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results and reports are meant to be read by others
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move a finished directory into place. `src` must be on the same filesystem as `dst`. Where the system can
    swap two paths in one step (Linux), a crash leaves `dst` old or new; elsewhere it takes two renames, and a
    crash between them leaves `.NAME.old`, which `recover_interrupted_writes` puts back."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and _exchange(src, dst):
        _fsync_dir(dst.parent)
        shutil.rmtree(src, ignore_errors=True)  # it holds the old contents now
        return
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}{OLD_SUFFIX}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    _fsync_dir(dst.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 with RENAME_EXCHANGE); False where the platform or filesystem can't."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def recover_interrupted_writes(root: str | os.PathLike, skip: tuple[str, ...] = ()) -> list[str]:
    """Undo what a process killed in the middle of a write left under `root`: a directory whose replacement
    stopped between its two renames is put back, and unfinished temporary files and staging folders are deleted.
    Only for a directory no one else is writing to (its lock held). Returns what it did, one line each."""
    done = []
    for folder, dirs, files in os.walk(root):
        if folder == str(root):
            dirs[:] = [d for d in dirs if d not in skip]
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if name.startswith(".") and name.endswith(OLD_SUFFIX) and path.is_dir():
                kept = path.with_name(name[1 : -len(OLD_SUFFIX)])
                if kept.exists():
                    shutil.rmtree(path, ignore_errors=True)
                    done.append(f"deleted {path} (replaced by {kept.name})")
                else:
                    os.replace(path, kept)
                    done.append(f"restored {kept} (a replacement of it was interrupted)")
            elif name.startswith(".") and name.endswith(TMP_SUFFIX):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                done.append(f"deleted {path} (an unfinished write)")
        dirs[:] = [d for d in dirs if (Path(folder) / d).is_dir()]
    return done


def staging_dir_for(dst: str | os.PathLike) -> Path:
    """A fresh temporary directory beside `dst`, so that a rename can move it into place."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=TMP_SUFFIX, dir=dst.parent))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
