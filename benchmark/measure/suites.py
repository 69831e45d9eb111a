"""Run a suite as a user does (`bench run` in a fresh process) and read back what it recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml


def run_suite_command(config: dict, work: Path, address: str | None = None) -> tuple[float, list[dict]]:
    """Write `config` to `work/<name>.yaml`, run `bench run` on it; returns (wall seconds, trial records)."""
    path = Path(work) / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "benchmark.cli", "run", str(path), *(["--address", address] if address else [])]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{config['name']} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, [json.loads(p.read_text()) for p in sorted(Path(config["output"]).glob("trials/*/record.json"))]
