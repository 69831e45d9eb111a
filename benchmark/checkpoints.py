"""A kept checkpoint: a Hugging Face model folder (safetensors, with tokenizer), its dev logits, and what made it."""

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


def load_predictions(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The dev logits and labels saved beside a checkpoint, by split."""
    from safetensors.numpy import load_file

    tensors = load_file(str(Path(folder) / PREDICTIONS_FILE))
    logits = {k.split("/")[0]: v for k, v in tensors.items() if k.endswith("/logits")}
    labels = {k.split("/")[0]: v for k, v in tensors.items() if k.endswith("/labels")}
    return logits, labels


def load_trial_meta(folder: Path) -> dict:
    return json.loads((Path(folder) / TRIAL_FILE).read_text())
