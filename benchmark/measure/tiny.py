"""A tiny random BERT and a task it learns in an epoch: what the tests and the reliability measurements train.

Both go through the same loading paths as any user's model and task files.
"""

from __future__ import annotations

import random
from pathlib import Path

from benchmark.train.modeling import embedded_model_path, load_tokenizer, save_random_bert


def make_tiny_bert(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random BERT small enough to train in a second."""
    return save_random_bert(
        folder, hidden=hidden, layers=layers, heads=2, intermediate=2 * hidden, max_positions=128, seed=seed
    )


def write_easy_task(folder: Path, train: int = 128, dev: int = 64) -> dict:
    """A user task a tiny BERT learns in an epoch or two: the label is whether the text says "good" or "bad".

    Schedulers need trials that differ for sure; on real GLUE slices a random tiny BERT is noise.
    """
    rng = random.Random(0)
    filler = ["the", "film", "was", "plot", "acting", "really", "quite", "a", "story", "and"]
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("dev", dev)):
        rows = ["text,label"]
        for _ in range(n):
            label = rng.choice(["good", "bad"])
            words = rng.sample(filler, 5)
            words.insert(rng.randrange(6), label)
            rows.append(f"{' '.join(words)},{label}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return {
        "name": "easy",
        "train": str(folder / "train.csv"),
        "validation": str(folder / "dev.csv"),
        "text_columns": ["text"],
        "labels": ["bad", "good"],
    }


# The encoder families bench knows (benchmark/train/families.py), each as a tiny random model.
TINY_FAMILIES = ("bert", "roberta", "electra", "deberta-v2", "distilbert", "modernbert")


def make_tiny_model(folder: Path, family: str, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A random encoder of `family` (a transformers model type) with the embedded WordPiece tokenizer, saved
    like any Hugging Face model folder. Pair tasks give token type ids 0 and 1: families that use them get two
    types; RoBERTa's positions start after its padding index, hence two more of them."""
    # Imported here for start-up speed (torch, transformers).
    import torch
    from transformers import AutoConfig, AutoModel

    tokenizer = load_tokenizer(embedded_model_path())
    common = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    extra = {
        "bert": {},
        "roberta": dict(max_position_embeddings=130, type_vocab_size=2),
        "electra": dict(embedding_size=hidden),
        "deberta-v2": dict(
            type_vocab_size=2,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            max_relative_positions=64,
        ),
        "distilbert": dict(dim=hidden, n_layers=layers, n_heads=2, hidden_dim=2 * hidden),
        "modernbert": dict(
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            global_attn_every_n_layers=1,
            local_attention=64,
        ),
    }[family]
    config = AutoConfig.for_model(family, **{**common, **extra})
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)
