"""Words to sub-tokens and back, for tagging: what a token classifier reads, and the word-level prediction it makes.

Each word is labelled at its first sub-token; its other sub-tokens and the special tokens get IGNORE, which the
loss skips (transformers' -100). A sentence longer than the window is cut, between words, into consecutive
windows of at most `max_seq_length` tokens (special tokens included), so every word sits in exactly one window and
gets exactly one prediction: nothing is silently truncated. A word with more sub-tokens than a window holds keeps
the first ones (its first sub-token is the one scored). Scoring is per word, so a word split into five sub-tokens
counts once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE = -100  # transformers' ignore_index: a position the loss and the scores skip


@dataclass
class TaggedWindows:
    """Windows of one split, flat: token ids with offsets (one window each), a label per token (IGNORE but at a
    word's first sub-token), and for each first sub-token its word's index in its sentence."""

    ids: np.ndarray  # int32, every window's tokens concatenated
    offsets: np.ndarray  # int64, windows + 1
    labels: np.ndarray  # int64 per token: the word's tag id at its first sub-token, else IGNORE
    word: np.ndarray  # int64 per token: the word's index in its sentence at its first sub-token, else -1
    sentence: np.ndarray  # int64 per window: the sentence it belongs to
    words_per_sentence: np.ndarray  # int64 per sentence

    @property
    def split_sentences(self) -> int:
        """Sentences longer than one window (the run reports how many)."""
        return int((np.bincount(self.sentence, minlength=len(self.words_per_sentence)) > 1).sum())

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass
class _Builder:
    """Lists that `encode_words` fills window by window, then turns into a TaggedWindows."""

    ids: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    word: list = field(default_factory=list)
    offsets: list = field(default_factory=lambda: [0])
    sentence: list = field(default_factory=list)
    words: dict = field(default_factory=dict)  # sentence -> its number of words

    def append(self, ids: list[int], word_ids: list, base: int, s: int, tags) -> None:
        """One window of sentence `s`: `word_ids` (the tokenizer's, None at special tokens) count from `base`."""
        previous = None
        for token, w in zip(ids, word_ids):
            starts = w is not None and w != previous
            self.ids.append(token)
            self.word.append(base + w if starts else -1)
            self.labels.append(tags[s][base + w] if starts and tags is not None else IGNORE)
            previous = w
            if starts:
                self.words[s] = max(self.words.get(s, 0), base + w + 1)
        self.offsets.append(self.offsets[-1] + len(ids))
        self.sentence.append(s)

    def arrays(self) -> TaggedWindows:
        return TaggedWindows(
            ids=np.asarray(self.ids, dtype=np.int32),
            offsets=np.asarray(self.offsets, dtype=np.int64),
            labels=np.asarray(self.labels, dtype=np.int64),
            word=np.asarray(self.word, dtype=np.int64),
            sentence=np.asarray(self.sentence, dtype=np.int64),
            words_per_sentence=np.asarray([self.words[s] for s in sorted(self.words)], dtype=np.int64),
        )


def encode_words(tokens: list[list[str]], tags: list[list[int]] | None, tokenizer, max_seq_length: int):
    """The windows of tagged (or, with `tags` None, untagged) sentences."""
    if not tokenizer.is_fast:
        raise ValueError("tagging needs a fast tokenizer: it maps sub-tokens to words")
    out = _Builder()
    batch = 1000
    for start in range(0, len(tokens), batch):
        chunk = tokens[start : start + batch]
        enc = tokenizer(chunk, is_split_into_words=True, return_attention_mask=False)
        for i, words in enumerate(chunk):
            s, ids, word_ids = start + i, enc["input_ids"][i], enc.word_ids(i)
            counts = np.bincount([w for w in word_ids if w is not None], minlength=len(words))
            if (counts == 0).any():  # a word the tokenizer drops (a control character) is read as unknown
                words = [w if n else tokenizer.unk_token for w, n in zip(words, counts)]
                one = tokenizer(words, is_split_into_words=True, return_attention_mask=False)
                ids, word_ids = one["input_ids"], one.word_ids()
                counts = np.bincount([w for w in word_ids if w is not None], minlength=len(words))
            if len(ids) <= max_seq_length:
                out.append(ids, word_ids, 0, s, tags)
                continue
            room = max_seq_length - (len(ids) - int(counts.sum()))  # the special tokens take the rest
            if room < 1:
                raise ValueError(f"max_seq_length {max_seq_length} leaves no room beside the special tokens")
            first = 0
            while first < len(words):  # cut between words; a word longer than a window keeps its first sub-tokens
                last, used = first, 0
                while last < len(words) and (last == first or used + min(counts[last], room) <= room):
                    used, last = used + min(counts[last], room), last + 1
                part = tokenizer(
                    words[first:last], is_split_into_words=True, truncation=True, max_length=max_seq_length,
                    return_attention_mask=False,
                )  # fmt: skip
                out.append(part["input_ids"], part.word_ids(), first, s, tags)
                first = last
    return out.arrays()


def word_logits(windows: TaggedWindows, token_logits: list[np.ndarray]) -> list[np.ndarray]:
    """Each sentence's word-level logits (words x tags), from each window's token logits (tokens x tags)."""
    out = [np.zeros((n, token_logits[0].shape[-1]), dtype=np.float32) for n in windows.words_per_sentence]
    seen = [np.zeros(n, dtype=bool) for n in windows.words_per_sentence]
    for k, logits in enumerate(token_logits):
        a, b = windows.offsets[k], windows.offsets[k + 1]
        s, words = windows.sentence[k], windows.word[a:b]
        at = words >= 0
        out[s][words[at]] = logits[at]
        seen[s][words[at]] = True
    if not all(x.all() for x in seen):
        raise AssertionError("a word has no prediction: the windows do not cover every word")
    return out
