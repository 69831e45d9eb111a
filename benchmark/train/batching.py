"""Batches: length-grouped, dynamically padded, split across data-parallel ranks and accumulation steps.

One optimizer step consumes one global batch of `batch_size` examples. Its examples are sorted by length and
cut into `world_size * accumulation` micro-batches; rank r takes micro-batches r*acc .. r*acc+acc-1. The
schedule depends only on the seed and epoch, so every rank computes the same one, and results do not
depend on how many workers share the batch.
"""

from __future__ import annotations

import numpy as np
import torch

from tasks.encoding import EncodedSplit
from tasks.words import IGNORE

# A batch's training targets where they are not the examples' labels (tagging: a tag per token; extractive QA: each
# window's answer start and end token): the loss reads them, the model does not.
TARGETS = "targets"

MEGABATCH_FACTOR = 50  # as Hugging Face's LengthGroupedSampler: sort within 50 batches' worth of examples


def global_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool, min_size: int = 1
) -> list[np.ndarray]:
    """The example indices of each optimizer step of one epoch, in order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = batch_size * MEGABATCH_FACTOR
        order = np.concatenate(
            [
                chunk[np.argsort(-lengths[chunk], kind="stable")]
                for chunk in np.array_split(order, range(mega, len(order), mega))
            ]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if batches and len(batches[-1]) < min_size:
        batches.pop()  # too small to give every rank and accumulation step an example
    if group_by_length:
        # Shuffle batch order, so that long and short batches mix; keep the longest first to fail fast on memory.
        longest = int(np.argmax([lengths[b].max() for b in batches]))
        rest = [b for i, b in enumerate(batches) if i != longest]
        batches = [batches[longest]] + [rest[i] for i in rng.permutation(len(rest))]
    return batches


def rank_micro_batches(
    batch: np.ndarray, lengths: np.ndarray, rank: int, world_size: int, accumulation: int
) -> list[np.ndarray]:
    """This rank's share of one global batch, as `accumulation` micro-batches of similar length."""
    ordered = batch[np.argsort(-lengths[batch], kind="stable")]
    parts = np.array_split(ordered, world_size * accumulation)
    return parts[rank * accumulation : (rank + 1) * accumulation]


def collate(
    split: EncodedSplit, indices: np.ndarray, pad_id: int, pad_to_multiple_of: int = 1
) -> dict[str, torch.Tensor]:
    """Pad to the longest example of the batch (dynamic padding). A pair encoded apart: each text padded to its own
    longest, the second's inputs named with `_b` (what benchmark/train/pair_encoding.py's model reads). A tagging
    or QA batch also holds TARGETS, which the caller takes out before the forward."""
    if split.choices:  # multiple choice: every choice of each example, as examples x choices x tokens
        sequences = (np.asarray(indices)[:, None] * split.choices + np.arange(split.choices)).ravel()
        flat = _padded(split, sequences, pad_id, pad_to_multiple_of)
        return {k: v.view(len(indices), split.choices, -1) for k, v in flat.items()}
    batch = _padded(split, indices, pad_id, pad_to_multiple_of)
    if split.second is not None:
        second = _padded(split.second, indices, pad_id, pad_to_multiple_of)
        batch.update({f"{k}_b": v for k, v in second.items()})
    return batch


def _padded(split: EncodedSplit, indices: np.ndarray, pad_id: int, pad_to_multiple_of: int) -> dict[str, torch.Tensor]:
    lengths = split.token_lengths[indices]
    width = int(lengths.max())
    width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(indices), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(indices), width), dtype=np.int64)
    types = np.zeros((len(indices), width), dtype=np.int64) if split.type_ids is not None else None
    for row, i in enumerate(indices):
        seq, seg = split.example(int(i))
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
        if types is not None:
            types[row, : len(seq)] = seg
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if types is not None:
        batch["token_type_ids"] = torch.from_numpy(types)
    if split.token_labels is not None:  # tagging: a label per token, IGNORE where the loss skips
        labels = np.full((len(indices), width), IGNORE, dtype=np.int64)
        for row, i in enumerate(indices):
            a, b = split.offsets[i], split.offsets[i + 1]
            labels[row, : b - a] = split.token_labels[a:b]
        batch[TARGETS] = torch.from_numpy(labels)
    if split.span_labels is not None:  # extractive QA: each window's answer start and end token
        batch[TARGETS] = torch.from_numpy(split.span_labels[np.asarray(indices)])
    return batch
