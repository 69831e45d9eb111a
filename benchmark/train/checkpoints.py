"""A kept checkpoint: a Hugging Face model folder (safetensors, with tokenizer), its dev logits, and what made it.

A predictions file holds, per dev split, `{split}/logits` and `{split}/labels`, and optionally `{split}/indices`:
the positions in the dev split that the rows cover (absent: every example, in order). Checkpoints cover every
example; files that ensembles write may cover a part.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from benchmark.common.atomic import atomic_write_json
from benchmark.train.lora import save_model
from tasks.words import IGNORE

PREDICTIONS_FILE = "dev_predictions.safetensors"
WORDS, WIDTH = "words", "width"  # a tagging split's word count per sentence and padded width, in a prediction file
TRIAL_FILE = "trial.json"
BEST_DIR = "best"  # in a trial's working folder: the kept epoch's checkpoint (one per task for a joint trial)
STATE_DIR = "state"  # ... and its last saved training state
HASH_FILE = "sha256.json"  # {"files": {relative path: sha256}} of every other file in the checkpoint folder


def save_checkpoint(
    folder: Path, model, tokenizer, split_logits: dict[str, np.ndarray], split_labels: dict[str, np.ndarray], meta: dict
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, folder)  # safetensors; a LoRA model merged, with its adapter files beside
    tokenizer.save_pretrained(folder)
    (folder / PREDICTIONS_FILE).write_bytes(prediction_bytes(split_logits, split_labels))
    atomic_write_json(folder / TRIAL_FILE, meta)


def prediction_bytes(
    logits: dict[str, np.ndarray], labels: dict[str, np.ndarray], rows: dict[str, np.ndarray] | None = None
) -> bytes:
    """A prediction file (safetensors) as `read_prediction_file` reads it: each split's logits and labels; with
    `rows`, only those rows of each split, and their indices. A tagging split (sentences x words, IGNORE past a
    sentence's end) is kept as its words alone and each sentence's word count: a tenth of the padded size."""
    # Imported here for start-up speed (safetensors).
    from safetensors.numpy import save

    tensors = {}
    for split in rows if rows is not None else logits:
        keep = rows[split] if rows is not None else slice(None)
        z, y = np.asarray(logits[split][keep], dtype=np.float32), np.asarray(labels[split][keep])
        if y.ndim == 2 and z.ndim == 3:  # tagging (an extractive QA split's labels are packed rows: kept whole)
            words = y != IGNORE
            tensors[f"{split}/{WIDTH}"] = np.asarray([y.shape[1]], dtype=np.int64)  # the padded width, kept
            z, y, tensors[f"{split}/{WORDS}"] = z[words], y[words], words.sum(axis=1).astype(np.int64)
        tensors[f"{split}/logits"] = np.ascontiguousarray(z)
        tensors[f"{split}/labels"] = np.ascontiguousarray(y)
        if rows is not None:
            tensors[f"{split}/indices"] = rows[split].astype(np.int64)
    return save(tensors)


def read_prediction_file(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """split -> {"logits", "labels", and "indices" when present}."""
    # Imported here for start-up speed (safetensors).
    from safetensors.numpy import load_file

    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(str(path)).items():
        split, name = key.rsplit("/", 1)
        out.setdefault(split, {})[name] = value
    for found in out.values():
        if WORDS in found:  # tagging: back to sentences x words, IGNORE past each sentence's end
            counts, width = found.pop(WORDS), int(found.pop(WIDTH)[0])
            at = np.arange(width)[None, :] < counts[:, None]
            logits = np.zeros((*at.shape, found["logits"].shape[-1]), dtype=np.float32)
            labels = np.full(at.shape, IGNORE, dtype=found["labels"].dtype)
            logits[at], labels[at] = found["logits"], found["labels"]
            found["logits"], found["labels"] = logits, labels
    return out


def load_predictions(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The dev logits and labels saved beside a checkpoint, by split."""
    splits = read_prediction_file(Path(folder) / PREDICTIONS_FILE)
    return {s: v["logits"] for s, v in splits.items()}, {s: v["labels"] for s, v in splits.items()}


def parameter_count(folder: Path) -> int:
    """Parameters of the saved model, read from the safetensors headers without loading the weights."""
    # Imported here for start-up speed (safetensors).
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != HASH_FILE)


def write_hashes(folder: Path) -> None:
    """Record the content hash of every file of a checkpoint folder, so that damage is detected on use."""
    folder = Path(folder)
    atomic_write_json(folder / HASH_FILE, {"files": {str(p.relative_to(folder)): _sha256(p) for p in _files(folder)}})


def checkpoint_problem(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder's files (None: they match their recorded hashes).

    Folders made before hashes were recorded have no HASH_FILE and pass: there is nothing to compare with.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "the checkpoint folder is missing"
    path = folder / HASH_FILE
    if not path.exists():
        return None
    try:
        expected = json.loads(path.read_text())["files"]
        if not isinstance(expected, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {HASH_FILE} is unreadable"
    for name, digest in sorted(expected.items()):
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if _sha256(file) != digest:
            return f"{name} does not match its recorded sha256 (the file is damaged)"
    return None
