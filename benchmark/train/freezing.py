"""Which parameters train in which epoch, and at what learning rate.

The encoder is cut into layer groups, top-down: the head (classifier and pooler), each encoder layer from the
top one down, then the embeddings (with anything else of the encoder that no layer owns). The options:

- `freeze_embeddings`, `freeze_layers: N`: those groups never train;
- `head_only_epochs: K`: only the head trains for the first K epochs, then every group not frozen above;
- `gradual_unfreezing`: after the head-only epochs, one more group per epoch, top-down (ULMFiT's schedule is
  `head_only_epochs: 1` with it);
- `layer_lr_decay: d`: the head trains at the learning rate, encoder layer i (0 = bottom, of L) at
  lr * d^(L - i), the embeddings at lr * d^(L + 1).

Frozen parameters have requires_grad off and are left out of the optimizer, so they hold no optimizer state.
"""

from __future__ import annotations

from benchmark.train.engine import decay_groups
from benchmark.train.hyperparams import TrainingConfig

HEAD, EMBEDDINGS = "head", "embeddings"


def layer(i: int) -> str:
    return f"layer.{i}"


def changes_trainable_set(hp: TrainingConfig) -> bool:
    """Whether the trainable set changes during the trial (a new engine at each change)."""
    return hp.head_only_epochs > 0 or hp.gradual_unfreezing


def uses_freezing(hp: TrainingConfig) -> bool:
    return hp.freeze_embeddings or hp.freeze_layers > 0 or changes_trainable_set(hp) or hp.layer_lr_decay != 1.0


def encoder_layers(model):
    """The encoder's layer list (bottom to top) and the base model: BERT, RoBERTa, ELECTRA, DeBERTa, DistilBERT."""
    base = model.base_model
    count = model.config.num_hidden_layers
    for name, module in base.named_modules():
        if type(module).__name__ == "ModuleList" and len(module) == count and name.endswith("layer"):
            return base, list(module)
    raise ValueError(f"cannot find the {count} encoder layers of {type(model).__name__} to freeze")


def group_of_parameters(model) -> dict[str, str]:
    """Parameter name -> its layer group."""
    base, layers = encoder_layers(model)
    owner = {id(p): layer(i) for i, module in enumerate(layers) for p in module.parameters()}
    in_base = {id(p) for p in base.parameters()}
    pooler = getattr(base, "pooler", None)
    head = {id(p) for p in pooler.parameters()} if pooler is not None else set()
    return {
        name: owner.get(id(p)) or (EMBEDDINGS if id(p) in in_base and id(p) not in head else HEAD)
        for name, p in model.named_parameters()
    }


def trainable_groups(hp: TrainingConfig, epoch: int, num_layers: int) -> frozenset[str]:
    """The layer groups that train in `epoch` (0-based)."""
    top_down = [layer(i) for i in reversed(range(num_layers))] + [EMBEDDINGS]
    if epoch < hp.head_only_epochs:
        unfrozen = 0
    elif hp.gradual_unfreezing:
        unfrozen = epoch - hp.head_only_epochs + 1
    else:
        unfrozen = len(top_down)
    frozen = {layer(i) for i in range(hp.freeze_layers)} | ({EMBEDDINGS} if hp.freeze_embeddings else set())
    return frozenset({HEAD, *(g for g in top_down[:unfrozen] if g not in frozen)})


def lr_scale(group: str, num_layers: int, decay: float) -> float:
    if group == HEAD:
        return 1.0
    if group == EMBEDDINGS:
        return decay ** (num_layers + 1)
    return decay ** (num_layers - int(group.split(".")[1]))


def optimizer_groups(model, hp: TrainingConfig, trainable: frozenset[str]) -> list[dict]:
    """Sets requires_grad from `trainable`, and returns AdamW's parameter groups over the trainable parameters:
    decay and no-decay groups per learning rate (two groups in all without layer-wise decay)."""
    groups = group_of_parameters(model)
    num_layers = model.config.num_hidden_layers
    by_scale: dict[float, list] = {}
    for name, p in model.named_parameters():
        p.requires_grad_(groups[name] in trainable)
        if p.requires_grad:
            by_scale.setdefault(lr_scale(groups[name], num_layers, hp.layer_lr_decay), []).append((name, p))
    return [
        g
        for scale, named in by_scale.items()
        for g in decay_groups(named, hp.weight_decay, lr=hp.learning_rate * scale)
    ]


def trainable_parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
