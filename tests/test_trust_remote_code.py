"""`trust_remote_code: true` is said out loud when a run starts."""

import io

import pytest
import yaml
from rich.console import Console

import benchmark.run.runner
from benchmark.config.suite import load_suite
from benchmark.run.runner import TRUST_WARNING, run_suite


@pytest.mark.parametrize("trust", [True, False])
def test_a_run_warns_when_the_suite_trusts_remote_code(tmp_path, monkeypatch, glue_dir, cache_dir, trust):
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump({"name": "t", "tasks": ["rte"], "trust_remote_code": trust, "output": str(tmp_path / "run")})
    )
    suite = load_suite(path)
    monkeypatch.setattr(benchmark.run.runner, "_run_locked", lambda *args: {})  # the run itself is not the point
    out = io.StringIO()
    run_suite(suite, console=Console(file=out, width=400))
    lines = out.getvalue().splitlines()
    assert lines == ([TRUST_WARNING] if trust else [])
    assert TRUST_WARNING.startswith("warning: trust_remote_code is true")
