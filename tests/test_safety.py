"""Safe loading: no pickle is read from a run directory or a model folder; offline mode opens no socket.

The audit hook sees every file Python opens (torch.load and pickle open theirs through it), so a planted pickle
that any code path read would show; the source audit keeps pickle-reading calls out of the package.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from benchmark.common.errors import InputError

REPO = Path(__file__).resolve().parents[1]
PICKLE_NAMES = (
    "pytorch_model.bin",
    "training_args.bin",
    "optimizer.pt",
    "rng_state.pth",
    "scheduler.pt",
    "trainer_state.pkl",
)
OPENED: list[str] = []
WATCHING = [False]


def _audit(event, args):
    if WATCHING[0] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # cannot be removed; it records only while WATCHING


def plant_pickles(folder: Path) -> list[Path]:
    """Pickles that would run code if loaded (and torch.load would accept the first as weights)."""
    import torch

    planted = []
    for name in PICKLE_NAMES:
        path = folder / name
        torch.save({"weight": torch.zeros(2)}, path)
        planted.append(path.resolve())
    return planted


def opened_pickles(planted: list[Path]) -> list[str]:
    names = {str(p) for p in planted}
    return sorted({p for p in OPENED if str(Path(p).resolve()) in names})


def test_the_package_source_reads_no_pickle():
    sources = [p for d in ("benchmark", "tasks", "ensembles") for p in (REPO / d).rglob("*.py")]
    banned = re.compile(
        r"torch\.load\(|pickle\.loads?\(|import (cloud)?pickle|joblib|allow_pickle\s*=\s*True|"
        r"weights_only\s*=\s*False|yaml\.(unsafe_)?load\(|yaml\.(Unsafe|Full)?Loader|"
        r"use_safetensors\s*=\s*False"
    )
    hits = [
        f"{p.relative_to(REPO)}:{n}"
        for p in sources
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if banned.search(line)
    ]
    assert not hits, hits
    # Every model load asks for safetensors explicitly (transformers would otherwise fall back to a .bin).
    for p in sources:
        text = p.read_text()
        for call in re.finditer(r"ForSequenceClassification\.from_pretrained\((.*?)\)\n", text, re.S):
            assert "use_safetensors=True" in call.group(1), f"{p.relative_to(REPO)}: {call.group(0)[:120]}"
    assert len(sources) > 40


def test_a_model_folder_with_only_a_pickle_is_refused(tiny_model, tmp_path):
    from benchmark.train.modeling import resolve_model

    folder = tmp_path / "old"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    planted = plant_pickles(folder)
    OPENED.clear()
    WATCHING[0] = True
    try:
        with pytest.raises(
            InputError, match="has no safetensors weights .found .*pytorch_model.bin.*bench never loads pickles"
        ):
            resolve_model(str(folder))
    finally:
        WATCHING[0] = False
    assert opened_pickles(planted) == []


def test_pickles_planted_in_a_model_folder_and_a_run_directory_are_never_read(tiny_model, tmp_path):
    from benchmark.records.store import RunStore
    from benchmark.results.board import leaderboard_from_runs
    from benchmark.train.modeling import build_classifier, load_finetuned_classifier, resolve_model
    from ensembles.candidates import find_candidates
    from tasks.glue import GLUE_TASKS

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    planted = plant_pickles(model)
    store = RunStore(tmp_path / "run")
    store.write_suite({"name": "s", "tasks": ["rte"]})

    def fill(folder: Path) -> None:
        build_classifier(str(model), ("entailment", "not_entailment")).save_pretrained(folder)
        save_file(
            {"validation/logits": np.zeros((4, 2), np.float32), "validation/labels": np.asarray([0, 1, 1, 0])},
            str(folder / "dev_predictions.safetensors"),
        )
        (folder / "trial.json").write_text(json.dumps({"task": GLUE_TASKS["rte"].to_dict(), "model_path": str(model)}))

    OPENED.clear()
    WATCHING[0] = True
    try:
        resolve_model(str(model))
        folder = store.install_checkpoint("rte_seed=1", fill)
        planted += plant_pickles(folder) + plant_pickles(store.trial_dir("rte_seed=1"))
        store.save_record(
            {
                "trial_id": "rte_seed=1",
                "status": "finished",
                "kind": "single",
                "model": "m",
                "fingerprint": "f",
                "task": "rte",
                "task_spec": GLUE_TASKS["rte"].to_dict(),
                "seed": 1,
                "grid_point": {},
                "best_score": 50.0,
                "best_epoch": 1,
                "epochs": [{"epoch": 1, "score": 50.0}],
                "best_metrics": {"accuracy": 50.0},
                "metric_keys": ["accuracy"],
                "training": {"max_seq_length": 32, "eval_batch_size": 8},
                "checkpoint": str(folder.relative_to(store.root)),
            }
        )
        loaded = load_finetuned_classifier(str(folder))  # predict, soups
        candidates = find_candidates(store)["rte"]  # ensembles
        board, _ = leaderboard_from_runs([store.root])  # bench table
    finally:
        WATCHING[0] = False
    assert loaded.config.num_labels == 2 and len(candidates) == 1 and board["rows"]
    assert any(p.endswith("record.json") for p in OPENED)  # the hook saw the run directory being read
    assert opened_pickles(planted) == []


OFFLINE_PROBE = """
import socket, sys
tried = []
def refuse(*args, **kwargs):
    tried.append(args)
    raise OSError("socket use refused by the test")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from benchmark.cli import main
codes = [main(["validate", path]) for path in sys.argv[1:]]
print("codes", codes, "sockets", len(tried))
"""


def test_offline_mode_refuses_uncached_hub_models_and_data_without_a_socket(tmp_path):
    import yaml

    suites = []
    for name, suite in (
        ("model", {"model": "bench-test/not-cached-bert", "tasks": ["rte"]}),
        ("data", {"model": None, "tasks": ["rte"]}),
    ):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **suite, "output": str(tmp_path / name)}))
        suites.append(str(path))
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_GLUE_DIR", "BENCH_DATA_DIR")}  # the hub, then
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), BENCH_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE, *suites], capture_output=True, text=True, env=env, timeout=600
    )
    assert "codes [2, 2] sockets 0" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bench: error:")]
    assert len(errors) == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "bench-test/not-cached-bert" in errors[0] and "task rte" in errors[1], errors
