"""Questions and contexts to windows, and start and end logits back to answer text, for extractive QA.

A question is read with its context as a pair, the question first. A context longer than the window is cut into
overlapping windows: each holds the question (its first `max_query_length` sub-tokens) and the next stretch of the
context, consecutive windows sharing `doc_stride` context sub-tokens (Hugging Face's `stride`, as `run_qa` passes
it). Every token of the context keeps its character span in the context (`offset_mapping`); the question's and
the special tokens get none.

In training, a window whose context holds the whole answer points its start and end at the answer's first and
last sub-tokens; a window that does not points both at its first token ([CLS]).

Decoding (`decode_answers`, over a split's logits laid out per question by `QALabels`): for each window of a
question, the `n_best` highest start and end logits; of their pairs, the spans that lie inside the context, end at
or after their start and are at most `max_answer_length` sub-tokens long; the one with the highest start + end logit
over all of the question's windows is the answer, the character slice of the original context from its first sub-
token's start to its last one's end. No span left: the empty answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.spec import Windowing

NO_OFFSET = -1  # a token outside the context: the question's, or a special token


@dataclass
class QAWindows:
    """Windows of one split, flat: token ids with offsets (one window each), the token type ids, each token's
    character span in its context (NO_OFFSET outside it), the question each window belongs to, and the training
    targets (start and end token of the answer in the window; 0, its [CLS], when it lies outside)."""

    ids: np.ndarray  # int32, every window's tokens concatenated
    offsets: np.ndarray  # int64, windows + 1
    type_ids: np.ndarray | None  # int8 per token, where the model reads them
    char_start: np.ndarray  # int64 per token
    char_end: np.ndarray  # int64 per token
    question: np.ndarray  # int64 per window
    start: np.ndarray  # int64 per window
    end: np.ndarray  # int64 per window

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def split_questions(self) -> int:
        """Questions whose context needed more than one window."""
        return int((np.bincount(self.question) > 1).sum()) if len(self.question) else 0


def check_windows(tokenizer, max_seq_length: int, doc_stride: int, max_query_length: int) -> str | None:
    """Why these window settings cannot cut a context (None: they can): the stride must be smaller than the room
    a window leaves for the context beside the longest question and the special tokens."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = max_seq_length - max_query_length - specials
    if room < 1:
        return (
            f"max_seq_length {max_seq_length} leaves no room for the context beside max_query_length "
            f"{max_query_length} and {specials} special tokens"
        )
    if doc_stride >= room:
        return (
            f"doc_stride {doc_stride} is not smaller than the {room} context tokens a window holds (max_seq_length "
            f"{max_seq_length} less max_query_length {max_query_length} and {specials} special tokens)"
        )
    return None


