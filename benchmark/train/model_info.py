"""`bench models`: the encoder families bench knows, and what bench finds in a model folder."""

from __future__ import annotations

from benchmark.train.checkpoints import parameter_count
from benchmark.train.families import FAMILIES, empty_classifier, layout_of
from benchmark.train.modeling import ModelRef, load_tokenizer


def family_lines() -> list[str]:
    rows = [("family", "model type", "encoder layers", "head (with the classifier)", "default LoRA targets")]
    rows += [
        (f.name, f.model_type, f.layers, ", ".join(f.head) or "-", ", ".join(f.lora_targets)) for f in FAMILIES.values()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return lines + [
        "Other model types: training; freezing when bench finds one list of num_hidden_layers layers in "
        "the base model (bench models FOLDER says); LoRA with training.lora_targets."
    ]


def model_lines(model: ModelRef, trust_remote_code: bool = False) -> list[str]:
    """What bench finds in one model (checked with `resolve_model` first)."""
    classifier = empty_classifier(model.path, trust_remote_code)
    layout = layout_of(classifier)
    family = (
        f"{layout.family.name} ({layout.model_type})"
        if layout.family
        else f"not declared (model type {layout.model_type})"
    )
    tokenizer = load_tokenizer(model.path, trust_remote_code)
    if layout.lora_targets:
        lora = f"yes; default targets {', '.join(layout.lora_targets)}"
    else:
        lora = "only with training.lora_targets (bench knows no default targets)"
    layers = f"{layout.num_layers} ({layout.layers})" if layout.layers else f"{layout.num_layers}, not found"
    return [
        f"{model.name}: {model.path}",
        f"  family:     {family}",
        f"  layers:     {layers}",
        f"  head:       {', '.join(layout.head)}",
        f"  parameters: {parameter_count(model.path):,} (in the folder's weights)",
        f"  tokenizer:  {type(tokenizer).__name__}, vocabulary {len(tokenizer):,}",
        f"  freezing:   {'yes' if layout.supports_freezing else 'no (bench cannot find the encoder layers)'}",
        f"  LoRA:       {lora}",
    ]
