"""The trainer without Ray: a real DeepSpeed engine on a tiny random BERT."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark.common.errors import TrialDiverged
from benchmark.train.checkpoints import load_predictions, load_trial_meta
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tasks.loading import load_split
from tasks.metrics import compute_metrics, task_score
from tests.conftest import plain_logits

FAST = dict(epochs=2, batch_size=16, learning_rate=1e-3, eval_batch_size=32)


@pytest.fixture(scope="module")
def rte(tiny_model, glue_dir, cache_dir):
    return encode_task(GLUE_TASKS["rte"], load_tokenizer(str(tiny_model)), 64, glue_dir, cache_dir, 96, 48)


@pytest.fixture(scope="module")
def stsb(tiny_model, glue_dir, cache_dir):
    return encode_task(GLUE_TASKS["stsb"], load_tokenizer(str(tiny_model)), 64, glue_dir, cache_dir, 96, 48)


def quiet(*_):
    pass


def test_same_seed_same_metrics_other_seed_other_run(tiny_model, rte, tmp_path):
    hp = TrainingConfig(**FAST)
    a = run_local_trial(hp, str(tiny_model), 7, rte, tmp_path / "a", log=quiet)
    b = run_local_trial(hp, str(tiny_model), 7, rte, tmp_path / "b", log=quiet)
    c = run_local_trial(hp, str(tiny_model), 8, rte, tmp_path / "c", log=quiet)
    keys = ["score", "accuracy", "train_loss", "learning_rate"]
    assert [{k: e[k] for k in keys} for e in a.epochs] == [{k: e[k] for k in keys} for e in b.epochs]
    assert [e["train_loss"] for e in a.epochs] != [e["train_loss"] for e in c.epochs]


def test_best_checkpoint_loads_in_plain_transformers_and_reproduces_its_dev_metric(
    tiny_model, rte, glue_dir, cache_dir, tmp_path
):
    from transformers import AutoConfig

    result = run_local_trial(TrainingConfig(**FAST), str(tiny_model), 3, rte, tmp_path, log=quiet)
    folder = tmp_path / "checkpoint"
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    meta = load_trial_meta(folder)
    assert meta["epoch"] == result.best_epoch and meta["score"] == pytest.approx(result.best_score)
    assert AutoConfig.from_pretrained(folder).id2label == {0: "entailment", 1: "not_entailment"}
    dev = load_split(GLUE_TASKS["rte"], "validation", glue_dir, cache_dir, 48)
    logits = plain_logits(folder, dev, max_length=64)
    stored_logits, stored_labels = load_predictions(folder)
    np.testing.assert_array_equal(stored_labels["validation"], np.asarray(dev["label"]))
    np.testing.assert_allclose(logits, stored_logits["validation"], atol=0.05)
    metrics = compute_metrics(GLUE_TASKS["rte"], {"validation": logits}, {"validation": np.asarray(dev["label"])})
    assert task_score(metrics) == pytest.approx(result.best_score)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_train_and_decay_to_zero(tiny_model, stsb, tmp_path, precision):
    hp = TrainingConfig(**{**FAST, "epochs": 3}, precision=precision)
    result = run_local_trial(hp, str(tiny_model), 1, stsb, tmp_path, log=quiet)
    losses = [e["train_loss"] for e in result.epochs]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert result.epochs[-1]["learning_rate"] == 0.0  # linear decay ends at zero
    assert {"pearson", "spearmanr", "score"} <= set(result.epochs[0])


def test_one_rank_runs_zero_0_and_bf16_keeps_fp32_weights(tiny_model, stsb):
    """ZeRO 1-2 partition across ranks: one rank runs stage 0 (ZeRO-2 across two ranks: test_run_e2e,
    test_multitask). bf16 is autocast: the weights and the optimizer stay fp32; the optimizer is fused."""
    from benchmark.train.engine import adamw, deepspeed_config, init_distributed, initialize_engine, linear_schedule
    from benchmark.train.modeling import build_classifier

    hp = TrainingConfig(**FAST, zero_stage=2, precision="bf16")
    assert deepspeed_config(hp, 2)["zero_optimization"]["stage"] == 2
    init_distributed()
    model = build_classifier(str(tiny_model), None)
    optimizer = adamw(model, hp)
    engine = initialize_engine(model, optimizer, linear_schedule(optimizer, 10, 0.0), hp, 1)
    assert engine.zero_optimization_stage() == 0 and not engine.enable_backward_allreduce
    assert engine.torch_autocast_enabled() and not engine.bfloat16_enabled()
    assert all(p.dtype == torch.float32 for p in engine.module.parameters())
    assert optimizer.defaults["fused"]
    with torch.no_grad():
        logits = engine(input_ids=torch.tensor([[101, 2000, 102]])).logits
    assert logits.dtype == torch.bfloat16  # the forward ran under autocast


def test_gradient_accumulation_counts_optimizer_steps(tiny_model, rte, tmp_path):
    hp = TrainingConfig(**FAST, gradient_accumulation_steps=4)
    result = run_local_trial(hp, str(tiny_model), 1, rte, tmp_path, log=quiet)
    assert [e["optimizer_steps"] for e in result.epochs] == [6, 12]  # 96 examples / 16 per step


def test_a_nan_loss_stops_the_trial(tiny_model, stsb, tmp_path):
    import copy

    bad = copy.deepcopy(stsb)
    bad.splits["train"].labels[:] = np.nan
    with pytest.raises(TrialDiverged, match="loss became nan at optimizer step 1"):
        run_local_trial(TrainingConfig(**FAST), str(tiny_model), 1, bad, tmp_path, log=quiet)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_saved_state_continues_exactly_where_it_stopped(tiny_model, rte, tmp_path, precision):
    """Train 3 epochs straight; separately stop after epoch 1 and resume from the saved state: same numbers."""
    from benchmark.train.trainer import STATE_DIR, train

    hp = TrainingConfig(**{**FAST, "epochs": 3}, precision=precision)
    straight = run_local_trial(hp, str(tiny_model), 5, rte, tmp_path / "straight", log=quiet)

    saved = {}

    def keep_first_state(metrics, folder):
        if metrics["epoch"] == 1:
            saved["state"] = folder / STATE_DIR
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt  # stop the first run after epoch 2 began to be reported

    with pytest.raises(KeyboardInterrupt):
        train(hp, str(tiny_model), 5, rte, tmp_path / "work", keep_first_state, save_state=True)
    resumed = []
    result = train(
        hp, str(tiny_model), 5, rte, tmp_path / "work2", lambda m, f: resumed.append(m), resume_from=saved["state"]
    )
    keys = ["epoch", "score", "train_loss", "learning_rate", "optimizer_steps", "train_samples"]
    assert [{k: e[k] for k in keys} for e in result.epochs] == [{k: e[k] for k in keys} for e in straight.epochs]
    assert [m["epoch"] for m in resumed] == [2, 3]  # only the remaining epochs ran


@pytest.mark.parametrize("final_state", [False, True])
def test_the_last_evaluation_saves_no_state_unless_asked(tiny_model, rte, tmp_path, final_state):
    """A finished trial's state serves only PBT (`final_state`): without it the last evaluation point writes its
    checkpoint alone, and says so, so the driver keeps the earlier state as the one to resume from."""
    from benchmark.train.trainer import STATE_DIR, train

    seen = []

    def report(metrics, folder):
        seen.append((metrics["state_saved"], folder is not None and (folder / STATE_DIR).is_dir()))

    hp = TrainingConfig(**{**FAST, "epochs": 2})
    train(hp, str(tiny_model), 5, rte, tmp_path, report, save_state=True, final_state=final_state)
    assert seen == [(True, True), (final_state, final_state)]


def test_eval_every_n_steps_reports_mid_epoch(tiny_model, rte, tmp_path):
    from benchmark.train.trainer import train

    reports = []
    train(TrainingConfig(**FAST), str(tiny_model), 1, rte, tmp_path, lambda m, f: reports.append(m), eval_every_steps=4)
    # 96 examples / 16 = 6 steps per epoch: evaluations after steps 4, 6 (epoch end), 8, 12 (epoch end).
    assert [m["optimizer_steps"] for m in reports] == [4, 6, 8, 12]
    assert [m["epoch"] for m in reports] == [pytest.approx(4 / 6, abs=1e-4), 1, pytest.approx(1 + 2 / 6, abs=1e-4), 2]


def test_progress_is_told_after_every_optimizer_step(tiny_model, rte, tmp_path):
    from benchmark.train.trainer import train

    told = []
    train(TrainingConfig(**FAST), str(tiny_model), 1, rte, tmp_path, lambda metrics, folder: None, on_step=told.append)
    steps = -(-96 // FAST["batch_size"])  # 96 training examples, batches of 16, per epoch
    assert [(t["epoch"], t["step"]) for t in told] == [(e, s) for e in (1, 2) for s in range(1, steps + 1)]
    assert all(t["steps"] == steps and t["epochs"] == 2 and t["samples_per_s"] > 0 for t in told)
    # The estimate is the steps still to run at the epoch's rate so far (a comparison of two estimates' seconds
    # failed on a loaded machine, where one step ran twice as slow as another).
    for i, t in enumerate(told):
        assert t["seconds_left"] * t["samples_per_s"] / FAST["batch_size"] == pytest.approx(len(told) - 1 - i)


def test_a_build_lock_left_by_a_killed_compile_is_cleared_and_a_live_one_kept(tmp_path):
    import os
    import time

    from benchmark.train.engine import STALE_BUILD_LOCK_S, clear_stale_build_locks

    finished, old, building = (tmp_path / n for n in ("finished", "old", "building"))
    for folder in (finished, old, building):
        folder.mkdir()
        (folder / "lock").touch()
    hour_ago = time.time() - 3600
    os.utime(finished / "lock", (hour_ago, hour_ago))
    (finished / "op.so").touch()  # built after the lock was taken: the compile ended, its lock was left
    stale = time.time() - STALE_BUILD_LOCK_S - 1
    os.utime(old / "lock", (stale, stale))  # a compile killed before it built anything
    (building / "op.so").touch()
    os.utime(building / "op.so", (hour_ago, hour_ago))  # an older build; a new compile holds the lock now
    clear_stale_build_locks(tmp_path)
    assert not (finished / "lock").exists() and not (old / "lock").exists() and (building / "lock").exists()


def test_a_one_process_trial_takes_a_port_of_its_own_whatever_it_inherits(monkeypatch):
    """Trials side by side on one machine inherit the driver's environment; a MASTER_PORT in it (left by a trial
    that ran in the driver's process) must not make them share one port."""
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = "from benchmark.train.engine import init_distributed; print(init_distributed())"
        env = {**__import__("os").environ, "MASTER_PORT": str(port), "WORLD_SIZE": "1"}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "(0, 1)"


def test_a_trial_imports_deepspeed_without_mlflow_which_stays_importable(tiny_model, glue_dir, tmp_path):
    # A fresh process: this one may hold either already. DeepSpeed's autotuner imports MLflow where it is installed,
    # and loading a model imports DeepSpeed through accelerate, so the trial must import it first.
    code = f"""
import sys
from pathlib import Path
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
tokenizer = load_tokenizer("{tiny_model}")
data = encode_task(GLUE_TASKS["rte"], tokenizer, 64, Path("{glue_dir}"), Path("{tmp_path}"), 32, 16)
run_local_trial(TrainingConfig(epochs=1, batch_size=16), "{tiny_model}", 1, data, Path("{tmp_path}/out"), log=print)
print("deepspeed" in sys.modules, "mlflow" in sys.modules)
import mlflow, deepspeed.autotuning.autotuner as a
print(a.has_mlflow)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-2:] == ["True False", "False"]  # after the trial's and DeepSpeed's own lines
