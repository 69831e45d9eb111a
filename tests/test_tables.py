"""The text formats of a leaderboard with statistics: markdown, csv, LaTeX and html."""

import csv
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from benchmark.common.errors import InputError
from benchmark.results.bootstrap import SplitPredictions
from benchmark.results.leaderboard import build_leaderboard
from benchmark.results.statistics import add_statistics
from benchmark.results.tables import format_csv, format_html, format_latex, format_markdown, latex_escape
from tasks.glue import GLUE_TASKS

RNG = np.random.default_rng(11)
LABELS = {"rte": RNG.integers(0, 2, 200), "mrpc": RNG.integers(0, 2, 200)}
# The strong model is right wherever the weak one is, and on more: significantly better on both tasks.
WEAK = {t: RNG.random(200) < 0.6 for t in LABELS}
STRONG = {t: WEAK[t] | (RNG.random(200) < 0.6) for t in LABELS}
RESOURCES = {"workers_per_trial": 1, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0}


def _record(model, task, seed, correct):
    labels = LABELS[task]
    preds = np.where(correct, labels, 1 - labels)
    acc = float((preds == labels).mean())
    tp, fp, fn = [int(((preds == a) & (labels == b)).sum()) for a, b in ((1, 1), (1, 0), (0, 1))]
    metrics = {"accuracy": acc} if task == "rte" else {"f1": 2 * tp / (2 * tp + fp + fn), "accuracy": acc}
    return {
        "trial_id": f"{model}-{task}-{seed}",
        "status": "finished",
        "kind": "single",
        "task": task,
        "model": model,
        "metric_keys": list(metrics),
        "grid_point": {"learning_rate": 1e-4},
        "seed": seed,
        "best_metrics": metrics,
        "best_score": 100 * float(np.mean(list(metrics.values()))),
        "wall_seconds": 1800.0,
        "train_samples": 100,
        "train_samples_per_s": 40.0,
        "parameters": 22_713_986,
        "epochs": [{"epoch": 1, "trainable_parameters": 384}, {"epoch": 2, "trainable_parameters": 1_000_000}],
        "peak_memory_mb": 512.0 + seed,
        "precision": "fp32",
        "resources": RESOURCES,
        "checkpoint": f"{model}/{task}/{seed}",
        "task_spec": GLUE_TASKS[task].to_dict(),
    }


@pytest.fixture(scope="module")
def board():
    records, files = [], {}
    for model, correct in (("my_model_v2 & co", STRONG), ("weak<b>", WEAK)):
        for task in LABELS:
            for seed in (1, 2):
                r = _record(model, task, seed, correct[task])
                records.append(r)
                logits = np.eye(2, dtype=np.float32)[np.where(correct[task], LABELS[task], 1 - LABELS[task])]
                files[f"{r['checkpoint']}/dev_predictions.safetensors"] = {
                    "validation": SplitPredictions(logits, LABELS[task], np.arange(200))
                }
    board = build_leaderboard("demo_suite", records, ["rte", "mrpc"])
    return add_statistics(board, {t: GLUE_TASKS[t] for t in LABELS}, files.get, baseline="weak", resamples=500)


def test_markdown_marks_the_best_in_bold_and_significant_differences(board):
    md = format_markdown(board)
    strong = next(line for line in md.splitlines() if line.startswith("| my_model_v2 & co (single) | **"))
    assert strong.count("↑") == 3 and strong.count("**") == 6  # rte, mrpc, average: bold and above the baseline
    assert "## 95% confidence intervals" in md and "## Differences from the baseline, weak<b> (single)" in md
    # No resample of 500 at or below zero: p = 2 / 501, adjusted (Holm, 3 tests) 6 / 501 (before p became
    # (k + 1) / (B + 1), p was 0 and printed as p<0.004). 500 resamples cannot resolve an adjusted p below 0.01: said.
    cell = r"\+\d+\.\d \[\d+\.\d, \d+\.\d\], p=0\.004 \(adj\. p=0\.012\)↑"
    assert re.search(rf"\| my_model_v2 & co \(single\) \| weak<b> \(single\) \| {cell} \|", md)
    assert "With 500 resamples (as given) and 3 tests, the smallest adjusted p this table can show is 0.012" in md
    assert "Holm-corrected over 3 tests: adjusted p < 0.05" in md and "(n=" not in md


