"""Leaderboard text: markdown, csv, LaTeX (booktabs), html and json. Each formatter is pure: a board in, text out.

Every text format shows the same parts: the main table (mean ± std over seeds, the best value per column in
bold among rows scored on the same dev examples, ↑/↓ where a row differs significantly from its baseline after
the correction for multiple comparisons, optional compute columns), the conventions under it, the 95%
bootstrap intervals, each row's difference from its baseline (named in the table) with its interval, p-value
and adjusted p-value, and each comparison's verdict (significantly better or worse, equivalent within the margin,
inconclusive, or no difference shown). Only `write_leaderboard` does I/O.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmark.common.atomic import atomic_write_text
from benchmark.results.bootstrap import RESOLVE
from benchmark.results.leaderboard import test_side

SHORT_METRIC = {
    "accuracy": "acc",
    "f1": "F1",
    "f1_macro": "macro-F1",
    "matthews_correlation": "MCC",
    "pearson": "Pearson",
    "spearmanr": "Spearman",
}
MISSING = "—"
BELOW_FLOOR = "‡"
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg (false discovery rate)"}
CALIBRATION_KEYS = ("ece", "ece_scaled", "nll", "brier", "temperature")
COMPUTE_NOTE = (
    "{device}-hours: every trial behind the row (all grid points and seeds) times the {device}s it held. trained: the "
    "training samples of those trials (a joint multi-task trial's share per task; two-stage rows with their "
    "stage-one share; ensemble rows: every candidate they chose among). samples/s: training throughput of one "
    "trial at the chosen grid points. precision: what those trials ran in (`auto` resolved on their device). "
    "params: parameters of one model. trainable: the most it trained at once. peak MB: the largest peak memory of "
    "one of those trials (CPU: its process's resident memory; GPU: torch's allocations). passes: forward passes per "
    "example at inference."
)

CALIBRATION_NOTE = (
    "Calibration (classification tasks): ECE, expected calibration error in % (15 equal-width "
    "confidence bins); ECE-T, the ECE after temperature scaling with T; NLL in nats per example; "
    "Brier, the squared error of the class probabilities summed over classes; each the mean over "
    "seeds. Measured on test where the row was scored there, else on the report half of dev; T is "
    "fitted on validation only (the selection half of dev when dev reports, and always for "
    "ensemble and merged rows)."
)


# ---- the parts every format shares, as plain text ----


def column_title(task: str, keys: list[str]) -> str:
    names = [
        k.replace("accuracy_", "").replace("mismatched", "mm").replace("matched", "m")
        if k.startswith("accuracy_")
        else SHORT_METRIC.get(k, k)
        for k in keys
    ]
    return f"{task} ({'/'.join(names)})"


def score_text(row: dict, task: str, keys: list[str]) -> str | None:
    if task not in row["scores"]:
        return None
    return "/".join(f"{row['scores'][task][k]:.1f}" for k in keys)


def average_text(row: dict) -> str | None:
    return None if row["average"] is None else f"{row['average']:.1f}"


def std_text(row: dict, task: str | None) -> str:
    """` ± 1.1` for a task (None: the average), or nothing with one seed."""
    s = row["std"]["average"] if task is None else row["std"]["task_scores"].get(task)
    return "" if s is None else f" ± {s:.1f}"


def test_tasks(board: dict) -> list[str]:
    """Tasks with a final test score in some row: their test column stands beside their validation column."""
    return board.get("test_tasks") or []


def has_test_average(board: dict) -> bool:
    return bool(test_tasks(board)) and test_tasks(board) == board["tasks"]


def column_titles(board: dict, task: str) -> list[str]:
    keys = board["metrics"][task]
    return [column_title(task, keys)] + ([column_title(f"{task} test", keys)] if task in test_tasks(board) else [])


def average_titles(board: dict) -> list[str]:
    return ["average", "average test"] if has_test_average(board) else ["average"]


def _test(row: dict, task: str | None) -> dict | None:
    """The row's test against the baseline on `task` (None: the average), if it has one."""
    sig = row.get("significance")
    return (sig["average"] if task is None else sig["task_scores"].get(task)) if sig else None


def marker(row: dict, task: str | None) -> str:
    """↑ or ↓ when the row differs significantly from the baseline on `task` (None: the average); ‡ after it when the
    row scores below one of its model's floors there (benchmark/results/leaderboard.py, mark_below_floors)."""
    test = _test(row, task)
    arrow = "" if not test or not test.get("significant") else ("↑" if test["delta"] > 0 else "↓")
    return arrow + (BELOW_FLOOR if task is not None and (row.get("below_floor") or {}).get(task) else "")


def example_group(row: dict, task: str | None, tasks: list[str]):
    """What `row` was scored on for `task` (None: every task, for the average), as the statistics fingerprint
    it (`ci["example_set"]`); None without a fingerprint there (no statistics, or no prediction files)."""
    sets = (row.get("ci") or {}).get("example_set", {})
    if task is not None:
        return sets.get(task) if task in row["task_scores"] else None
    if row["average"] is None or not all(t in sets for t in tasks):
        return None
    return tuple(sets[t] for t in tasks)


def _value(row: dict, task: str | None) -> float | None:
    return row["average"] if task is None else row["task_scores"].get(task)


