"""`bench report RUN_DIR [RUN_DIR ...]`: one self-contained HTML file with the leaderboard, its statistics
and the plots.

Nothing is linked: the style is inline and the PNG figures are embedded as data URIs, so the file can be mailed,
attached to a paper's supplement or opened years later. `render_report` is pure; `write_report` does the I/O.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path

import yaml

from benchmark.common.atomic import atomic_write_text
from benchmark.records.store import RunStore
from benchmark.results.board import leaderboard_from_runs
from benchmark.results.bootstrap import LEVEL
from benchmark.results.plots import FIGURES, Figure
from benchmark.results.statistics import CORRECTION
from benchmark.results.tables import format_html

REPORT_FILE = "report.html"

PAGE_STYLE = """<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0;
       background: #fafafa; }
main { max-width: 1500px; margin: 0 auto; padding: 1.5em 2em 4em; background: white; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #555; } figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; }
figcaption { color: #444; max-width: 60em; margin-top: 0.4em; }
table.trials { border-collapse: collapse; font-size: 0.9em; font-variant-numeric: tabular-nums; }
table.trials th, table.trials td { padding: 0.2em 0.6em; border-bottom: 1px solid #eee; text-align: right; }
table.trials th:first-child, table.trials td:first-child { text-align: left; }
pre { background: #f4f4f4; padding: 1em; overflow-x: auto; }
nav a { margin-right: 1em; }
</style>"""


def write_report(
    run_dirs: list[Path],
    output: Path | None = None,
    baseline: str | None = None,
    resamples: int | None = None,
    correction: str = CORRECTION,
    level: str = LEVEL,
    margin: float | None = None,
) -> Path:
    """The report of one run directory, or of several merged as `bench table` merges them."""
    board, records = leaderboard_from_runs(run_dirs, baseline, resamples, correction, level, margin)
    suites = {str(Path(d).resolve()): RunStore(Path(d)).read_suite() for d in run_dirs}
    figures = [f for f in (make(board, records) for make in FIGURES) if f is not None]
    output = Path(output) if output else Path(run_dirs[0]) / REPORT_FILE
    atomic_write_text(output, render_report(board, records, suites, figures, time.strftime("%Y-%m-%d %H:%M")))
    return output


def render_report(board: dict, records: list[dict], suites: dict[str, dict], figures: list[Figure], when: str) -> str:
    """`suites`: each run directory's resolved suite, by its path."""
    title = f"bench report: {board['suite']}"
    models = ", ".join(dict.fromkeys(r["model"] for r in records)) or "none"
    t = board["trials"]
    meta = (
        f"Run director{'y' if len(suites) == 1 else 'ies'} {', '.join(suites)}, reported {when}. Models: {models}. "
        f"Tasks: {', '.join(board['tasks'])}. Trials: {t['finished']} finished, {t['failed']} failed, of {t['total']}."
    )
    sections = [
        ("leaderboard", "Leaderboard"),
        *((f.anchor, f.title) for f in figures),
        ("trials", "Trials"),
        ("suite", "Suite"),
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        PAGE_STYLE,
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(meta)}</p>',
        "<nav>" + "".join(f'<a href="#{a}">{html.escape(name)}</a>' for a, name in sections) + "</nav>",
        '<h2 id="leaderboard">Leaderboard</h2>',
        format_html(board, compute=True),
    ]
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts += [
            f'<h2 id="{f.anchor}">{html.escape(f.title)}</h2>',
            "<figure>",
            f'<img src="data:image/png;base64,{data}" alt="{html.escape(f.title)}">',
            f"<figcaption>{html.escape(f.caption)}</figcaption>",
            "</figure>",
        ]
    missing = [
        name
        for name, present in (
            ("search space (the grid has one point)", any(f.anchor == "search" for f in figures)),
            ("ensembles (none in this run)", any(f.anchor == "ensembles" for f in figures)),
        )
        if not present
    ]
    if missing:
        parts.append(f'<p class="meta">Not shown: {html.escape("; ".join(missing))}.</p>')
    parts += ['<h2 id="trials">Trials</h2>', _trials_table(records), '<h2 id="suite">Suite</h2>']
    for run_dir, suite in suites.items():
        parts += [
            f"<details><summary>suite.yaml as it ran, {html.escape(run_dir)}</summary>",
            f"<pre>{html.escape(yaml.safe_dump(suite, sort_keys=False))}</pre></details>",
        ]
    parts += ["</main>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _trials_table(records: list[dict]) -> str:
    header = ["trial", "task", "seed", "status", "best epoch", "dev score", "wall time", "samples/s"]
    rows = []
    for r in sorted(records, key=lambda r: (r["task"], r["trial_id"])):
        score = "—" if r.get("best_score") is None else f"{r['best_score']:.2f}"
        sps = "—" if not r.get("train_samples_per_s") else f"{r['train_samples_per_s']:.1f}"
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        cells = [
            r["trial_id"],
            r["task"],
            str(r["seed"]),
            status,
            str(r.get("best_epoch") or "—"),
            score,
            f"{r.get('wall_seconds', 0) / 60:.1f} min",
            sps,
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in header)
    return (
        f'<table class="trials">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>"
    )
