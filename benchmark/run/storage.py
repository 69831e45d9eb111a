"""Trial state in Ray's storage: a local folder, or a URI (s3://, gs://, a shared file system) that every node of a
cluster reaches. A trial writes its checkpoints there; the driver copies the best into the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path


def _filesystem(storage: str):
    # Imported here for start-up speed (pyarrow): ray[tune] brings it, and only URIs need it.
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(storage)[0]


def _is_uri(storage: str) -> bool:
    return "://" in storage


def _fs_path(path: str) -> str:
    return path.split("://", 1)[1] if "://" in path else path


def upload(folder: Path, path: str, storage: str) -> None:
    """Copy a local folder to `path` in storage (replacing what was there)."""
    if not _is_uri(storage):
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(folder, path)
        return
    # Imported here for start-up speed (pyarrow).
    import pyarrow.fs

    pyarrow.fs.copy_files(str(folder), _fs_path(path), destination_filesystem=_filesystem(storage))


def download(path: str, storage: str, folder: Path) -> None:
    """Copy `path` in storage into a local folder."""
    if not _is_uri(storage):
        _copy_tree(Path(path), Path(folder))
        return
    # Imported here for start-up speed (pyarrow).
    import pyarrow.fs

    Path(folder).mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(_fs_path(path), str(folder), source_filesystem=_filesystem(storage))


def remove(path: str, storage: str) -> None:
    if not _is_uri(storage):
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        _filesystem(storage).delete_dir(_fs_path(path))
    except OSError:  # already gone
        pass


def _copy_tree(source: Path, target: Path) -> None:
    """A local copy that stops at the first error with the OS's own (a full disk says so: EFBIG, ENOSPC), where
    shutil.copytree would gather errors into one of its own."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_dir():
            _copy_tree(item, target / item.name)
        else:
            shutil.copy2(item, target / item.name)