def _groups(board: dict, task: str | None) -> dict:
    """The rows with a value in the column of `task` (None: the average), by the dev examples they were scored on."""
    groups = defaultdict(list)
    for row in board["rows"]:
        if _value(row, task) is not None:
            groups[example_group(row, task, board["tasks"])].append(row)
    return groups


def best_values(board: dict) -> set[tuple[str, str | None]]:
    """(system, task or None for the average) of the cells set in bold: the highest value of its column among
    the rows scored on the same dev examples, where at least two such rows have one."""
    bold = set()
    for task in [*board["tasks"], None]:
        for rows in _groups(board, task).values():
            best = max(_value(r, task) for r in rows)
            bold |= {(r["system"], task) for r in rows if len(rows) > 1 and _value(r, task) == best}
    return bold


def is_best(bold: set, row: dict, task: str | None) -> bool:
    return (row["system"], task) in bold


def _mixed_examples(board: dict) -> bool:
    """Whether some column has rows scored on different dev examples (bold is then per group)."""
    return any(len(_groups(board, t)) > 1 for t in [*board["tasks"], None])


def ci_text(board: dict, row: dict, task: str | None) -> str:
    """`60.2 [53.1, 67.0]`, with `(n=100)` when scored on fewer dev examples than other rows."""
    ci = row.get("ci") or {}
    bounds = ci.get("average") if task is None else ci.get("task_scores", {}).get(task)
    if not bounds:
        return MISSING
    value = row["average"] if task is None else row["task_scores"][task]
    text = f"{value:.1f} [{bounds[0]:.1f}, {bounds[1]:.1f}]" + (" (t)" if _interval_method(ci, task) == "t" else "")
    if task is not None and ci["examples"][task] < _most_examples(board, task):
        text += f" (n={ci['examples'][task]})"
    return text


def _interval_method(ci: dict, task: str | None) -> str:
    """`t` where the row's interval is widened to its t-interval over seeds, else `bootstrap`."""
    method = ci.get("method") or {"task_scores": {}, "average": None}
    return (method["average"] if task is None else method["task_scores"].get(task)) or "bootstrap"


def difference_text(board: dict, row: dict, task: str | None) -> str:
    """`+1.2 [-0.5, 2.9], p=0.012 (adj. p=0.048)↑` against the row's baseline; `baseline` where it is one."""
    test = _test(row, task)
    if not test:
        return "baseline" if _is_baseline(board, row, task) else MISSING
    if test.get("comparable") is False:
        return f"{MISSING} ({test['reason']})"
    stats = board["statistics"]
    welch = " (t)" if test.get("method") == "welch-t" else ""
    text = f"{test['delta']:+.1f} [{test['ci'][0]:.1f}, {test['ci'][1]:.1f}]{welch}, {p_text(test['p'])}"
    if stats["correction"] != "none":
        text += f" (adj. {p_text(test['p_adjusted'])})"
    text += marker(row, task)
    if task is not None and test["examples"] < _most_examples(board, task):
        text += f" (n={test['examples']})"
    return text


def p_text(p: float) -> str:
    """`p=0.012`; `p<0.001` when smaller (a bootstrap p is never 0: at least 2 / (resamples + 1))."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def verdict_text(test: dict | None, margin: float | None) -> str:
    """What the comparison shows, in words: `significantly better`, `equivalent within ±1`, `inconclusive (would
    need about 12 seeds per row)`, `no difference shown` (no margin)..."""
    if not test or test.get("comparable") is False:
        return MISSING
    verdict = test["verdict"]
    if verdict in ("better", "worse"):
        return f"significantly {verdict}"
    if verdict == "equivalent":
        return f"equivalent within ±{margin:g}"
    if verdict != "inconclusive":
        return verdict
    if abs(test["delta"]) >= margin:
        return f"inconclusive (cannot be shown at this margin: the difference is ±{margin:g} or more)"
    if test["seeds_needed"] is None:
        return "inconclusive (one seed: no seed spread to size a study from)"
    if test["seeds_needed"] <= test["seeds"]:
        return "inconclusive (more seeds alone would not settle it: the dev set's spread)"
    return f"inconclusive (would need about {test['seeds_needed']} seeds per row)"


def verdicts_summary(board: dict) -> str:
    """`Verdicts: 2 significantly better, 1 equivalent within ±1.` over the table's comparisons."""
    margin = board["statistics"].get("equivalence_margin")
    counts = defaultdict(int)
    for row in compared_rows(board):
        for task in [*board["tasks"], None]:
            test = _test(row, task)
            if test and test.get("comparable") is not False:
                counts[verdict_text(test, margin).split(" (")[0]] += 1
    return "Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."


def _is_baseline(board: dict, row: dict, task: str | None) -> bool:
    """Whether some other row is tested against `row` on `task` (None: the average)."""
    return any((_test(r, task) or {}).get("baseline") == row["system"] for r in board["rows"] if r is not row)


def baseline_text(board: dict, row: dict) -> str:
    """The row's baseline, or its baselines with the columns each was used for."""
    columns = defaultdict(list)
    for task in [*board["tasks"], None]:
        test = _test(row, task)
        if test:
            columns[test["baseline"]].append(task or "average")
    if len(columns) == 1:
        return next(iter(columns))
    return "; ".join(f"{', '.join(cols)}: {name}" for name, cols in columns.items())


