"""A tiny random BERT and a task it learns in an epoch: what the tests and the reliability measurements train.

Both go through the same loading paths as any user's model and task files.
"""

from __future__ import annotations

from pathlib import Path


def make_tiny_bert(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random BERT small enough to train in a second."""
    from benchmark.train.modeling import save_random_bert

    return save_random_bert(
        folder, hidden=hidden, layers=layers, heads=2, intermediate=2 * hidden, max_positions=128, seed=seed
    )


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
    return {
        "name": "easy",
        "train": str(folder / "train.csv"),
        "validation": str(folder / "dev.csv"),
        "text_columns": ["text"],
        "labels": ["bad", "good"],
    }
