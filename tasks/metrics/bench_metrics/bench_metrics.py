"""GLUE's metrics as an `evaluate` module that ships with bench and loads by path, so no hub is needed.

Names follow evaluate's `glue` metric. Config `classification` takes integer labels, `regression` floats.
"""

import math
import warnings

import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

_FUNCTIONS = {
    "accuracy": lambda refs, preds: accuracy_score(refs, preds),
    "f1": lambda refs, preds: f1_score(refs, preds),
    "f1_macro": lambda refs, preds: f1_score(refs, preds, average="macro"),
    "matthews_correlation": lambda refs, preds: matthews_corrcoef(refs, preds),
    "pearson": lambda refs, preds: pearsonr(preds, refs)[0],
    "spearmanr": lambda refs, preds: spearmanr(preds, refs)[0],
}

_DESCRIPTION = "GLUE metrics (accuracy, f1, matthews_correlation, pearson, spearmanr) computed offline."
_KWARGS = """
Args:
    predictions: predicted label ids (classification) or scores (regression).
    references: gold label ids or scores.
    metrics: names of the metrics to compute.
Returns: a dict from metric name to a float in [0, 1] (correlations in [-1, 1]).
"""


class BenchMetrics(evaluate.Metric):
    def _info(self):
        if self.config_name not in ("classification", "regression"):
            raise KeyError(f"config must be 'classification' or 'regression', got {self.config_name!r}")
        dtype = "float64" if self.config_name == "regression" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Wang et al. 2019, GLUE",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}),
        )

    def _compute(self, predictions, references, metrics=("accuracy",)):
        out = {}
        for name in metrics:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy warns on constant input; handled just below
                value = float(_FUNCTIONS[name](references, predictions))
            # A constant prediction has no correlation; scipy says nan, GLUE's convention scores it 0.
            out[name] = 0.0 if math.isnan(value) else value
        return out