def differences_note(board: dict) -> str:
    """What a differences cell holds."""
    stats = board["statistics"]
    none = stats["correction"] == "none"
    adjusted = "" if none else f"; adj. p: {correction_text(stats)}"
    return (
        f"Each cell: the row minus its baseline, the uncorrected {100 * stats['confidence']:.0f}% paired bootstrap "
        f"interval of the difference and its two-sided p{adjusted}; ↑/↓ where the {'' if none else 'adjusted '}p < "
        f"{stats['alpha']:g}."
    )


def differences_title(board: dict) -> str:
    """`Differences from the baseline, NAME` when one row is every row's baseline; else each row's."""
    used = board["statistics"]["baseline"]
    return f"Differences from the baseline, {used[0]}" if len(used) == 1 else "Differences from each row's baseline"


def _most_examples(board: dict, task: str) -> int:
    return max(((r.get("ci") or {}).get("examples", {}).get(task, 0) for r in board["rows"]), default=0)


def _has_subsets(board: dict) -> bool:
    """Whether some interval or test is on fewer dev examples than the most any row has (cells marked n=...)."""
    for task in board["tasks"]:
        most = _most_examples(board, task)
        for r in board["rows"]:
            test = _test(r, task) or {}
            if (r.get("ci") or {}).get("examples", {}).get(task, most) < most or test.get("examples", most) < most:
                return True
    return False


def has_ensembles(board: dict) -> bool:
    return any("members" in r for r in board["rows"])


def calibration_tasks(board: dict) -> list[str]:
    """The tasks with a calibration in some row (classification tasks with predictions), in the board's order."""
    return [t for t in board["tasks"] if any(t in (r.get("calibration") or {}) for r in board["rows"])]


def calibration_cell(row: dict, task: str) -> str:
    """`ECE/ECE at T/NLL/Brier`, ECE in percent, as the calibration columns show them."""
    c = (row.get("calibration") or {}).get(task)
    if not c:
        return MISSING
    return (
        f"{100 * c['ece']:.1f}/{100 * c['ece_scaled']:.1f}/{c['nll']:.3f}/{c['brier']:.3f} (T={c['temperature']:.2f})"
    )


def extra_header(board: dict, compute: bool, calibration: bool = False) -> list[str]:
    """Compute columns when asked for; otherwise, when ensembles are in, what each row costs at inference. Then
    the calibration columns when asked for."""
    calibration_titles = [f"{t} (ECE/ECE-T/NLL/Brier)" for t in calibration_tasks(board)] if calibration else []
    if compute:
        titles = ["trained", "samples/s", "precision", "params", "trainable", "peak MB", "passes"]
        return [f"{_device(board)}-hours", *titles, *calibration_titles]
    return (["passes"] if has_ensembles(board) else []) + calibration_titles


def extra_cells(board: dict, row: dict, compute: bool, calibration: bool = False) -> list[str]:
    return _compute_cells(board, row, compute) + (
        [calibration_cell(row, t) for t in calibration_tasks(board)] if calibration else []
    )


def _compute_cells(board: dict, row: dict, compute: bool) -> list[str]:
    c = row.get("compute") or {}
    hours, sps, params, trainable, memory, passes = (
        c.get(k)
        for k in (
            "device_hours",
            "train_samples_per_s",
            "parameters",
            "trainable_parameters",
            "peak_memory_mb",
            "inference_passes",
        )
    )
    passes_text = MISSING if passes is None else f"{passes:g}"
    if compute:
        return [
            MISSING if hours is None else f"{hours:.2f}",
            MISSING if c.get("train_samples") is None else f"{c['train_samples']:,}",
            MISSING if sps is None else f"{sps:.1f}",
            c.get("precision") or MISSING,
            MISSING if params is None else _millions(params),
            MISSING if trainable is None else _millions(trainable),
            MISSING if memory is None else f"{memory:,.0f}",
            passes_text,
        ]
    return [passes_text] if has_ensembles(board) else []


def extra_notes(board: dict, compute: bool, calibration: bool = False) -> list[str]:
    notes = [board["test_note"]] if test_tasks(board) else []
    notes += [COMPUTE_NOTE.format(device=_device(board))] if compute else []
    notes += [CALIBRATION_NOTE] if calibration and calibration_tasks(board) else []
    notes += list(dict.fromkeys(r["protocol"]["description"] for r in board["rows"] if r.get("protocol")))
    if has_ensembles(board) and not compute:
        notes.append("passes: forward passes per example at inference (1 for a single model or a weight soup).")
    return notes


def _device(board: dict) -> str:
    devices = {(r.get("compute") or {}).get("device") for r in board["rows"]} - {None}
    return devices.pop() if len(devices) == 1 else "device"


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def has_intervals(board: dict) -> bool:
    return any((r.get("ci") or {}).get("task_scores") for r in board["rows"])


def compared_rows(board: dict) -> list[dict]:
    return [r for r in board["rows"] if r.get("significance")]


