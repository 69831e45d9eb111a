"""What the study-running measurements share: their command line, and one `bench run` of a suite, timed."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from benchmark.common.quiet import quiet_libraries
from benchmark.config.suite import Suite, load_suite
from benchmark.run.runner import run_suite


@dataclass
class Study:
    args: argparse.Namespace
    suite: Suite
    wall_seconds: float
    command: str  # what reproduces it


def run_study(module: str, doc: str, default_suite: str, default_out: str, argv=None) -> Study:
    """Parse `--suite --output --set --out`, run the suite as `bench run` does, and time it."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default=default_suite)
    p.add_argument("--output", default=None, help="run directory (default: the suite's output)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a suite key")
    p.add_argument("--out", default=default_out)
    args = p.parse_args(argv)
    quiet_libraries()
    suite = load_suite(args.suite, args.set, output=args.output)
    started = time.perf_counter()
    run_suite(suite)  # trials, then the suite's ensemble section, then the leaderboard
    wall = time.perf_counter() - started
    return Study(args, suite, wall, f"python -m {module} " + " ".join(sys.argv[1:] if argv is None else argv))
