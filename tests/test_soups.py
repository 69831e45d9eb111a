"""Weight soups on real checkpoints of tiny random BERTs: averaging, running, and refusing what must not be mixed."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.common.errors import InputError
from benchmark.records.store import RunStore
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import load_tokenizer
from ensembles.candidates import Candidate, find_candidates
from ensembles.soups import SoupRunner, check_ingredients, greedy_soup, read_weights, same_init, uniform_soup
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tasks.spec import TaskSpec

FAST = dict(epochs=1, batch_size=16, learning_rate=1e-3, eval_batch_size=32, max_seq_length=64)


@pytest.fixture(scope="module")
def rte(tiny_model, glue_dir, cache_dir):
    return encode_task(GLUE_TASKS["rte"], load_tokenizer(str(tiny_model)), 64, glue_dir, cache_dir, 96, 48)


@pytest.fixture(scope="module")
def trained(tiny_model, rte, tmp_path_factory):
    """Checkpoints of two seeds of the tiny BERT (each its own head), two seeds from one init seed, and one of another
    tiny BERT (other initial weights)."""
    from conftest import make_tiny_bert

    root = tmp_path_factory.mktemp("soup-trials")
    other_base = make_tiny_bert(root / "other-base", seed=1)
    out = {}
    for name, base, seed, init in (
        ("seed1", tiny_model, 1, None),
        ("seed2", tiny_model, 2, None),
        ("init0-seed1", tiny_model, 1, 0),
        ("init0-seed2", tiny_model, 2, 0),
        ("other", other_base, 1, None),
    ):
        hp = TrainingConfig(**FAST, init_seed=init)
        run_local_trial(hp, str(base), seed, rte, root / name, log=lambda *_: None)
        out[name] = root / name / "checkpoint"
    return out


def make_run(folder: Path, checkpoints: dict[str, Path]) -> RunStore:
    """A run directory holding the given checkpoints as finished trials."""
    store = RunStore(folder)
    for trial_id, checkpoint in checkpoints.items():
        shutil.copytree(checkpoint, store.checkpoint_dir(trial_id))
        store.save_record(
            {"trial_id": trial_id, "status": "finished", "kind": "single", "model": "tiny", "fingerprint": trial_id}
        )
    return store


def test_a_uniform_soup_of_two_identical_checkpoints_is_that_checkpoint(trained, rte, tmp_path):
    store = make_run(tmp_path / "run", {"a": trained["seed1"], "b": trained["seed1"]})
    a, b = find_candidates(store)["rte"]
    check_ingredients([a, b])
    soup = uniform_soup([a, b])
    original = read_weights(a.folder)
    assert soup.keys() == original.keys()
    for name, value in original.items():
        torch.testing.assert_close(soup[name].to(value.dtype), value, rtol=0, atol=0)
    runner = SoupRunner(a, load_tokenizer(str(a.folder)), rte)
    np.testing.assert_array_equal(runner.logits(soup)["validation"], runner.logits(original)["validation"])
    # Running the checkpoint reproduces the dev logits the trainer saved beside it.
    np.testing.assert_allclose(runner.logits(original)["validation"], a.logits["validation"], atol=0.05)


def test_a_uniform_soup_is_the_mean_of_the_weights(trained, tmp_path):
    store = make_run(tmp_path / "run", {"a": trained["seed1"], "b": trained["seed2"]})
    a, b = find_candidates(store)["rte"]
    check_ingredients([a, b])  # two seeds of one base model: same initial encoder, same architecture
    soup = uniform_soup([a, b])
    wa, wb = read_weights(a.folder), read_weights(b.folder)
    assert not torch.equal(wa["classifier.weight"], wb["classifier.weight"])
    for name in ("classifier.weight", "bert.encoder.layer.0.attention.self.query.weight"):
        torch.testing.assert_close(soup[name], (wa[name].float() + wb[name].float()) / 2, rtol=0, atol=1e-7)


def test_a_checkpoint_from_other_initial_weights_is_refused_by_name(trained, tmp_path):
    store = make_run(tmp_path / "run", {"a": trained["seed1"], "b": trained["other"]})
    a, b = find_candidates(store)["rte"]
    with pytest.raises(InputError) as err:
        check_ingredients([a, b])
    assert err.value.where == "trials/b/checkpoint"
    assert "cannot join a weight soup with trials/a/checkpoint: it was fine-tuned from" in err.value.what
    assert "other-base" in err.value.what


def test_a_checkpoint_of_another_architecture_is_refused_by_name(trained, tmp_path):
    store = make_run(tmp_path / "run", {"a": trained["seed1"], "b": trained["seed2"]})
    config_file = store.checkpoint_dir("b") / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "num_hidden_layers": 3}))
    a, b = find_candidates(store)["rte"]
    with pytest.raises(InputError, match="its model config differs in num_hidden_layers") as err:
        check_ingredients([a, b])
    assert err.value.where == "trials/b/checkpoint"


def weight_candidate(folder: Path, name: str, value: float) -> Candidate:
    """A checkpoint holding a single weight `w`, enough to follow a greedy soup's decisions."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"w": torch.tensor([value])}, str(folder / "model.safetensors"))
    return Candidate(
        name, "single", "m", folder, name, TaskSpec.from_dict(GLUE_TASKS["stsb"].to_dict()), {}, {}, {}, None, 0
    )


