"""Intermediate-task transfer: chain trials start from the source checkpoint's encoder with a new head."""

import pytest
import torch
import yaml

from benchmark.common.errors import InputError
from benchmark.config.suite import load_suite
from benchmark.plan.trials import make_plan
from benchmark.train.modeling import build_classifier


@pytest.fixture(scope="module")
def source_checkpoint(tiny_model, tmp_path_factory):
    """A classifier 'fine-tuned' on a 3-label task: the tiny BERT with every weight moved, so that a copy is exact."""
    torch.manual_seed(5)
    model = build_classifier(str(tiny_model), ("a", "b", "c"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    folder = tmp_path_factory.mktemp("source")
    model.save_pretrained(folder)
    from benchmark.train.modeling import load_tokenizer

    load_tokenizer(str(tiny_model)).save_pretrained(folder)
    return folder, model


def test_a_chain_trial_starts_from_the_source_encoder_with_a_new_head(source_checkpoint):
    folder, source = source_checkpoint
    for labels in (("x", "y"), ("x", "y", "z"), None):  # other, same and regression head shapes
        torch.manual_seed(0)
        model = build_classifier(str(folder), labels, new_head=True)
        mine, theirs = model.base_model.state_dict(), source.base_model.state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        head = model.classifier.weight
        assert head.shape[0] == (1 if labels is None else len(labels))
        assert not torch.equal(head, source.classifier.weight[: head.shape[0]])  # a new head, not the source's
        assert model.config.id2label == ({0: "LABEL_0"} if labels is None else dict(enumerate(labels)))
    # Without new_head the same folder keeps its own head (two-stage training relies on this).
    kept = build_classifier(str(folder), ("a", "b", "c"))
    assert torch.equal(kept.classifier.weight, source.classifier.weight)


def _load(tmp_path, **extra):
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "tasks": ["mrpc", "rte", "stsb"],
                "search": {"grid": {"learning_rate": [1e-4, 2e-4]}, "seeds": [1, 2]},
                **extra,
            }
        )
    )
    return load_suite(path)


def test_the_plan_runs_each_chain_as_its_target_per_grid_point_and_seed(tmp_path, source_checkpoint):
    suite = _load(
        tmp_path, chains=["mrpc -> rte", {"source": str(source_checkpoint[0]), "target": "stsb", "name": "mnli"}]
    )
    plan = make_plan(suite)
    chains = [t for t in plan if t.kind == "chain"]
    assert [t.trial_id for t in chains[:2]] == ["mrpc-to-rte_lr=0.0001_seed=1", "mrpc-to-rte_lr=0.0001_seed=2"]
    assert {(t.task, t.chain, t.source_task, t.model_path) for t in chains} == {
        ("rte", "mrpc→rte", "mrpc", ""),
        ("stsb", "mnli→stsb", None, str(source_checkpoint[0])),
    }
    assert len(chains) == 8 and len({t.fingerprint for t in plan}) == len(plan)
    # A source trial run with other settings changes the chain trials' fingerprints, so a resume runs them again.
    other = make_plan(_load(tmp_path, chains=["mrpc -> rte"], data={"max_train_samples": 10}))
    assert not {t.fingerprint for t in other if t.kind == "chain"} & {t.fingerprint for t in chains}


@pytest.mark.parametrize(
    "chains, extra, message",
    [
        (["mrpc -> cola"], {}, "target 'cola' is not one of the suite's tasks"),
        (["rte -> rte"], {}, "cannot be its own source"),
        (["mrpc -> rte", "rte -> stsb"], {}, "chains of chains"),
        (["mrpc rte"], {}, "'source -> target'"),
        (["nowhere -> rte"], {}, "neither a task of the suite nor a model folder"),
        (["mrpc -> rte"], {"ensemble": {"methods": ["soup_uniform"]}}, "soup_uniform cannot take chain checkpoints"),
        ([{"source": "mrpc", "target": "rte", "name": "x"}], {}, "a task source is named by itself"),
    ],
)
def test_bad_chains_are_refused_with_one_line(tmp_path, chains, extra, message):
    with pytest.raises(InputError, match=message):
        _load(tmp_path, chains=chains, **extra)


@pytest.mark.long
def test_a_run_with_a_chain_and_a_train_only_task_scores_both_on_test(tiny_model, glue_dir, cache_dir, tmp_path):
    """One real `bench run` (Ray Tune, Ray Train, DeepSpeed): mrpc, then a train-only user task directly and from
    mrpc's checkpoint; the user task gets held-out validation and test splits and test scores in the leaderboard."""
    import json

    from benchmark.records.final_predictions import test_prediction_path
    from tests.conftest import bench, write_easy_task

    easy = write_easy_task(tmp_path / "easy", train=160, dev=1)
    del easy["validation"]
    suite = {
        "name": "chain",
        "model": str(tiny_model),
        "tasks": ["mrpc", easy],
        "chains": ["mrpc -> easy"],
        "data": {"max_train_samples": 32, "max_eval_samples": 16, "holdout": {"validation": 0.1, "test": 0.1}},
        "training": {"epochs": 1, "batch_size": 16, "max_seq_length": 64, "precision": "fp32"},
        "search": {"seeds": [1]},
        "ensemble": {"methods": ["mean_prob", "vote"]},
        "output": str(tmp_path / "run"),
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    proc = bench("run", tmp_path / "suite.yaml", timeout=2400)  # about a minute on an idle machine
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "run"
    records = {p.parent.name: json.loads(p.read_text()) for p in run.glob("trials/*/record.json")}
    assert set(records) == {"mrpc_seed=1", "easy_seed=1", "mrpc-to-easy_seed=1"}
    chained = records["mrpc-to-easy_seed=1"]
    assert chained["kind"] == "chain" and chained["chain"] == "mrpc→easy"
    assert chained["model_path"] == str(run / records["mrpc_seed=1"]["checkpoint"])  # mrpc's only checkpoint
    splits = json.loads((run / "splits.json").read_text())["easy"]
    assert splits["sizes"] == {"train": 128, "validation": 16, "test": 16} and splits["seed"] == 0
    board = json.loads((run / "leaderboard.json").read_text())
    rows = {r["system"]: r for r in board["rows"]}
    name = tiny_model.name
    assert {f"{name} (single)", f"{name} [mrpc→easy]", f"{name} mean_prob (all)"} <= set(rows)
    assert board["test_tasks"] == ["easy"] and set(rows[f"{name} [mrpc→easy]"]["test"]["task_scores"]) == {"easy"}
    assert "mrpc" not in rows[f"{name} (single)"]["test"]["task_scores"]  # GLUE: validation only
    # The best single checkpoint (chosen on validation's selection half) scores on test what its member scores.
    best = rows[f"{name} best single checkpoint"]
    member = "mrpc-to-easy_seed=1" if best["members"]["easy"] == ["mrpc-to-easy_seed=1"] else "easy_seed=1"
    direct = rows[f"{name} [mrpc→easy]" if member.startswith("mrpc-to") else f"{name} (single)"]
    assert best["test"]["task_scores"]["easy"] == pytest.approx(direct["test"]["task_scores"]["easy"])
    assert set(rows[f"{name} vote (all)"]["test"]["task_scores"]) == {"easy"}
    for record in (records["easy_seed=1"], chained):  # one test file per chosen checkpoint, none for mrpc
        assert test_prediction_path(run, record["trial_id"]).is_file()
    assert not test_prediction_path(run, "mrpc_seed=1").exists()
    assert "easy test (acc)" in (run / "leaderboard.md").read_text()
