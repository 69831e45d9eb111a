"""Prediction ensembles and the selection protocol on hand-made logits with known answers."""

import numpy as np
import pytest

from benchmark.common.errors import InputError
from ensembles.combine import greedy_selection, mean_prob, probabilities, vote
from tasks.glue import GLUE_TASKS
from tasks.splits import score_on, split_dev

RTE, STSB, MNLI = GLUE_TASKS["rte"], GLUE_TASKS["stsb"], GLUE_TASKS["mnli"]


def from_probs(*rows):
    """Logits whose softmax is the given probabilities."""
    return {"validation": np.log(np.asarray(rows, dtype=np.float64))}


def from_p1(*p1):
    """Binary logits from the probability of class 1, one per example."""
    return from_probs(*[[1 - p, p] for p in p1])


def scores(*values):
    return {"validation": np.asarray(values, dtype=np.float32).reshape(-1, 1)}


def test_mean_prob_averages_probabilities_with_optional_weights():
    a = from_probs([0.9, 0.1], [0.4, 0.6])
    b = from_probs([0.3, 0.7], [0.2, 0.8])
    out = mean_prob(RTE, [a, b])["validation"]
    np.testing.assert_allclose(probabilities(out), [[0.6, 0.4], [0.3, 0.7]])
    weighted = mean_prob(RTE, [a, b], weights=[3, 1])["validation"]
    np.testing.assert_allclose(probabilities(weighted), [[0.75, 0.25], [0.35, 0.65]])


def test_mean_prob_is_not_a_mean_of_logits():
    # One near-certain member against two fairly sure ones: the mean log-odds, (9.21 - 2 x 2.20) / 3 = 1.6, favour
    # class 0; the mean probability of class 0, (0.9999 + 0.1 + 0.1) / 3 = 0.4, does not.
    members = [from_p1(0.0001), from_p1(0.9), from_p1(0.9)]
    assert np.argmax(np.mean([m["validation"] for m in members], axis=0), axis=-1).tolist() == [0]
    out = mean_prob(RTE, members)["validation"]
    assert np.argmax(out, axis=-1).tolist() == [1]
    np.testing.assert_allclose(probabilities(out), [[0.4, 0.6]], atol=1e-4)


def test_mean_prob_of_regression_averages_the_predicted_scores():
    out = mean_prob(STSB, [scores(1.0, 2.0, 5.0), scores(3.0, 4.0, 0.0)])["validation"]
    np.testing.assert_allclose(out, [[2.0], [3.0], [2.5]])
    out = mean_prob(STSB, [scores(1.0, 2.0, 5.0), scores(3.0, 4.0, 0.0)], weights=[1, 3])["validation"]
    np.testing.assert_allclose(out, [[2.5], [3.5], [1.25]])


def test_mean_prob_handles_every_dev_split():
    a = {"validation_matched": np.log([[0.8, 0.1, 0.1]]), "validation_mismatched": np.log([[0.1, 0.1, 0.8]])}
    b = {"validation_matched": np.log([[0.2, 0.7, 0.1]]), "validation_mismatched": np.log([[0.1, 0.5, 0.4]])}
    out = mean_prob(MNLI, [a, b])
    np.testing.assert_allclose(probabilities(out["validation_matched"]), [[0.5, 0.4, 0.1]])
    np.testing.assert_allclose(probabilities(out["validation_mismatched"]), [[0.1, 0.3, 0.6]])


def test_vote_takes_the_majority_even_against_the_mean_probability():
    # Two members say class 0 weakly, one says class 1 with certainty: mean probability says 1, the vote says 0.
    members = [from_p1(0.45), from_p1(0.45), from_p1(0.99)]
    assert np.argmax(mean_prob(RTE, members)["validation"], axis=-1).tolist() == [1]
    assert np.argmax(vote(RTE, members)["validation"], axis=-1).tolist() == [0]


def test_vote_ties_go_to_the_higher_mean_probability_then_the_lower_class_id():
    # Example 1: 1-1 tie, mean p(class 1) = (0.4 + 0.9) / 2 = 0.65 -> class 1.
    # Example 2: 1-1 tie, mean p(class 1) = (0.1 + 0.6) / 2 = 0.35 -> class 0.
    # Example 3: 1-1 tie, mean p(class 1) = (0.3 + 0.7) / 2 = 0.5 exactly -> the lower class id, 0.
    a, b = from_p1(0.4, 0.1, 0.3), from_p1(0.9, 0.6, 0.7)
    out = vote(RTE, [a, b])["validation"]
    assert np.argmax(out, axis=-1).tolist() == [1, 0, 0]
    # The vote's distribution: (votes + mean probability / 2) / (members + 1/2).
    np.testing.assert_allclose(probabilities(out)[0], [(1 + 0.35 / 2) / 2.5, (1 + 0.65 / 2) / 2.5])


