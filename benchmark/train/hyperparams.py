"""The training hyperparameters: the suite's `training:` section, and what the search grid may vary."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TrainingConfig:
    epochs: int = field(default=3, metadata={"min": 1, "max": 1000})
    batch_size: int = field(
        default=32, metadata={"min": 1, "max": 65536}
    )  # examples per optimizer step, all workers together
    learning_rate: float = field(default=2e-5, metadata={"min": 1e-12, "max": 1.0})
    weight_decay: float = field(default=0.01, metadata={"min": 0.0, "max": 1.0})
    warmup_ratio: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    adam_epsilon: float = field(default=1e-8, metadata={"min": 1e-12, "max": 1.0})
    max_grad_norm: float = field(default=1.0, metadata={"min": 0.0})  # 0 turns clipping off
    gradient_accumulation_steps: int = field(default=1, metadata={"min": 1, "max": 4096})
    max_seq_length: int = field(default=128, metadata={"min": 8, "max": 8192})
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: benchmark/common/hardware.py
    zero_stage: int = field(default=2, metadata={"choices": [0, 1, 2]})
    group_by_length: bool = True
    # What the head reads (benchmark/train/pooling.py): the first token ([CLS]), or the masked mean of the last
    # hidden states, which sentence-transformers models such as the embedded all-MiniLM-L6-v2 were trained for;
    # null: as the model's config says (transformers' own head: [CLS] unless the config names a pooling); model (the
    # default, results/pooling/): a sentence-transformers folder's own Pooling module (mean or cls), else as null.
    pooling: Literal["cls", "mean", "model"] | None = "model"
    # How a pair task's two texts meet (benchmark/train/pair_encoding.py): one sequence through the encoder and
    # transformers' head (cross), or each text encoded alone and the two pooled embeddings compared (bi, as
    # sentence-transformers: the cosine for a score, a head over (u, v, |u - v|) for classes).
    pair_encoding: Literal["cross", "bi"] = "cross"
    # The seed the new weights (the head, LoRA adapters) are drawn from; the trial seed still sets dropout and data
    # order. Null: the trial seed, so each seed starts from its own head. Weight soups need one (docs/ensembles.md).
    init_seed: int | None = field(default=None, metadata={"min": 0, "max": 2**32 - 1})
    eval_batch_size: int = field(default=128, metadata={"min": 1, "max": 65536})
    # Freezing (benchmark/train/freezing.py): which layer groups train in which epoch, and their learning rates.
    freeze_embeddings: bool = False
    freeze_layers: int = field(default=0, metadata={"min": 0, "max": 1000})  # the bottom N encoder layers
    head_only_epochs: int = field(default=0, metadata={"min": 0, "max": 1000})  # then unfreeze
    gradual_unfreezing: bool = False  # after the head-only epochs, one more layer group per epoch, top-down
    layer_lr_decay: float = field(default=1.0, metadata={"min": 1e-6, "max": 1.0})  # 1 = off
    # LoRA (benchmark/train/lora.py): rank-r adapters train, the encoder's weights stay frozen; the head trains in full.
    lora_r: int = field(default=0, metadata={"min": 0, "max": 65536})  # 0 = off: full fine-tuning
    lora_alpha: float = field(default=16.0, metadata={"min": 1e-6, "max": 1e6})  # adapters scale by alpha / r
    lora_dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 0.99})
    lora_targets: list[str] | None = None  # module names (peft's rule); null: the family's attention projections
    # Augmentation of the training data (tasks/augment.py): copies per example, each by one operation.
    augment_copies: int = field(default=0, metadata={"min": 0, "max": 64})
    augment_swap: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})  # strengths: word fractions
    augment_delete: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    augment_insert: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    augment_synonym: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})  # needs WordNet
    augment_seed: int = field(default=0, metadata={"min": 0, "max": 2**32 - 1})
    # Extractive QA (tasks/spans.py): consecutive windows over a long context share `doc_stride` tokens; a question
    # keeps its first `max_query_length` tokens; a predicted answer is at most `max_answer_length` tokens long.
    doc_stride: int = field(default=128, metadata={"min": 0, "max": 8192})
    max_query_length: int = field(default=64, metadata={"min": 1, "max": 8192})
    max_answer_length: int = field(default=30, metadata={"min": 1, "max": 8192})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainingConfig":
        return dataclasses.replace(self, **changes)


def init_seed_of(training: dict, seed: int | None) -> int | None:
    """The seed a trial's new weights were drawn from: `init_seed`, or the trial seed where it is null (or missing,
    in records and checkpoints made before the key)."""
    init = training.get("init_seed")
    return seed if init is None else init


TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(TrainingConfig))
FREEZING_KEYS = ("freeze_embeddings", "freeze_layers", "head_only_epochs", "gradual_unfreezing", "layer_lr_decay")
