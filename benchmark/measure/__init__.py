"""Measurements that print figures: parity with Hugging Face Trainer, throughput, overhead. Never timed tests."""

import argparse
import re
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