class WeightEcho:
    """Stands in for running a model: the 'logits' are the weight itself."""

    def logits(self, weights):
        return {"validation": weights["w"].numpy().copy()}


def test_greedy_soup_keeps_ingredients_that_do_not_hurt_and_rejects_the_rest(tmp_path):
    # Target weight 2. Soup {1}: 1 off. With 3: mean 2, exact: kept. With 100: mean 34.7: rejected.
    # With 2: mean 2, as good as before: kept (Wortsman et al. keep an ingredient that does not hurt).
    ingredients = [weight_candidate(tmp_path / n, n, v) for n, v in (("a", 1.0), ("b", 3.0), ("c", 100.0), ("d", 2.0))]

    def score(logits):
        return -abs(float(logits["validation"][0]) - 2.0)

    chosen, weights, logits = greedy_soup(ingredients, WeightEcho(), score)
    assert [c.trial_id for c in chosen] == ["a", "b", "d"]
    assert weights["w"].tolist() == [2.0] and logits["validation"].tolist() == [2.0]


def test_a_soup_takes_only_the_candidates_that_share_the_best_ones_init_seed(trained, tmp_path):
    store = make_run(
        tmp_path / "run",
        {"a": trained["seed1"], "b": trained["init0-seed1"], "c": trained["seed2"], "d": trained["init0-seed2"]},
    )
    found = {c.trial_id: c for c in find_candidates(store)["rte"]}
    assert {t: c.init_seed for t, c in found.items()} == {"a": 1, "b": 0, "c": 2, "d": 0}  # null: the trial seed
    for order in ("abcd", "bacd", "cdab", "dcba"):
        pool = [found[t] for t in order]
        assert [c.trial_id for c in same_init(pool)] == [t for t in order if found[t].init_seed == pool[0].init_seed]
    # One init seed, two trial seeds: the same head before training, two fine-tuned ones after.
    wb, wd = read_weights(found["b"].folder), read_weights(found["d"].folder)
    assert not torch.equal(wb["classifier.weight"], wd["classifier.weight"])


def test_a_run_builds_each_soup_from_the_init_group_of_its_best_candidate(trained, tiny_model, tmp_path):
    import yaml

    from benchmark.config.suite import load_suite
    from benchmark.train.checkpoints import load_trial_meta
    from ensembles.build import build_ensembles

    checkpoints = {
        "a": trained["init0-seed1"],
        "b": trained["seed1"],
        "c": trained["init0-seed2"],
        "d": trained["seed2"],
    }
    store = make_run(tmp_path / "run", checkpoints)
    (tmp_path / "suite.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "soups",
                "model": str(tiny_model),
                "tasks": ["rte"],
                "data": {"max_train_samples": 96, "max_eval_samples": 48},
                "training": FAST,
                "search": {"seeds": [1]},
                "ensemble": {"methods": ["soup_uniform", "soup_greedy"], "split_seed": 0},
                "output": str(store.root),
            }
        )
    )
    suite = load_suite(tmp_path / "suite.yaml")
    state = build_ensembles(store, suite, suite.ensemble, log=lambda *_: None)
    ranked = [c["trial_id"] for c in state["candidates"]["rte"]]
    init = {"a": 0, "b": 1, "c": 0, "d": 2}
    assert [c["init_seed"] for c in state["candidates"]["rte"]] == [init[t] for t in ranked]
    group = [t for t in ranked if init[t] == init[ranked[0]]]
    assert ranked == ["a", "b", "c", "d"] and group == ["a", "c"]  # the tiny BERT's scores tie: trial-id order
    rows = {r["system"]: r for r in state["rows"]}
    assert rows["tiny soup_uniform (all)"]["members"]["rte"] == group
    assert rows["tiny soup_uniform (all)"]["member_weights"]["rte"] == [1 / len(group)] * len(group)
    greedy = rows["tiny soup_greedy (all)"]["members"]["rte"]
    assert greedy[0] == ranked[0] and set(greedy) <= set(group)
    soup = store.root / rows["tiny soup_uniform (all)"]["soups"]["rte"]
    assert load_trial_meta(soup)["init_seed"] == init[ranked[0]]
