"""The parity study's arithmetic and README: Welch's test and the TOST per line, Holm across lines, the verdicts,
the goal line, and the committed README being what the script writes from the committed records."""

import json
import math
import shutil
from pathlib import Path
from statistics import NormalDist

import numpy as np
import scipy.stats

from benchmark.measure.parity import (
    MARGIN,
    Line,
    _row,
    judge,
    main,
    merge_bench_rows,
    parity_lines,
    summarize,
)
from benchmark.results.bootstrap import welch, welch_t
from tasks.glue import GLUE_TASKS

RESULTS = Path(__file__).resolve().parents[1] / "results" / "parity"


def rows(task: str, bench: list[float], trainer: list[float], precision="fp32", cpu="Test CPU") -> list[dict]:
    made = []
    for system, scores in (("bench", bench), ("trainer", trainer)):
        for seed, score in enumerate(scores, 1):
            last = {"score": score, **{k: score / 100 for k in GLUE_TASKS[task].metric_keys()}}
            made.append(_row(task, system, seed, precision, cpu, last, 10.0 * seed))
    return made


def line(bench: list[float], trainer: list[float], task="rte") -> Line:
    return Line(task, "fp32", "Test CPU", bench, trainer, 10.0, 10.0)


def scipy_tost(a: list[float], b: list[float], margin: float) -> float:
    """The TOST's p from scipy's one-sided Welch tests: the larger of H0 d <= -M and H0 d >= +M."""
    lower = scipy.stats.ttest_ind(np.add(a, margin), b, equal_var=False, alternative="greater").pvalue
    upper = scipy.stats.ttest_ind(np.subtract(a, margin), b, equal_var=False, alternative="less").pvalue
    return max(lower, upper)


def test_welch_t_is_scipys_for_any_number_of_seeds():
    a, b = [80.1, 82.3, 81.0], [79.0, 83.5, 80.2]
    low, high = welch_t(np.array(a), np.array(b)).interval(0.05)
    assert round(low, 3) == -4.642 and round(high, 3) == 5.109  # scipy's 95% Welch interval
    assert welch_t(np.array([80.0]), np.array([79.0, 81.0])) is None
    assert welch_t(np.array([80.0, 80.0]), np.array([79.0, 79.0])) is None  # no spread: no test
    many_a, many_b = np.linspace(79, 81, 7), np.linspace(78, 82, 8)
    assert welch(many_a, many_b) is None  # the leaderboard's widening is for 2-5 seeds only
    t = welch_t(many_a, many_b)
    assert math.isclose(t.p(), scipy.stats.ttest_ind(many_a, many_b, equal_var=False).pvalue, rel_tol=1e-9)


def test_equal_means_with_tiny_spread_are_equivalent():
    a, b = [80.0, 80.1, 79.9], [80.05, 79.95, 80.0]
    (j,) = judge([line(a, b)], MARGIN)
    assert j.verdict == "equivalent within ±2" and j.kind == "equivalent" and j.seeds_needed is None
    assert math.isclose(j.tost_p_adjusted, scipy_tost(a, b, MARGIN), rel_tol=1e-9) and j.tost_p_adjusted < 1e-4
    assert math.isclose(j.p_adjusted, scipy.stats.ttest_ind(a, b, equal_var=False).pvalue, rel_tol=1e-9)
    # The 90% interval lies inside ±M exactly when the TOST passes.
    low, high = j.test.interval(0.1)
    assert -MARGIN < low < high < MARGIN


def test_large_spread_is_inconclusive_with_a_seed_estimate():
    a, b = [74.0, 80.0, 86.0], [75.0, 80.0, 85.0]
    (j,) = judge([line(a, b)], MARGIN)
    s2 = (np.var(a, ddof=1) + np.var(b, ddof=1)) / 2  # pooled seed variance: (36 + 25) / 2
    z = NormalDist().inv_cdf(0.95) + NormalDist().inv_cdf(0.9)  # one line: Holm's level is 0.05 itself
    expected = math.ceil(2 * z**2 * s2 / MARGIN**2)
    assert expected == 131
    assert j.verdict == "inconclusive (would need about 131 seeds a side)" and j.seeds_needed == 131
    assert j.tost_p_adjusted > 0.05 and math.isclose(j.tost_p_adjusted, scipy_tost(a, b, MARGIN), rel_tol=1e-9)


