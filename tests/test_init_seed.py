"""`training.init_seed`: the head (and LoRA adapters) start from the init seed, while dropout and data order follow the
trial seed; fingerprints of runs made before the key keep; soups and `bench validate` respect it."""

import numpy as np
import pytest
import torch

from benchmark.train.batching import global_batches
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.lora import classifier_of
from benchmark.train.modeling import build_classifier, load_tokenizer
from benchmark.train.multitask import build_multitask_model
from benchmark.train.trainer import _prepare, start_trial
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tests.conftest import plan_prints

FAST = dict(epochs=1, batch_size=16, eval_batch_size=32, max_seq_length=64, zero_stage=0, precision="fp32")


@pytest.fixture(scope="module")
def rte(tiny_model, glue_dir, cache_dir):
    return encode_task(GLUE_TASKS["rte"], load_tokenizer(str(tiny_model)), 64, glue_dir, cache_dir, 96, 48)


def prepared(tiny_model, data, seed: int, **training) -> tuple[dict, torch.Tensor, list]:
    """What a trial starts training from: its new weights (head, LoRA adapters), the first draw of torch's RNG
    (what dropout draws from) and its first epoch's batches (the data order)."""
    hp, rank, world = start_trial(TrainingConfig(**FAST, **training), seed, None)
    *_, engine, _, _, _, _ = _prepare(hp, str(tiny_model), seed, data, rank, world, False, False, None, False)
    model = engine.module
    new = {n: p.detach().clone() for n, p in model.named_parameters() if "classifier" in n or "lora_" in n}
    draw = torch.rand(8)
    batches = global_batches(data.train.lengths, hp.batch_size, seed, 0, hp.group_by_length, 1)
    engine.destroy()
    assert new, "no head found"
    return new, draw, batches


