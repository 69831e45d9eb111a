"""Two trivial extractive QA predictors, the floors a trained reader is judged against (results/tasks/squad/).

- **First sentence**: the context's first sentence, whatever the question.
- **Sliding window**, after Rajpurkar et al. (2016, section 5), who adapted Richardson et al.'s (2013) MCTest
  baseline and scored about 13 EM / 20 F1 on SQuAD's dev set. Every span of one to `max_words` words of a sentence
  is a candidate; a candidate's score is the summed inverse-count weight (log(1 + 1 / count) of each word in its
  context) of the question's words found in a window of the question's length plus the span's, centred on the span;
  words of the question inside the span do not count (the answer rarely repeats the question). Rajpurkar et al.
  took candidates from a constituency parse, which bench does not have: spans of up to `max_words` words that
  neither start nor end with a function word stand in.
  Ties go to the earlier, shorter span.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_WORD = re.compile(r"\w+(?:[-']\w+)*")
# A parse's constituents neither start nor end with these; the spans that stand in for them do not either.
_FUNCTION_WORDS = frozenset(
    "a an the of in on at to for from by with and or but as is are was were be been being it its this that these "
    "those he she they we you i his her their our which who whom whose what when where why how than then there "
    "not no so such".split()
)


def first_sentence(context: str) -> str:
    return _SENTENCE_END.split(context.strip(), maxsplit=1)[0]


def sliding_window(question: str, context: str, max_words: int = 3) -> str:
    """The best-scoring candidate span of `context`, as its characters."""
    words = [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(context)]
    if not words:
        return ""
    counts = Counter(w for w, _, _ in words)
    weight = {w: math.log(1 + 1 / c) for w, c in counts.items()}
    asked = {w.lower() for w in _WORD.findall(question)}
    sentences = [(m.start(), m.end()) for m in re.finditer(r"[^.!?]+[.!?]*", context)]
    best, answer = -1.0, ""
    for s_start, s_end in sentences:
        inside = [i for i, (_, a, b) in enumerate(words) if a >= s_start and b <= s_end]
        for k, first in enumerate(inside):
            for n in range(1, max_words + 1):
                if k + n > len(inside):
                    break
                last = inside[k + n - 1]
                span = {w for w, _, _ in words[first : last + 1]}
                if span <= asked or words[first][0] in _FUNCTION_WORDS or words[last][0] in _FUNCTION_WORDS:
                    continue  # the question's own words are no answer
                half = (len(asked) + n) // 2
                window = words[max(0, first - half) : last + 1 + half]
                score = sum(weight[w] for w in {w for w, _, _ in window} & asked if w not in span)
                if score > best:
                    best, answer = score, context[words[first][1] : words[last][2]]
    return answer
