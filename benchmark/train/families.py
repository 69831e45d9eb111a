"""The encoder families bench knows: where each keeps its layers and its head, and its default LoRA targets;
and which task family a transformers head class serves.

One declaration per family (a transformers model type). Paths are module names inside the family's
`AutoModelForSequenceClassification`. Freezing, layer-wise lr decay and gradual unfreezing cut the model into
the head (the `head` modules, and anything outside the base model), each layer of the `layers` list, and the
embeddings (everything else of the base model). LoRA adapts the `lora_targets` linear layers of the encoder; the
head trains in full.

A model of another type gets the same treatment when its base model holds exactly one list of
`num_hidden_layers` modules (found by search); it has no default LoRA targets.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.spec import TaskType


@dataclass(frozen=True)
class Family:
    model_type: str  # transformers' config.model_type
    name: str  # what tables and `bench models` show
    layers: str  # the list of encoder layers, bottom to top
    head: tuple[str, ...]  # the modules of the head, besides those outside the base model
    lora_targets: tuple[str, ...]  # the attention projections LoRA adapts by default (the LoRA paper: query, value)


FAMILIES = {
    f.model_type: f
    for f in (
        Family("bert", "BERT", "bert.encoder.layer", ("bert.pooler",), ("query", "value")),
        Family("roberta", "RoBERTa", "roberta.encoder.layer", (), ("query", "value")),
        Family("electra", "ELECTRA", "electra.encoder.layer", (), ("query", "value")),
        Family("deberta-v2", "DeBERTa-v2", "deberta.encoder.layer", (), ("query_proj", "value_proj")),
        Family("distilbert", "DistilBERT", "distilbert.transformer.layer", (), ("q_lin", "v_lin")),
        # ModernBERT projects queries, keys and values in one fused layer; its final norm sits above the last layer.
        Family("modernbert", "ModernBERT", "model.layers", ("model.final_norm",), ("Wqkv",)),
    )
}


@dataclass(frozen=True)
class Layout:
    """What bench found in one model: its family (None: not declared), layer list and head."""

    model_type: str
    family: Family | None
    layers: str | None  # None: bench cannot find the encoder layers (no freezing for this model)
    num_layers: int
    head: tuple[str, ...]  # head modules inside the model (all modules outside the base model included)
    lora_targets: tuple[str, ...]  # default LoRA targets; () when bench knows none

    @property
    def supports_freezing(self) -> bool:
        return self.layers is not None


def layout_of(model) -> Layout:
    """The layout of a sequence classifier (its weights may be on the meta device)."""
    model_type = model.config.model_type
    count = model.config.num_hidden_layers
    family = FAMILIES.get(model_type)
    modules = dict(model.named_modules())
    prefix = model.base_model_prefix
    outside = tuple(
        name for name, child in model.named_children() if name != prefix and any(True for _ in child.parameters())
    )  # not the dropouts
    if family is not None and _is_layer_list(modules.get(family.layers), count):
        return Layout(model_type, family, family.layers, count, family.head + outside, family.lora_targets)
    found = [
        name
        for name, m in modules.items()
        if name.startswith(prefix + ".") and _is_layer_list(m, count) and name.endswith(("layer", "layers"))
    ]
    pooler = f"{prefix}.pooler"
    head = ((pooler,) if modules.get(pooler) is not None else ()) + outside
    return Layout(model_type, None, found[0] if len(found) == 1 else None, count, head, ())


def _is_layer_list(module, count: int) -> bool:
    return type(module).__name__ == "ModuleList" and len(module) == count


def layer_modules(model, layout: Layout) -> list:
    """The encoder layers, bottom to top."""
    if layout.layers is None:
        raise ValueError(f"cannot find the {layout.num_layers} encoder layers of {type(model).__name__}")
    return list(model.get_submodule(layout.layers))


def head_modules(model, layout: Layout) -> list:
    return [model.get_submodule(name) for name in layout.head if _has_module(model, name)]


def _has_module(model, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def matching_modules(model, target: str) -> list[str]:
    """Module names that a LoRA target names, by peft's rule: the whole name, or its last dotted parts."""
    return [name for name, _ in model.named_modules() if name == target or name.endswith("." + target)]


def empty_classifier(path: str, trust_remote_code: bool = False):
    """The model's sequence classifier on the meta device: its modules and shapes, without weights or memory."""
    # Imported here for start-up speed (torch, transformers).
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust_remote_code)


# transformers' head classes, by name suffix, of the families that are not sequence classifiers
_HEAD_SUFFIXES = {
    "ForTokenClassification": TaskType.TAGGING,
    "ForMultipleChoice": TaskType.MULTIPLE_CHOICE,
    "ForQuestionAnswering": TaskType.EXTRACTIVE_QA,
}
# The families whose head reads every token (a tag per token; a span's start and end): nothing is pooled.
TOKEN_HEADS = frozenset({TaskType.TAGGING, TaskType.EXTRACTIVE_QA})


def _family_of_class(name: str) -> TaskType | None:
    return next((family for suffix, family in _HEAD_SUFFIXES.items() if name.endswith(suffix)), None)


def head_family(config) -> TaskType | None:
    """The family a saved model's head serves, by its config's architecture (None: a sequence classifier)."""
    found = (_family_of_class(a) for a in getattr(config, "architectures", None) or ())
    return next((f for f in found if f is not None), None)


def model_head_family(model) -> TaskType | None:
    """The family a built model's head serves, by its class (a fresh model's config still names its base's)."""
    return _family_of_class(type(model).__name__)