def test_compute_columns(board):
    md = format_markdown(board, compute=True)
    header = "| average | seeds | CPU-hours | trained | samples/s | precision | params | trainable | peak MB | passes |"
    assert header in md
    # Four trials of half an hour and 100 samples on one CPU each, in fp32; 22.7M parameters, at most 1M trained at
    # once; the larger peak of the two seeds; one pass per example.
    assert "| 2.00 | 400 | 40.0 | fp32 | 22.7M | 1.0M | 514 | 1 |" in md and "CPU-hours: every trial behind" in md


def test_csv_has_intervals_and_tests(board):
    rows = list(csv.DictReader(io.StringIO(format_csv(board, compute=True))))
    strong, weak = rows
    assert float(strong["rte/score_ci_low"]) < float(strong["rte/score"]) < float(strong["rte/score_ci_high"])
    assert strong["rte/significant"] == "1" and float(strong["rte/p_value"]) < 0.05
    assert weak["rte/delta"] == "" and strong["baseline"] == "weak<b> (single)"
    assert strong["parameters"] == "22713986" and strong["device"] == "CPU" and strong["precision"] == "fp32"
    assert strong["train_samples"] == "400"
    assert strong["trainable_parameters"] == "1000000" and strong["peak_memory_mb"] == "514.0000"


def _tabulars(tex: str):
    return re.findall(r"\\begin\{tabular\}\{([lr]+)\}\n(.*?)\\end\{tabular\}", tex, re.S)


def test_latex_is_structurally_valid_booktabs_with_escaped_text(board):
    tex = format_latex(board, compute=True)
    for env in ("table", "tabular"):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}") == 4  # with the verdicts
    tabulars = _tabulars(tex)
    assert len(tabulars) == 4
    for spec, body in tabulars:
        assert body.count("\\toprule") == body.count("\\midrule") == body.count("\\bottomrule") == 1
        for line in body.splitlines():
            if line.endswith("\\\\"):
                # every row has one cell per column: unescaped & separate them
                assert len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1, line
    assert "my\\_model\\_v2 \\& co (single)" in tex and "\\textbf{" in tex and "$^{\\uparrow}$" in tex
    text = re.sub(r"\\[&_%$#{}]", "", tex)  # drop escaped specials, then none may remain bare
    assert "_" not in text and "%" not in text.split("\n", 1)[1]
    assert text.count("{") == text.count("}")
    assert all(line.count("$") % 2 == 0 for line in text.splitlines())
    assert "±" not in tex and "↑" not in tex and "—" not in tex  # unicode made LaTeX
    assert "\\label{tab:demo-suite}" in tex


def test_latex_escape():
    assert (
        latex_escape("a_b & 50% #1 $x ~y^ {z} \\")
        == r"a\_b \& 50\% \#1 \$x \textasciitilde{}y\textasciicircum{} \{z\} \textbackslash{}"
    )


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX installed")
def test_latex_compiles(board, tmp_path):
    if shutil.which("pdflatex") is None:  # the structural checks above still run
        pytest.skip("pdflatex is not installed")
    doc = (
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + format_latex(board) + "\\end{document}\n"
    )
    (tmp_path / "t.tex").write_text(doc)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]


