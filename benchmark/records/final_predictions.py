"""Where the run directory keeps test predictions (`test_predictions/`), and how they are read back."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.common.paths import check_name
from benchmark.train.checkpoints import read_prediction_file

TEST_DIR = "test_predictions"


def test_prediction_path(root: Path, trial_id: str) -> Path:
    return Path(root) / TEST_DIR / f"{check_name(trial_id, 'record.json', 'trial id')}.safetensors"


def ensemble_test_path(root: Path, state_key: str, dev_predictions: str) -> Path:
    """Beside the row's dev predictions' name (`<method>-<pool>/<task>.safetensors`), under the ensembles' state key:
    rebuilt ensembles are scored again. The names come from ensembles.json, so they are checked as plain names."""
    dev = Path(dev_predictions)
    names = [check_name(n, "ensembles.json", "ensemble file name") for n in (state_key, dev.parent.name, dev.name)]
    return Path(root) / TEST_DIR / "ensembles" / Path(*names)


def read_test_file(path: Path) -> dict | None:
    """`{"logits", "labels"}` of a test predictions file; None when there is none, or (reported) when it is damaged."""
    if not path.is_file():
        return None
    try:
        return read_prediction_file(path)["test"]
    except Exception as e:  # safetensors raises several types for a damaged file
        print(f"warning: {path} is unreadable ({type(e).__name__}); its test score is left out", file=sys.stderr)
        return None
