"""Logits of a model on encoded examples, in batches of similar length: what evaluation and `bench predict` share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.train.batching import collate
from benchmark.train.modeling import load_finetuned_classifier, load_tokenizer
from benchmark.train.pair_encoding import saved_pair_encoding
from tasks.encoding import EncodedSplit, encode_split
from tasks.spec import TaskSpec


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


def predict_logits(
    folder: Path, task: TaskSpec, ds, max_seq_length: int, batch_size: int, trust_remote_code: bool = False
) -> np.ndarray:
    """Run a kept checkpoint on a loaded split (`tasks.loading.load_split`): its logits, in the split's order."""
    tokenizer = load_tokenizer(str(folder), trust_remote_code)
    encoded = encode_split(task, ds, tokenizer, max_seq_length, saved_pair_encoding(folder))  # bi: texts apart
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # In the precision the checkpoint was saved in, which is the one its dev logits were computed in.
    model = load_finetuned_classifier(str(folder), trust_remote_code).to(device).eval()
    return logits_in_file_order(model, encoded, tokenizer.pad_token_id, batch_size, device, model.config.num_labels)
