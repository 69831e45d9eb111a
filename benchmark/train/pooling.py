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

`pooling: model` is the model's own: what a sentence-transformers folder's Pooling module says, else what the
config says (as `null`). `resolved_pooling` turns every setting into the "cls" or "mean" that runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.common.errors import InputError

POOLING_KEY = "classifier_pooling"
NATIVE = ("modernbert",)  # families whose transformers classifier reads POOLING_KEY itself
_MARK = "_bench_mean_pooling"  # set on a base model that has the hook (multi-task heads share one)


# sentence-transformers' Pooling modes that bench runs, by their config key.
SENTENCE_TRANSFORMERS_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
ST_POOLING_TYPE = "sentence_transformers.models.Pooling"


def resolved_pooling(model_path: str, pooling: str | None, bi: bool = False, trust_remote_code: bool = False) -> str:
    """The pooling that runs, "cls" or "mean", for the `training.pooling` setting and the starting model: `model`:
    a sentence-transformers folder's Pooling module, else as `null`; `null`: what the model's config names
    (ModernBERT's, or a bench checkpoint's `classifier_pooling`), else [CLS]. A bi-encoder (`bi`) reads `null` as
    `model`. A sentence-transformers pooling bench does not run raises InputError (`bench validate` asks)."""
    if pooling in ("cls", "mean"):
        return pooling
    if pooling == "model" or bi:
        own = sentence_transformers_pooling(Path(model_path))
        if own is not None:
            return own
    return _config_pooling(model_path, trust_remote_code)


def sentence_transformers_pooling(folder: Path) -> str | None:
    """What a sentence-transformers folder's Pooling module (named in modules.json, else `1_Pooling`) says;
    None for another folder or a hub id."""
    modules = folder / "modules.json"
    path = folder / "1_Pooling"
    if modules.is_file():
        found = [m.get("path", "") for m in json.loads(modules.read_text()) if m.get("type") == ST_POOLING_TYPE]
        path = folder / found[0] if found else path
    if not (path / "config.json").is_file():
        return None
    on = [k for k, v in json.loads((path / "config.json").read_text()).items() if k.startswith("pooling_mode") and v]
    if len(on) != 1 or on[0] not in SENTENCE_TRANSFORMERS_MODES:
        raise InputError(
            "training.pooling",
            f"{path / 'config.json'} turns on {', '.join(on) or 'no pooling mode'}; pooling: model runs "
            f"{' or '.join(SENTENCE_TRANSFORMERS_MODES)} alone: set pooling to cls or mean",
        )
    return SENTENCE_TRANSFORMERS_MODES[on[0]]


def _config_pooling(model_path: str, trust_remote_code: bool) -> str:
    """The pooling a model's config names (a bench checkpoint's or ModernBERT's key), else [CLS]."""
    config = Path(model_path) / "config.json"
    if config.is_file():
        return json.loads(config.read_text()).get(POOLING_KEY, "cls")
    # Imported here for start-up speed (transformers): a hub id's config, from the Hugging Face cache.
    from transformers import AutoConfig

    return pooling_of(AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code))


def set_pooling(model, pooling: str | None) -> None:
    """Make the model pool as `pooling` says ("cls" or "mean"), recorded in its config; None: as its config says
    (the pooling a bench checkpoint or a ModernBERT config names, else [CLS])."""
    config = model.config
    if pooling == "mean" or (pooling is not None and config.model_type in NATIVE):
        setattr(config, POOLING_KEY, pooling)
    elif pooling == "cls" and hasattr(config, POOLING_KEY):  # a chain's source checkpoint may carry "mean"
        delattr(config, POOLING_KEY)
    apply_pooling(model)


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
