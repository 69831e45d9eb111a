"""Measurements that print figures: parity with Hugging Face Trainer, throughput, overhead. Never timed tests."""


def write_report(folder: str, report: str) -> None:
    """A measurement's figures: `folder/README.md` (written atomically), and the terminal."""
    from pathlib import Path

    from benchmark.common.atomic import atomic_write_text

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "README.md", report)
    print(report)