def statistics_note(board: dict) -> str:
    """How the intervals and tests are defined, in the words the table needs."""
    stats = board.get("statistics")
    if not stats:
        return ""
    parts = [interval_note(stats)] + ([T_NOTE] if _uses_t(board) else [])
    if compared_rows(board):
        criterion = "p" if stats["correction"] == "none" else "adjusted p"
        parts.append(
            f"↑/↓: significantly above/below {baseline_rule_text(stats)} (paired bootstrap on the same example "
            f"draws, two-sided, {correction_text(stats)}: {criterion} < {stats['alpha']:g}). The differences' "
            f"intervals and p are uncorrected {100 * stats['confidence']:.0f}% intervals and raw p-values."
        )
    if compared_rows(board):
        parts.append(verdicts_note(stats))
        parts.append(verdicts_summary(board))
    if stats.get("smallest_adjusted_p", 0) >= RESOLVE:
        parts.append(resolution_note(stats))
    if stats.get("test_tests"):
        name = CORRECTION_NAMES.get(stats["correction"])
        n = stats["test_tests"]
        family = f"{name}-corrected over these {n} test{'' if n == 1 else 's'}" if name else "uncorrected"
        parts.append(
            "Test columns: ↑/↓ the same test on the test split, each row against the row it is tested against on "
            f"dev (nothing is chosen on test), {family} as a family of their own."
        )
    if _mixed_examples(board):
        parts.append("Bold: the best value of its column among the rows scored on the same dev examples.")
    if _has_subsets(board):
        parts.append("n=…: scored on the n dev examples that every compared prediction covers.")
    if stats["missing"]:
        parts.append(f"No interval where prediction files are missing ({'; '.join(stats['missing'])}).")
    return " ".join(parts)


def verdicts_note(stats: dict) -> str:
    """How each comparison's verdict is reached."""
    margin = stats.get("equivalence_margin")
    if margin is None:
        return (
            "Verdict: significantly better/worse (↑/↓), else no difference shown (not a sign of equivalence: no "
            "equivalence margin was set; --equivalence-margin M or the suite's statistics.equivalence_margin)."
        )
    return (
        f"Verdict: significantly better/worse (↑/↓); else equivalent within ±{margin:g} score points where the two "
        f"one-sided tests (TOST, on the same resamples: the larger of the p's of d <= -{margin:g} and d >= "
        f"+{margin:g}) pass after the same correction over the table's TOSTs; else inconclusive, with about how many "
        f"seeds per row a TOST would need: 2 (z_0.95 + z_0.9)^2 s^2 / ({margin:g} - |d|)^2, s the rows' pooled "
        "seed std, d the difference."
    )


def resolution_note(stats: dict) -> str:
    """Said where the resamples cannot resolve a corrected p below RESOLVE (capped, or fewer given)."""
    n, why = stats["tests"], "capped for cost" if stats.get("resamples_rule") == "sized to the tests" else "as given"
    return (
        f"With {stats['resamples']} resamples ({why}) and {n} test{'' if n == 1 else 's'}, the smallest adjusted p "
        f"this table can show is {stats['smallest_adjusted_p']:.3g} (a bootstrap p is at least 2/(resamples + 1)); "
        "--bootstrap N sets more."
    )


def interval_note(stats: dict) -> str:
    """What a bootstrap resample draws, and how the intervals are read off."""
    two_level = stats["bootstrap_level"] == "seeds+examples"
    seeds = (
        "and each row's seeds with replacement (a row with one seed: the examples only); the row's value is the "
        "mean over the drawn seeds of their scores on the drawn examples"
        if two_level
        else "and scores every seed's predictions on that draw; the row's value is their mean over seeds (the "
        "seeds are not resampled)"
    )
    return (
        f"{100 * stats['confidence']:.0f}% intervals: bootstrap over {'seeds and ' if two_level else ''}dev examples "
        f"({stats['resamples']} resamples, "
        f"order statistics). A resample draws the dev examples with replacement {seeds}; the average's "
        "interval draws each task's dev set on its own."
    )


T_NOTE = (
    "(t): a row of 2-5 seeds whose t-interval over its per-seed scores, mean ± t s/sqrt(n) (a difference: Welch's "
    "over both rows' seeds), is wider than the bootstrap's; the interval then covers both, and p is the larger of "
    "the two tests'."
)


def _uses_t(board: dict) -> bool:
    """Whether some interval or difference of the board is widened to its t-interval over seeds."""
    for row in board["rows"]:
        ci = row.get("ci") or {}
        if any(_interval_method(ci, t) == "t" for t in [*board["tasks"], None]):
            return True
        if any((_test(row, t) or {}).get("method") == "welch-t" for t in [*board["tasks"], None]):
            return True
    return False


def baseline_rule_text(stats: dict) -> str:
    """Whom the rows were tested against: the named baseline, or the rule that picked each row's baseline."""
    if stats["baseline_rule"] == "named":
        return f"the baseline, {stats['baseline'][0]}"
    return (
        "the row's baseline, the best single-model row scored on the same dev examples (per task, and by average "
        "for the average)"
    )


def correction_text(stats: dict) -> str:
    """`Holm-corrected over 12 tests`, or `uncorrected for multiple comparisons`."""
    name = CORRECTION_NAMES.get(stats["correction"])
    if name is None:
        return "uncorrected for multiple comparisons"
    n = stats["tests"]
    return f"{name}-corrected over {n} test{'' if n == 1 else 's'}"


def chosen_points(board: dict) -> list[str]:
    """Each row's grid points per task, or an ensemble's members (with their weights where they differ)."""
    lines = []
    for row in board["rows"]:
        if row.get("members"):
            weights = row.get("member_weights") or {}
            members = "; ".join(f"{t}: {_members(ids, weights.get(t, []))}" for t, ids in row["members"].items())
            lines.append(f"Members, {row['system']}: {members}")
        elif row.get("config"):
            chosen = "; ".join(f"{t}: {_point(p)}" for t, p in row["config"].items())
            lines.append(f"Chosen grid points, {row['system']}: {chosen}")
    return lines


