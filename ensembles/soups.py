"""Weight soups (Wortsman et al. 2022): average the weights of checkpoints fine-tuned from the same initial
weights into one model, and evaluate it by running it on dev.

Averaging only means something between checkpoints of one architecture that started from the same
initial weights, so a soup takes only the pool's checkpoints whose head started from the best one's init seed
(`same_init`), and every ingredient must have the base model path (trial.json), the model config and the weight
names and shapes of the first; any other is refused by name. Weights are read from safetensors
only, averaged in float32, and the soup is saved as a Hugging Face checkpoint like any trial's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmark.common.errors import InputError
from benchmark.train.inference import logits_in_file_order
from benchmark.train.modeling import load_finetuned_classifier
from ensembles.candidates import Candidate

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"  # sharded checkpoints of large models
# Config keys that record how a file was written, not what the model is.
NOT_ARCHITECTURE = {"_name_or_path", "transformers_version", "dtype", "torch_dtype"}


def weight_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    if (folder / WEIGHTS_INDEX).is_file():
        shards = sorted(set(json.loads((folder / WEIGHTS_INDEX).read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    raise InputError(str(folder), "has no safetensors weights to average")


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    # Imported here for start-up speed (safetensors).
    from safetensors.torch import load_file

    weights = {}
    for path in weight_files(folder):
        weights.update(load_file(str(path)))
    return weights


def weight_shapes(folder: Path) -> dict[str, tuple]:
    """Names and shapes from the safetensors headers, without reading the tensors."""
    # Imported here for start-up speed (safetensors).
    from safetensors import safe_open

    shapes = {}
    for path in weight_files(folder):
        with safe_open(str(path), framework="pt") as f:
            shapes.update({name: tuple(f.get_slice(name).get_shape()) for name in f.keys()})
    return shapes


def same_init(pool: list[Candidate]) -> list[Candidate]:
    """The soup's ingredients: the pool's candidates (best first) whose head started from the best one's init seed.
    Wortsman et al. soup checkpoints fine-tuned from one initialisation; heads of other init seeds are left out."""
    return [c for c in pool if c.init_seed == pool[0].init_seed]


def check_ingredients(
    ingredients: list[Candidate],
    ignore_config: frozenset = frozenset(),
    weights: Callable[[str], bool] = lambda name: True,
    joining: str = "a weight soup",
) -> None:
    """Refuse, by name, a checkpoint that was not fine-tuned from the first one's initial weights and architecture,
    or that trained at another precision (the joined model is scored at the one its ingredients trained at).

    Cross-task merges compare encoders only: they pass the head's config keys in `ignore_config` and keep only the
    encoder's weight names with `weights`."""
    first = ingredients[0]
    base = first.meta.get("model_path")
    config = _architecture(first.folder, ignore_config)
    shapes = {n: s for n, s in weight_shapes(first.folder).items() if weights(n)}
    precision = first.meta["training"]["precision"]
    for other in ingredients[1:]:
        why = None
        if other.meta.get("model_path") != base:
            why = f"it was fine-tuned from {other.meta.get('model_path')}, not {base}"
        elif other.meta["training"]["precision"] != precision:
            why = f"it trained in {other.meta['training']['precision']}, not {precision}: the result scores at one"
        elif _architecture(other.folder, ignore_config) != config:
            other_config = _architecture(other.folder, ignore_config)
            keys = sorted(k for k in config.keys() | other_config.keys() if config.get(k) != other_config.get(k))
            why = f"its model config differs in {', '.join(keys)}"
        elif {n: s for n, s in weight_shapes(other.folder).items() if weights(n)} != shapes:
            why = "its weights differ in names or shapes"
        if why:
            raise InputError(other.relpath, f"cannot join {joining} with {first.relpath}: {why}")


def _architecture(folder: Path, ignore: frozenset = frozenset()) -> dict:
    config = json.loads((Path(folder) / "config.json").read_text())
    return {k: v for k, v in config.items() if k not in NOT_ARCHITECTURE and k not in ignore}


class SoupRunner:
    """Runs weights on one task's dev set: one model, loaded once from the best candidate, takes each soup in turn.

    `dev` is the task's tokenised data (as the trials saw it); its labels must be the candidates' saved labels.
    """

    def __init__(self, first: Candidate, tokenizer, dev, trust_remote_code: bool = False):
        for split, labels in first.labels.items():
            if not np.array_equal(dev.eval_splits[split].labels, labels):
                raise InputError(
                    f"task {first.task.name}",
                    f"the {split} set read now differs from the one the trials "
                    "were evaluated on; check data.glue_dir and $BENCH_GLUE_DIR",
                )
        self.task = first.task
        self.dev = dev
        self.tokenizer = tokenizer
        self.model = load_finetuned_classifier(str(first.folder), trust_remote_code)
        self.eval_batch_size = first.meta["training"]["eval_batch_size"]
        # The one precision every ingredient trained at (check_ingredients), so soups score as their ingredients did.
        self.precision = first.meta["training"]["precision"]

    def logits(self, weights: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        self.model.load_state_dict(weights, strict=True)  # casts to the module's dtype: the trained precision's
        return {
            split: logits_in_file_order(
                self.model.eval(),
                data,
                self.tokenizer.pad_token_id,
                self.eval_batch_size,
                self.model.device,
                self.task.num_labels,
                self.precision,
            )
            for split, data in self.dev.eval_splits.items()
        }


def uniform_soup(ingredients: list[Candidate]) -> dict[str, torch.Tensor]:
    """The plain average of the ingredients' weights."""
    total = _as_float32(read_weights(ingredients[0].folder))
    for other in ingredients[1:]:
        _add(total, read_weights(other.folder))
    return {name: value / len(ingredients) for name, value in total.items()}


def greedy_soup(
    ingredients: list[Candidate], runner: SoupRunner, score: Callable[[dict], float]
) -> tuple[list[Candidate], dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """Wortsman et al.'s greedy soup. `ingredients` come best first (by selection-half score); each joins the soup
    when the uniform average with it scores at least as well on the selection half as the soup without it.
    Returns the chosen ingredients, the soup's weights and its dev logits."""
    chosen = [ingredients[0]]
    total = _as_float32(read_weights(ingredients[0].folder))
    logits = runner.logits(total)
    best = score(logits)
    for other in ingredients[1:]:
        trial_total = _as_float32(read_weights(other.folder))
        _add(trial_total, total)
        trial_logits = runner.logits({n: v / (len(chosen) + 1) for n, v in trial_total.items()})
        trial_score = score(trial_logits)
        if trial_score >= best:
            chosen, total, logits, best = chosen + [other], trial_total, trial_logits, trial_score
    return chosen, {n: v / len(chosen) for n, v in total.items()}, logits


def _as_float32(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.to(torch.float32) for name, value in weights.items()}


def _add(total: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> None:
    for name, value in weights.items():
        total[name] += value.to(torch.float32)
