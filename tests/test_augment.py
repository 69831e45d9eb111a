"""EDA-style augmentation of training data: deterministic for a seed, training split only, cached."""

import sys

import numpy as np
import pytest

from benchmark.common.errors import InputError
from benchmark.train.modeling import load_tokenizer
from tasks.augment import Augmentation, augment_texts, check_augmentation
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS

TEXTS = [["the film was really quite good", "a plot and a story"], ["acting was bad", "really"]]


def test_the_same_seed_gives_the_same_examples_and_another_seed_others():
    aug = Augmentation(copies=3, swap=0.3, delete=0.2, insert=0.2, seed=4)
    first, again = augment_texts(TEXTS, aug), augment_texts(TEXTS, aug)
    other = augment_texts(TEXTS, Augmentation(copies=3, swap=0.3, delete=0.2, insert=0.2, seed=5))
    assert first == again and first != other
    assert [row for row, _ in first] == [0, 0, 0, 1, 1, 1]
    for row, (a, b) in first:  # every operation keeps words of the source text only
        assert set(a.split()) <= set(TEXTS[0][row].split()) and set(b.split()) <= set(TEXTS[1][row].split())
    assert any(t != [TEXTS[0][row], TEXTS[1][row]] for row, t in first)


def test_each_operation_does_what_it_says():
    words = "a b c d e f g h i j"
    ((_, (swapped,)),) = augment_texts([[words]], Augmentation(copies=1, swap=0.2, seed=1))
    assert sorted(swapped.split()) == words.split() and swapped != words  # 2 swaps: same words, other order
    ((_, (shorter,)),) = augment_texts([[words]], Augmentation(copies=1, delete=0.5, seed=1))
    assert 1 <= len(shorter.split()) < 10 and set(shorter.split()) < set(words.split())
    ((_, (longer,)),) = augment_texts([[words]], Augmentation(copies=1, insert=0.3, seed=1))
    assert len(longer.split()) == 13 and set(longer.split()) == set(words.split())


def test_synonyms_without_wordnet_fail_with_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nltk", None)  # as on a machine without nltk
    with pytest.raises(InputError, match="pip install nltk, then apt-get install wordnet-base"):
        check_augmentation(Augmentation(copies=1, synonym=0.1))
    with pytest.raises(InputError, match="augment_copies: set a strength"):
        check_augmentation(Augmentation(copies=2))
    check_augmentation(Augmentation(copies=0, swap=0.1))  # a grid may turn augmentation off with copies 0


def test_only_the_training_split_grows_and_the_result_is_cached(tiny_model, glue_dir, cache_dir):
    tokenizer = load_tokenizer(str(tiny_model))
    plain = encode_task(GLUE_TASKS["mrpc"], tokenizer, 64, glue_dir, cache_dir, 40, 20)
    aug = Augmentation(copies=2, swap=0.1, delete=0.1, seed=3)
    augmented = encode_task(GLUE_TASKS["mrpc"], tokenizer, 64, glue_dir, cache_dir, 40, 20, augmentation=aug)
    assert len(augmented.train) == 120 and augmented.augmented_examples == 80 and plain.augmented_examples == 0
    np.testing.assert_array_equal(
        augmented.train.labels, np.concatenate([plain.train.labels, np.repeat(plain.train.labels, 2)])
    )
    np.testing.assert_array_equal(augmented.train.ids[: plain.train.offsets[-1]], plain.train.ids)  # originals first
    for split in plain.eval_splits:
        np.testing.assert_array_equal(augmented.splits[split].ids, plain.splits[split].ids)
        np.testing.assert_array_equal(augmented.splits[split].labels, plain.splits[split].labels)
    cached = encode_task(GLUE_TASKS["mrpc"], tokenizer, 64, glue_dir, cache_dir, 40, 20, augmentation=aug)
    assert cached.cache_key == augmented.cache_key and cached.augmented_examples == 80
    np.testing.assert_array_equal(cached.train.ids, augmented.train.ids)
    reseeded = encode_task(
        GLUE_TASKS["mrpc"],
        tokenizer,
        64,
        glue_dir,
        cache_dir,
        40,
        20,
        augmentation=Augmentation(copies=2, swap=0.1, delete=0.1, seed=4),
    )
    assert reseeded.cache_key != augmented.cache_key
    assert not np.array_equal(reseeded.train.ids, augmented.train.ids)
