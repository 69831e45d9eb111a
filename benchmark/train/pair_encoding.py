"""`training.pair_encoding: bi`: a pair task's two texts encoded apart, as sentence-transformers fine-tunes.

Each text goes through the encoder alone and is pooled (the resolved pooling, benchmark/train/pooling.py: the
masked mean of the last hidden states, or the first token's; no pooler): u and v. A score (regression) is the
cosine of u and v, trained with the squared error against the label scaled to [0, 1] by the training split's
range (CosineSimilarityLoss); the output maps the cosine back to the label's units (lo + (hi - lo) cos), so
predictions read as scores. Classes: a head Linear(3h, C) over (u, v, |u - v|), with cross-entropy (SoftmaxLoss).

`BiEncoder` holds the transformers base model under the attribute its classifier gives it (`bert`, `roberta`,
...) and the head as `classifier`, so its weights carry the classifier's names (less the unused pooler and
family head): freezing, LoRA (peft), soups and merges see the usual layout. Its `forward` takes the collated
pair (the second text's inputs end in `_b`, benchmark/train/batching.py) and returns an object with `.logits`,
so the DeepSpeed engine and the loops do not change. A checkpoint is the config (`pair_encoding: bi`,
`classifier_pooling`, `pair_label_range`) and `model.safetensors` of those weights, with the tokenizer; bench's
`load_finetuned_classifier` rebuilds it. Plain transformers knows none of it: `AutoModel.from_pretrained` loads
the encoder, not the head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.train.families import TOKEN_HEADS, model_head_family
from benchmark.train.lora import classifier_of
from benchmark.train.pooling import POOLING_KEY, masked_mean, pooling_of
from tasks.encoding import BI, TaskData, encodes_apart

CROSS = "cross"
PAIR_KEY = "pair_encoding"  # in a checkpoint's config.json
RANGE_KEY = "pair_label_range"  # [lo, hi] of the training labels of a score
WEIGHTS = "model.safetensors"


def pair_encoding_of(config) -> str:
    return getattr(config, PAIR_KEY, CROSS)


def saved_pair_encoding(folder: Path) -> str:
    """How a kept checkpoint encodes pairs, from its config.json (without loading it)."""
    return json.loads((Path(folder) / "config.json").read_text()).get(PAIR_KEY, CROSS)


def encoding_fields(model) -> dict:
    """What a model (a peft one too) runs, for records and checkpoint metadata: its pooling ("cls" or "mean") and
    pair encoding."""
    classifier = classifier_of(model)
    config = classifier.config
    if model_head_family(classifier) in TOKEN_HEADS:  # a tag per token, a span: nothing is pooled
        return {"pooling": None, "pair_encoding": pair_encoding_of(config)}
    return {"pooling": pooling_of(config), "pair_encoding": pair_encoding_of(config)}


def label_range_of(model) -> tuple[float, float] | None:
    """A bi-encoder's score range (what its loss scales labels by); None for any other model."""
    config = classifier_of(model).config
    found = getattr(config, RANGE_KEY, None) if pair_encoding_of(config) == BI else None
    return None if found is None else (float(found[0]), float(found[1]))


def pair_setting(data: TaskData, pair_encoding: str) -> tuple[str, tuple[float, float] | None]:
    """(pair encoding, label range) for a task's model: `bi` only for a pair task (a single text has no pair);
    a score's range is its training labels' (min, max)."""
    if not encodes_apart(data.task, pair_encoding):
        return CROSS, None
    if data.train.second is None:
        raise ValueError(f"{data.task.name} was tokenised as one sequence per pair; a bi-encoder needs its texts apart")
    if not data.task.is_regression:
        return BI, None
    labels = data.train.labels[np.isfinite(data.train.labels)]
    lo, hi = float(labels.min()), float(labels.max())
    return BI, (lo, hi if hi > lo else lo + 1.0)


@dataclass
class PairOutput:
    logits: torch.Tensor  # what the loops read of a model's output, as of transformers' classifiers


class BiEncoder(torch.nn.Module):
    """Two texts encoded apart by one encoder; the cosine of their pooled embeddings (a score) or a head over
    (u, v, |u - v|) (classes). `config`: the classifier's, naming the pooling, the pair encoding and the range."""

    def __init__(self, encoder, config):
        super().__init__()
        self.config = config
        self.name_or_path = getattr(config, "_name_or_path", "")  # peft names the base model by it
        self.base_model_prefix = getattr(encoder, "base_model_prefix", "encoder")
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # BERT's pooler reads [CLS]; the embeddings are the pooled last hidden states
        setattr(self, self.base_model_prefix, encoder)
        regression = config.problem_type == "regression"
        self.classifier = None if regression else torch.nn.Linear(3 * config.hidden_size, config.num_labels)

    @property
    def base_model(self):
        return getattr(self, self.base_model_prefix)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.base_model(**inputs).last_hidden_state
        return masked_mean(hidden, attention_mask) if pooling_of(self.config) == "mean" else hidden[:, 0]

    def forward(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        input_ids_b=None,
        attention_mask_b=None,
        token_type_ids_b=None,
        **unused,  # peft passes its own keywords (labels, return_dict, ...) as None
    ) -> PairOutput:
        u = self.embed(input_ids, attention_mask, token_type_ids)
        v = self.embed(input_ids_b, attention_mask_b, token_type_ids_b)
        if self.classifier is not None:
            return PairOutput(self.classifier(torch.cat([u, v, (u - v).abs()], dim=-1)))
        lo, hi = label_range_of(self)
        cosine = torch.nn.functional.cosine_similarity(u.float(), v.float(), dim=-1)
        return PairOutput((lo + (hi - lo) * cosine).unsqueeze(-1))

    def save_pretrained(self, folder, state_dict: dict | None = None) -> None:
        """The config and the weights (`state_dict`, else the module's) in one safetensors file."""
        # Imported here for start-up speed (safetensors).
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = state_dict if state_dict is not None else self.state_dict()
        tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
        save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
        self.config.architectures = [type(self.base_model).__name__]  # what AutoModel finds in the folder
        self.config.save_pretrained(folder)


def bi_encoder(classifier, pooling: str, label_range: tuple[float, float] | None) -> BiEncoder:
    """A bi-encoder from a freshly built transformers sequence classifier: its encoder; its head is dropped."""
    config = classifier.config
    setattr(config, PAIR_KEY, BI)
    setattr(config, POOLING_KEY, pooling)
    if label_range is not None:
        setattr(config, RANGE_KEY, list(label_range))
    return BiEncoder(classifier.base_model, config)


def load_bi_encoder(folder: Path, config, trust_remote_code: bool = False) -> BiEncoder:
    """A kept bi-encoder checkpoint, in the dtype it was saved in."""
    # Imported here for start-up speed (safetensors, transformers).
    from safetensors.torch import load_file
    from transformers import AutoModel

    weights = load_file(str(Path(folder) / WEIGHTS))
    model = BiEncoder(AutoModel.from_config(config, trust_remote_code=trust_remote_code), config)
    model.load_state_dict(weights, strict=True)
    return model.to(next(iter(weights.values())).dtype)
