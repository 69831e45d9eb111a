"""Search methods at an equal budget in trial-epochs: the full grid against random search, Optuna (TPE) and ASHA,
each repeated with different sample seeds.

    python -m benchmark.measure.search --out results/search

Every search is configs/finetuning.yaml (or --suite) on one task with the search's keys set, run by `bench run`
(Ray Tune, DeepSpeed) into a run directory of its own (`<output>-search-<arm>`; a run resumes where it stopped).
The grid tries --points learning rates, log-spaced over the space's range; random and Optuna sample as many
configurations from that range; ASHA samples more at random and stops weak ones at its rungs (grace period 1,
reduction factor 3), as many as spend about the grid's trial-epochs. Each search chooses its configuration and
epoch on validation; the figure that counts is that choice's test score (data.glue_dev: test: GLUE's dev set,
where nothing chose), beside the trial-epochs it spent. The runs are merged into one leaderboard, so each
search's choice is tested against the grid's on test with Holm's correction.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.common.hardware import machine_description
from benchmark.common.quiet import quiet_libraries
from benchmark.config.suite import load_suite
from benchmark.measure import code_line, write_report
from benchmark.measure.records import board_from_records, table_markdown
from benchmark.measure.study import learning_lines, timed_run, walls_text
from benchmark.records.store import RunStore
from benchmark.results.leaderboard import trial_counts, trial_epochs
from benchmark.results.tables import p_text

LOW, HIGH = 1e-5, 5e-4  # the learning-rate range every search covers


def arms(points: int, repeats: int, epochs: int) -> dict[str, list[str]]:
    """Each search's --set overrides; the grid first (the baseline)."""
    grid = np.geomspace(LOW, HIGH, points)
    space = f"search.space={{learning_rate: {{loguniform: [{LOW:.1e}, {HIGH:.1e}]}}}}"  # YAML floats need the dot
    # ASHA with rungs at epoch 1 and `epochs`: n trials spend about n + (epochs - 1) n / 3 trial-epochs.
    asha_samples = round(points * epochs / (1 + (epochs - 1) / 3))
    out = {"grid": [f"search.grid.learning_rate=[{', '.join(f'{v:.2e}' for v in grid)}]"]}
    for rep in range(1, repeats + 1):
        sampled = [space, f"search.sample_seed={rep}"]
        out[f"random-{rep}"] = [*sampled, "search.algorithm=random", f"search.num_samples={points}"]
        out[f"optuna-{rep}"] = [*sampled, "search.algorithm=optuna", f"search.num_samples={points}"]
        out[f"asha-{rep}"] = [
            *sampled,
            "search.algorithm=random",
            f"search.num_samples={asha_samples}",
            "search.scheduler={type: asha, grace_period: 1, reduction_factor: 3}",
        ]
    return out


def spent(run: Path) -> tuple[int, int, int]:
    """Trial-epochs trained, trials, and trials that the scheduler stopped early."""
    records = RunStore(run).records()
    counts = trial_counts(records)
    return trial_epochs(records), counts["total"], counts["stopped"]


