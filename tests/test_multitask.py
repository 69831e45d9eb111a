"""The multi-task module without Ray: samplers, the shared-encoder model on a real DeepSpeed engine, exports."""

import json
import math
import os

import numpy as np
import pytest
import torch

from benchmark.common.errors import InputError
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.mixing import Mixture, MultitaskConfig, check_multitask, task_probabilities
from benchmark.train.modeling import load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tests.conftest import two_ranks

FAST = dict(epochs=2, batch_size=16, learning_rate=1e-3, eval_batch_size=32, weight_decay=0.1)


def mixture(tasks, sampler="proportional", **kw) -> Mixture:
    return Mixture(
        tuple(tasks),
        sampler,
        kw.get("temperature", 2.0),
        kw.get("cap"),
        {t: 1.0 for t in tasks},
        kw.get("heads", {t: t for t in tasks}),
        kw.get("steps_per_epoch"),
    )


# Samplers -----------------------------------------------------------------------------------------------------

SIZES = {"big": 9000, "mid": 900, "small": 100}


@pytest.mark.parametrize(
    "sampler, kw, expected",
    [
        ("proportional", {}, [0.9, 0.09, 0.01]),
        ("uniform", {}, [1 / 3, 1 / 3, 1 / 3]),
        ("temperature", {"temperature": 2.0}, np.sqrt([9000, 900, 100]) / np.sqrt([9000, 900, 100]).sum()),
        ("temperature", {"temperature": 1.0, "cap": 900}, [900 / 1900, 900 / 1900, 100 / 1900]),
    ],
)
def test_samplers_draw_at_their_stated_rates(sampler, kw, expected):
    m = mixture(SIZES, sampler, steps_per_epoch=20000, **kw)
    np.testing.assert_allclose(m.probabilities(SIZES, 0, 1), expected, rtol=1e-12)
    draws = m.draws(SIZES, 32, seed=3, epoch=0, epochs=1)
    rates = np.array([draws.count(t) for t in SIZES]) / len(draws)
    sigma = np.sqrt(np.asarray(expected) * (1 - np.asarray(expected)) / len(draws))
    assert np.all(np.abs(rates - expected) < 4 * sigma + 1e-9), (rates, expected)


def test_annealed_moves_from_proportional_to_the_end_temperature():
    m = mixture(SIZES, "annealed", temperature=1e9, steps_per_epoch=20000)
    first, last = m.probabilities(SIZES, 0, 5), m.probabilities(SIZES, 4, 5)
    np.testing.assert_allclose(first, [0.9, 0.09, 0.01])
    np.testing.assert_allclose(last, [1 / 3] * 3, atol=1e-6)
    middle = m.probabilities(SIZES, 2, 5)  # exponent halfway: p ∝ n^0.5
    np.testing.assert_allclose(
        middle, task_probabilities("temperature", list(SIZES.values()), 2.0, None, 0, 1), atol=1e-6
    )
    draws = m.draws(SIZES, 32, seed=1, epoch=4, epochs=5)
    assert abs(draws.count("small") / len(draws) - 1 / 3) < 4 * math.sqrt(2 / 9 / len(draws))


def test_an_epoch_is_every_task_batch_once_unless_the_suite_sizes_it():
    assert mixture(SIZES).epoch_steps(SIZES, 100) == 90 + 9 + 1
    assert mixture(SIZES, steps_per_epoch=7).epoch_steps(SIZES, 100) == 7
    # The same seed and epoch draw the same sequence (every rank, every rerun); another epoch draws another.
    m = mixture(SIZES, "uniform")
    assert m.draws(SIZES, 100, 1, 0, 2) == m.draws(SIZES, 100, 1, 0, 2) != m.draws(SIZES, 100, 1, 1, 2)