class _Tags(HTMLParser):
    VOID = {"br", "img", "meta", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_balanced_and_escaped(board):
    fragment = format_html(board, compute=True)
    tags = _Tags()
    tags.feed(fragment)
    assert tags.errors == [] and tags.stack == []
    assert "weak&lt;b&gt; (single)" in fragment and "<b>" not in fragment
    assert fragment.count("<table>") == 4 and "<strong>" in fragment and '<span class="up">↑</span>' in fragment


def test_rich_table_prints_each_rows_average(board):
    """The live table's average column (a trailing comment once swallowed its argument: the column was empty)."""
    from rich.console import Console

    from benchmark.results.tables import rich_table

    console = Console(record=True, width=250)
    console.print(rich_table(board))
    text = console.export_text()
    lines = text.splitlines()
    header = next(line for line in lines if "average" in line and "system" in line)
    column = [c.strip() for c in re.split("[│┃]", header)].index("average")  # rich draws the header heavier
    for row in board["rows"]:
        line = next(line for line in lines if line.lstrip("│ ").startswith(row["system"]))
        assert [c.strip() for c in re.split("[│┃]", line)][column].startswith(f"{row['average']:.1f}")
    # The caption names what the columns are: dev scores here; validation and test where a task has a test split.
    assert "dev scores, mean ± std over seeds" in text
    console = Console(record=True, width=250)
    console.print(rich_table({**board, "test_tasks": board["tasks"][:1]}))
    assert "validation (it chose) and test scores, mean ± std" in console.export_text()


def test_p_values_print_with_what_the_resamples_resolve():
    from benchmark.results.tables import p_text

    # A bootstrap p is never 0 (at least 2 / (resamples + 1)): no "p<2/B" form for p = 0 any more.
    assert p_text(2 / 1001) == "p=0.002" and p_text(2 / 5001) == "p<0.001" and p_text(0.0004) == "p<0.001"
    assert p_text(0.0123) == "p=0.012" and p_text(1.0) == "p=1.000"


def test_every_format_names_the_correction_and_the_uncorrected_intervals(board):
    from rich.console import Console

    from benchmark.results.tables import rich_table

    named = "Holm-corrected over 3 tests"
    assert named in format_markdown(board) and named in format_html(board)
    tex = format_latex(board)
    assert named in tex and "uncorrected 95\\% intervals" in tex and "adj. p: Holm-corrected" in tex
    console = Console(record=True, width=400)
    console.print(rich_table(board))
    assert named in console.export_text().replace("\n", " ")
    strong = next(csv.DictReader(io.StringIO(format_csv(board))))
    assert (
        float(strong["rte/p_adjusted"]) >= float(strong["rte/p_value"]) and strong["rte/baseline"] == "weak<b> (single)"
    )
    assert board["statistics"]["correction"] == "holm" and board["statistics"]["tests"] == 3


def _half_row(system: str, kind: str, correct: dict) -> tuple[dict, dict]:
    """A row scored on the even dev examples (an ensemble's report half), and its prediction files."""
    from sklearn.metrics import f1_score

    half = np.arange(0, 200, 2)
    files, scores = {}, {}
    for task in LABELS:
        labels, preds = LABELS[task][half], np.where(correct[task], LABELS[task], 1 - LABELS[task])[half]
        logits = np.eye(2, dtype=np.float32)[preds]
        files[f"{system}/{task}"] = {"validation": SplitPredictions(logits, labels, half)}
        scores[task] = {"accuracy": 100 * float((preds == labels).mean())}
        if task == "mrpc":
            scores[task] = {"f1": 100 * f1_score(labels, preds), **scores[task]}
    task_scores = {t: float(np.mean(list(v.values()))) for t, v in scores.items()}
    row = {
        "system": system,
        "kind": kind,
        "model": system,
        "scores": scores,
        "task_scores": task_scores,
        "average": float(np.mean(list(task_scores.values()))),
        "std": {"scores": {}, "task_scores": {}, "average": None},
        "seeds": 1,
        "config": {},
        "members": {t: ["x"] for t in LABELS},
        "predictions": {t: [f"{system}/{t}"] for t in LABELS},
    }
    return row, files


def test_bold_and_baselines_compare_only_rows_scored_on_the_same_examples(board):
    """Trial rows on all of dev, ensemble rows on a half: each group has its best in bold and its own baseline."""
    files = {}
    for r in board["rows"]:
        for task, paths in r["predictions"].items():
            correct = STRONG if r["model"].startswith("my_model") else WEAK
            preds = np.where(correct[task], LABELS[task], 1 - LABELS[task])
            for path in paths:
                files[path] = {
                    "validation": SplitPredictions(np.eye(2, dtype=np.float32)[preds], LABELS[task], np.arange(200))
                }
    extra = [_half_row("best single checkpoint", "single", WEAK), _half_row("vote (top 3)", "ensemble", STRONG)]
    for _, f in extra:
        files.update(f)
    trial_rows = [{k: v for k, v in r.items() if k not in ("ci", "significance")} for r in board["rows"]]
    mixed = add_statistics(
        {**board, "rows": trial_rows + [r for r, _ in extra]},
        {t: GLUE_TASKS[t] for t in LABELS},
        files.get,
        resamples=200,
    )
    md = format_markdown(mixed)
    line = {r["system"]: next(x for x in md.splitlines() if x.startswith(f"| {r['system']} |")) for r in mixed["rows"]}
    by = {r["system"]: r for r in mixed["rows"]}
    assert by["vote (top 3)"]["task_scores"]["rte"] == 91.0 < by["my_model_v2 & co (single)"]["task_scores"]["rte"]
    assert line["vote (top 3)"].count("**") == 6  # the best of its half on rte (91.0 < 93.0), mrpc and the average
    assert line["my_model_v2 & co (single)"].count("**") == 6 and "**" not in line["weak<b> (single)"]
    assert "**" not in line["best single checkpoint"].split("|", 2)[2]
    assert "Bold: the best value of its column among the rows scored on the same dev examples." in md
    assert "Bold:" not in format_markdown(board)  # every row on the same examples: nothing to say
    assert by["vote (top 3)"]["significance"]["task_scores"]["rte"]["baseline"] == "best single checkpoint"
    assert by["weak<b> (single)"]["significance"]["average"]["baseline"] == "my_model_v2 & co (single)"
    assert mixed["statistics"]["baseline"] == ["my_model_v2 & co (single)", "best single checkpoint"]
    fragment = format_html(mixed)
    assert "Differences from each row&#x27;s baseline" in fragment and "<td>best single checkpoint</td>" in fragment
    assert "the best single-model row scored on the same dev examples" in md


def test_the_statistics_flags_reach_the_leaderboard(monkeypatch, board, capsys):
    import benchmark.results.board
    from benchmark.cli import build_parser, main

    seen = {}

    def fake(dirs, baseline, resamples, correction, level, margin):
        seen.update(correction=correction, level=level, resamples=resamples, margin=margin)
        return board, []

    monkeypatch.setattr(benchmark.results.board, "leaderboard_from_runs", fake)
    assert main(["table", "run", "--correction", "bh", "--bootstrap-level", "examples", "--bootstrap", "50"]) == 0
    assert seen == {"correction": "bh", "level": "examples", "resamples": 50, "margin": None}
    assert main(["table", "run"]) == 0 and seen["correction"] == "holm" and seen["level"] == "seeds+examples"
    assert seen["resamples"] is None  # sized to the table's tests
    assert main(["table", "run", "--equivalence-margin", "1.5"]) == 0 and seen["margin"] == 1.5
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["table", "run", "--correction", "bonferroni"])
    assert exit_.value.code == 2 and "invalid choice: 'bonferroni'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
