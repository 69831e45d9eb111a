"""Leaderboards from trial records. Building rows and formatting them are pure; only `write_leaderboard` does I/O."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmark.atomic import atomic_write_text
from benchmark.plan import canonical

SHORT_METRIC = {"accuracy": "acc", "f1": "F1", "f1_macro": "macro-F1", "matthews_correlation": "MCC",
                "pearson": "Pearson", "spearmanr": "Spearman"}
CONVENTION = ("Dev-set scores, 0-100: mean ± sample std over seeds, for the grid point with the best mean dev "
              "score per task. A task's score is the mean of its metrics; the average is the unweighted mean of "
              "task scores (GLUE). Epochs and grid points are selected on the same dev sets that are reported.")


def build_leaderboard(suite_name: str, records: list[dict], task_order: list[str] = (), extra_rows: list[dict] = ()) -> dict:
    """`task_order`: the suite's order of tasks; tasks only the records know follow it. `extra_rows`: rows built
    elsewhere (ensembles), sorted in with the rest."""
    finished = [r for r in records if r.get("status") == "finished"]
    task_order = list(dict.fromkeys([*task_order, *(r["task"] for r in records)]))
    task_order = [t for t in task_order if any(r["task"] == t for r in records)]
    metric_keys = {r["task"]: r["metric_keys"] for r in records}
    metric_keys.update({r["task"]: r["metric_keys"] for r in finished})
    systems = defaultdict(list)
    for r in finished:
        systems[(r["model"], r.get("kind", "single"))].append(r)
    rows = [_row(model, kind, recs, task_order, metric_keys) for (model, kind), recs in systems.items()]
    rows += list(extra_rows)
    rows.sort(key=lambda row: -row["average"] if row["average"] is not None else np.inf)
    return {
        "suite": suite_name,
        "tasks": task_order,
        "metrics": metric_keys,
        "rows": rows,
        "trials": {"finished": len(finished), "failed": sum(r.get("status") == "failed" for r in records),
                   "total": len(records)},
        "compute": {"trial_hours": sum(r.get("wall_seconds", 0.0) for r in records) / 3600,
                    "train_samples": sum(r.get("train_samples", 0) for r in finished)},
        "convention": CONVENTION,
    }


def _row(model: str, kind: str, records: list[dict], task_order: list[str], metric_keys: dict) -> dict:
    scores, std, task_scores, task_std, config, per_seed = {}, {}, {}, {}, {}, {}
    for task in task_order:
        by_point = defaultdict(list)
        for r in records:
            if r["task"] == task:
                by_point[canonical(r["grid_point"])].append(r)
        if not by_point:
            continue
        # The grid point with the best mean dev score over its seeds (ties: the first in the plan's order).
        best = max(by_point.values(), key=lambda recs: np.mean([r["best_score"] for r in recs]))
        keys = metric_keys[task]
        values = {k: [100.0 * r["best_metrics"][k] for r in best] for k in keys}
        scores[task] = {k: float(np.mean(v)) for k, v in values.items()}
        std[task] = {k: _std(v) for k, v in values.items()}
        task_scores[task] = float(np.mean([r["best_score"] for r in best]))
        task_std[task] = _std([r["best_score"] for r in best])
        config[task] = best[0]["grid_point"]
        per_seed[task] = {r["seed"]: r["best_score"] for r in best}
    complete = len(task_scores) == len(task_order)
    average = float(np.mean(list(task_scores.values()))) if complete and task_scores else None
    seeds = sorted(set.intersection(*(set(s) for s in per_seed.values()))) if per_seed else []
    seed_averages = [np.mean([per_seed[t][s] for t in per_seed]) for s in seeds]
    return {
        "system": f"{model} ({kind})",
        "kind": kind,
        "model": model,
        "scores": scores,
        "task_scores": task_scores,
        "average": average,
        "std": {"scores": std, "task_scores": task_std, "average": _std(seed_averages) if complete else None},
        "seeds": len(seeds),
        "config": config,
        "trials": len(records),
    }


def _std(values) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _column_title(task: str, keys: list[str]) -> str:
    names = [k.replace("accuracy_", "").replace("mismatched", "mm").replace("matched", "m")
             if k.startswith("accuracy_") else SHORT_METRIC.get(k, k) for k in keys]
    return f"{task} ({'/'.join(names)})"


def _cell(row: dict, task: str, keys: list[str]) -> str:
    if task not in row["scores"]:
        return "—"
    text = "/".join(f"{row['scores'][task][k]:.1f}" for k in keys)
    s = row["std"]["task_scores"].get(task)
    return f"{text} ± {s:.1f}" if s is not None else text


def format_markdown(board: dict) -> str:
    tasks = board["tasks"]
    ensembles = any("inference_passes" in row for row in board["rows"])
    header = ["system"] + [_column_title(t, board["metrics"][t]) for t in tasks] + ["average", "seeds"]
    header += ["passes"] if ensembles else []
    lines = [f"# Leaderboard: {board['suite']}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for row in board["rows"]:
        avg = "—" if row["average"] is None else f"{row['average']:.1f}"
        if row["std"]["average"] is not None:
            avg += f" ± {row['std']['average']:.1f}"
        cells = [row["system"]] + [_cell(row, t, board["metrics"][t]) for t in tasks] + [avg, str(row["seeds"])]
        cells += [f"{row.get('inference_passes', 1):g}"] if ensembles else []
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", board["convention"], ""]
    protocols = list(dict.fromkeys(row["protocol"]["description"] for row in board["rows"] if "protocol" in row))
    if protocols:
        lines += protocols + ["Passes: forward passes per example at inference (1 for a single model or a weight soup).", ""]
    for row in board["rows"]:
        if "members" in row:
            members = "; ".join(f"{t}: {_members(ids, row['member_weights'][t])}" for t, ids in row["members"].items())
            lines.append(f"Members, {row['system']}: {members}")
        else:
            chosen = "; ".join(f"{t}: {_point(p)}" for t, p in row["config"].items())
            lines.append(f"Chosen grid points, {row['system']}: {chosen}")
    t, c = board["trials"], board["compute"]
    lines += ["", f"Trials: {t['finished']} finished, {t['failed']} failed, of {t['total']}. "
              f"Compute: {c['trial_hours']:.2f} trial-hours, {c['train_samples']:,} training samples."]
    return "\n".join(lines) + "\n"


def format_csv(board: dict) -> str:
    out = io.StringIO()
    columns = ["system", "kind", "model"]
    for t in board["tasks"]:
        for k in board["metrics"][t]:
            columns += [f"{t}/{k}", f"{t}/{k}_std"]
        columns += [f"{t}/score", f"{t}/score_std"]
    columns += ["average", "average_std", "seeds"]
    ensembles = any("inference_passes" in row for row in board["rows"])
    columns += ["inference_passes"] if ensembles else []
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in board["rows"]:
        values = [row["system"], row["kind"], row["model"]]
        for t in board["tasks"]:
            for k in board["metrics"][t]:
                values += [_num(row["scores"].get(t, {}).get(k)), _num(row["std"]["scores"].get(t, {}).get(k))]
            values += [_num(row["task_scores"].get(t)), _num(row["std"]["task_scores"].get(t))]
        values += [_num(row["average"]), _num(row["std"]["average"]), row["seeds"]]
        values += [f"{row.get('inference_passes', 1):g}"] if ensembles else []
        writer.writerow(values)
    return out.getvalue()


def format_json(board: dict) -> str:
    return json.dumps(board, indent=2) + "\n"


FORMATTERS = {"md": format_markdown, "csv": format_csv, "json": format_json}


def write_leaderboard(board: dict, folder: Path) -> None:
    for ext in ("md", "csv", "json"):
        atomic_write_text(Path(folder) / f"leaderboard.{ext}", FORMATTERS[ext](board))


def rich_table(board: dict):
    from rich.table import Table

    table = Table(title=f"Leaderboard: {board['suite']}", caption="dev scores, mean ± std over seeds")
    table.add_column("system")
    for t in board["tasks"]:
        table.add_column(_column_title(t, board["metrics"][t]), justify="right")
    table.add_column("average", justify="right", style="bold")
    for row in board["rows"]:
        avg = "—" if row["average"] is None else f"{row['average']:.1f}"
        table.add_row(row["system"], *[_cell(row, t, board["metrics"][t]) for t in board["tasks"]], avg)
    return table


def _point(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"


def _members(trial_ids: list[str], weights: list[float]) -> str:
    """Members with their weights, when they differ (greedy selection)."""
    if len(set(weights)) <= 1:
        return ", ".join(trial_ids)
    return ", ".join(f"{i} ({w:.2f})" for i, w in zip(trial_ids, weights))


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"
