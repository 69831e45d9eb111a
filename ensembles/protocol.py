"""The selection protocol: no method selects on the data its score is reported on. The halves themselves are made
by tasks.splits.split_dev, which the trainer also uses to choose epochs on the selection half.

Each dev set is split once, by a seeded permutation, into a selection half and a disjoint report half.
Everything that chooses (ranking candidates for the top-k pool, greedy selection, greedy soups, and the
best single checkpoint) looks only at the selection half; every reported score is computed on the report
half alone. The same halves serve every method, and the best single checkpoint, so rows compare fairly. A task
with a labelled test split is the exception for epochs: its trials choose them on all of validation (test reports,
and the single-model rows keep their full validation set), so there the report half helped choose the epochs; the
description says so, from what each checkpoint's trial.json records (`selection_seed`).
"""

from __future__ import annotations

NAME = "split-half"


def describe(seed: int, whole_dev: tuple[str, ...] = (), with_test: tuple[str, ...] = ()) -> dict:
    """What the leaderboard says about the protocol, beside the rows it applies to. `whole_dev`: the tasks whose
    candidates kept the epoch best on the whole dev set (their checkpoints' `selection_seed` is not `seed`); of them,
    `with_test` have a labelled test split, where the trainer always chooses on all of validation (test reports)."""
    others = [t for t in whole_dev if t not in with_test]
    epochs = "each candidate's epoch too" if not whole_dev else "but not every candidate's epoch"
    notes = []
    if with_test:
        notes.append(
            f"On {', '.join(with_test)}, which {'has' if len(with_test) == 1 else 'have'} a labelled test split, each "
            "candidate's trial chose its epoch on all of validation, the report half included, so the report half "
            "helped choose there; the test columns report (nothing chose on test)."
        )
    if others:
        notes.append(
            f"On {', '.join(others)}, candidates' trials chose their epochs on the whole dev set (run them with the "
            "ensemble in the suite to choose on the selection half), so the report half helped choose."
        )
    return {
        "name": NAME,
        "split_seed": seed,
        "epochs_on_selection_half": not whole_dev,
        "epochs_on_all_of_dev": list(whole_dev),  # the tasks whose candidates chose their epochs on all of dev
        "description": " ".join(
            [
                f"Ensemble rows and the best-single row beside them are scored on the report half of each "
                f"dev set (split-half protocol, seed {seed}): members, pools and the best single checkpoint "
                f"are chosen on the disjoint selection half only, {epochs}.",
                *notes,
            ]
        ),
    }