def trials_line(board: dict) -> str:
    t, c = board["trials"], board["compute"]
    return (
        f"Trials: {t['finished']} finished ({t.get('stopped', 0)} stopped early by the scheduler), "
        f"{t.get('diverged', 0)} diverged, {t['failed']} failed, of {t['total']}. Compute: "
        f"{c['trial_hours']:.2f} trial-hours, {c.get('trial_epochs', 0):g} trial-epochs, "
        f"{c['train_samples']:,} training samples."
    )


def _members(trial_ids: list[str], weights: list[float]) -> str:
    if len(set(weights)) <= 1:
        return ", ".join(trial_ids)
    return ", ".join(f"{i} ({w:.2f})" for i, w in zip(trial_ids, weights))


def _point(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "(defaults)"


# ---- markdown ----


# ---- one table model: every format renders the same tables of cells ----


@dataclass(frozen=True)
class Cell:
    """A cell as every format shows it: its value, bold where it is the best of its column, the ± std over seeds,
    and the ↑/↓ of its test against the baseline."""

    value: str
    bold: bool = False
    std: str = ""
    marker: str = ""


@dataclass(frozen=True)
class Table:
    """A titled table with the notes under it. `caption_note`: what a format whose tables stand alone (LaTeX floats)
    adds to the caption, where the others have said it once above."""

    title: str
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    caption_note: str = ""
    label: str = ""  # what the table is (`ci`, `diff`, with `-test` on test), for a LaTeX label


def board_tables(board: dict, compute: bool, calibration: bool, word=str) -> list[Table]:
    """The leaderboard, then its intervals and differences where the board has them, on dev and on test.
    `word`: how a format writes the fixed column titles (LaTeX capitalises them)."""
    tables = [leaderboard_table(board, compute, calibration, word)]
    tables += statistics_tables(board, "", word)
    test = test_view(board)
    if test is not None:
        tables += statistics_tables(test, ", on test", word)
    return tables


def leaderboard_table(board: dict, compute: bool, calibration: bool, word=str) -> Table:
    tasks, best = board["tasks"], best_values(board)
    header = [word("system")] + [c for t in tasks for c in column_titles(board, t)]
    header += [word(a) for a in average_titles(board)] + [word("seeds")] + extra_header(board, compute, calibration)
    rows = []
    for row in board["rows"]:
        cells = [Cell(row["system"])]
        for t in tasks:
            cells += [_score_cell(row, t, board["metrics"][t], best), *_test_cells(board, row, t)]
        cells += [_score_cell(row, None, None, best), *_test_cells(board, row, None), Cell(str(row["seeds"]))]
        rows.append(cells + [Cell(c) for c in extra_cells(board, row, compute, calibration)])
    notes = [board["convention"], *extra_notes(board, compute, calibration)]
    notes += [statistics_note(board)] if statistics_note(board) else []
    notes += [floors_line(board)] if floors_line(board) else []
    return Table(f"Leaderboard: {board['suite']}", header, rows, notes)


def floors_line(board: dict) -> str:
    """Which rows do not learn beyond their floors, said in words (the cells carry ‡)."""
    found = []
    for row in board["rows"]:
        for where, side in (("", row), (" test", row.get("test") or {})):
            for task, floors in (side.get("below_floor") or {}).items():
                found.append(f"{row['system']} on {task}{where} ({', '.join(floors)})")
    if not found:
        return ""
    return "Below a floor " + BELOW_FLOOR + ": " + "; ".join(found) + ". These rows do not show learning there."


def statistics_tables(board: dict, where: str, word=str) -> list[Table]:
    """The intervals table and the differences table, where the board has them; `where`: `, on test` or ``."""
    tables, label = [], "-test" if where else ""
    if has_intervals(board):
        level = f"{100 * board['statistics']['confidence']:.0f}%"
        rows = [
            [Cell(r["system"])] + [Cell(ci_text(board, r, t)) for t in [*board["tasks"], None]] for r in board["rows"]
        ]
        header = [word("system"), *board["tasks"], word("average")]
        tables.append(
            Table(f"{level} confidence intervals of the task scores{where}", header, rows, label="ci" + label)
        )
    if compared_rows(board):
        rows = [
            [Cell(r["system"]), Cell(baseline_text(board, r))]
            + [Cell(difference_text(board, r, t)) for t in [*board["tasks"], None]]
            for r in compared_rows(board)
        ]
        header = [word("system"), word("baseline"), *board["tasks"], word("average")]
        title = f"{differences_title(board)}{where}"
        tables.append(Table(title, header, rows, caption_note=differences_note(board), label="diff" + label))
        margin = board["statistics"].get("equivalence_margin")
        rows = [
            [Cell(r["system"]), Cell(baseline_text(board, r))]
            + [Cell(_verdict_cell(board, r, t, margin)) for t in [*board["tasks"], None]]
            for r in compared_rows(board)
        ]
        note = verdicts_note(board["statistics"])
        tables.append(Table(f"Verdicts{where}", header, rows, caption_note=note, label="verdict" + label))
    return tables


def _verdict_cell(board: dict, row: dict, task: str | None, margin: float | None) -> str:
    test = _test(row, task)
    if not test:
        return "baseline" if _is_baseline(board, row, task) else MISSING
    return verdict_text(test, margin)


def _score_cell(row: dict, task: str | None, keys: list[str] | None, best: set) -> Cell:
    text = average_text(row) if task is None else score_text(row, task, keys)
    if text is None:
        return Cell(MISSING)
    return Cell(text, is_best(best, row, task), std_text(row, task), marker(row, task))


def _test_cells(board: dict, row: dict, task: str | None) -> list[Cell]:
    """The test cell of `task` (None: the average), mean ± std over seeds with the column's best in bold and its
    test's ↑/↓; no cell when the board has no test column there."""
    if (task is None and not has_test_average(board)) or (task is not None and task not in test_tasks(board)):
        return []
    test = row.get("test") or {}
    if task is None:
        value = test.get("average")
        others = [(r.get("test") or {}).get("average") for r in board["rows"]]
        text, std = (None if value is None else f"{value:.1f}"), None
    else:
        value = test.get("task_scores", {}).get(task)
        others = [(r.get("test") or {}).get("task_scores", {}).get(task) for r in board["rows"]]
        text = None if value is None else "/".join(f"{test['scores'][task][k]:.1f}" for k in board["metrics"][task])
        std = test.get("std", {}).get("task_scores", {}).get(task)
    if text is None:
        return [Cell(MISSING)]
    others = [v for v in others if v is not None]
    best = len(others) > 1 and value == max(others)
    return [Cell(text, best, "" if std is None else f" ± {std:.1f}", marker(test, task))]


# ---- markdown ----


def format_markdown(board: dict, compute: bool = False, calibration: bool = False) -> str:
    main, *statistics = board_tables(board, compute, calibration)
    lines = [f"# {main.title}", "", *_md_table(main)]
    lines += [x for note in main.notes for x in ("", note)]
    for table in statistics:
        lines += ["", f"## {table.title}", "", *_md_table(table)] + [x for note in table.notes for x in ("", note)]
    lines += [""] + chosen_points(board) + ["", trials_line(board)]
    return "\n".join(lines) + "\n"


def test_view(board: dict) -> dict | None:
    """The board's test side as a board of its own (each row's test scores, intervals and tests), for the same
    tables; None where no row has test intervals."""
    rows = [view for r in board["rows"] if (view := test_side(r)) and view["ci"]]
    if not rows:
        return None
    stats = board["statistics"]
    return {**board, "rows": rows, "statistics": {**stats, "tests": stats.get("test_tests", 0)}}


def _md_table(table: Table) -> list[str]:
    return [
        "| " + " | ".join(table.header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(table.header) - 1)) + "|",
        *("| " + " | ".join(_md_cell(c) for c in cells) + " |" for cells in table.rows),
    ]


