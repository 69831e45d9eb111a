"""Words to sub-tokens and back for tagging (tasks/words.py): one prediction per word, long sentences in windows."""

import os
from pathlib import Path

import numpy as np
import pytest

from benchmark.train.modeling import embedded_model_path, load_tokenizer
from tasks.conll import read_conll
from tasks.words import IGNORE, encode_words, word_logits

DATA = Path(os.environ.get("BENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(embedded_model_path())


def one_hot_round_trip(windows, tags, n_tags):
    """Token logits that put each labelled position's tag first give back every word's tag."""
    logits = []
    for k in range(len(windows.offsets) - 1):
        labels = windows.labels[windows.offsets[k] : windows.offsets[k + 1]]
        x = np.full((len(labels), n_tags), -5.0, dtype=np.float32)
        x[labels != IGNORE, labels[labels != IGNORE]] = 5.0
        logits.append(x)
    return [w.argmax(-1).tolist() for w in word_logits(windows, logits)]


def test_each_word_is_labelled_once_at_its_first_sub_token(tokenizer):
    tokens = [["Dortmund", "beats", "Schalke"], ["unbelievably", "x"]]
    tags = [[1, 0, 1], [0, 2]]
    w = encode_words(tokens, tags, tokenizer, 32)
    assert w.split_sentences == 0 and w.sentence.tolist() == [0, 1]
    first = tokenizer(["Dortmund", "beats", "Schalke"], is_split_into_words=True)
    assert w.ids[: w.offsets[1]].tolist() == first["input_ids"]  # the tokenizer's own [CLS] ... [SEP]
    labelled = w.labels != IGNORE
    assert labelled.sum() == 5 and (w.word[labelled] >= 0).all() and (w.word[~labelled] == -1).all()
    assert len(tokenizer.tokenize("Schalke")) > 1  # a word of several sub-tokens still counts once
    assert one_hot_round_trip(w, tags, 3) == tags


def test_a_long_sentence_is_cut_between_words_into_windows_and_every_word_keeps_one_prediction(tokenizer):
    words = [f"word{i}" for i in range(300)]
    tags = [[i % 4 for i in range(300)], [1]]
    w = encode_words([words, ["short"]], tags, tokenizer, 24)
    lengths = np.diff(w.offsets)
    assert (lengths <= 24).all() and w.split_sentences == 1 and (w.sentence == 0).sum() > 10
    assert (w.labels != IGNORE).sum() == 301
    assert one_hot_round_trip(w, tags, 4) == tags
    whole = encode_words([words], tags[:1], tokenizer, 4096)
    assert whole.split_sentences == 0 and len(whole.offsets) == 2


def test_a_word_longer_than_a_window_keeps_its_first_sub_tokens(tokenizer):
    w = encode_words([["a", "x" * 200 + "q" * 50, "b"]], [[0, 1, 2]], tokenizer, 8)
    assert (np.diff(w.offsets) <= 8).all()
    assert one_hot_round_trip(w, [[0, 1, 2]], 3) == [[0, 1, 2]]


@pytest.mark.skipif(not (DATA / "conll2003").is_dir(), reason="needs $BENCH_DATA_DIR/conll2003")
def test_conll2003_dev_round_trips_at_128_tokens_and_few_sentences_need_a_second_window(tokenizer):
    dev = read_conll(DATA / "conll2003" / "valid.txt")
    tags = [[hash(t) % 9 for t in s.tags] for s in dev]
    w = encode_words([list(s.tokens) for s in dev], tags, tokenizer, 128)
    assert (w.labels != IGNORE).sum() == 51362  # SOURCES.md's token count: every word predicted once
    assert one_hot_round_trip(w, tags, 9) == tags
    assert 0 < w.split_sentences < 20  # a few of dev's 3,250 sentences exceed 128 sub-tokens


def test_a_word_the_tokenizer_drops_is_read_as_unknown_and_still_predicted(tokenizer):
    assert tokenizer.tokenize("\u200b") == []  # a zero-width space has no sub-token
    w = encode_words([["a", "\u200b", "b"]], [[0, 1, 2]], tokenizer, 16)
    assert w.word.tolist() == [-1, 0, 1, 2, -1] and w.ids[2] == tokenizer.unk_token_id
    assert one_hot_round_trip(w, [[0, 1, 2]], 3) == [[0, 1, 2]]