def _questions_cut(tokenizer, questions: list[str], max_query_length: int) -> list[str]:
    """Each question cut after its first `max_query_length` sub-tokens (at that token's last character)."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False)
    out = []
    for q, spans in zip(questions, enc["offset_mapping"]):
        out.append(q if len(spans) <= max_query_length else q[: spans[max_query_length - 1][1]])
    return out


def encode_questions(
    questions: list[str],
    contexts: list[str],
    answers: list[tuple[int, str] | None],
    tokenizer,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
) -> QAWindows:
    """The windows of a split's questions. `answers`: per question the (character start, text) of the answer it
    trains on (its first gold answer), or None where it has none (unlabelled, or an evaluation split)."""
    if not tokenizer.is_fast:
        raise ValueError("extractive QA needs a fast tokenizer: it maps sub-tokens to characters")
    why = check_windows(tokenizer, max_seq_length, doc_stride, max_query_length)
    if why:
        raise ValueError(why)
    questions = _questions_cut(tokenizer, [q.lstrip() for q in questions], max_query_length)
    ids, type_ids, starts, ends, question, start, end, offsets = [], [], [], [], [], [], [], [0]
    batch = 256
    for first in range(0, len(questions), batch):
        enc = tokenizer(
            questions[first : first + batch], contexts[first : first + batch], truncation="only_second",
            max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
            return_offsets_mapping=True, return_attention_mask=False,
        )  # fmt: skip
        for w, window in enumerate(enc["input_ids"]):
            q = first + enc["overflow_to_sample_mapping"][w]
            sequence = enc.sequence_ids(w)
            spans = [s if part == 1 else (NO_OFFSET, NO_OFFSET) for s, part in zip(enc["offset_mapping"][w], sequence)]
            ids.extend(window)
            if "token_type_ids" in enc:
                type_ids.extend(enc["token_type_ids"][w])
            starts.extend(a for a, _ in spans)
            ends.extend(b for _, b in spans)
            offsets.append(offsets[-1] + len(window))
            question.append(q)
            s, e = _answer_tokens(spans, answers[q])
            start.append(s)
            end.append(e)
    return QAWindows(
        ids=np.asarray(ids, dtype=np.int32),
        offsets=np.asarray(offsets, dtype=np.int64),
        type_ids=np.asarray(type_ids, dtype=np.int8) if type_ids else None,
        char_start=np.asarray(starts, dtype=np.int64),
        char_end=np.asarray(ends, dtype=np.int64),
        question=np.asarray(question, dtype=np.int64),
        start=np.asarray(start, dtype=np.int64),
        end=np.asarray(end, dtype=np.int64),
    )


def _answer_tokens(spans: list[tuple[int, int]], answer: tuple[int, str] | None) -> tuple[int, int]:
    """The first and last token of the answer's characters in this window; (0, 0) where the window's context does
    not hold all of it (or there is no answer)."""
    if answer is None:
        return 0, 0
    first_char, last_char = answer[0], answer[0] + len(answer[1])
    inside = [i for i, (a, _) in enumerate(spans) if a != NO_OFFSET]
    if not inside or spans[inside[0]][0] > first_char or spans[inside[-1]][1] < last_char:
        return 0, 0
    s = next(i for i in inside if spans[i][1] > first_char)
    e = next(i for i in reversed(inside) if spans[i][0] < last_char)
    return s, e


PAD = -2  # a position past a window's last token, or a window its question does not have
_HEADER = 6  # windows, tokens, gold answers, context characters, max_answer_length, n_best


@dataclass
class QALabels:
    """What scoring a split's predictions needs, per question: each of its windows' tokens' character spans in the
    context (NO_OFFSET outside the context, PAD past the window), its gold answers (character start and length),
    its context, and the decoding limits. A split keeps them packed in one int32 row per question (`pack`), so that
    they travel wherever labels do (checkpoints, halves, resamples) and a row's question decodes on its own."""

    char_start: np.ndarray  # int64 (questions, windows, tokens)
    char_end: np.ndarray
    gold_start: np.ndarray  # int64 (questions, answers), -1 past a question's last
    gold_length: np.ndarray
    contexts: list[str]
    max_answer_length: int = 30
    n_best: int = 20

    def __len__(self) -> int:
        return len(self.contexts)

    def golds(self) -> list[list[str]]:
        return [
            [c[a : a + n] for a, n in zip(starts, lengths) if a >= 0]
            for c, starts, lengths in zip(self.contexts, self.gold_start, self.gold_length)
        ]

    def pack(self) -> np.ndarray:
        q, w, t = self.char_start.shape
        g = self.gold_start.shape[1]
        points = [np.frombuffer(c.encode("utf-32-le"), dtype=np.uint32).astype(np.int64) for c in self.contexts]
        width = max((len(p) for p in points), default=0)
        out = np.full((q, _HEADER + 2 * w * t + 2 * g + width), -1, dtype=np.int32)
        out[:, :_HEADER] = [w, t, g, width, self.max_answer_length, self.n_best]
        at = _HEADER
        for block in (self.char_start.reshape(q, -1), self.char_end.reshape(q, -1), self.gold_start, self.gold_length):
            out[:, at : at + block.shape[1]] = block
            at += block.shape[1]
        for i, p in enumerate(points):
            out[i, at : at + len(p)] = p
        return out

    @classmethod
    def unpack(cls, packed: np.ndarray) -> "QALabels":
        packed = np.asarray(packed)
        if len(packed) == 0:
            empty = np.zeros((0, 0, 0), dtype=np.int64)
            return cls(empty, empty, np.zeros((0, 0), np.int64), np.zeros((0, 0), np.int64), [])
        w, t, g, _, max_answer_length, n_best = (int(x) for x in packed[0, :_HEADER])
        q, at, blocks = len(packed), _HEADER, []
        for size in (w * t, w * t, g, g):
            blocks.append(packed[:, at : at + size].astype(np.int64))
            at += size
        contexts = [row[row >= 0].astype(np.uint32).tobytes().decode("utf-32-le") for row in packed[:, at:]]
        return cls(
            blocks[0].reshape(q, w, t), blocks[1].reshape(q, w, t), blocks[2], blocks[3], contexts,
            max_answer_length, n_best,
        )  # fmt: skip