def test_vote_with_three_classes_and_a_three_way_tie():
    members = [
        {"validation": np.log([[0.5, 0.3, 0.2]])},
        {"validation": np.log([[0.1, 0.6, 0.3]])},
        {"validation": np.log([[0.1, 0.2, 0.7]])},
    ]
    # One vote each; mean probabilities 0.233, 0.367, 0.4: class 2 wins.
    assert np.argmax(vote(MNLI, members)["validation"], axis=-1).tolist() == [2]
    members.append({"validation": np.log([[0.6, 0.3, 0.1]])})  # now class 0 has two votes
    assert np.argmax(vote(MNLI, members)["validation"], axis=-1).tolist() == [0]


def test_vote_of_regression_is_the_median():
    out = vote(STSB, [scores(1.0, 5.0), scores(2.0, 0.0), scores(4.0, 1.0)])["validation"]
    np.testing.assert_allclose(out, [[2.0], [1.0]])


def accuracy_on_all(labels):
    y = {"validation": np.asarray(labels)}
    idx = {"validation": np.arange(len(labels))}
    return lambda logits: score_on(RTE, logits, y, idx)[1]


def test_greedy_selection_adds_a_member_twice_when_that_helps():
    # Labels and p(class 1) of three candidates. A alone: 3/5; B alone: 2/5; C (always 0.5) predicts class 0: 2/5.
    # Round 1 takes A. Round 2: A+A 3/5, A+B 4/5, A+C 3/5 -> B. Round 3: A+A+B is right on all five
    # (0.7, 0.4, 0.567, 0.433, 0.75), A+B+B on three, A+B+C on at most four -> A again.
    labels = [1, 0, 1, 0, 1]
    a = from_p1(0.9, 0.6, 0.8, 0.55, 0.9)
    b = from_p1(0.3, 0.001, 0.1, 0.2, 0.45)
    c = from_p1(0.5, 0.5, 0.5, 0.5, 0.5)
    score = accuracy_on_all(labels)
    assert [score(m) for m in (a, b, c)] == [60.0, 40.0, 40.0]
    assert score(mean_prob(RTE, [a, b])) == 80.0
    counts = greedy_selection(RTE, [a, b, c], score)
    # Later rounds (A+A+A+B, ...) score 100 as well; the earliest best bag is kept, so the weights stay 2:1.
    assert counts.tolist() == [2, 1, 0]
    assert score(mean_prob(RTE, [a, b], weights=[2, 1])) == 100.0


def test_greedy_selection_keeps_the_best_round_not_the_last():
    # A is right everywhere; anything added to it can only hurt, so the bag stays A alone for all rounds.
    labels = [1, 0, 1, 0]
    a = from_p1(0.6, 0.4, 0.6, 0.4)
    b = from_p1(0.0001, 0.9999, 0.0001, 0.9999)
    counts = greedy_selection(RTE, [b, a], accuracy_on_all(labels), rounds=5)
    assert counts.tolist() == [0, 1]


def test_greedy_selection_for_regression_weights_the_mean_prediction():
    labels = {"validation": np.asarray([1.0, 2.0, 3.0, 4.0])}
    idx = {"validation": np.arange(4)}

    def score(logits):
        return score_on(STSB, logits, labels, idx)[1]

    good = scores(1.0, 2.0, 3.0, 3.0)  # misses the last example
    fixer = scores(1.0, 1.0, 1.0, 9.0)  # rescues it when mixed in at a small weight
    counts = greedy_selection(STSB, [good, fixer], score, rounds=6)
    assert counts[0] > counts[1] > 0
    assert score(mean_prob(STSB, [good, fixer], counts)) > score(good)


def test_dev_halves_are_disjoint_cover_everything_and_depend_on_seed_and_task():
    halves = split_dev(RTE, {"validation": 277}, seed=0)
    sel, rep = halves.selection["validation"], halves.report["validation"]
    assert len(sel) == 138 and len(rep) == 139
    assert not set(sel) & set(rep) and sorted([*sel, *rep]) == list(range(277))
    again = split_dev(RTE, {"validation": 277}, seed=0)
    np.testing.assert_array_equal(again.selection["validation"], sel)
    other_seed = split_dev(RTE, {"validation": 277}, seed=1).selection["validation"]
    other_task = split_dev(GLUE_TASKS["mrpc"], {"validation": 277}, seed=0).selection["validation"]
    assert not np.array_equal(other_seed, sel) and not np.array_equal(other_task, sel)


def test_every_dev_split_is_halved_separately():
    halves = split_dev(MNLI, {"validation_matched": 10, "validation_mismatched": 7}, seed=3)
    assert {s: len(i) for s, i in halves.selection.items()} == {"validation_matched": 5, "validation_mismatched": 3}
    assert {s: len(i) for s, i in halves.report.items()} == {"validation_matched": 5, "validation_mismatched": 4}


def test_a_dev_set_too_small_to_halve_is_refused():
    with pytest.raises(InputError, match="has 3 examples; the split-half protocol needs at least 4"):
        split_dev(RTE, {"validation": 3}, seed=0)


def test_score_on_uses_only_the_named_examples():
    logits = from_p1(0.9, 0.9, 0.1, 0.1)
    labels = {"validation": np.asarray([1, 0, 0, 1])}
    assert score_on(RTE, logits, labels, {"validation": np.asarray([0, 2])})[1] == 100.0
    assert score_on(RTE, logits, labels, {"validation": np.asarray([1, 3])})[1] == 0.0
