"""One command at a time in a run directory: `bench run` and `bench ensemble` hold an exclusive lock on it.

The lock is an flock(2) on `<run>/.bench.lock`, so the kernel drops it when its holder dies, however it dies
(kill -9 included): a lock file left by a dead process is simply taken over, with no window in which two holders
could both believe they won. The file's content names the holder (pid, host, start time, command) for the
message that refuses a second command.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from benchmark.common.atomic import recover_interrupted_writes
from benchmark.common.errors import InputError
from benchmark.records.store import RAY_STORAGE_DIR

LOCK_FILE = ".bench.lock"


class RunLocked(InputError):
    """Another command holds the run directory. Exit code 2: nothing was started."""


def holder_text(info: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if "started" in info else "?"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {started} ({info.get('command', '?')})"


def _read_holder(path: Path) -> dict:
    for _ in range(20):  # the holder writes its details just after it takes the lock
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    return {}


@contextmanager
def run_lock(root: str | os.PathLike, command: str | None = None):
    """Hold the run directory's lock for the duration of the block; raise RunLocked if another process holds it."""
    root = Path(root)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the processes bench starts
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLocked(
                str(root),
                f"in use by another bench command: {holder_text(_read_holder(path))}; "
                "wait for it to end, or use another --output",
            ) from None
        # The last holder unlinks the file as it leaves: make sure we locked the file that is still there.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": command or shlex.join(["bench", *sys.argv[1:]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        # The last holder may have been killed in the middle of a write: finish its cleanup before anyone reads.
        for line in recover_interrupted_writes(root, skip=(RAY_STORAGE_DIR,)):
            print(f"bench: {line}", file=sys.stderr)
        yield info
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no one can lock this file after we let go
        os.close(fd)
        if created:
            try:
                root.rmdir()  # a run refused before it wrote anything leaves no empty folder behind
            except OSError:
                pass