def test_a_clear_difference_is_different_and_a_large_gap_cannot_be_shown_equivalent():
    higher, lower, gap, one = judge(
        [
            line([85.0, 85.5, 84.5], [80.0, 80.5, 79.5]),
            line([80.0, 80.5, 79.5], [85.0, 85.5, 84.5]),
            line([80.0, 84.0, 88.0], [79.0, 81.0, 83.0]),  # d = +3, not significant
            line([80.0], [79.0]),
        ],
        MARGIN,
    )
    assert higher.verdict == "different (bench higher)" and lower.verdict == "different (bench lower)"
    raw = scipy.stats.ttest_ind([85.0, 85.5, 84.5], [80.0, 80.5, 79.5], equal_var=False).pvalue
    # Holm over the three tested lines: the two smallest p's (equal) times 3, the third's p is not below them.
    assert math.isclose(higher.p_adjusted, 3 * raw, rel_tol=1e-9) and higher.p_adjusted < 0.05
    assert gap.verdict == "cannot be shown at ±2 (|d| ≥ 2)" and gap.p_adjusted > 0.05 and gap.seeds_needed is None
    assert one.verdict == "not enough seeds (n=1)" and one.test is None and one.p_adjusted is None


def test_holm_across_lines_takes_back_a_line_that_passes_alone():
    """STS-B bf16's TOST passes on its own (p 0.029) and not among the table's six tested lines (Holm: 0.173)."""
    records = json.loads((RESULTS / "parity.json").read_text())["rows"]
    lines = parity_lines(records)
    stsb = next(x for x in lines if (x.task, x.precision) == ("stsb", "bf16"))
    (alone,) = judge([stsb], MARGIN)
    assert alone.verdict == "equivalent within ±2" and round(alone.tost_p_adjusted, 3) == 0.029
    among = dict(zip([(x.task, x.precision) for x in lines], judge(lines, MARGIN)))
    assert round(among["stsb", "bf16"].tost_p_adjusted, 3) == 0.173
    assert among["stsb", "bf16"].verdict == "inconclusive (would need about 5 seeds a side)"
    assert sum(j.test is not None for j in among.values()) == 6
    assert [j.kind for j in among.values()].count("equivalent") == 0  # nothing is conclusive at ±2 yet


