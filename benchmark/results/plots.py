"""The report's figures, drawn with matplotlib and returned as PNG bytes. Each takes the leaderboard and the trial
records and returns a `Figure`, or None when the run has nothing to show for it (one grid point, no ensemble).

Readability rules kept throughout: one panel per task with the task in its title, axes labelled with units,
one colour per grid point (or per task where tasks share a panel) together with a marker shape, so that
nothing depends on colour alone.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from benchmark.common.hashing import canonical
from benchmark.results.leaderboard import devices_held
from benchmark.results.tables import column_title

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<"]
LINESTYLES = ["-", "--", ":", "-."]
SCORE_LABEL = "dev score (0-100)"


@dataclass
class Figure:
    anchor: str
    title: str
    caption: str
    png: bytes


class TrialStyle:
    """How a trial looks in every per-trial plot: colour and marker by grid point, or, when the run has several
    models, colour by model and marker by grid point; line style by seed."""

    def __init__(self, trials: list[dict]):
        self.points = list(dict.fromkeys(canonical(r["grid_point"]) for r in trials))
        self.models = list(dict.fromkeys(r["model"] for r in trials))
        self.seeds = sorted({r["seed"] for r in trials})

    def color(self, r: dict) -> str:
        i = self.models.index(r["model"]) if len(self.models) > 1 else self.points.index(canonical(r["grid_point"]))
        return COLORS[i % len(COLORS)]

    def marker(self, r: dict) -> str:
        return MARKERS[self.points.index(canonical(r["grid_point"])) % len(MARKERS)]

    def linestyle(self, r: dict) -> str:
        return LINESTYLES[self.seeds.index(r["seed"]) % len(LINESTYLES)]

    def handles(self, plt, seeds: bool) -> list:
        several = len(self.models) > 1
        out = (
            [plt.Line2D([], [], color=COLORS[i % len(COLORS)], linewidth=3, label=m) for i, m in enumerate(self.models)]
            if several
            else []
        )
        out += [
            plt.Line2D(
                [],
                [],
                color="#555" if several else COLORS[i % len(COLORS)],
                marker=MARKERS[i % len(MARKERS)],
                linestyle="",
                label=_point_label(p),
            )
            for i, p in enumerate(self.points)
        ]
        if seeds:
            out += [
                plt.Line2D([], [], color="#555", linestyle=LINESTYLES[i % len(LINESTYLES)], label=f"seed {s}")
                for i, s in enumerate(self.seeds)
            ]
        return out

    def legend_words(self) -> str:
        return "colour: model; marker: grid point" if len(self.models) > 1 else "colour and marker: grid point"


def epoch_curves(board: dict, records: list[dict]) -> Figure | None:
    """Dev score after every epoch of every trial; the kept (best) epoch ringed."""
    trials = [r for r in records if r.get("epochs")]
    if not trials:
        return None
    plt = _pyplot()
    tasks = [t for t in board["tasks"] if any(r["task"] == t for r in trials)]
    fig, axes = _panels(plt, len(tasks))
    style = TrialStyle(trials)
    for ax, task in zip(axes, tasks):
        for r in (r for r in trials if r["task"] == task):
            xs = [e["epoch"] for e in r["epochs"]]
            ys = [e["score"] for e in r["epochs"]]
            ax.plot(
                xs,
                ys,
                linestyle=style.linestyle(r),
                color=style.color(r),
                marker=style.marker(r),
                markersize=4,
                linewidth=1.4,
                alpha=0.9,
            )
            if r.get("best_epoch"):
                ax.plot(
                    [r["best_epoch"]],
                    [r["best_score"]],
                    marker="o",
                    markersize=11,
                    markerfacecolor="none",
                    markeredgecolor=style.color(r),
                    markeredgewidth=1.5,
                )
        ax.set_title(column_title(task, board["metrics"][task]))
        ax.set_xlabel("epoch")
        ax.set_ylabel(SCORE_LABEL)
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles = style.handles(plt, seeds=True)
    handles.append(
        plt.Line2D(
            [],
            [],
            color="#444",
            marker="o",
            markersize=10,
            markerfacecolor="none",
            linestyle="",
            label="kept epoch (checkpoint)",
        )
    )
    _legend_below(fig, handles)
    return Figure(
        "epochs",
        "Dev score per epoch",
        "Every trial's dev score after each epoch, one panel per task. "
        f"{style.legend_words().capitalize()}; line style: seed; ring: the epoch whose checkpoint was kept.",
        _png(plt, fig),
    )


def score_vs_compute(board: dict, records: list[dict]) -> Figure | None:
    """Best dev score against the compute a trial used, with the Pareto front (nothing cheaper scores higher)."""
    trials = [
        r
        for r in records
        if r.get("status") == "finished"
        and r.get("resources")
        and r.get("best_score") is not None
        and r.get("kind") != "merged"
    ]  # a merge's records are no trials: its row counts its sources
    if not trials:
        return None
    plt = _pyplot()
    device = "GPU" if any(r["resources"]["gpus_per_worker"] > 0 for r in trials) else "CPU"
    hours = {r["trial_id"]: r["wall_seconds"] * devices_held(r["resources"]) / 3600 for r in trials}
    minutes = max(hours.values()) < 1
    scale, unit = (60, f"{device}-minutes per trial") if minutes else (1, f"{device}-hours per trial")
    systems = [r for r in board["rows"] if r["average"] is not None and (r.get("compute") or {}).get("device_hours")]
    tasks = [t for t in board["tasks"] if any(r["task"] == t for r in trials)]
    panels = (["systems"] if len(systems) > 1 else []) + tasks
    fig, axes = _panels(plt, len(panels))
    style = TrialStyle(trials)
    for ax, panel in zip(axes, panels):
        if panel == "systems":
            xs = [r["compute"]["device_hours"] for r in systems]
            ys = [r["average"] for r in systems]
            for i, (x, y, r) in enumerate(zip(xs, ys, systems)):
                ax.plot(x, y, marker=MARKERS[i % len(MARKERS)], color=COLORS[i % len(COLORS)], linestyle="")
                ax.annotate(r["system"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            _pareto(ax, xs, ys)
            ax.set_title("systems: average over tasks")
            ax.set_xlabel(f"{device}-hours behind the row (all trials)")
            ax.set_ylabel("average dev score (0-100)")
            ax.grid(alpha=0.3)
            continue
        mine = [r for r in trials if r["task"] == panel]
        xs = [hours[r["trial_id"]] * scale for r in mine]
        ys = [r["best_score"] for r in mine]
        for r, x, y in zip(mine, xs, ys):
            ax.plot(x, y, marker=style.marker(r), color=style.color(r), linestyle="", markersize=6, alpha=0.85)
        _pareto(ax, xs, ys)
        ax.set_title(column_title(panel, board["metrics"][panel]))
        ax.set_xlabel(unit)
        ax.set_ylabel(SCORE_LABEL)
        ax.grid(alpha=0.3)
    handles = style.handles(plt, seeds=False)
    handles.append(plt.Line2D([], [], color="black", linewidth=1.2, drawstyle="steps-post", label="Pareto front"))
    _legend_below(fig, handles)
    return Figure(
        "compute",
        "Score against compute",
        f"Each point is a trial: its best dev score against the "
        f"{device} time it held (wall time x {device}s). The line is the Pareto front: no trial to its "
        "left scores higher."
        + (
            " The first panel compares whole systems: their average score against "
            "the compute of every trial behind them."
            if len(systems) > 1
            else ""
        ),
        _png(plt, fig),
    )


def search_space(board: dict, records: list[dict]) -> Figure | None:
    """Best dev score against each hyperparameter the grid varies; one colour and marker per task."""
    trials = [
        r
        for r in records
        if r.get("status") == "finished" and r.get("best_score") is not None and r.get("kind") != "merged"
    ]
    keys = [
        k
        for k in dict.fromkeys(k for r in trials for k in r["grid_point"])
        if len({canonical(r["grid_point"].get(k)) for r in trials}) > 1
    ]
    if not keys:
        return None
    plt = _pyplot()
    tasks = [t for t in board["tasks"] if any(r["task"] == t for r in trials)]
    fig, axes = _panels(plt, len(keys), width=5.5)
    for ax, key in zip(axes, keys):
        values = sorted({r["grid_point"][key] for r in trials if key in r["grid_point"]}, key=_sort_key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        log = numeric and min(values) > 0 and max(values) / min(values) >= 10
        position = {v: (v if numeric else i) for i, v in enumerate(values)}
        for t_i, task in enumerate(tasks):
            mine = [r for r in trials if r["task"] == task and key in r["grid_point"]]
            color, marker = COLORS[t_i % len(COLORS)], MARKERS[t_i % len(MARKERS)]
            ax.plot(
                [position[r["grid_point"][key]] for r in mine],
                [r["best_score"] for r in mine],
                linestyle="",
                marker=marker,
                color=color,
                alpha=0.35,
                markersize=5,
            )
            means = defaultdict(list)
            for r in mine:
                means[r["grid_point"][key]].append(r["best_score"])
            xs = [v for v in values if v in means]
            ax.plot(
                [position[v] for v in xs],
                [np.mean(means[v]) for v in xs],
                marker=marker,
                color=color,
                linewidth=1.8,
                label=task,
            )
        if log:
            ax.set_xscale("log")
        if numeric:
            ax.set_xticks(values)
            ax.set_xticklabels([f"{v:g}" for v in values])
            ax.minorticks_off()
        else:
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels([str(v) for v in values])
        ax.set_xlabel(key + (" (log scale)" if log else ""))
        ax.set_ylabel(SCORE_LABEL)
        ax.set_title(f"{key}")
        ax.grid(alpha=0.3)
    handles = [
        plt.Line2D([], [], color=COLORS[i % len(COLORS)], marker=MARKERS[i % len(MARKERS)], label=t)
        for i, t in enumerate(tasks)
    ]
    _legend_below(fig, handles)
    return Figure(
        "search",
        "Search space against score",
        "Best dev score of every trial (faint) against each "
        "hyperparameter the grid varies, and the mean over seeds and the other hyperparameters (line), "
        "one colour and marker per task.",
        _png(plt, fig),
    )


def ensemble_gains(board: dict, records: list[dict]) -> Figure | None:
    """Each ensemble's task scores against the baseline row, with its members' own scores and the gain."""
    ensembles = [r for r in board["rows"] if r["kind"] == "ensemble"]
    if not ensembles:
        return None
    base_name = _ensembles_baseline(ensembles)
    base = next((r for r in board["rows"] if r["system"] == base_name), None) or next(
        (r for r in board["rows"] if r["kind"] != "ensemble"), None
    )
    plt = _pyplot()
    tasks = board["tasks"]
    bars = ([base] if base else []) + ensembles
    by_trial = {r["trial_id"]: r for r in records}
    # One panel per task, a horizontal bar per system: readable however many ensembles a run builds.
    prefix = os.path.commonprefix([r["system"] for r in bars]) if len(bars) > 1 else ""
    names = [r["system"][len(prefix) :] or r["system"] for r in bars]
    fig, axes = _panels(plt, len(tasks), width=6.4, height=0.32 * len(bars) + 1.4)
    for ax, task in zip(axes, tasks):
        ys = np.arange(len(bars))[::-1]
        for y, row, b_i in zip(ys, bars, range(len(bars))):
            score = row["task_scores"].get(task, np.nan)
            ax.barh(
                y,
                score,
                0.75,
                color="#9e9e9e" if row is base else COLORS[b_i % len(COLORS)],
                hatch=None if row is base else "//",
                edgecolor="white",
            )
            members = [by_trial[m]["best_score"] for m in (row.get("members") or {}).get(task, []) if m in by_trial]
            ax.plot(
                members, [y] * len(members), linestyle="", marker="|", color="black", markersize=11, markeredgewidth=2
            )
            if row is not base and base and task in base["task_scores"] and not math.isnan(score):
                ax.annotate(
                    f"{score - base['task_scores'][task]:+.1f}",
                    (score, y),
                    textcoords="offset points",
                    xytext=(4, -3),
                    fontsize=8,
                )
        ax.set_yticks(np.arange(len(bars))[::-1])
        ax.set_yticklabels(names, fontsize=8)
        ax.set_title(column_title(task, board["metrics"][task]))
        ax.set_xlabel(SCORE_LABEL)
        ax.grid(axis="x", alpha=0.3)
    handles = [
        plt.Line2D(
            [],
            [],
            color="black",
            marker="|",
            markersize=11,
            markeredgewidth=2,
            linestyle="",
            label="a member's own dev score",
        ),
        plt.Rectangle((0, 0), 1, 1, facecolor="#9e9e9e", label=f"baseline: {base['system'] if base else 'none'}"),
    ]
    _legend_below(fig, handles)
    return Figure(
        "ensembles",
        "Ensembles: members and gains",
        "Task scores of each ensemble (hatched) next to "
        f"the baseline (grey), {base['system'] if base else 'none'}; the number beside a bar is the ensemble's gain "
        "over it, the ticks its members' own dev scores. Ensembles are scored on the report half of dev.",
        _png(plt, fig),
    )


def _ensembles_baseline(ensembles: list[dict]) -> str | None:
    """The row the ensembles were tested against most often (the best single checkpoint on their half of dev)."""
    names = []
    for row in ensembles:
        sig = row.get("significance") or {"task_scores": {}, "average": None}
        names += [t["baseline"] for t in [*sig["task_scores"].values(), sig["average"]] if t]
    return max(names, key=names.count) if names else None


def best_calibrated_rows(board: dict, most: int = 4) -> list[dict]:
    """The best row of each kind (by average, else by its first task score) that has a calibration, best first."""
    best: dict[str, dict] = {}
    for row in board["rows"]:  # sorted best first already
        if row.get("calibration") and row["kind"] not in best:
            best[row["kind"]] = row
    return list(best.values())[:most]


def reliability_diagram(board: dict, records: list[dict]) -> Figure | None:
    """Accuracy against confidence in 15 equal-width bins, for the best rows, one panel per classification task."""
    rows = best_calibrated_rows(board)
    tasks = [t for t in board["tasks"] if any(t in r["calibration"] for r in rows)]
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = _panels(plt, len(tasks), width=4.6, height=4.2)
    for ax, task in zip(axes, tasks):
        ax.plot([0, 1], [0, 1], linestyle="--", color="#9e9e9e", linewidth=1)
        for i, row in enumerate(r for r in rows if task in r["calibration"]):
            c = row["calibration"][task]
            bins = c["reliability"]
            filled = [j for j, n in enumerate(bins["counts"]) if n]
            ax.plot(
                [bins["confidence"][j] for j in filled],
                [bins["accuracy"][j] for j in filled],
                color=COLORS[i % len(COLORS)],
                marker=MARKERS[i % len(MARKERS)],
                label=f"{row['system']}: ECE {100 * c['ece']:.1f}, T={c['temperature']:.2f}",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(task)
        ax.set_xlabel("confidence (top class probability)")
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return Figure(
        "reliability",
        "Calibration: reliability diagrams",
        "Accuracy against mean confidence in each of 15 equal-width confidence bins (empty bins left out; "
        "seeds pooled), for the best row of each kind; the dashed diagonal is perfect calibration. Measured "
        "on test where the row was scored there, else on the report half of dev; T, fitted on validation "
        "only, is the temperature that scaling would apply.",
        _png(plt, fig),
    )


FIGURES = [epoch_curves, score_vs_compute, search_space, ensemble_gains, reliability_diagram]


def _pyplot():
    # Imported here for start-up speed (matplotlib).
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    # Imported here for start-up speed (matplotlib).
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def _panels(plt, n: int, width: float = 5.2, height: float = 3.6):
    cols = min(n, 2) if n <= 4 else 3
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_below(fig, handles) -> None:
    fig.tight_layout(rect=(0, 0.1 if len(handles) > 4 else 0.07, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False, fontsize=9)


def _pareto(ax, xs, ys) -> None:
    """Draw the staircase of points that no cheaper point beats."""
    front, best = [], -math.inf
    for x, y in sorted(zip(xs, ys), key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    if front:
        fx, fy = zip(*front)
        ax.plot(fx, fy, drawstyle="steps-post", color="black", linewidth=1.2, zorder=1)


def _point_label(point_key: str) -> str:
    point = json.loads(point_key)
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()) or "defaults"


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