def summary(board: dict, runs: dict[str, Path], task: str) -> list[str]:
    """Per search method: the test score its choice reached and the trial-epochs spent, over its repetitions."""
    rows = {arm: next(r for r in board["rows"] if r["system"].endswith(f"-search-{arm})")) for arm in runs}
    lines = [
        "| search | repetitions | test score of the choice (mean ± std) | each repetition | validation score "
        "(mean) | trial-epochs (mean) | trials (mean) | stopped early (mean) | shown different from the grid on test |",
        "|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for method in ("grid", "random", "optuna", "asha"):
        mine = [arm for arm in runs if arm.split("-")[0] == method]
        tests = [rows[a]["test"]["task_scores"][task] for a in mine]
        costs = np.array([spent(runs[a]) for a in mine])
        sigs = [((rows[a]["test"].get("significance") or {}).get("task_scores") or {}).get(task) for a in mine]
        shown = [s for s in sigs if s and s.get("significant")]
        above = sum(s["delta"] > 0 for s in shown)
        adjusted = ", ".join(p_text(s["p_adjusted"]) for s in sigs if s and "p_adjusted" in s)
        verdict = "—" if method == "grid" else f"{above} above, {len(shown) - above} below, of {len(mine)}"
        if method != "grid" and adjusted:
            verdict += f" (adjusted {adjusted})"
        std = f" ± {np.std(tests, ddof=1):.1f}" if len(tests) > 1 else ""
        lines.append(
            f"| {method} | {len(mine)} | {np.mean(tests):.1f}{std} | {', '.join(f'{t:.1f}' for t in tests)} | "
            f"{np.mean([rows[a]['task_scores'][task] for a in mine]):.1f} | {costs[:, 0].mean():.1f} | "
            f"{costs[:, 1].mean():.1f} | {costs[:, 2].mean():.1f} | {verdict} |"
        )
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="configs/finetuning.yaml")
    p.add_argument("--task", default="stsb")
    p.add_argument("--train-samples", type=int, default=400)
    p.add_argument("--points", type=int, default=6, help="grid points, and samples of random and Optuna")
    p.add_argument("--repeats", type=int, default=3, help="repetitions of each sampling search (sample seeds 1..N)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of every search")
    p.add_argument("--out", default="results/search")
    args = p.parse_args(argv)
    quiet_libraries()
    common = [
        f"tasks=[{args.task}]",
        f"data.max_train_samples={args.train_samples}",
        "search.seeds=[1]",
        "search.save_state=false",  # no mid-trial resume state: the same for every search, and faster
        *args.set,
    ]
    base = load_suite(args.suite, common)
    runs, walls = {}, []
    for arm, overrides in arms(args.points, args.repeats, base.config.training.epochs).items():
        name = f"{base.config.name}-search-{arm}"
        suite = load_suite(args.suite, [*common, *overrides, f"name={name}"], output=f"{base.output}-search-{arm}")
        print(f"{arm}: {' '.join(overrides)} -> {suite.output}", flush=True)
        walls.append(timed_run(suite))
        runs[arm] = Path(suite.output)
    board, records, copies = board_from_records(args.out, "board", runs, baseline="-search-grid)")
    grid_row = next(r for r in board["rows"] if r["system"].endswith("-search-grid)"))
    cfg, machine = base.config, machine_description()
    command = "python -m benchmark.measure.search " + " ".join(sys.argv[1:] if argv is None else argv)
    precision = "/".join(sorted({str(r.get("precision")) for r in records}))
    lines = [
        "# Search methods at an equal budget in trial-epochs",
        "",
        f"Command: `{command}`",
        "",
        code_line(),
        "",
        f"Suite `{args.suite}` on {args.task} ({args.train_samples} training examples; validation and test capped "
        f"at {cfg.data.max_eval_samples}; data.glue_dev: {cfg.data.glue_dev}; {cfg.training.epochs} epochs; "
        f"training seed 1), learning rate in [{LOW:g}, {HIGH:g}]: the grid's {args.points} log-spaced points; "
        f"random and Optuna: {args.points} samples (log-uniform); ASHA: random samples, grace period 1, reduction "
        f"factor 3; sample seeds 1 to {args.repeats}. CPU {machine['cpu']}, {torch.get_num_threads()} threads, "
        f"precision that ran {precision}; nothing else running; {walls_text(walls)}, every search's run summed; "
        f"date {time.strftime('%Y-%m-%d')}.",
        "",
        "Which data chose what: each search chose its learning rate and epoch on validation (held out of GLUE's "
        "training set); the test score is GLUE's dev set, scored once for that choice.",
        "",
        *summary(board, copies, args.task),
        "",
        "Shown different: the paired bootstrap test of the choice's test predictions against the grid's choice, "
        "Holm-corrected over every search of the table (the leaderboard below). Trial-epochs: epochs trained, "
        "summed over the search's trials (ASHA's stopped trials count the epochs they ran).",
        "",
        "## What it shows",
        "",
        "Each search trained its configurations with one training seed, so the paired test of a repetition "
        "against the grid holds the two chosen checkpoints fixed: it says the two differ on these test examples, "
        "not that the search method is better, since training another seed moves a score too. Read the methods "
        "off the spread of their repetitions: a difference of the means smaller than that spread is not a finding. "
        "ASHA sampled more configurations for about the same trial-epochs (its rungs stop most of them after one "
        "epoch; asynchronous promotion spent somewhat more than the grid here, in the table). Two trials run at "
        "once, and Optuna's suggestions and ASHA's promotions follow the order in which trials finish: a re-run "
        "can sample and stop differently, so those rows move a little between runs, where the grid and random "
        "search re-run to the digit.",
        "",
        *learning_lines(board, copies["grid"], system=grid_row["system"]),
        "",
        "## The leaderboard of every search",
        "",
        table_markdown(board),
    ]
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