def test_readme_gives_each_line_its_verdict_the_goal_and_the_commands_that_would_fill_it():
    data = rows("rte", [60.0, 60.1, 59.9], [60.05, 59.95, 60.0]) + rows("mrpc", [85.0, 85.5, 84.5], [80.0, 80.5, 79.5])
    data += rows("cola", [30.0], []) + rows("rte", [58.0, 50.0, 66.0], [57.5, 52.5, 62.5], "bf16", "Other CPU")
    saved = {"rows": data, "wall_seconds": 600.0, "parts": [{"command": "python -m x --tasks rte", "date": "d"}]}
    text = summarize(data, saved)
    lines = {" ".join(line.split(" | ")[:2]).strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert list(lines)[1:] == ["rte bf16", "rte fp32", "mrpc fp32", "cola fp32"]  # the task order
    assert "| equivalent within ±2 |" in lines["rte fp32"] and "60.00 ± 0.10 (n=3)" in lines["rte fp32"]
    assert "| Test CPU |" in lines["rte fp32"] and "| Other CPU |" in lines["rte bf16"]
    assert "inconclusive (would need about" in lines["rte bf16"] and "+0.50 [" in lines["rte bf16"]
    assert "different (bench higher)" in lines["mrpc fp32"] and "+5.00 [" in lines["mrpc fp32"]
    assert "not enough seeds (n=0)" in lines["cola fp32"] and lines["cola fp32"].endswith("| 10.0 | — | — |")
    assert "| 10.0 | 20.0 | 0.50x |" not in text and lines["rte fp32"].endswith("| 20.0 | 20.0 | 1.00x |")
    # The margin and the method come before the table's numbers.
    assert text.index("the equivalence margin is ±2 score points") < text.index("| task |")
    assert "p, TOST ±2 (Holm)" in text and "Holm-corrected across the table's 3 tested lines" in text
    goal = next(x for x in text.splitlines() if x.startswith("Goal:"))
    assert goal == (
        "Goal: bench's score within ±2 of the Trainer's on every task and precision, shown by the equivalence test: "
        "not met; inconclusive: rte bf16; equivalent: rte fp32; different: mrpc fp32; not enough seeds: cola fp32."
    )
    assert "within noise" not in text and "holds 0" not in goal
    assert (
        "- cola fp32: 0 seed(s) a side, the study runs three: `python -m benchmark.measure.parity --tasks cola "
        "--seeds 1 2 3 --precision fp32 --out results/parity`" in text
    )
    assert "- rte bf16: about " in text and "--tasks rte --seeds $(seq 4 " in text
    assert "10.0 min over 1 part(s)" in text and "`python -m x --tasks rte` (d)" in text
    equivalent_only = rows("rte", [60.0, 60.1, 59.9], [60.05, 59.95, 60.0])
    assert "shown by the equivalence test: met; equivalent: rte fp32." in summarize(equivalent_only, saved)
    assert "±1 (Holm)" in summarize(equivalent_only, saved, margin=1.0)
    assert "--from-records --out results/parity --equivalence-margin 1`" in summarize(equivalent_only, saved, 1.0)


def test_the_committed_readme_is_what_the_script_writes_from_the_committed_records(tmp_path):
    shutil.copy(RESULTS / "parity.json", tmp_path / "parity.json")
    before = (tmp_path / "parity.json").read_bytes()
    assert main(["--from-records", "--out", str(tmp_path)]) == 0
    written = (tmp_path / "README.md").read_text()
    assert written == (RESULTS / "README.md").read_text()
    assert (tmp_path / "parity.json").read_bytes() == before  # the records are read, never rewritten
    goal = next(x for x in written.splitlines() if x.startswith("Goal:"))
    assert "not met" in goal and "within noise" not in written and "interval holds 0" not in goal
    assert (
        "- stsb fp32: 1 seed(s) a side, the study runs three: `python -m benchmark.measure.parity --tasks stsb "
        "--seeds 2 3 --precision fp32 --out results/parity`" in written
    )


def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--from-records", "--out", str(tmp_path), "--equivalence-margin", "0"]) == 2
    assert capsys.readouterr().err.strip() == (
        "--equivalence-margin: must be a positive number of score points (0-100), got 0.0"
    )
    assert main(["--from-records", "--tasks", "rte", "--out", str(tmp_path)]) == 2
    assert "--from-records" in capsys.readouterr().err
    assert main(["--from-records", "--out", str(tmp_path)]) == 2  # no parity.json there
    assert not (tmp_path / "README.md").exists()


def test_a_part_with_other_seeds_keeps_the_earlier_seeds_rows():
    earlier = rows("stsb", [83.0], [85.0])
    fresh = [r for r in rows("stsb", [83.5, 84.0, 84.5], []) if r["seed"] in (2, 3)]
    merged = merge_bench_rows(earlier, fresh, "stsb", "fp32")
    assert sorted((r["system"], r["seed"], r["score"]) for r in merged) == [
        ("bench", 1, 83.0),
        ("bench", 2, 84.0),
        ("bench", 3, 84.5),
        ("trainer", 1, 85.0),
    ]
    rerun = [{**earlier[0], "score": 83.25}]  # the same seed again: its fresh record wins
    assert [r["score"] for r in merge_bench_rows(earlier, rerun, "stsb", "fp32") if r["system"] == "bench"] == [83.25]
