"""Combining a run's checkpoints: probability mean, vote, greedy selection and weight soups, scored honestly.

candidates.py  the kept checkpoints of each task, with their saved dev logits
protocol.py    the split of each dev set into a selection half and a report half, and scoring on either
combine.py     prediction ensembles from saved logits: mean_prob, vote, greedy (Caruana et al. 2004)
soups.py       weight soups (Wortsman et al. 2022): checks, averaging, running a soup on dev
build.py       every method for every pool size, written to <run>/ensembles/
rows.py        leaderboard rows and the state file that `bench table` reads
config.py      the suite's `ensemble:` section
"""
