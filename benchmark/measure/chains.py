"""Intermediate-task transfer against direct fine-tuning of the target, on the same seeds.

    python -m benchmark.measure.chains --out results/chains

Runs configs/chains.yaml through `bench run` (Ray Tune + Ray Train + DeepSpeed): the embedded model on mrpc and
rte, then rte again from mrpc's best checkpoint (`mrpc -> rte`). Writes the leaderboard (the chained row beside the
direct one, mean ± std over seeds, bootstrap intervals, a paired test against the direct row), each seed's rte
score both ways, and the compute each way spent (a chain also pays for its source's trials).
"""

from __future__ import annotations

import platform
import sys
import time

import numpy as np
import torch

from benchmark.measure import write_report
from benchmark.measure.study import run_study
from benchmark.results.board import leaderboard_from_runs
from benchmark.results.tables import format_markdown


def per_seed_scores(records: list[dict], task: str, chain: str | None) -> dict[int, float]:
    """Each seed's best validation score on `task`, directly (chain None) or through `chain`."""
    return {
        r["seed"]: r["best_score"]
        for r in records
        if r["task"] == task and r.get("chain") == chain and r.get("best_score") is not None
    }


def main(argv=None) -> int:
    study = run_study("benchmark.measure.chains", __doc__, "configs/chains.yaml", "results/chains", argv)
    args, suite, wall, command = study.args, study.suite, study.wall_seconds, study.command
    board, records = leaderboard_from_runs([suite.output], baseline="(single)")
    lines = [
        "# Intermediate-task transfer against direct fine-tuning",
        "",
        f"Command: `{command}`",
        "",
        f"Suite `{args.suite}` ({', '.join(t.name for t in suite.tasks)}; chains "
        f"{', '.join(c.label for c in suite.chains)}; {suite.config.data.max_train_samples} training and at most "
        f"{suite.config.data.max_eval_samples} dev examples per task; seeds {suite.config.search.seeds}); "
        f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; wall time {wall / 60:.1f} min; date {time.strftime('%Y-%m-%d')}.",
        "",
        format_markdown(board, compute=True),
        "## Per seed",
        "",
        "| target | seed | direct | chained | chained - direct |",
        "|---|---:|---:|---:|---:|",
    ]
    for chain in suite.chains:
        direct, chained = (
            per_seed_scores(records, chain.target, None),
            per_seed_scores(records, chain.target, chain.label),
        )
        deltas = []
        for seed in sorted(set(direct) & set(chained)):
            deltas.append(chained[seed] - direct[seed])
            lines.append(f"| {chain.label} | {seed} | {direct[seed]:.2f} | {chained[seed]:.2f} | {deltas[-1]:+.2f} |")
        if deltas:
            lines.append(
                f"| {chain.label} | mean | {np.mean(list(direct.values())):.2f} | "
                f"{np.mean(list(chained.values())):.2f} | {np.mean(deltas):+.2f} |"
            )
    hours = {}
    for r in records:
        kind = r.get("chain") or r["task"]
        hours[kind] = hours.get(kind, 0.0) + r.get("wall_seconds", 0.0) / 3600
    lines += [
        "",
        "## Compute (trial-hours)",
        "",
        "| trials | trial-hours |",
        "|---|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in hours.items()),
    ]
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