def test_bad_multitask_sections_are_one_line_input_errors():
    tasks = {t: GLUE_TASKS[t] for t in ("rte", "wnli", "mrpc", "stsb")}
    with pytest.raises(
        InputError, match="multitask.sampler: unknown sampler 'temprature' \\(did you mean 'temperature'\\?\\)"
    ):
        check_multitask(MultitaskConfig(tasks=["rte", "mrpc"], sampler="temprature"), tasks)
    with pytest.raises(InputError, match=r"shared_heads\[0\]: 'rte' and 'stsb' have different label spaces"):
        check_multitask(MultitaskConfig(tasks=["rte", "stsb"], shared_heads=[["rte", "stsb"]]), tasks)
    with pytest.raises(InputError, match="multitask.tasks\\[1\\]: 'cola' is not one of the suite's tasks"):
        check_multitask(MultitaskConfig(tasks=["rte", "cola"]), tasks)
    with pytest.raises(InputError, match="multitask.loss_weights.rte: must be positive"):
        check_multitask(MultitaskConfig(tasks=["rte", "mrpc"], loss_weights={"rte": 0.0}), tasks)
    m = check_multitask(MultitaskConfig(tasks=["rte", "mrpc", "stsb"], loss_weights={"stsb": 0.5}), tasks)
    assert m.heads == {"rte": "rte", "mrpc": "mrpc", "stsb": "stsb"} and m.loss_weights["stsb"] == 0.5


# The model on a DeepSpeed engine -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glue_data(tiny_model, glue_dir, cache_dir):
    tokenizer = load_tokenizer(str(tiny_model))
    return {t: encode_task(GLUE_TASKS[t], tokenizer, 64, glue_dir, cache_dir, 96, 48) for t in ("rte", "stsb", "mrpc")}


def _engine(tiny_model, data, m: Mixture, hp: TrainingConfig):
    from benchmark.train.engine import init_distributed, initialize_engine, linear_schedule
    from benchmark.train.multitask import build_multitask_model, multitask_adamw

    init_distributed()
    torch.manual_seed(0)
    model = build_multitask_model(str(tiny_model), {t: data[t].task for t in m.tasks}, m.heads)
    optimizer = multitask_adamw(model, hp)
    schedule = linear_schedule(optimizer, 10, 0.0)
    return initialize_engine(model, optimizer, schedule, hp, 1), optimizer


def _snapshot(module) -> dict:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_head_not_in_the_batch_is_not_updated(tiny_model, glue_data, precision):
    """Weight decay on: a step on rte moves the encoder and rte's head, and leaves the others
    bit-identical; so does the next step on stsb for rte's head, though Adam holds moments for it by then."""
    from benchmark.train.evaluation import RankSetup
    from benchmark.train.multitask import train_step
    from benchmark.train.steps import loss_function

    m = mixture(["rte", "stsb", "mrpc"])
    hp = TrainingConfig(**FAST, precision=precision)
    engine, optimizer = _engine(tiny_model, glue_data, m, hp)
    engine.train()
    model = engine.module
    batch = np.arange(16)

    def step(task):
        before = {h: _snapshot(model.classifiers[h]) for h in model.classifiers}
        losses = train_step(
            engine,
            optimizer,
            task,
            task,
            glue_data[task].train,
            batch,
            1.0,
            loss_function(glue_data[task].task),
            RankSetup(pad_id=0, batch_size=32, rank=0, world=1, device=engine.device, pad_multiple=1),
            1,
        )
        assert all(math.isfinite(x) for x in losses)
        return before

    for task in ("rte", "stsb", "rte", "mrpc"):
        before = step(task)
        for head in model.classifiers:
            params = dict(model.head_parameters(head))
            changed = [n for n, p in params.items() if not torch.equal(p, before[head][n])]
            if head == task:
                assert changed, f"{task}'s own head did not move"
            else:
                assert not changed, f"head {head} moved on a {task} step: {changed}"
        encoder = dict(model.encoder_parameters())
        prefix = model.classifiers[task].base_model_prefix + "."
        assert any(not torch.equal(p, before[task][prefix + n]) for n, p in encoder.items())
    # Every group has its learning rate back after the step (the schedule set it).
    assert len({g["lr"] for g in optimizer.param_groups}) == 1
    engine.destroy()


