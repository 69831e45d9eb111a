"""results/scale/: its README is what benchmark/measure/scale.py writes from the scale.json beside it."""

import json
from pathlib import Path

from benchmark.measure.scale import GOAL_TABLE_S, growth, report

RESULTS = Path(__file__).resolve().parents[1] / "results" / "scale"


def test_the_scale_readme_is_rebuilt_from_its_json():
    figures = json.loads((RESULTS / "scale.json").read_text())
    assert (RESULTS / "README.md").read_text() == report(RESULTS, figures)
    rows = {r["trials"]: r for r in figures["rows"]}
    assert set(rows) == {100, 1000, 10_000}  # the contract
    assert all({"table_s", "report_s", "peak_rss_mb"} <= set(r) for r in rows.values())


def test_growth_is_the_fitted_exponent():
    rows = [{"trials": n, "t": 0.01 * n} for n in (100, 1000, 10_000)]
    assert abs(growth(rows, "t") - 1.0) < 1e-9
    assert abs(growth([{"trials": n, "t": 1e-4 * n * n} for n in (100, 1000)], "t") - 2.0) < 1e-9
    assert GOAL_TABLE_S == 30.0
