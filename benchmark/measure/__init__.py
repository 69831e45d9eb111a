"""Measurements that print figures: parity with Hugging Face Trainer, throughput, overhead. Never timed tests."""

import argparse
import re
import subprocess
from pathlib import Path

from benchmark.common.atomic import atomic_write_text


def write_report(folder: str, report: str) -> None:
    """A measurement's figures: `folder/README.md` (written atomically), and the terminal."""

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "README.md", report)
    print(report)


def check_label(parser: argparse.ArgumentParser, label: str) -> None:
    """A label names a json file of figures beside its README: a plain name, no path."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", label):
        parser.error(f"--label {label!r}: lower-case letters, digits and '-'")


def commit_line(repo: Path) -> str:
    """The measured checkout's commit: short hash and subject."""
    out = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=repo, capture_output=True, text=True)
    return out.stdout.strip()[:100]


def code_line(repo: Path = Path(".")) -> str:
    """Which code made a study: its checkout's commit, and whether files differed from it."""
    # results/ is left out: a study rewrites its own files there while it runs.
    status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"]
    dirty = subprocess.run(status, cwd=repo, capture_output=True)
    changed = " (with uncommitted changes)" if dirty.stdout.strip() else ""
    return f"Code: commit {commit_line(repo)}{changed}."


def machine_line(m: dict) -> str:
    """Where a label's figures were taken, from the `date`, `machine`, `cpus` and `load_before` it recorded."""
    cpu = m["machine"]
    return (
        f"Date {m['date']}; CPU {cpu['cpu']} ({', '.join(cpu['cpu_flags'])}; native bf16: {cpu['native_bf16']}), "
        f"{m['cpus']} CPUs, load average {m['load_before']} before the run"
    )
