"""The selection protocol: no method selects on the data its score is reported on. The halves themselves are made
by tasks.splits.split_dev, which the trainer also uses to choose epochs on the selection half.

Each dev set is split once, by a seeded permutation, into a selection half and a disjoint report half.
Everything that chooses (ranking candidates for the top-k pool, greedy selection, greedy soups, and the
best single checkpoint) looks only at the selection half; every reported score is computed on the report
half alone. The same halves serve every method, and the best single checkpoint, so rows compare fairly.
"""

from __future__ import annotations

NAME = "split-half"


def describe(seed: int, epochs_on_selection_half: bool = True) -> dict:
    """What the leaderboard says about the protocol, beside the rows it applies to."""
    epochs = (
        "each candidate's epoch too"
        if epochs_on_selection_half
        else "but not the candidates' epochs: their trials chose them on the whole dev set (run them with the "
        "ensemble in the suite to choose on the selection half), so the report half helped choose"
    )
    return {
        "name": NAME,
        "split_seed": seed,
        "epochs_on_selection_half": epochs_on_selection_half,
        "description": (
            f"Ensemble rows and the best-single row beside them are scored on the report half of each "
            f"dev set (split-half protocol, seed {seed}): members, pools and the best single checkpoint "
            f"are chosen on the disjoint selection half only, {epochs}."
        ),
    }
