"""Logits of a model on encoded examples, in batches of similar length: what evaluation and `bench predict` share."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.train.batching import collate
from tasks.encoding import EncodedSplit


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
    """Logits for `split`'s examples `indices`, in that order (pass them longest first: less padding)."""
    outputs = []
    for start in range(0, len(indices), batch_size):
        batch = indices[start : start + batch_size]
        inputs = {k: v.to(device) for k, v in collate(split, batch, pad_id, pad_multiple).items()}
        outputs.append(model(**inputs).logits.float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, num_labels), np.float32)


def logits_in_file_order(
    model, split: EncodedSplit, pad_id: int, batch_size: int, device: torch.device, num_labels: int
) -> np.ndarray:
    """Logits for every example of `split`, in file order, computed longest first."""
    order = np.argsort(-split.lengths, kind="stable")
    logits = np.zeros((len(split), num_labels), dtype=np.float32)
    logits[order] = batched_logits(model, split, order, pad_id, batch_size, device, num_labels)
    return logits
