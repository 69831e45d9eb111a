"""A kept checkpoint: a Hugging Face model folder (safetensors, with tokenizer), its dev logits, and what made it.

A predictions file holds, per dev split, `{split}/logits` and `{split}/labels`, and optionally `{split}/indices`:
the positions in the dev split that the rows cover (absent: every example, in order). Checkpoints cover every
example; files that ensembles write may cover a part.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark.atomic import atomic_write_json

PREDICTIONS_FILE = "dev_predictions.safetensors"
TRIAL_FILE = "trial.json"


def save_checkpoint(folder: Path, model, tokenizer, split_logits: dict[str, np.ndarray],
                    split_labels: dict[str, np.ndarray], meta: dict) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)          # safetensors: transformers writes no other format
    tokenizer.save_pretrained(folder)
    tensors = {}
    for split, logits in split_logits.items():
        tensors[f"{split}/logits"] = np.ascontiguousarray(logits, dtype=np.float32)
        tensors[f"{split}/labels"] = np.ascontiguousarray(split_labels[split])
    save_file(tensors, str(folder / PREDICTIONS_FILE))
    atomic_write_json(folder / TRIAL_FILE, meta)


def read_prediction_file(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """split -> {"logits", "labels", and "indices" when present}."""
    from safetensors.numpy import load_file

    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(str(path)).items():
        split, name = key.rsplit("/", 1)
        out.setdefault(split, {})[name] = value
    return out


def load_predictions(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The dev logits and labels saved beside a checkpoint, by split."""
    splits = read_prediction_file(Path(folder) / PREDICTIONS_FILE)
    return {s: v["logits"] for s, v in splits.items()}, {s: v["labels"] for s, v in splits.items()}


def parameter_count(folder: Path) -> int:
    """Parameters of the saved model, read from the safetensors headers without loading the weights."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        if path.name == PREDICTIONS_FILE:
            continue
        with safe_open(str(path), framework="np") as f:
            total += sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    return total


def load_trial_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / TRIAL_FILE).read_text())
