"""The parity study's arithmetic and README: Welch's interval, the verdict per task, the goal line."""

from benchmark.measure.parity import _row, summarize, welch
from tasks.glue import GLUE_TASKS


def rows(task: str, bench: list[float], trainer: list[float], precision="fp32", cpu="Test CPU") -> list[dict]:
    made = []
    for system, scores in (("bench", bench), ("trainer", trainer)):
        for seed, score in enumerate(scores, 1):
            last = {"score": score, **{k: score / 100 for k in GLUE_TASKS[task].metric_keys()}}
            made.append(_row(task, system, seed, precision, cpu, last, 10.0 * seed))
    return made


def test_welch_interval_is_scipys_and_needs_two_runs_a_side():
    diff, low, high = welch([80.1, 82.3, 81.0], [79.0, 83.5, 80.2])
    assert round(diff, 4) == 0.2333 and round(low, 3) == -4.642 and round(high, 3) == 5.109
    assert welch([80.0], [79.0, 81.0]) is None
    assert welch([80.0, 80.0], [79.0, 79.0]) == (1.0, 1.0, 1.0)  # no spread: the interval is the point


def test_readme_gives_each_task_and_precision_its_verdict_and_the_goal():
    data = rows("rte", [60.0, 61.0, 59.0], [60.5, 59.5, 61.5]) + rows("mrpc", [85.0, 85.5, 84.5], [80.0, 80.5, 79.5])
    data += rows("cola", [30.0], []) + rows("rte", [58.0, 57.0], [57.5, 57.5], precision="bf16", cpu="Other CPU")
    saved = {"rows": data, "wall_seconds": 600.0, "parts": [{"command": "python -m x --tasks rte", "date": "d"}]}
    text = summarize(data, saved)
    lines = {" ".join(line.split(" | ")[:2]).strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "within noise" in lines["rte fp32"] and "60.00 ± 1.00 (n=3)" in lines["rte fp32"]
    assert "| Test CPU |" in lines["rte fp32"] and "| Other CPU |" in lines["rte bf16"]
    assert "57.50 ± 0.71 (n=2)" in lines["rte bf16"] and "+0.00" in lines["rte bf16"]
    assert "bench higher: shown" in lines["mrpc fp32"] and "+5.00" in lines["mrpc fp32"]
    assert "not enough seeds yet" in lines["cola fp32"] and lines["cola fp32"].endswith("| 10.0 | — | — |")
    assert (
        "not met on rte bf16, rte fp32, mrpc fp32; not yet measured with two or more seeds a side: cola fp32." in text
    )
    assert "10.0 min over 1 part(s)" in text and "`python -m x --tasks rte` (d)" in text
    assert list(lines)[1:] == ["rte bf16", "rte fp32", "mrpc fp32", "cola fp32"]  # the task order
