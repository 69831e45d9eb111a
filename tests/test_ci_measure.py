"""The CI measurement reads `.ci/run`'s and pytest's own lines; its README says the goal met or missed by how much."""

import json

from benchmark.measure.ci import parse_log, report

LOG = """installed after 172 s
All checks passed!
============================= slowest 20 durations =============================
305.63s call     tests/test_faults_ray.py::test_driver_killed
85.70s setup    tests/test_ensemble_e2e.py::test_the_leaderboard[x-1]
521 passed, 3 skipped, 25 warnings in 995.51s (0:16:35)
CI took 1169 s
"""


def test_the_log_gives_install_pytest_total_and_the_slowest_tests():
    figures = parse_log(LOG)
    assert figures["install_seconds"] == 172 and figures["total_seconds"] == 1169
    assert figures["pytest_seconds"] == 995.51 and figures["pytest_summary"] == "521 passed, 3 skipped, 25 warnings"
    assert figures["slowest"] == [
        {"seconds": 305.63, "phase": "call", "test": "tests/test_faults_ray.py::test_driver_killed"},
        {"seconds": 85.70, "phase": "setup", "test": "tests/test_ensemble_e2e.py::test_the_leaderboard[x-1]"},
    ]
    failed = parse_log("installed after 90 s\n1 failed, 520 passed in 600.00s (0:10:00)\n")
    assert failed["pytest_summary"] == "1 failed, 520 passed" and failed["total_seconds"] is None


def test_the_readme_says_met_or_missed_by_how_much(tmp_path):
    machine = {"cpu": "Test CPU", "cpu_flags": ["avx2"], "native_bf16": False}
    for label, total in (("slow", 1169), ("fast", 587)):
        figures = {"command": "python -m benchmark.measure.ci", "version": "abc x", "date": "2026-12-01 12:00",
                   "machine": machine, "cpus": 2, "load_before": 0.1, "returncode": 0, **parse_log(LOG),
                   "total_seconds": total}  # fmt: skip
        (tmp_path / f"{label}.json").write_text(json.dumps(figures))
    text = report(tmp_path)
    assert "Goal at most 15 min: missed by 4.5 min." in text.split("## slow")[1]
    assert "Goal at most 15 min: met." in text.split("## fast")[1].split("## slow")[0]
    assert "| 305.6 | call | `tests/test_faults_ray.py::test_driver_killed` |" in text
