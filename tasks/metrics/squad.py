"""Exact match and F1 as the official SQuAD v1.1 evaluation script defines them (Rajpurkar et al., 2016).

An answer is normalised by lower-casing, removing punctuation (Python's `string.punctuation`), removing the
articles a, an and the, and collapsing whitespace. Exact match is 1 when the normalised prediction equals a
normalised gold answer; F1 is the harmonic mean of the bag-of-tokens precision and recall of the normalised
strings. A question's value is the maximum over its gold answers; a split's is the mean over its questions (so the
bootstrap resamples questions: `per_question`).
"""

from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The official script's `normalize_answer`: lower, strip punctuation, drop articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def per_question(predictions: list[str], golds: list[list[str]]) -> dict[str, np.ndarray]:
    """Each question's exact match and F1 (0-1), the maximum over its gold answers."""
    return {
        "exact_match": np.array([max(exact_match(p, g) for g in gs) for p, gs in zip(predictions, golds)]),
        "f1": np.array([max(token_f1(p, g) for g in gs) for p, gs in zip(predictions, golds)]),
    }


def squad_metrics(predictions: list[str], golds: list[list[str]]) -> dict[str, float]:
    """Exact match and F1 over a split (0-1): the mean over its questions."""
    return {k: float(v.mean()) if len(v) else 0.0 for k, v in per_question(predictions, golds).items()}
