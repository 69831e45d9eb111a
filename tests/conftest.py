"""Shared fixtures: the GLUE folder, a tiny random BERT with the embedded tokenizer, an isolated cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.measure.tiny import make_tiny_bert, write_easy_task  # noqa: F401  (tests import them from here)

REPO = Path(__file__).resolve().parents[1]


# The modules of several minutes each (whole Ray runs), longest first. Two workers take modules in collection order,
# so these start first and none of them runs alone at the end.
FIRST = (
    "test_faults_ray",
    "test_run_e2e",
    "test_merge_tracking_e2e",
    "test_ensemble_e2e",
    "test_multitask_run",
    "test_search_ray",
    "test_glue_dev",
    "test_curves",
)


def pytest_collection_modifyitems(config, items):
    """The longest modules first; tests marked `long` (whole Ray runs of minutes) run with BENCH_LONG_TESTS=1:
    CI's 15 minutes hold the rest."""
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rpartition(".")[2], len(FIRST)))
    if os.environ.get("BENCH_LONG_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="a long Ray run; set BENCH_LONG_TESTS=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    path = Path(os.environ.get("BENCH_GLUE_DIR", REPO.parent / "shared" / "data" / "glue")).resolve()
    if not (path / "RTE" / "train.tsv").is_file():
        pytest.fail(f"GLUE data not found at {path}; set BENCH_GLUE_DIR")
    os.environ["BENCH_GLUE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench-cache")
    os.environ["BENCH_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from benchmark.common.quiet import quiet_libraries

    quiet_libraries()
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def easy(tmp_path_factory, glue_dir, cache_dir):
    """A user task of sentence pairs (64 training rows, 32 dev), and the same task under a second name."""
    root = tmp_path_factory.mktemp("easy")
    task = write_easy_task(root, train=64, dev=32)
    return task, {**task, "name": "easy2"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny random model of each declared family."""
    from benchmark.measure.tiny import TINY_FAMILIES, make_tiny_model

    root = tmp_path_factory.mktemp("families")
    return {family: make_tiny_model(root / family, family) for family in TINY_FAMILIES}


def plain_logits(folder: Path, dev, max_length: int):
    """A checkpoint's logits on a split of sentence pairs through plain transformers, as a user outside bench gets
    them: the check that a saved checkpoint is the model its record scored."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer(
        list(dev["sentence1"]),
        list(dev["sentence2"]),
        truncation=True,
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        return model(**enc).logits.float().numpy()


def bench(*args, timeout=900, **kwargs) -> subprocess.CompletedProcess:
    """The `bench` CLI in a fresh process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "benchmark.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        **{"env": {**os.environ}, **kwargs},
    )


def two_ranks(script: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """`script` run as two data-parallel ranks by torchrun (gloo), with `args`; a rank's variables inherited from
    this process are left out, so torchrun sets its own."""
    path = Path(cwd) / "two_ranks.py"
    path.write_text(script)
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launcher}
    logs = Path(cwd) / "rank_logs"  # each rank's stderr in a file: torchrun's own report names only an exit code
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--log-dir", str(logs)]
    command += ["--redirects", "2", str(path), *map(str, args)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0:  # the tail of each rank's stderr first, where a test's message shows it
        tails = [f"--- {f.parent.name}: {f.read_text()[-1500:]}" for f in sorted(logs.rglob("stderr.log"))]
        proc.stderr = "\n".join(tails) + "\n" + proc.stderr
    return proc


def write_search_suite(tmp_path: Path, tiny_model, **suite) -> Path:
    """A suite of a tiny BERT on the easy task (256 rows), with `suite`'s sections merged in."""
    # fp32: bf16 is too coarse for a 32-wide random BERT to learn the easy task in a few steps.
    base = {
        "name": "s",
        "model": str(tiny_model),
        "tasks": [write_easy_task(tmp_path / "easy", train=256)],
        # No test split held out of train: these runs test the search, on all 256 training rows.
        "data": {"max_train_samples": 256, "max_eval_samples": 64, "holdout": {"test": 0}},
        "training": {
            "epochs": 2,
            "batch_size": 16,
            "max_seq_length": 32,
            "zero_stage": 0,
            "warmup_ratio": 0.0,
            "precision": "fp32",
        },
        # The untrained model's rows cost each run seconds of imports (torch, transformers) in the driver; these
        # runs test the search and its faults (the driver-killed test turns them back on, tests/test_floors.py
        # tests them).
        "floors": {"zero_shot": False, "probe": False},
        "output": str(tmp_path / "run"),
    }
    for key, value in suite.items():
        base[key] = {**base[key], **value} if isinstance(base.get(key), dict) else value
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def plan_prints(path: Path, overrides: list[str] = (), without: str | None = None, monkeypatch=None) -> dict:
    """{trial id: fingerprint} of a suite's plan; `without` (with `monkeypatch`): as the code made them before the
    training key `without` existed (dropped from every trial's settings)."""
    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import make_plan
    from benchmark.train.hyperparams import TrainingConfig

    if without is not None:
        as_dict = TrainingConfig.to_dict
        monkeypatch.setattr(
            TrainingConfig, "to_dict", lambda self: {k: v for k, v in as_dict(self).items() if k != without}
        )
    return {t.trial_id: t.fingerprint for t in make_plan(load_suite(path, list(overrides)))}


def interrupted_and_resumed(hp, model: Path, data, tmp_path: Path, seed: int = 1):
    """A trial run straight through, and the same trial interrupted and resumed (`resumed_after_epoch_1`):
    (straight, resumed) results."""
    from benchmark.train.trainer import train

    straight = train(hp, str(model), seed, data, tmp_path / "straight", lambda m, f: None)
    return straight, resumed_after_epoch_1(hp, model, data, tmp_path, seed)


def resumed_after_epoch_1(hp, model: Path, data, tmp_path: Path, seed: int = 1):
    """The trial interrupted (Ctrl-C) after epoch 1 with its state saved, then resumed from that state."""
    from benchmark.train.checkpoints import STATE_DIR
    from benchmark.train.trainer import train

    saved = {}

    def stop_after_epoch_1(metrics, folder):
        if metrics["epoch"] == 1:
            saved["state"] = folder / STATE_DIR
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(hp, str(model), seed, data, tmp_path / "work", stop_after_epoch_1, save_state=True)
    return train(hp, str(model), seed, data, tmp_path / "work2", lambda m, f: None, resume_from=saved["state"])
