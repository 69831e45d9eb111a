"""Measurements that print figures: parity with Hugging Face Trainer, throughput, overhead. Never timed tests."""

from pathlib import Path

from benchmark.common.atomic import atomic_write_text


def write_report(folder: str, report: str) -> None:
    """A measurement's figures: `folder/README.md` (written atomically), and the terminal."""

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "README.md", report)
    print(report)