def test_the_heads_hold_one_encoder_and_shared_heads_are_one_module(tiny_model, glue_data):
    from benchmark.train.multitask import build_multitask_model

    tasks = {t: glue_data[t].task for t in ("rte", "stsb")}
    model = build_multitask_model(str(tiny_model), tasks, {"rte": "rte", "stsb": "stsb"})
    assert model.classifiers["rte"].base_model is model.classifiers["stsb"].base_model
    assert model.classifier("stsb").config.num_labels == 1 and model.classifier("rte").config.num_labels == 2
    encoder_ids = {id(p) for _, p in model.encoder_parameters()}
    for head in model.classifiers:
        assert not encoder_ids & {id(p) for _, p in model.head_parameters(head)}
    shared = build_multitask_model(
        str(tiny_model), {"rte": GLUE_TASKS["rte"], "qnli": GLUE_TASKS["qnli"]}, {"rte": "rte", "qnli": "rte"}
    )
    assert list(shared.classifiers) == ["rte"] and shared.classifier("qnli") is shared.classifier("rte")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_exported_task_checkpoints_reproduce_the_multitask_predictions_exactly(
    tiny_model, glue_data, tmp_path, precision
):
    from benchmark.train.checkpoints import load_predictions, load_trial_meta
    from benchmark.train.inference import logits_in_file_order
    from benchmark.train.local import run_local_multitask_trial
    from benchmark.train.modeling import load_finetuned_classifier
    from tasks.metrics import compute_metrics, task_score

    m = mixture(["rte", "stsb"], "temperature", temperature=2.0)
    hp = TrainingConfig(**{**FAST, "epochs": 3}, precision=precision)
    result = run_local_multitask_trial(hp, str(tiny_model), 5, glue_data, m, tmp_path, log=lambda *_: None)
    epochs = json.loads((tmp_path / "epochs.json").read_text())
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[-1]["optimizer_steps"] == 3 * (6 + 6)  # 96 examples / 16 per step, two tasks, per epoch
    assert sum(e["tasks"][t]["train_steps"] for e in epochs for t in ("rte", "stsb")) == 36
    assert result.best_score == max(e["score"] for e in epochs)
    for e in epochs:
        assert e["score"] == pytest.approx(np.mean([e["tasks"][t]["score"] for t in ("rte", "stsb")]))
    for task in ("rte", "stsb"):
        folder = tmp_path / task / "checkpoint"
        meta = load_trial_meta(folder)
        # Each task keeps its own best epoch, which need not be the mean's.
        best = max(epochs, key=lambda e: e["tasks"][task]["score"])
        assert meta["epoch"] == best["epoch"] == result.best_epochs[task]
        assert meta["score"] == best["tasks"][task]["score"] and meta["multitask"]["sampler"] == "temperature"
        stored, labels = load_predictions(folder)
        model = load_finetuned_classifier(str(folder)).eval()
        assert model.config.num_labels == (1 if task == "stsb" else 2)
        split = glue_data[task].eval_splits["validation"]
        width = model.config.num_labels
        logits = logits_in_file_order(model, split, 0, hp.eval_batch_size, torch.device("cpu"), width, precision)
        np.testing.assert_array_equal(logits, stored["validation"])
        metrics = compute_metrics(GLUE_TASKS[task], {"validation": logits}, labels)
        assert task_score(metrics) == meta["score"]


# The suite's multitask section ----------------------------------------------------------------------------------


