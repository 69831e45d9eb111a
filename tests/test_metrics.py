import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from tasks.glue import GLUE_TASKS
from tasks.metrics import METRICS, compute_metrics, task_score

OFFLINE_SCRIPT = """
import json, sys, numpy as np
from tasks.metrics import _module
rng = np.random.default_rng(0)
refs = rng.integers(0, 2, 500); preds = np.where(rng.random(500) < 0.8, refs, 1 - refs)
y = rng.normal(size=500) * 2 + 2.5; p = y + rng.normal(size=500)
out = {
    "cls": _module("classification").compute(predictions=preds, references=refs,
                                              metrics=["accuracy", "f1", "f1_macro", "matthews_correlation"]),
    "reg": _module("regression").compute(predictions=p, references=y, metrics=["pearson", "spearmanr"]),
}
print(json.dumps(out))
"""


def test_metric_module_loads_offline_and_equals_sklearn_scipy():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 2, 500)
    preds = np.where(rng.random(500) < 0.8, refs, 1 - refs)
    y = rng.normal(size=500) * 2 + 2.5
    p = y + rng.normal(size=500)
    expected = {
        "accuracy": accuracy_score(refs, preds),
        "f1": f1_score(refs, preds),
        "f1_macro": f1_score(refs, preds, average="macro"),
        "matthews_correlation": matthews_corrcoef(refs, preds),
        "pearson": pearsonr(p, y)[0],
        "spearmanr": spearmanr(p, y)[0],
    }
    merged = {**got["cls"], **got["reg"]}
    assert set(merged) == set(expected)
    for name, value in expected.items():
        assert merged[name] == pytest.approx(value, abs=1e-9), name
    assert 0.7 < merged["accuracy"] < 0.9  # the fixture is what we think it is


def test_compute_metrics_from_logits_and_task_score():
    task = GLUE_TASKS["mrpc"]
    logits = np.array([[2.0, -1.0], [0.0, 1.0], [0.3, 0.1], [-1.0, 2.0]])
    labels = np.array([0, 1, 1, 1])
    m = compute_metrics(task, {"validation": logits}, {"validation": labels})
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(f1_score(labels, [0, 1, 0, 1]))
    assert task_score(m) == pytest.approx(100 * (0.75 + 0.8) / 2)


def test_constant_regression_predictions_score_zero_not_nan():
    task = GLUE_TASKS["stsb"]
    m = compute_metrics(task, {"validation": np.ones((5, 1))}, {"validation": np.arange(5.0)})
    assert m == {"pearson": 0.0, "spearmanr": 0.0}


def test_mnli_reports_matched_and_mismatched():
    task = GLUE_TASKS["mnli"]
    logits = {"validation_matched": np.eye(3)[[0, 1, 2]], "validation_mismatched": np.eye(3)[[0, 0, 0]]}
    labels = {"validation_matched": np.array([0, 1, 2]), "validation_mismatched": np.array([0, 1, 2])}
    m = compute_metrics(task, logits, labels)
    assert m == pytest.approx({"accuracy_matched": 1.0, "accuracy_mismatched": 1 / 3})
    assert task.metric_keys() == ["accuracy_matched", "accuracy_mismatched"]


def test_every_metric_declares_its_direction():
    assert all(isinstance(m.higher_is_better, bool) for m in METRICS.values())
    for task in GLUE_TASKS.values():
        assert set(task.metrics) <= set(METRICS)


def test_resampled_metrics_equal_sklearn_and_scipy_on_every_row():
    from tasks.metrics.resampled import RESAMPLED

    rng = np.random.default_rng(3)
    reference = {
        "accuracy": accuracy_score,
        "f1": f1_score,
        "matthews_correlation": matthews_corrcoef,
        "f1_macro": lambda y, p: f1_score(y, p, average="macro"),
        "pearson": lambda y, p: pearsonr(p, y)[0],
        "spearmanr": lambda y, p: spearmanr(p, y)[0],
    }
    n = 60
    labels3 = rng.integers(0, 3, n)
    preds3 = np.where(rng.random(n) < 0.6, labels3, rng.integers(0, 3, n))
    y = np.round(rng.uniform(0, 5, n), 1)  # rounded: ties, as STS-B has
    p = np.round(y + rng.normal(size=n), 1)
    idx = rng.integers(0, n, size=(50, n))  # 50 bootstrap resamples
    idx[0] = np.arange(n)  # and the dev set itself
    for name, expected in reference.items():
        if name in ("pearson", "spearmanr"):
            preds, labels = p, y
        elif name == "f1":
            preds, labels = (preds3 > 0).astype(int), (labels3 > 0).astype(int)
        else:
            preds, labels = preds3, labels3
        got = RESAMPLED[name](preds[idx], labels[idx])
        want = [expected(labels[row], preds[row]) for row in idx]
        np.testing.assert_allclose(got, want, atol=1e-9, err_msg=name)


def test_resampled_metrics_keep_the_conventions_for_degenerate_rows():
    from tasks.metrics.resampled import RESAMPLED

    constant = np.ones((1, 4))
    assert RESAMPLED["pearson"](constant, np.arange(4.0)[None]).tolist() == [0.0]
    assert RESAMPLED["spearmanr"](constant, np.arange(4.0)[None]).tolist() == [0.0]
    assert RESAMPLED["matthews_correlation"](np.ones((1, 4), int), np.array([[0, 1, 1, 0]])).tolist() == [0.0]
    assert RESAMPLED["f1"](np.zeros((1, 4), int), np.zeros((1, 4), int)).tolist() == [0.0]  # sklearn: 0, not nan
