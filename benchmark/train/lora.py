"""Low-rank adapters (LoRA) through peft: the `lora_*` training keys.

With `lora_r > 0` the encoder's weights stay frozen; rank-r adapters on the `lora_targets` linear layers (the
family's attention projections by default, benchmark/train/families.py) and the whole head train. peft keeps a trained
copy of each head module beside the frozen original (its `modules_to_save`), so the adapter files hold the head.

A kept checkpoint is the merged model: every adapted weight W + (alpha / r) B A, the trained head, the rest as
loaded, saved as a plain `AutoModelForSequenceClassification` folder. Beside it, in `adapter/`, go the adapter
files, for loading with peft onto the initial model. Not in the folder itself: transformers' `from_pretrained`
applies an adapter it finds next to a model's config.json on top of the weights, which would add it twice.
The merged weights are computed out of place, so training continues on exactly the unmerged weights (peft's
merge_adapter/unmerge_adapter would add and subtract in place, in rounding).

Freezing keys compose with LoRA: they choose which layer groups' adapters train in which epoch (a frozen layer's
adapters stay at their initial values, which leave the layer unchanged) and scale their learning rates.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.train.families import TOKEN_HEADS, layout_of, model_head_family
from benchmark.train.hyperparams import TrainingConfig
from tasks.spec import TaskType

ADAPTER_DIR = "adapter"  # inside a checkpoint folder
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER = "default"  # peft's name for the one adapter


def uses_lora(hp: TrainingConfig) -> bool:
    return hp.lora_r > 0


def is_lora_model(model) -> bool:
    return hasattr(model, "peft_config")


def add_adapters(model, hp: TrainingConfig, model_path: str):
    """Wrap a classifier in a peft model: adapters on the targets, the head trains in full. A multiple-choice model
    has no peft task type: the plain `PeftModel` passes its inputs (examples x choices x tokens) through as they are."""
    # Imported here for start-up speed (peft).
    from peft import LoraConfig, get_peft_model
    from peft import TaskType as PeftTaskType

    layout = layout_of(model)
    targets = list(hp.lora_targets or layout.lora_targets)
    if not targets:  # `bench validate` refuses this; a direct caller gets the same message
        raise ValueError(f"bench knows no LoRA targets for model type {layout.model_type}; set training.lora_targets")
    task_type = {
        TaskType.TAGGING: PeftTaskType.TOKEN_CLS,
        TaskType.MULTIPLE_CHOICE: None,
        TaskType.EXTRACTIVE_QA: PeftTaskType.QUESTION_ANS,
    }.get(model_head_family(model), PeftTaskType.SEQ_CLS)
    config = LoraConfig(
        task_type=task_type,
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=targets,
        modules_to_save=list(layout.head),
        base_model_name_or_path=model_path,
    )
    return get_peft_model(model, config)


def classifier_of(model):
    """The Hugging Face classifier inside a peft model (adapters injected), or the model itself."""
    return model.get_base_model() if is_lora_model(model) else model


def adapter_parameter_names(model) -> set[str] | None:
    """Names (in `classifier_of(model)`) of what may train under LoRA: adapters and the head's trained copy.
    None without LoRA: every parameter may train."""
    if not is_lora_model(model):
        return None
    return {
        name
        for name, p in classifier_of(model).named_parameters()
        if ".lora_" in name or f".modules_to_save.{ADAPTER}." in name
    }


def merged_state_dict(model) -> dict:
    """The plain classifier's weights, adapters merged in, under the names the plain model gives them."""
    # Imported here for start-up speed (peft).
    from peft.tuners.lora import LoraLayer

    inner = model.get_base_model()
    deltas = {
        f"{name}.base_layer.weight": module.get_delta_weight(ADAPTER)
        for name, module in inner.named_modules()
        if isinstance(module, LoraLayer)
    }
    merged = {}
    for key, value in inner.state_dict().items():
        if ".lora_" in key or ".original_module." in key:
            continue
        if key in deltas:
            value = value + deltas[key].to(value.dtype)
        plain = key.replace(".base_layer.", ".").replace(f".modules_to_save.{ADAPTER}.", ".")
        merged[plain] = value.detach().clone().contiguous()
    return merged


def _own_weights(model) -> dict | None:
    """A token classifier's weights less a pooler (None: the model's own state dict). In a joint trial it shares a
    pooled head's encoder, whose pooler its class does not have: without it the folder is the plain token
    classifier a single-task trial saves, so the two soup and merge alike."""
    pooler = getattr(model.base_model, "pooler", None)
    if model_head_family(model) not in TOKEN_HEADS or pooler is None:
        return None
    prefix = f"{model.base_model_prefix}.pooler."
    return {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}


def save_model(model, folder: Path) -> None:
    """A Hugging Face model folder in safetensors; a LoRA model's merged, with its adapter files beside."""
    if not is_lora_model(model):
        model.save_pretrained(folder, state_dict=_own_weights(model))  # safetensors: transformers writes no other
        return
    # Imported here for start-up speed (peft, safetensors).
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    model.get_base_model().save_pretrained(folder, state_dict=merged_state_dict(model))
    adapters = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}
    (Path(folder) / ADAPTER_DIR).mkdir()
    save_file(adapters, str(Path(folder) / ADAPTER_DIR / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    model.peft_config[ADAPTER].save_pretrained(str(Path(folder) / ADAPTER_DIR))  # adapter_config.json
