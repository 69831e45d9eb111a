"""What a suite's models support, checked at `bench validate`: freezing needs the encoder's layers, LoRA needs
targets the model has, mean pooling a family whose head reads the first token (all that bench declares), `pooling:
model` a sentence-transformers pooling bench runs, a bi-encoder a declared family and single-task trials. Each
model is built on the meta device (modules and shapes, no weights)."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.common.errors import InputError
from benchmark.common.schema import suggest
from benchmark.train.families import FAMILIES, Layout, empty_classifier, layout_of, matching_modules
from benchmark.train.modeling import model_type
from benchmark.train.pooling import resolved_pooling

LORA_LAYER_TYPES = ("Linear", "Embedding")  # what bench lets LoRA adapt (peft's Linear and Embedding layers)


@dataclass(frozen=True)
class Wanted:
    """What the suite's plan asks of its models."""

    freezing_key: str | None  # the first freezing key in use; None: no freezing
    lora: bool  # some trial has lora_r > 0
    target_lists: list[list[str] | None]  # every value lora_targets takes
    joint_lora: bool  # a joint multi-task trial would have lora_r > 0
    mean_pooling: bool = False  # some trial has pooling: mean
    poolings: tuple = ()  # every value `pooling` takes
    bi: bool = False  # some trial has pair_encoding: bi
    joint_bi: bool = False  # a joint multi-task trial would have pair_encoding: bi


def check_model_support(models, wanted: Wanted, trust_remote_code: bool) -> None:
    """`models`: ModelRefs. Refuses, in one line, what a model cannot do."""
    if wanted.joint_lora:
        raise InputError(
            "training.lora_r",
            "LoRA applies to single-task trials; the joint trials of multitask do not "
            "support it (multitask.two_stage.training may use it)",
        )
    if wanted.joint_bi:
        raise InputError(
            "training.pair_encoding",
            "bi applies to single-task trials; the joint trials of multitask "
            "do not support it (multitask.two_stage.training may use it)",
        )
    # `pooling: model`, and a bi-encoder's null, read a sentence-transformers folder's pooling: refused if bench
    # cannot run it; a mean one needs the family check as `mean` does.
    own_mean = {
        m.name
        for m in models
        for pooling in wanted.poolings
        if (pooling == "model" or wanted.bi)
        and resolved_pooling(m.path, pooling, wanted.bi, trust_remote_code) == "mean"
    }
    if wanted.freezing_key is None and not wanted.lora and not wanted.mean_pooling and not wanted.bi and not own_mean:
        return
    for m in models:
        if wanted.freezing_key is None and not wanted.lora and model_type(m.path, trust_remote_code) in FAMILIES:
            continue  # only the family was asked for, and it is declared: no model to build (seconds of imports)
        model = empty_classifier(m.path, trust_remote_code)
        layout = layout_of(model)
        if wanted.freezing_key and not layout.supports_freezing:
            raise InputError(
                f"training.{wanted.freezing_key}",
                f"bench cannot find the encoder layers of model "
                f"{m.name} (model type {layout.model_type}), so it cannot freeze them; `bench models "
                f"{m.path}` shows what bench finds",
            )
        if (wanted.mean_pooling or m.name in own_mean) and layout.family is None:
            raise InputError(
                "training.pooling",
                f"mean pooling needs a family bench declares ({', '.join(FAMILIES)}); model {m.name} is of type "
                f"{layout.model_type}, whose head may not read the first token; use pooling: cls",
            )
        if wanted.bi and layout.family is None:
            raise InputError(
                "training.pair_encoding",
                f"bi needs a family bench declares ({', '.join(FAMILIES)}); model {m.name} is of type "
                f"{layout.model_type}, whose base model bench does not know; use pair_encoding: cross",
            )
        if wanted.lora:
            for targets in wanted.target_lists:
                check_lora_targets(model, layout, targets, m.name)


def check_lora_targets(model, layout: Layout, targets: list[str] | None, name: str) -> None:
    if targets is None:
        if not layout.lora_targets:
            raise InputError(
                "training.lora_r",
                f"bench knows no LoRA targets for model {name} (model type "
                f"{layout.model_type}); name its attention projections in training.lora_targets",
            )
        return
    if not targets:
        raise InputError("training.lora_targets", "the list is empty; null adapts the family's attention projections")
    modules = dict(model.named_modules())
    head = tuple(f"{h}." for h in layout.head) + layout.head
    for target in targets:
        found = matching_modules(model, target)
        if not found:
            leaves = sorted({n.rsplit(".", 1)[-1] for n in modules if n})
            raise InputError(
                "training.lora_targets", f"model {name} has no module '{target}'" + suggest(target, leaves)
            )
        for module_name in found:
            kind = type(modules[module_name]).__name__
            if module_name.startswith(head) or module_name in layout.head:
                raise InputError(
                    "training.lora_targets",
                    f"'{target}' names {module_name} in the head of model {name}, which trains in full with LoRA",
                )
            if kind not in LORA_LAYER_TYPES:
                raise InputError(
                    "training.lora_targets",
                    f"'{target}' names {module_name}, a {kind} of model {name}; "
                    f"LoRA adapts {' and '.join(LORA_LAYER_TYPES)} layers",
                )