def _suite(tmp_path, multitask: dict, **top) -> str:
    import yaml

    suite = {
        "name": "t",
        "tasks": ["rte", "stsb", "mrpc"],
        "data": {"max_train_samples": 16, "max_eval_samples": 8},
        "training": {"epochs": 1, "batch_size": 8},
        "multitask": multitask,
        "output": str(tmp_path / "run"),
        **top,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return str(path)


@pytest.mark.parametrize(
    "multitask, top, message",
    [
        ({"tasks": ["rte", "stsb"], "sampler": "round_robin"}, {}, "multitask.sampler: unknown sampler 'round_robin'"),
        (
            {"tasks": ["rte", "mrpc"], "shared_heads": [["rte", "mrpc"]]},
            {},
            "multitask.shared_heads[0]: 'rte' and 'mrpc' have different label spaces (entailment/not_entailment vs ",
        ),
        (
            {"tasks": ["rte", "stsb"], "temperatur": 2},
            {},
            "multitask.temperatur: unknown key (did you mean 'temperature'?)",
        ),
        ({"tasks": ["rte", "stsb"], "temperature": 0.5}, {}, "multitask.temperature: must be at least 1.0"),
        ({"tasks": ["rte"]}, {}, "multitask.tasks: name at least two tasks"),
        (
            {"tasks": ["rte", "stsb"], "two_stage": {"enabled": True, "training": {"epoch": 1}}},
            {},
            "multitask.two_stage.training.epoch: unknown key (did you mean 'epochs'?)",
        ),
        (
            {"tasks": ["rte", "stsb"]},
            {"search": {"scheduler": {"type": "pbt"}, "grid": {"learning_rate": [1e-3, 1e-4]}}},
            "search.scheduler: pbt pauses and restores trials from saved states, which multi-task trials do not save",
        ),
        ({"two_stage": {"enabled": True}}, {}, "multitask.two_stage: needs multitask.tasks"),
        (
            {"tasks": ["rte", "stsb"], "two_stage": {"enabled": True}},
            {"ensemble": {"methods": ["mean_prob", "soup_greedy"]}},
            "ensemble.methods: soup_greedy cannot take two-stage checkpoints",
        ),
    ],
)
def test_bad_multitask_suites_exit_2_with_one_line(tmp_path, capsys, glue_dir, cache_dir, multitask, top, message):
    from benchmark.cli import main

    assert main(["validate", _suite(tmp_path, multitask, **top)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_multitask_task_without_data_exits_2(tmp_path, capsys, glue_dir, cache_dir):
    from benchmark.cli import main

    missing = {
        "name": "mine",
        "train": str(tmp_path / "nope.csv"),
        "validation": str(tmp_path / "nope.csv"),
        "text_columns": ["text"],
        "labels": ["a", "b"],
    }
    path = _suite(tmp_path, {"tasks": ["rte", "mine"]}, tasks=["rte", missing])
    assert main(["validate", path]) == 2
    err = capsys.readouterr().err
    assert "nope.csv" in err and err.count("\n") == 1, err


def test_the_plan_holds_joint_and_stage_two_trials(tmp_path, glue_dir, cache_dir):
    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import make_plan

    suite = load_suite(
        _suite(
            tmp_path,
            {
                "tasks": ["rte", "stsb"],
                "sampler": "temperature",
                "cap": 1000,
                "two_stage": {"enabled": True, "training": {"epochs": 2}},
            },
            search={"grid": {"learning_rate": [1e-3, 1e-4]}, "seeds": [1, 2]},
        )
    )
    plan = make_plan(suite)
    kinds = [t.kind for t in plan]
    assert kinds.count("single") == 12 and kinds.count("multitask") == 4 and kinds.count("two-stage") == 8
    joint = next(t for t in plan if t.trial_id == "multitask_lr=0.001_seed=2")
    assert joint.tasks == ("rte", "stsb") and joint.mixture["cap"] == 1000
    assert joint.record_ids == ["multitask-rte_lr=0.001_seed=2", "multitask-stsb_lr=0.001_seed=2"]
    second = next(t for t in plan if t.trial_id == "two-stage-stsb_lr=0.001_seed=2")
    assert second.stage_one == joint.trial_id and second.training["epochs"] == 2 and joint.training["epochs"] == 1
    assert second.model_path == str(suite.output / "trials" / "multitask-stsb_lr=0.001_seed=2" / "checkpoint")
    assert len({t.trial_id for t in plan}) == len(plan)
    from benchmark.plan.points import trials_per_task

    assert trials_per_task(suite) == 2 * 2  # mrpc is trained alone only; rte and stsb get 4 + 4 + 4
    # Anything that shapes stage one changes stage two's fingerprint too.
    other = make_plan(
        load_suite(
            _suite(
                tmp_path,
                {
                    "tasks": ["rte", "stsb"],
                    "sampler": "uniform",
                    "two_stage": {"enabled": True, "training": {"epochs": 2}},
                },
                search={"grid": {"learning_rate": [1e-3, 1e-4]}, "seeds": [1, 2]},
            )
        )
    )
    assert next(t for t in other if t.trial_id == second.trial_id).fingerprint != second.fingerprint


def test_stage_two_has_its_own_grid(tmp_path, glue_dir, cache_dir):
    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import make_plan

    suite = load_suite(
        _suite(
            tmp_path,
            {
                "tasks": ["rte", "stsb"],
                "two_stage": {
                    "enabled": True,
                    "training": {"epochs": 2, "learning_rate": 1e-5},
                    "grid": {"learning_rate": [5e-5, 2e-5]},
                },
            },
            search={"grid": {"learning_rate": [1e-3, 1e-4]}, "seeds": [1]},
        )
    )
    second = [t for t in make_plan(suite) if t.kind == "two-stage"]
    assert len(second) == 2 * 2 * 2  # stage-one points x tasks x stage-two points
    t = next(t for t in second if t.trial_id == "two-stage-rte_lr=0.0001_s2.lr=2e-05_seed=1")
    assert t.point == {"learning_rate": 1e-4, "stage_two.learning_rate": 2e-5}
    assert t.training["learning_rate"] == 2e-5 and t.training["epochs"] == 2  # its grid over its overrides
    assert t.stage_one == "multitask_lr=0.0001_seed=1"


@pytest.mark.parametrize(
    "two_stage, message",
    [
        (
            {"enabled": True, "grid": {"learnig_rate": [1e-5]}},
            "multitask.two_stage.grid.learnig_rate: not a training hyperparameter (did you mean 'learning_rate'?)",
        ),
        (
            {"enabled": True, "grid": {"batch_size": [8, 7]}, "training": {}},
            "stage two's batch_size 7 is not divisible",
        ),
        ({"enabled": True, "training": {"max_seq_length": 4096}}, "4096 exceeds the 512 positions"),
    ],
)
def test_bad_stage_two_settings_exit_2(tmp_path, capsys, glue_dir, cache_dir, two_stage, message):
    from benchmark.cli import main

    path = _suite(tmp_path, {"tasks": ["rte", "stsb"], "two_stage": two_stage}, resources={"workers_per_trial": 2})
    assert main(["validate", path]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_bench_trial_runs_the_joint_trial_without_ray(tiny_model, tmp_path, glue_dir, cache_dir):
    import subprocess
    import sys

    path = _suite(
        tmp_path,
        {"tasks": ["rte", "stsb"], "sampler": "uniform", "steps_per_epoch": 5},
        model=str(tiny_model),
        training={"epochs": 2, "batch_size": 8, "max_seq_length": 64, "precision": "fp32"},
    )
    # This process may hold a process group already (tests above): the child makes its own.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark.cli",
            "trial",
            path,
            "--task",
            "multitask",
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "per task: rte" in proc.stdout
    epochs = json.loads((tmp_path / "out" / "epochs.json").read_text())
    assert [e["optimizer_steps"] for e in epochs] == [5, 10]  # steps_per_epoch sizes the epoch
    for task in ("rte", "stsb"):
        assert (tmp_path / "out" / task / "checkpoint" / "model.safetensors").is_file()


TWO_RANKS = """
import json, sys
from pathlib import Path
from benchmark.train.engine import init_distributed
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_multitask_trial
from benchmark.train.mixing import Mixture
from benchmark.train.modeling import load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS

model, glue, cache, out = sys.argv[1:]
rank, world = init_distributed()
tokenizer = load_tokenizer(model)
data = {t: encode_task(GLUE_TASKS[t], tokenizer, 64, Path(glue), Path(cache), 64, 32) for t in ("rte", "stsb")}
mixture = Mixture(("rte", "stsb"), "uniform", 2.0, None, {"rte": 1.0, "stsb": 0.5},
                  {"rte": "rte", "stsb": "stsb"}, None)
hp = TrainingConfig(epochs=2, batch_size=16, learning_rate=1e-3, zero_stage=2, precision="bf16", eval_batch_size=32)
result = run_local_multitask_trial(hp, model, 3, data, mixture, Path(out) / f"rank{rank}", log=lambda *_: None)
print("RESULT", json.dumps({"rank": rank, "world": world, "epochs": [
    {k: e[k] for k in ("epoch", "score", "optimizer_steps", "train_samples")} for e in result.epochs]}))
"""


def test_two_ranks_with_zero_2_train_one_joint_model(tiny_model, glue_dir, cache_dir, tmp_path):
    """Two data-parallel ranks (torchrun, gloo): every step's batch comes from one task on both ranks, the resting
    heads' zero gradients reduce like any other, both ranks report the same numbers, and rank 0 exports."""
    proc = two_ranks(TWO_RANKS, tiny_model, glue_dir, cache_dir, tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[:4000] + proc.stdout[-2000:]
    results = sorted(
        (json.loads(line.split("RESULT ", 1)[1]) for line in proc.stdout.splitlines() if "RESULT " in line),
        key=lambda r: r["rank"],
    )
    assert [r["world"] for r in results] == [2, 2] and results[0]["epochs"] == results[1]["epochs"]
    assert [e["optimizer_steps"] for e in results[0]["epochs"]] == [8, 16]  # (64 + 64) / 16 per epoch
    assert (tmp_path / "out" / "rank0" / "rte" / "checkpoint" / "model.safetensors").is_file()
    assert not (tmp_path / "out" / "rank1" / "rte").exists()