def _md_cell(cell: Cell) -> str:
    return (f"**{cell.value}**" if cell.bold else cell.value) + cell.std + cell.marker


# ---- csv ----


TEST_KEYS = ["delta", "delta_ci_low", "delta_ci_high", "p_value", "p_adjusted", "significant", "baseline", "method",
             "tost_p", "tost_p_adjusted", "verdict"]  # fmt: skip
COMPUTE_COLUMNS = ["device", "device_hours", "train_samples", "train_samples_per_s", "precision", "parameters",
                   "trainable_parameters", "peak_memory_mb", "inference_passes"]  # fmt: skip


def format_csv(board: dict, compute: bool = False, calibration: bool = False) -> str:
    """One line per row: every number unrounded to 4 decimals, empty where there is none."""
    groups = _csv_groups(board, compute, calibration)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c for columns, _ in groups for c in columns])
    for row in board["rows"]:
        writer.writerow([v for _, values in groups for v in values(row)])
    return out.getvalue()


def _csv_groups(board: dict, compute: bool, calibration: bool) -> list[tuple[list[str], Callable[[dict], list]]]:
    """The csv's columns in groups, each with the function that gives a row's values for them."""
    groups = [(["system", "kind", "model"], lambda r: [r["system"], r["kind"], r["model"]])]
    for t in board["tasks"]:
        groups.append(_csv_task(board, t))
        if t in test_tasks(board):
            groups.append(_csv_test_task(board, t))
    if has_test_average(board):
        columns = [
            "test_average",
            "test_average_ci_low",
            "test_average_ci_high",
            *(f"test_average/{k}" for k in TEST_KEYS),
        ]
        groups.append((columns, lambda r: _csv_test_average(board, r)))
    columns = ["average", "average_std", "average_ci_low", "average_ci_high", *(f"average/{k}" for k in TEST_KEYS)]
    groups.append(([*columns, "seeds", "baseline"], lambda r: _csv_average(board, r)))
    if compute:
        groups.append((COMPUTE_COLUMNS, _csv_compute))
    elif has_ensembles(board):
        groups.append((["inference_passes"], lambda r: [_passes(r.get("compute") or {})]))
    calibrated = calibration_tasks(board) if calibration else []
    columns = [f"{t}/{k}" for t in calibrated for k in CALIBRATION_KEYS]
    groups.append((columns, lambda r: [_num((r.get("calibration") or {}).get(t, {}).get(k)) for t in calibrated
                                       for k in CALIBRATION_KEYS]))  # fmt: skip
    return groups


