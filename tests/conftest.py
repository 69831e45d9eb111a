"""Shared fixtures: the GLUE folder, a tiny random BERT with the embedded tokenizer, an isolated cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    path = Path(os.environ.get("BENCH_GLUE_DIR", REPO.parent / "shared" / "data" / "glue")).resolve()
    if not (path / "RTE" / "train.tsv").is_file():
        pytest.fail(f"GLUE data not found at {path}; set BENCH_GLUE_DIR")
    os.environ["BENCH_GLUE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench-cache")
    os.environ["BENCH_CACHE_DIR"] = str(path)
    return path


def make_tiny_bert(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random BERT small enough to train in a second."""
    from benchmark.modeling import save_random_bert

    return save_random_bert(folder, hidden=hidden, layers=layers, heads=2, intermediate=2 * hidden,
                            max_positions=128, seed=seed)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from benchmark.quiet import quiet_libraries

    quiet_libraries()
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_easy_task(folder: Path, train: int = 128, dev: int = 64) -> dict:
    """A user task a tiny BERT learns in an epoch or two: the label is whether the text says "good" or "bad".

    Schedulers need trials that differ for sure; on real GLUE slices a random tiny BERT is noise.
    """
    import random

    rng = random.Random(0)
    filler = ["the", "film", "was", "plot", "acting", "really", "quite", "a", "story", "and"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("dev", dev)):
        rows = ["text,label"]
        for _ in range(n):
            label = rng.choice(["good", "bad"])
            words = rng.sample(filler, 5)
            words.insert(rng.randrange(6), label)
            rows.append(f"{' '.join(words)},{label}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return {"name": "easy", "train": str(folder / "train.csv"), "validation": str(folder / "dev.csv"),
            "text_columns": ["text"], "labels": ["bad", "good"]}


def bench(*args, timeout=900, **kwargs) -> subprocess.CompletedProcess:
    """The `bench` CLI in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "benchmark.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ}, **kwargs)
