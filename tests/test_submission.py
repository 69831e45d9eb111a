"""GLUE submission files: the server's format, and which checkpoint makes them."""

import numpy as np
import pytest

from benchmark.common.errors import InputError
from benchmark.results.submission import best_checkpoints, missing_for_glue, submission_text
from tasks.glue import GLUE_TASKS


def test_label_ids_label_names_and_clipped_scores():
    two = np.array([[2.0, -1.0], [0.0, 1.0], [0.5, 0.2]])
    index = np.array([0, 1, 2])
    assert submission_text(GLUE_TASKS["cola"], two, index) == "index\tprediction\n0\t0\n1\t1\n2\t0\n"
    assert (
        submission_text(GLUE_TASKS["rte"], two, index)
        == "index\tprediction\n0\tentailment\n1\tnot_entailment\n2\tentailment\n"
    )
    three = np.eye(3)[[2, 0, 1]]
    assert (
        submission_text(GLUE_TASKS["mnli"], three, np.array([7, 8, 9]))
        == "index\tprediction\n7\tcontradiction\n8\tentailment\n9\tneutral\n"
    )
    scores = np.array([[-0.4], [2.25], [7.0]])
    assert submission_text(GLUE_TASKS["stsb"], scores, index) == "index\tprediction\n0\t0.000\n1\t2.250\n2\t5.000\n"
    assert GLUE_TASKS["mnli"].test_splits == {"test_matched": "MNLI-m", "test_mismatched": "MNLI-mm"}


def _record(task, seed, lr, score, model="m", kind="single"):
    return {
        "trial_id": f"{model}-{task}-{lr}-{seed}",
        "task": task,
        "model": model,
        "kind": kind,
        "seed": seed,
        "grid_point": {"learning_rate": lr},
        "status": "finished",
        "best_score": score,
        "checkpoint": f"trials/{task}-{lr}-{seed}/checkpoint",
    }


def test_the_best_seed_of_the_chosen_grid_point_predicts():
    records = [_record("rte", 1, 1e-4, 60.0), _record("rte", 2, 1e-4, 64.0), _record("rte", 1, 2e-4, 70.0)]
    board = {
        "rows": [
            {"system": "m (single)", "kind": "single", "model": "m", "config": {"rte": {"learning_rate": 1e-4}}},
            {"system": "e (ensemble)", "kind": "ensemble", "model": "e", "config": {}},
        ]
    }
    row, chosen = best_checkpoints(board, records, None)
    # lr 1e-4 is the chosen point (best mean over seeds); its best seed is 2, not the lone best trial at 2e-4.
    assert row["system"] == "m (single)" and chosen["rte"]["trial_id"] == "m-rte-0.0001-2"
    with pytest.raises(InputError, match="ensemble rows have no single checkpoint"):
        best_checkpoints(board, records, "ensemble")


def test_a_complete_glue_submission_lists_every_file():
    written = [f"{t.test_splits[s]}.tsv" for t in GLUE_TASKS.values() for s in t.test_splits]
    assert missing_for_glue(written) == ["AX"]  # the diagnostic set needs its own data, not shipped here