def _csv_task(board: dict, t: str) -> tuple[list[str], Callable[[dict], list]]:
    """A task's metrics and score on dev: mean, std and interval; its examples; its test against the baseline."""
    metrics = board["metrics"][t]
    columns = [f"{t}/{k}{end}" for k in metrics for end in ("", "_std", "_ci_low", "_ci_high")]
    columns += [f"{t}/score", f"{t}/score_std", f"{t}/score_ci_low", f"{t}/score_ci_high", f"{t}/examples"]

    def values(row: dict) -> list:
        ci = row.get("ci") or {"scores": {}, "task_scores": {}, "average": None, "examples": {}}
        sig = row.get("significance") or {"task_scores": {}, "average": None}
        out = []
        for k in metrics:
            low, high = ci["scores"].get(t, {}).get(k) or [None, None]
            out += [_num(row["scores"].get(t, {}).get(k)), _num(row["std"]["scores"].get(t, {}).get(k))]
            out += [_num(low), _num(high)]
        low, high = ci["task_scores"].get(t) or [None, None]
        out += [_num(row["task_scores"].get(t)), _num(row["std"]["task_scores"].get(t)), _num(low), _num(high)]
        below = "+".join((row.get("below_floor") or {}).get(t, []))
        return [*out, ci["examples"].get(t, ""), *_test_values(sig["task_scores"].get(t), _margin(board)), below]

    return columns + [f"{t}/{k}" for k in TEST_KEYS] + [f"{t}/below_floor"], values


def _csv_test_task(board: dict, t: str) -> tuple[list[str], Callable[[dict], list]]:
    """A task's metrics and score on test: mean, std, interval and its test against the baseline's."""
    metrics = board["metrics"][t]
    columns = [c for k in metrics for c in (f"{t}/test_{k}", f"{t}/test_{k}_std")]
    columns += [f"{t}/test_score", f"{t}/test_score_std", f"{t}/test_score_ci_low", f"{t}/test_score_ci_high"]

    def values(row: dict) -> list:
        test = row.get("test") or {"scores": {}, "task_scores": {}, "std": {"scores": {}, "task_scores": {}}}
        out = []
        for k in metrics:
            out += [_num(test["scores"].get(t, {}).get(k)), _num(test["std"]["scores"].get(t, {}).get(k))]
        low, high = (test.get("ci") or {}).get("task_scores", {}).get(t) or [None, None]
        out += [_num(test["task_scores"].get(t)), _num(test["std"]["task_scores"].get(t))]
        below = "+".join((test.get("below_floor") or {}).get(t, []))
        return [*out, _num(low), _num(high), *_test_values(_test(test, t), _margin(board)), below]

    return columns + [f"{t}/test_{k}" for k in TEST_KEYS] + [f"{t}/test_below_floor"], values


def _csv_test_average(board: dict, row: dict) -> list:
    test = row.get("test") or {}
    low, high = (test.get("ci") or {}).get("average") or [None, None]
    return [_num(test.get("average")), _num(low), _num(high), *_test_values(_test(test, None), _margin(board))]


def _csv_average(board: dict, row: dict) -> list:
    ci, sig = row.get("ci") or {"average": None}, row.get("significance") or {"average": None}
    low, high = ci["average"] or [None, None]
    values = [
        _num(row["average"]),
        _num(row["std"]["average"]),
        _num(low),
        _num(high),
        *_test_values(sig["average"], _margin(board)),
    ]
    return [*values, row["seeds"], baseline_text(board, row) if row.get("significance") else ""]


def _csv_compute(row: dict) -> list:
    c = row.get("compute") or {}
    return [
        c.get("device") or "",
        _num(c.get("device_hours")),
        c.get("train_samples", ""),
        _num(c.get("train_samples_per_s")),
        c.get("precision") or "",
        c.get("parameters") or "",
        c.get("trainable_parameters") or "",
        _num(c.get("peak_memory_mb")),
        _passes(c),
    ]


def _passes(compute: dict) -> str:
    return "" if compute.get("inference_passes") is None else f"{compute['inference_passes']:g}"


def _margin(board: dict) -> float | None:
    return (board.get("statistics") or {}).get("equivalence_margin")


def _test_values(test: dict | None, margin: float | None) -> list:
    if not test:
        return [""] * len(TEST_KEYS)
    if test.get("comparable") is False:
        return [""] * 6 + [test["baseline"]] + [""] * (len(TEST_KEYS) - 7)
    return [
        _num(test["delta"]),
        _num(test["ci"][0]),
        _num(test["ci"][1]),
        _num(test["p"]),
        _num(test["p_adjusted"]),
        int(test["significant"]),
        test["baseline"],
        test["method"],
        _num(test.get("tost_p")),
        _num(test.get("tost_p_adjusted")),
        verdict_text(test, margin),
    ]


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}"


# ---- LaTeX (booktabs) ----

_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"$<$",
    ">": r"$>$",
    "±": r"$\pm$",
    "—": "--",
    "–": "--",
    "−": "$-$",
    "↑": r"$^{\uparrow}$",
    "↓": r"$^{\downarrow}$",
    "‡": r"$^{\ddagger}$",
    "×": r"$\times$",
    "…": r"\dots{}",
    "Δ": r"$\Delta$",
}