@pytest.mark.parametrize("command", ["table", "report"])
def test_a_bad_equivalence_margin_is_one_line_exit_2_and_nothing_starts(monkeypatch, capsys, value, command):
    import benchmark.results.board
    import benchmark.results.report
    from benchmark.cli import main

    def started(*args, **kwargs):
        raise AssertionError("the leaderboard was started")

    monkeypatch.setattr(benchmark.results.board, "leaderboard_from_runs", started)
    monkeypatch.setattr(benchmark.results.report, "write_report", started)
    assert main([command, "run", f"--equivalence-margin={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench: error: --equivalence-margin: must be a positive number")


@pytest.mark.parametrize("value", [0, -1])
def test_the_suite_key_fixes_the_margin_and_a_bad_one_fails_validation(tmp_path, capsys, value):
    import yaml

    from benchmark.cli import main
    from benchmark.config.suite import load_suite
    from benchmark.results.board import _suites_margin

    suite = {"name": "t", "tasks": ["rte"], "output": str(tmp_path / "run")}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**suite, "statistics": {"equivalence_margin": value}}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "statistics.equivalence_margin: must be a positive number" in err
    path.write_text(yaml.safe_dump({**suite, "statistics": {"equivalence_margen": 1}}))
    assert main(["validate", str(path)]) == 2
    assert "unknown key (did you mean 'equivalence_margin'?)" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({**suite, "statistics": {"equivalence_margin": 1.5}}))
    assert load_suite(path).to_dict()["statistics"] == {"equivalence_margin": 1.5}  # into the run's suite.yaml
    assert load_suite(tmp_path / "suite.yaml").config.statistics.equivalence_margin == 1.5
    # Merged runs: one margin, or none; two different ones are an input error naming the key.
    assert _suites_margin({1.5}) == 1.5 and _suites_margin(set()) is None
    with pytest.raises(InputError, match="statistics.equivalence_margin: the runs fix different margins"):
        _suites_margin({1.0, 2.0})


def test_the_verdicts_show_in_every_format(board):
    """The fixture's board (no margin): each comparison reads significantly better, in md, csv, LaTeX, html and json;
    with a margin the same board names it in the notes."""
    import json

    from benchmark.results.tables import format_json

    assert "| my_model_v2 & co (single) | weak<b> (single) | significantly better | significantly better |" in (
        format_markdown(board)
    )
    strong = next(csv.DictReader(io.StringIO(format_csv(board))))
    assert strong["rte/verdict"] == strong["average/verdict"] == "significantly better"
    assert strong["rte/method"] == "bootstrap"  # each row's two seeds agree: no spread to widen by
    assert "significantly better" in format_latex(board) and "<td>significantly better</td>" in format_html(board)
    saved = json.loads(format_json(board))
    assert saved["rows"][0]["significance"]["task_scores"]["rte"]["verdict"] == "better"
    assert "no equivalence margin was set" in format_markdown(board) and "equivalent" not in format_markdown(board)
