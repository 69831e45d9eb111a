"""Mean pooling (`training.pooling: mean`): the classification head reads the mean of the last hidden states over
the attention mask where it read the first token ([CLS]).

Sentence-transformers models, the embedded all-MiniLM-L6-v2 among them, were trained so that this mean, not
[CLS], represents the text (their `1_Pooling/config.json`). The model stays transformers' own sequence classifier
with the same modules and weights, so saving, LoRA, freezing, soups and DeepSpeed see no difference: one forward
hook on the base model puts the mean in the first position of its last hidden states (and, for BERT, whose pooler
runs inside the base model, recomputes the pooler on it). Every family bench declares (benchmark/train/families.py)
has a head that reads the first position; ModernBERT pools by itself from the same config key.

The choice is saved in the checkpoint's config.json as `classifier_pooling` (ModernBERT's key) and restored by
`load_finetuned_classifier`. Plain transformers would read such a checkpoint with [CLS] pooling.
"""

from __future__ import annotations

import json
from pathlib import Path

POOLING_KEY = "classifier_pooling"
NATIVE = ("modernbert",)  # families whose transformers classifier reads POOLING_KEY itself
_MARK = "_bench_mean_pooling"  # set on a base model that has the hook (multi-task heads share one)


def set_pooling(model, pooling: str | None) -> None:
    """Make the model pool as `pooling` says ("cls" or "mean"), recorded in its config; None: as its config says
    (the pooling a bench checkpoint or a ModernBERT config names, else [CLS])."""
    config = model.config
    if pooling == "mean" or (pooling is not None and config.model_type in NATIVE):
        setattr(config, POOLING_KEY, pooling)
    elif pooling == "cls" and hasattr(config, POOLING_KEY):  # a chain's source checkpoint may carry "mean"
        delattr(config, POOLING_KEY)
    apply_pooling(model)


def model_pooling(model_path: str, pooling: str | None) -> str:
    """What reads a text's embedding, "cls" or "mean": `pooling` where the suite names one, else the model's own:
    a sentence-transformers folder's `1_Pooling/config.json`, else the config's key (a bench checkpoint), else [CLS]."""
    if pooling in ("cls", "mean"):
        return pooling
    folder = Path(model_path)
    pooling_config = folder / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        modes = json.loads(pooling_config.read_text())
        if modes.get("pooling_mode_mean_tokens"):
            return "mean"
        if modes.get("pooling_mode_cls_token"):
            return "cls"
    config = folder / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get(POOLING_KEY, "cls")
    return "cls"


def pooling_of(config) -> str:
    return getattr(config, POOLING_KEY, "cls")


def apply_pooling(model) -> None:
    """Make a freshly built or loaded classifier pool as its config says."""
    base = model.base_model
    if pooling_of(model.config) != "mean" or model.config.model_type in NATIVE or getattr(base, _MARK, False):
        return
    base.register_forward_hook(_mean_in_first_position, with_kwargs=True)
    setattr(base, _MARK, True)


def masked_mean(hidden, mask):
    """Mean over the positions where `mask` is 1 (all positions without a mask), in the hidden states' dtype."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _mean_in_first_position(module, args, kwargs, output):
    # Imported here for start-up speed (torch).
    import torch

    hidden = output[0]
    mean = masked_mean(hidden, kwargs.get("attention_mask"))
    hidden = torch.cat([mean.unsqueeze(1), hidden[:, 1:]], dim=1)
    pooler = getattr(module, "pooler", None)
    if isinstance(output, tuple):
        rest = output[1:]
        if pooler is not None and rest:
            rest = (pooler(hidden),) + rest[1:]
        return (hidden,) + rest
    output.last_hidden_state = hidden
    if pooler is not None and getattr(output, "pooler_output", None) is not None:
        output.pooler_output = pooler(hidden)
    return output
