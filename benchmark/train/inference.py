"""Logits of a model on encoded examples, in batches of similar length: what evaluation and `bench predict` share.

Every re-scoring of a saved module (test scores, `bench predict`, soups, merges) runs under `trained_precision`, so
it computes what the trial's own evaluation computed through the DeepSpeed engine (`train/engine.py`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from benchmark.train.batching import TARGETS, collate
from benchmark.train.checkpoints import load_trial_meta
from benchmark.train.modeling import load_finetuned_classifier, load_tokenizer
from benchmark.train.pair_encoding import saved_pair_encoding
from benchmark.train.steps import output_logits
from tasks.encoding import EncodedSplit, encode_split
from tasks.spans import window_slots
from tasks.spec import TaskSpec, Windowing

TRAINED_PRECISIONS = ("fp32", "bf16", "fp16")  # what `precision: auto` resolves to (common/hardware.py)


@contextlib.contextmanager
def trained_precision(model, precision: str):
    """The engine's forward numerics at `precision`, for a module outside the engine. bf16: the engine's
    `torch_autocast` section enters `torch.autocast(device, bfloat16)` around the module's forward, over fp32 weights
    (DeepSpeed's autocast_if_enabled); fp16: DeepSpeed's fp16 mode casts the parameters (not the buffers) to half
    and runs them without autocast; fp32: fp32 parameters, no autocast. The parameters are cast in place and stay
    so (a soup's `load_state_dict` then casts each average as training would have held it)."""
    if precision not in TRAINED_PRECISIONS:
        raise ValueError(f"precision {precision!r}: a checkpoint records one of {', '.join(TRAINED_PRECISIONS)}")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)
    if precision == "bf16":
        with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def checkpoint_precision(folder: Path) -> str:
    """The precision a kept checkpoint trained at (and its dev logits were computed at): `training.precision` of its
    trial.json, resolved for the trial's device; soups and merges carry their ingredients'."""
    return load_trial_meta(folder)["training"]["precision"]


@torch.no_grad()
def batched_logits(
    model,
    split: EncodedSplit,
    indices: np.ndarray,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    num_labels: int,
    pad_multiple: int = 1,
) -> np.ndarray:
    """Logits for `split`'s examples `indices`, in that order (pass them longest first: less padding). `model`
    computes at its own precision: the engine in training, a module under `trained_precision` elsewhere."""
    tagging, spans = split.word is not None, split.question is not None
    width = split.window_words if tagging else int(split.token_lengths.max(initial=0)) if spans else 0
    outputs = []
    for start in range(0, len(indices), batch_size):
        batch = indices[start : start + batch_size]
        inputs = {k: v.to(device) for k, v in collate(split, batch, pad_id, pad_multiple).items()}
        inputs.pop(TARGETS, None)
        logits = output_logits(model(**inputs)).float().cpu().numpy()
        if tagging:
            logits = _window_word_logits(split, batch, logits, width)
        elif spans:  # every window's start and end logits, as wide as the split's longest window
            logits = np.pad(logits, ((0, 0), (0, width - logits.shape[1]), (0, 0)))
        outputs.append(logits)
    if outputs:
        return np.concatenate(outputs)
    return np.zeros((0, width, num_labels) if tagging else (0, width, 2) if spans else (0, num_labels), np.float32)


def _window_word_logits(split: EncodedSplit, batch: np.ndarray, logits: np.ndarray, width: int) -> np.ndarray:
    """A tagging batch's token logits (windows x tokens x tags) at each window's words' first sub-tokens, in word
    order (windows x `width` x tags; zeros past a window's last word)."""
    out = np.zeros((len(batch), width, logits.shape[-1]), dtype=np.float32)
    for row, i in enumerate(batch):
        a, b = split.offsets[i], split.offsets[i + 1]
        starts = np.flatnonzero(split.word[a:b] >= 0)
        out[row, : len(starts)] = logits[row, starts]
    return out


def in_examples(split: EncodedSplit, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The logits of `split`'s examples, in file order, from `batched_logits`' for the examples `rows` (together
    every one). Tagging: windows' word logits placed into their sentences (sentences x words x tags)."""
    if split.question is not None:  # QA: windows into their questions' slots (questions x windows x tokens x 2)
        slots = window_slots(split.question)
        per = int(slots.max(initial=-1)) + 1
        out = np.zeros((split.examples, per, logits.shape[1], 2), dtype=np.float32)
        out[split.question[rows], slots[rows]] = logits
        return out
    if split.word is None:
        out = np.zeros((len(split), logits.shape[-1]), dtype=np.float32)
        out[rows] = logits
        return out
    out = np.zeros((*split.labels.shape, logits.shape[-1]), dtype=np.float32)
    for row, i in enumerate(rows):
        a, b = split.offsets[i], split.offsets[i + 1]
        words = split.word[a:b][split.word[a:b] >= 0]
        out[split.sentence[i], words] = logits[row, : len(words)]
    return out


def logits_in_file_order(
    model, split: EncodedSplit, pad_id: int, batch_size: int, device: torch.device, num_labels: int, precision: str
) -> np.ndarray:
    """Logits of a module (not an engine) for every example of `split`, in file order, computed longest first at
    the `precision` it trained at."""
    order = np.argsort(-split.lengths, kind="stable")
    with trained_precision(model, precision):
        return in_examples(split, batched_logits(model, split, order, pad_id, batch_size, device, num_labels), order)


def predict_logits(
    folder: Path, task: TaskSpec, ds, max_seq_length: int, batch_size: int, trust_remote_code: bool = False
) -> np.ndarray:
    """Run a kept checkpoint on a loaded split (`tasks.loading.load_split`): its logits, in the split's order, at the
    precision it trained at, so that its dev logits come out as the trial saved them."""
    return predict(folder, task, ds, max_seq_length, batch_size, trust_remote_code)[0]


def predict(
    folder: Path, task: TaskSpec, ds, max_seq_length: int, batch_size: int, trust_remote_code: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """`predict_logits`, and the labels they are scored against as the split was encoded (an extractive QA task's
    carry its windows and contexts, tasks/spans.py's QALabels)."""
    tokenizer = load_tokenizer(str(folder), trust_remote_code)
    windowing = Windowing.of(load_trial_meta(folder)["training"])  # a QA task's windows, as it trained
    encoded = encode_split(task, ds, tokenizer, max_seq_length, saved_pair_encoding(folder), windowing)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_finetuned_classifier(str(folder), trust_remote_code).to(device).eval()
    logits = logits_in_file_order(
        model,
        encoded,
        tokenizer.pad_token_id,
        batch_size,
        device,
        model.config.num_labels,
        checkpoint_precision(folder),
    )
    return logits, encoded.labels
