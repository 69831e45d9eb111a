"""Prediction ensembles: combine members' saved dev logits, running no model.

Every combiner takes the members' logits as `{dev split: array}` dicts and returns the ensemble's in the same
form. For classification the returned "logits" are log-probabilities of the ensemble's distribution: their
softmax is that distribution and their argmax the ensemble's prediction, so metrics and prediction files treat
an ensemble exactly like a checkpoint. For regression they are the predicted scores, one column. For extractive QA
they are start and end logits per window (members share a tokenizer, so their windows are the same): the mean is
decoded as one model's would be (tasks/spans.py), and a vote picks an answer string.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tasks.metrics.squad import normalize_answer
from tasks.spans import QALabels, decode_answers
from tasks.spec import TaskSpec, TaskType

GREEDY_ROUNDS = 20  # Caruana et al. run a fixed number of rounds and keep the best bag seen
TINY = 1e-12  # floor for probabilities before the log; no class gets minus infinity


def probabilities(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def mean_prob(task: TaskSpec, members: list[dict[str, np.ndarray]], weights=None) -> dict[str, np.ndarray]:
    """The (weighted) mean of the members' probabilities, or of their predicted scores for regression."""
    w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    out = {}
    for split in members[0]:
        if task.is_regression or task.type is TaskType.EXTRACTIVE_QA:  # scores; a span's logits are no distribution
            out[split] = sum(wi * m[split].astype(np.float64) for wi, m in zip(w, members)).astype(np.float32)
            out[split] = out[split].reshape(-1, 1) if task.is_regression else out[split]
        else:
            p = sum(wi * probabilities(m[split]) for wi, m in zip(w, members))
            out[split] = np.log(np.maximum(p, TINY))
    return out


def vote(
    task: TaskSpec, members: list[dict[str, np.ndarray]], labels: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Majority vote of the members' predicted classes.

    Tie-break: among the classes with the most votes, the one with the highest mean probability over all
    members wins; if that ties too, the lowest class id. The returned distribution is
    (votes + mean probability / 2) / (members + 1/2): a class with more votes always scores higher, since the
    half mean probability is below one vote. Regression has no classes to vote for: its vote is the median
    of the members' predicted scores. Extractive QA (`labels`: its packed labels, to decode by): the answer most
    members give, compared after SQuAD's normalisation, the highest-scoring member's answer on ties; returned as
    that member's logits, so that it decodes to its answer.
    """
    out = {}
    for split in members[0]:
        if task.type is TaskType.EXTRACTIVE_QA:
            out[split] = _answer_vote([m[split] for m in members], labels[split])
            continue
        if task.is_regression:
            out[split] = np.median(np.stack([m[split].reshape(-1) for m in members]), axis=0).reshape(-1, 1)
            continue
        num_classes = members[0][split].shape[-1]
        votes = sum(np.eye(num_classes)[np.argmax(m[split], axis=-1)] for m in members)
        mean = sum(probabilities(m[split]) for m in members) / len(members)
        out[split] = np.log(np.maximum((votes + mean / 2) / (len(members) + 0.5), TINY))
    return out


def _answer_vote(members: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    view = QALabels.unpack(labels)
    decoded = [decode_answers(m, view) for m in members]
    out = np.array(members[0], dtype=np.float32)
    for q in range(len(view)):
        answers = [normalize_answer(texts[q]) for texts, _ in decoded]
        counts = {a: answers.count(a) for a in answers}
        top = max(counts.values())
        winner = max((i for i, a in enumerate(answers) if counts[a] == top), key=lambda i: decoded[i][1][q])
        out[q] = members[winner][q]
    return out


def greedy_selection(
    task: TaskSpec, pool: list[dict[str, np.ndarray]], score: Callable[[dict], float], rounds: int = GREEDY_ROUNDS
) -> np.ndarray:
    """Caruana et al. (2004) ensemble selection: forward, with replacement.

    Each round adds the pool member whose addition gives the mean-probability ensemble the best `score`
    (a member already in the bag may be added again, which raises its weight; ties go to the earlier
    member of the pool). After `rounds` rounds the bag of the best-scoring round is kept (the earliest,
    on ties, so the smallest). Returns how many times each pool member is in that bag.
    """
    counts = np.zeros(len(pool), dtype=np.int64)
    best_counts, best_score = counts.copy(), -np.inf
    for _ in range(rounds):
        trial_scores = []
        for i in range(len(pool)):
            trial = counts.copy()
            trial[i] += 1
            trial_scores.append(score(mean_prob(task, pool, trial)))
        pick = int(np.argmax(trial_scores))
        counts[pick] += 1
        if trial_scores[pick] > best_score:
            best_score, best_counts = trial_scores[pick], counts.copy()
    return best_counts