def qa_labels(windows: QAWindows, contexts: list[str], answers: list[dict], windowing: Windowing) -> QALabels:
    """A split's QALabels from its windows (tasks/spans.py's `encode_questions`) and its questions' gold answers."""
    q = len(contexts)
    per = np.bincount(windows.question, minlength=q) if len(windows) else np.zeros(q, dtype=np.int64)
    w, t = int(per.max(initial=0)), int(np.diff(windows.offsets).max(initial=0))
    char_start, char_end = np.full((q, w, t), PAD, dtype=np.int64), np.full((q, w, t), PAD, dtype=np.int64)
    for k, (question, slot) in enumerate(zip(windows.question, window_slots(windows.question))):
        a, b = windows.offsets[k], windows.offsets[k + 1]
        char_start[question, slot, : b - a] = windows.char_start[a:b]
        char_end[question, slot, : b - a] = windows.char_end[a:b]
    g = max((len(x["text"]) for x in answers), default=0)
    gold_start, gold_length = np.full((q, g), -1, dtype=np.int64), np.full((q, g), -1, dtype=np.int64)
    for i, x in enumerate(answers):
        gold_start[i, : len(x["text"])] = x["answer_start"]
        gold_length[i, : len(x["text"])] = [len(text) for text in x["text"]]
    return QALabels(
        char_start, char_end, gold_start, gold_length, list(contexts), windowing.max_answer_length, windowing.n_best
    )


def window_slots(question: np.ndarray) -> np.ndarray:
    """Each window's place among its question's windows (a question's windows are consecutive)."""
    first = np.r_[0, np.flatnonzero(np.diff(question)) + 1] if len(question) else np.zeros(0, dtype=np.int64)
    starts = np.repeat(first, np.diff(np.r_[first, len(question)]))
    return np.arange(len(question)) - starts


def decode_answers(logits: np.ndarray, labels: QALabels) -> tuple[list[str], np.ndarray]:
    """Each question's answer text and its score (start + end logit; -inf for the empty answer), from its windows'
    start and end logits (questions x windows x tokens x 2, laid out as `labels`)."""
    texts, scores = [], np.full(len(labels), -np.inf)
    for q, context in enumerate(labels.contexts):
        best, text = -np.inf, ""
        for w in range(labels.char_start.shape[1]):
            char_start, char_end = labels.char_start[q, w], labels.char_end[q, w]
            real = int((char_start != PAD).sum())
            if real == 0:
                continue
            s_logits, e_logits = logits[q, w, :real, 0], logits[q, w, :real, 1]
            inside = char_start[:real] != NO_OFFSET
            s_top = [i for i in np.argsort(-s_logits, kind="stable")[: labels.n_best] if inside[i]]
            e_top = [i for i in np.argsort(-e_logits, kind="stable")[: labels.n_best] if inside[i]]
            for s in s_top:
                for e in e_top:
                    if e < s or e - s + 1 > labels.max_answer_length:
                        continue
                    score = float(s_logits[s] + e_logits[e])
                    if score > best:
                        best, text = score, context[char_start[s] : char_end[e]]
        texts.append(text)
        scores[q] = best
    return texts, scores
