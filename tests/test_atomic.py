"""Atomic writes under kill -9: a reader finds the old contents or the new, and the next lock holder cleans up."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmark import atomic
from benchmark.common.atomic import atomic_replace_dir, atomic_write_json, recover_interrupted_writes, staging_dir_for
from benchmark.records.lock import run_lock

REPO = Path(__file__).resolve().parents[1]

# Replaces a folder (ten files, all naming one version) and a JSON file over and over, as fast as it can.
# It repeats write_version's body rather than import this module: that import (pytest) takes longer than the
# shortest kill delay, and kills before the first write test nothing.
WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from benchmark import atomic
    root, swap = Path(sys.argv[1]), sys.argv[2] == "swap"
    if not swap:
        atomic._exchange = lambda a, b: False
    version = 0
    while True:
        version += 1
        staging = atomic.staging_dir_for(root / "checkpoint")
        for i in range(10):
            (staging / f"part{i}").write_text(str(version) * 100_000)
        atomic.atomic_replace_dir(staging, root / "checkpoint")
        atomic.atomic_write_json(root / "record.json", {"version": version, "pad": "x" * 10000})
""")


def write_version(root: Path, version: int) -> None:
    staging = staging_dir_for(root / "checkpoint")
    for i in range(10):
        (staging / f"part{i}").write_text(str(version) * 100_000)
    atomic_replace_dir(staging, root / "checkpoint")
    atomic_write_json(root / "record.json", {"version": version, "pad": "x" * 10000})


def check_whole(root: Path) -> None:
    import json

    parts = {(root / "checkpoint" / f"part{i}").read_text() for i in range(10)}
    assert len(parts) == 1 and len(parts.pop()) % 100_000 == 0  # one version, every file complete
    assert json.loads((root / "record.json").read_text())["pad"] == "x" * 10000


@pytest.mark.parametrize("swap", [True, False], ids=["one-step swap", "two renames"])
def test_replacing_twice_leaves_the_new_contents_and_nothing_else(tmp_path, monkeypatch, swap):
    if not swap:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    write_version(tmp_path, 1)
    write_version(tmp_path, 2)
    assert (tmp_path / "checkpoint" / "part0").read_text() == "2" * 100_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "record.json"]


@pytest.mark.parametrize("swap", [True, False], ids=["one-step swap", "two renames"])
def test_a_writer_killed_at_random_moments_always_leaves_whole_files(tmp_path, swap):
    rng = random.Random(3)
    write_version(tmp_path, 0)
    recovered = 0
    for _ in range(15):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), "swap" if swap else "renames"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        time.sleep(0.2 + rng.uniform(0.0, 0.3))  # past the import, into the writing loop
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        recovered += len(recover_interrupted_writes(tmp_path))
        check_whole(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "record.json"]
    # Most kills land mid-write, leaving a temporary file or folder (or, with two renames, an old folder) to undo.
    assert recovered >= 3


def test_the_next_lock_holder_puts_back_an_interrupted_replacement_and_deletes_unfinished_writes(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "trials" / "t1" / ".checkpoint.old").mkdir(parents=True)  # killed between the two renames
    (run / "trials" / "t1" / ".checkpoint.old" / "model.safetensors").write_bytes(b"weights")
    (run / "trials" / "t1" / ".record.json.x1.tmp").write_text("{half")
    (run / ".ensembles.x2.tmp").mkdir()
    (run / "ray").mkdir()
    (run / "ray" / ".ray-owned.tmp").write_text("Ray's own")  # Ray's storage is not bench's to clean
    with run_lock(run):
        assert (run / "trials" / "t1" / "checkpoint" / "model.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in (run / "trials" / "t1").iterdir()) == ["checkpoint"]
    assert not (run / ".ensembles.x2.tmp").exists() and (run / "ray" / ".ray-owned.tmp").exists()
    err = capsys.readouterr().err
    assert "restored" in err and "checkpoint (a replacement of it was interrupted)" in err
    assert err.count("(an unfinished write)") == 2