def latex_escape(text: str) -> str:
    """Text as LaTeX typesets it literally: special characters escaped, the few symbols bench uses as math."""
    return "".join(_LATEX.get(c, c) for c in text)


def format_latex(board: dict, compute: bool = False, calibration: bool = False) -> str:
    """Tables for a paper: `\\usepackage{booktabs}`; each table has a caption and a label."""
    label, parts = _label(board["suite"]), ["% bench table --format latex. Needs \\usepackage{booktabs}."]
    for n, table in enumerate(board_tables(board, compute, calibration, str.capitalize)):
        title = table.title if n == 0 else f"{board['suite']}: {table.title}"
        caption = " ".join([f"{title}.", *table.notes, table.caption_note]).strip()
        parts += [""] if n else []
        parts += _latex_table(table, caption, f"tab:{label}" + (f"-{table.label}" if table.label else ""))
    return "\n".join(parts) + "\n"


def _latex_table(table: Table, caption: str, label: str) -> list[str]:
    return [
        "\\begin{table}[t]",
        "\\centering",
        "\\small",
        "\\begin{tabular}{l" + "r" * (len(table.header) - 1) + "}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in table.header) + " \\\\",
        "\\midrule",
        *(" & ".join(_latex_cell(c) for c in cells) + " \\\\" for cells in table.rows),
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        "\\end{table}",
    ]


def _latex_cell(cell: Cell) -> str:
    value = latex_escape(cell.value)
    return (f"\\textbf{{{value}}}" if cell.bold else value) + latex_escape(cell.std + cell.marker)


def _label(suite: str) -> str:
    return re.sub(r"[^A-Za-z0-9:-]+", "-", suite).strip("-").lower() or "leaderboard"


# ---- html ----

HTML_STYLE = """<style>
.bench-leaderboard { overflow-x: auto; }
.bench-leaderboard table { border-collapse: collapse; margin: 0.6em 0 1em; font-variant-numeric: tabular-nums;
  font-size: 0.95em; }
.bench-leaderboard th, .bench-leaderboard td { padding: 0.3em 0.5em; border-bottom: 1px solid #ddd; }
.bench-leaderboard th { border-bottom: 2px solid #444; text-align: right; }
.bench-leaderboard td { text-align: right; white-space: nowrap; }
.bench-leaderboard th:first-child, .bench-leaderboard td:first-child { text-align: left; }
.bench-leaderboard .up { color: #1a7f37; } .bench-leaderboard .down { color: #c62828; }
.bench-leaderboard .note { max-width: 60em; color: #444; font-size: 0.92em; }
</style>"""


def format_html(board: dict, compute: bool = False, calibration: bool = False) -> str:
    """An html fragment (with its own small style) to paste into a page; the report embeds it."""
    parts = ['<div class="bench-leaderboard">', HTML_STYLE]
    for table in board_tables(board, compute, calibration):
        parts.append(_html_table(table))
        parts += [_html_note(note) for note in [*table.notes, table.caption_note] if note]
    parts += [_html_note(line) for line in chosen_points(board)] + [_html_note(trials_line(board)), "</div>"]
    return "\n".join(parts) + "\n"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "\n".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in cells) + "</tr>" for cells in table.rows)
    return (
        f'<table>\n<caption style="caption-side: top; text-align: left; font-weight: bold">'
        f"{html.escape(table.title)}</caption>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    )


def _html_cell(cell: Cell) -> str:
    value = _html_marked(cell.value)  # a differences cell holds its ↑/↓ within its text
    return (f"<strong>{value}</strong>" if cell.bold else value) + html.escape(cell.std) + _html_marked(cell.marker)


def _html_marked(text: str) -> str:
    """Escape, then colour the significance arrows."""
    return html.escape(text).replace("↑", '<span class="up">↑</span>').replace("↓", '<span class="down">↓</span>')


def _html_note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


# ---- json, rich, files ----


def format_json(board: dict, compute: bool = False, calibration: bool = False) -> str:
    """The whole board: calibration is in every row already."""
    return json.dumps(board, indent=2) + "\n"


FORMATTERS = {"md": format_markdown, "csv": format_csv, "latex": format_latex, "html": format_html, "json": format_json}


def write_leaderboard(board: dict, folder: Path) -> None:
    for ext in ("md", "csv", "json"):
        atomic_write_text(Path(folder) / f"leaderboard.{ext}", FORMATTERS[ext](board))


def rich_table(board: dict):
    # Imported here for start-up speed (rich).
    from rich.markup import escape
    from rich.table import Table as RichTable

    stats = board.get("statistics")
    scores = "validation (it chose) and test scores" if test_tasks(board) else "dev scores"
    caption = f"{scores}, mean ± std over seeds" + (
        f"; ↑/↓ significantly above/below {escape(baseline_rule_text(stats))}, {correction_text(stats)}"
        if stats and compared_rows(board)
        else ""
    )
    main = leaderboard_table(board, compute=False, calibration=False)
    table = RichTable(title=main.title, caption=caption)
    table.add_column(main.header[0])
    for title in main.header[1:]:
        table.add_column(title, justify="right", style="bold" if title.startswith("average") else None)
    for cells in main.rows:  # a chain's `[mrpc→rte]` is text, not rich markup
        table.add_row(*(escape(c.value + c.std + c.marker) for c in cells))
    return table