def same_weights(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_one_init_seed_gives_every_trial_seed_the_same_head_and_its_own_dropout_and_data_order(tiny_model, rte):
    head1, draw1, order1 = prepared(tiny_model, rte, 1, init_seed=0)
    head2, draw2, order2 = prepared(tiny_model, rte, 2, init_seed=0)
    assert same_weights(head1, head2)
    assert not torch.equal(draw1, draw2)
    assert any(not np.array_equal(a, b) for a, b in zip(order1, order2))
    # Another init seed: another head, and the same dropout draws and data order for the same trial seed.
    head3, draw3, order3 = prepared(tiny_model, rte, 1, init_seed=7)
    assert not same_weights(head1, head3)
    assert torch.equal(draw1, draw3) and all(np.array_equal(a, b) for a, b in zip(order1, order3))


def test_a_null_init_seed_draws_each_seeds_own_head_as_the_trial_seed_would(tiny_model, rte):
    head1, _, _ = prepared(tiny_model, rte, 1)
    head2, _, _ = prepared(tiny_model, rte, 2)
    assert not same_weights(head1, head2)  # the behaviour before the key
    # The head of a null init seed is the one init seed = the trial seed gives: so old checkpoints group truly.
    explicit, _, _ = prepared(tiny_model, rte, 2, init_seed=1)
    assert same_weights(head1, explicit)


def test_lora_adapters_start_from_the_init_seed(tiny_model, rte):
    lora = dict(lora_r=4, lora_alpha=8.0)
    a, _, _ = prepared(tiny_model, rte, 1, init_seed=0, **lora)
    b, _, _ = prepared(tiny_model, rte, 2, init_seed=0, **lora)
    c, _, _ = prepared(tiny_model, rte, 1, init_seed=5, **lora)
    adapters = [k for k in a if "lora_A" in k]
    assert adapters and same_weights(a, b)
    assert not all(torch.equal(a[k], c[k]) for k in adapters)


def test_each_joint_head_starts_as_the_single_task_head_of_its_init_seed(tiny_model):
    tasks = {t: GLUE_TASKS[t] for t in ("rte", "stsb")}
    joint = build_multitask_model(str(tiny_model), tasks, {"rte": "rte", "stsb": "stsb"}, init_seed=3)
    for task, spec in tasks.items():
        torch.manual_seed(3)
        alone = classifier_of(build_classifier(str(tiny_model), spec.label_names))
        own = dict(joint.classifiers[task].classifier.named_parameters())
        for name, value in alone.classifier.named_parameters():
            torch.testing.assert_close(own[name], value, rtol=0, atol=0)


def test_the_init_seed_lands_in_the_checkpoint_and_the_record(tiny_model, rte, tmp_path):
    from benchmark.records.store import trial_record
    from benchmark.train.checkpoints import load_trial_meta
    from benchmark.train.local import run_local_trial

    hp = TrainingConfig(**{**FAST, "learning_rate": 1e-3, "init_seed": 4})
    run_local_trial(hp, str(tiny_model), 2, rte, tmp_path / "t", log=lambda *_: None)
    meta = load_trial_meta(tmp_path / "t" / "checkpoint")
    assert meta["init_seed"] == 4 and meta["seed"] == 2 and meta["training"]["init_seed"] == 4
    spec = {"trial_id": "t", "task": "rte", "model_name": "m", "model_path": "p", "point": {}, "fingerprint": "f"}
    assert (
        trial_record({**spec, "seed": 2, "training": hp.to_dict()}, {}, [], [], "finished", None, 0)["init_seed"] == 4
    )
    null = TrainingConfig(**FAST).to_dict()
    assert trial_record({**spec, "seed": 2, "training": null}, {}, [], [], "finished", None, 0)["init_seed"] == 2
    # A record made before the key has no init_seed in its training: the trial seed drew its head.
    old = {k: v for k, v in null.items() if k != "init_seed"}
    assert trial_record({**spec, "seed": 3, "training": old}, {}, [], [], "finished", None, 0)["init_seed"] == 3


# ---- the plan and `bench validate` ----


def test_a_null_init_seed_keeps_the_fingerprints_of_runs_made_before_the_key(
    tmp_path, monkeypatch, glue_dir, cache_dir
):
    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import make_plan
    from tests.test_suite import write_suite

    path = write_suite(tmp_path, tasks=["rte", "mrpc"], multitask={"tasks": ["rte", "mrpc"]})
    now = plan_prints(path)
    fixed = make_plan(load_suite(path, ["training.init_seed=0"]))
    before = plan_prints(path, without="init_seed", monkeypatch=monkeypatch)  # the code before the key
    assert len(now) == 3 and now == before  # rte, mrpc and the joint trial
    assert {t.trial_id for t in fixed} == set(now) and not {t.fingerprint for t in fixed} & set(now.values())
    assert all(t.training["init_seed"] == 0 for t in fixed)


def test_a_grid_over_init_seeds_names_each_trial_by_its_init(tmp_path, glue_dir, cache_dir):
    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import make_plan
    from tests.test_suite import write_suite

    path = write_suite(tmp_path, search__grid={"init_seed": [0, 1]}, search__seeds=[1, 2])
    plan = make_plan(load_suite(path, ["ensemble.methods=[soup_greedy]"]))
    assert sorted(t.trial_id for t in plan) == [
        "rte_init=0_seed=1", "rte_init=0_seed=2", "rte_init=1_seed=1", "rte_init=1_seed=2"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "extra, where",
    [
        ([], "training.init_seed"),
        (["search.grid.init_seed=[null, 0]"], "search.grid.init_seed"),
    ],
)
def test_soups_over_several_seeds_without_one_init_are_refused_at_validate(tmp_path, capsys, glue_dir, cache_dir,
                                                                           extra, where):  # fmt: skip
    from benchmark.cli import main
    from tests.test_suite import write_suite

    path = str(write_suite(tmp_path, search__seeds=[1, 2, 3]))
    soups = ["--set", "ensemble.methods=[mean_prob, soup_uniform]"]
    assert main(["validate", path, *soups, *[a for e in extra for a in ("--set", e)]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"{where}: is null, so each of the 3 seeds starts from its own random head and soup_uniform" in err
    assert main(["validate", path, *soups, "--set", "training.init_seed=0"]) == 0  # one init: valid
    capsys.readouterr()
    assert main(["validate", path, "--set", "ensemble.methods=[mean_prob, greedy]"]) == 0  # no soup: no init needed
    one_seed = ["--set", "search.seeds=[1]", "--set", "search.grid.learning_rate=[1.0e-3, 1.0e-4]"]
    assert main(["validate", path, *soups, *one_seed]) == 0  # one seed: its grid points share its init


@pytest.mark.parametrize("suite", ["configs/quickstart.yaml", "configs/ensembles.yaml"])
def test_the_shipped_soup_suites_fine_tune_every_seed_from_one_init(suite, glue_dir, cache_dir):
    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import make_plan

    plan = make_plan(load_suite(suite))
    assert {t.seed for t in plan} == {1, 2, 3} and {t.training["init_seed"] for t in plan} == {0}
