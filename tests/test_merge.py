"""Cross-task merging on real checkpoints of tiny random BERTs: the arithmetic, λ chosen on the selection half,
the exports and rows, and refusing what must not be merged."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmark.common.errors import InputError
from benchmark.config.suite import load_suite
from benchmark.records.store import RunStore
from benchmark.train.checkpoints import PREDICTIONS_FILE, load_predictions
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import load_finetuned_classifier, load_tokenizer
from ensembles.merge import apply, base_encoder, build_merges, merged_vector, task_vectors, ties_vector, trim
from ensembles.soups import read_weights
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tasks.splits import score_on, split_dev

FAST = dict(epochs=1, batch_size=16, learning_rate=1e-3, eval_batch_size=32, max_seq_length=64)
DATA = {"max_train_samples": 96, "max_eval_samples": 48}
TASKS = ("rte", "mrpc")


@pytest.fixture(scope="module")
def trained(tiny_model, glue_dir, cache_dir, tmp_path_factory):
    """Single-task checkpoints of the tiny BERT: rte and mrpc, seeds 1 and 2; and rte from another base."""
    from conftest import make_tiny_bert

    root = tmp_path_factory.mktemp("merge-trials")
    other_base = make_tiny_bert(root / "other-base", seed=1)
    tokenizer = load_tokenizer(str(tiny_model))
    data = {
        t: encode_task(
            GLUE_TASKS[t], tokenizer, 64, glue_dir, cache_dir, DATA["max_train_samples"], DATA["max_eval_samples"]
        )
        for t in TASKS
    }
    out = {"model": tiny_model.name}  # the model's name in the suite, rows and records
    for task, seed, base in (
        ("rte", 1, tiny_model),
        ("rte", 2, tiny_model),
        ("mrpc", 1, tiny_model),
        ("mrpc", 2, tiny_model),
        ("rte", 3, other_base),
    ):
        name = f"{task}-{seed}"
        run_local_trial(TrainingConfig(**FAST), str(base), seed, data[task], root / name, log=lambda *_: None)
        out[name] = (root / name / "checkpoint", str(base), seed, task)
    return out


def make_run(folder: Path, trained: dict, names: list[str]) -> RunStore:
    """A run directory holding the given checkpoints as finished single-task trials, with their records."""
    store = RunStore(folder)
    for name in names:
        checkpoint, base, seed, task = trained[name]
        shutil.copytree(checkpoint, store.checkpoint_dir(name))
        logits, labels = load_predictions(checkpoint)
        spec = GLUE_TASKS[task]
        metrics, score = score_on(spec, logits, labels, {s: np.arange(len(v)) for s, v in labels.items()})
        store.save_record(
            {
                "trial_id": name,
                "status": "finished",
                "kind": "single",
                "model": trained["model"],
                "task": task,
                "task_spec": spec.to_dict(),
                "metric_keys": spec.metric_keys(),
                "model_path": base,
                "grid_point": {},
                "seed": seed,
                "training": TrainingConfig(**FAST).to_dict(),
                "fingerprint": name,
                "best_score": score,
                "best_metrics": metrics,
                "epochs": [],
                "checkpoint": f"trials/{name}/checkpoint",
                "wall_seconds": 100.0,
                "train_samples": 96,
                "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
            }
        )
    return store


def suite_for(tmp_path: Path, tiny_model: Path, store: RunStore, **merge) -> object:
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "merge",
                "model": str(tiny_model),
                "tasks": list(TASKS),
                "data": DATA,
                "training": {k: v for k, v in FAST.items()},
                "search": {"seeds": [1, 2]},
                "ensemble": {"split_seed": 4},
                "merge": {"methods": ["task_arithmetic", "ties"], **merge},
                "output": str(store.root),
            }
        )
    )
    suite = load_suite(path)
    store.write_suite(suite.to_dict())
    return suite


# ---- the arithmetic ----


@pytest.mark.parametrize("method", ["task_arithmetic", "ties"])
def test_a_merge_of_one_task_at_scale_one_is_that_checkpoint_bit_for_bit(trained, tiny_model, method):
    checkpoint = trained["rte-1"][0]
    own = read_weights(checkpoint)
    base = base_encoder(str(tiny_model))
    assert "classifier.weight" not in base and "bert.encoder.layer.0.attention.self.query.weight" in base
    tau = merged_vector(method, task_vectors(base, [own]), density=1.0)
    merged = apply(base, tau, 1.0, {n: own[n].dtype for n in base})
    assert merged.keys() == base.keys()
    changed = [n for n in base if not torch.equal(own[n], base[n])]
    assert len(changed) > 10  # fine-tuning moved the encoder: the identity is not trivial
    for name, value in merged.items():
        assert value.dtype == own[name].dtype and torch.equal(value, own[name]), name


def test_task_arithmetic_adds_the_scaled_sum_of_the_task_vectors(trained, tiny_model):
    a, b = read_weights(trained["rte-1"][0]), read_weights(trained["mrpc-1"][0])
    base = base_encoder(str(tiny_model))
    merged = apply(
        base, merged_vector("task_arithmetic", task_vectors(base, [a, b]), 0.2), 0.5, {n: torch.float32 for n in base}
    )
    name = "bert.encoder.layer.1.output.dense.weight"
    expected = base[name].double() + 0.5 * ((a[name].double() - base[name]) + (b[name].double() - base[name]))
    torch.testing.assert_close(merged[name], expected.float(), rtol=0, atol=0)


def test_ties_trims_elects_the_sign_and_averages_the_agreeing_entries():
    v1 = torch.tensor([1.0, -2.0, 0.1, 3.0], dtype=torch.float64)
    v2 = torch.tensor([2.0, 1.0, -0.2, -4.0], dtype=torch.float64)
    assert trim(v1, 0.5).tolist() == [0.0, -2.0, 0.0, 3.0]
    assert trim(v2, 0.5).tolist() == [2.0, 0.0, 0.0, -4.0]
    # Sum of the trimmed vectors [2, -2, 0, -1]: signs +, -, none, -; the 3 of v1 disagrees and is left out.
    assert ties_vector([v1, v2], 0.5).tolist() == [2.0, -2.0, 0.0, -4.0]
    # Two that agree are averaged, not summed (unlike task arithmetic).
    assert ties_vector([v1, v1], 1.0).tolist() == v1.tolist()
    assert trim(v1, 1.0) is v1


# ---- merging a run's checkpoints ----


@pytest.fixture(scope="module")
def merged_run(trained, tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("merge-run")
    store = make_run(folder / "run", trained, ["rte-1", "rte-2", "mrpc-1", "mrpc-2"])
    suite = suite_for(folder, tiny_model, store, scales=[0.5, 1.0], ties_density=0.5)
    lines = []
    made = build_merges(store, suite, suite.merge, log=lines.append)
    return store, suite, made, lines


def test_each_method_and_seed_exports_one_checkpoint_per_task(merged_run):
    store, suite, made, _ = merged_run
    assert sorted(made) == sorted(
        f"merged-{m}-{t}_seed={s}" for m in ("task_arithmetic", "ties") for t in TASKS for s in (1, 2)
    )
    records = store.finished()
    for record_id in made:
        record = records[record_id]
        assert record["kind"] == "merged" and record["system"] == f"{record['model']} {record['merge']['method']}"
        assert record["merge"]["sources"] == {t: f"{t}-{record['seed']}" for t in TASKS}
        folder = store.root / record["checkpoint"]
        model = load_finetuned_classifier(str(folder))  # a plain Hugging Face folder
        assert model.config.num_labels == 2 and (folder / PREDICTIONS_FILE).is_file()
        meta = json.loads((folder / "trial.json").read_text())
        assert meta["kind"] == "merged" and meta["task"]["name"] == record["task"]
    # Each task kept its own head; the encoders of one merge are one.
    ta = {t: read_weights(store.root / records[f"merged-task_arithmetic-{t}_seed=1"]["checkpoint"]) for t in TASKS}
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(ta["rte"][name], ta["mrpc"][name])
    assert torch.equal(ta["rte"]["classifier.weight"], read_weights(store.checkpoint_dir("rte-1"))["classifier.weight"])


def test_lambda_is_chosen_on_the_selection_half_and_the_row_reports_the_report_half(merged_run):
    store, suite, made, _ = merged_run
    records = store.finished()
    for record_id in made:
        record = records[record_id]
        merge = record["merge"]
        scores = {float(k): v for k, v in merge["selection_scores"].items()}
        assert set(scores) == {0.5, 1.0} and merge["scale"] == max(scores, key=scores.get)
        # The exported dev logits are those of the chosen λ: the selection score recomputes from them, and the
        # record's score is the report half of the same logits.
        selection, report = [], None
        for task in TASKS:
            other = records[record_id.replace(f"-{record['task']}_", f"-{task}_")]
            logits, labels = load_predictions(store.root / other["checkpoint"])
            halves = split_dev(GLUE_TASKS[task], {s: len(v) for s, v in labels.items()}, 4)
            selection.append(score_on(GLUE_TASKS[task], logits, labels, halves.selection)[1])
            if task == record["task"]:
                report = score_on(GLUE_TASKS[task], logits, labels, halves.report)[1]
        assert np.mean(selection) == pytest.approx(scores[merge["scale"]])
        assert record["best_score"] == pytest.approx(report)


def test_the_leaderboard_has_a_merged_row_per_method_over_seeds(merged_run, trained):
    from benchmark.results.board import leaderboard_from_runs

    store, *_ = merged_run
    board, _ = leaderboard_from_runs([store.root], resamples=50)
    rows = {r["system"].replace(trained["model"], "tiny"): r for r in board["rows"]}
    assert {"tiny task_arithmetic", "tiny ties", "tiny (single)"} <= set(rows)
    ties = rows["tiny ties"]
    assert ties["kind"] == "merged" and ties["seeds"] == 2 and ties["std"]["average"] is not None
    assert ties["config"] == {"rte": {"merge": "ties"}, "mrpc": {"merge": "ties"}}
    # Compute: its own time and the four single-task trials it merged (100 s on one CPU each).
    own = sum(r["wall_seconds"] for r in store.finished().values() if r.get("system") == ties["system"])
    assert ties["compute"]["device_hours"] == pytest.approx((4 * 100.0 + own) / 3600)
    report_half = split_dev(GLUE_TASKS["rte"], {"validation": 48}, 4).report["validation"]
    assert ties["ci"]["examples"]["rte"] == len(report_half)
    assert set(ties["calibration"]) == {"rte", "mrpc"}


def test_predict_takes_a_merged_rows_checkpoints(merged_run):
    from benchmark.results.board import leaderboard_from_runs
    from benchmark.results.submission import best_checkpoints

    store, *_ = merged_run
    board, records = leaderboard_from_runs([store.root], resamples=50)
    row, chosen = best_checkpoints(board, records, " ties")
    assert row["kind"] == "merged" and set(chosen) == set(TASKS)
    assert all(r["kind"] == "merged" and r["merge"]["method"] == "ties" for r in chosen.values())


def test_an_unchanged_merge_is_kept_and_changed_settings_replace_it(merged_run, tiny_model, trained):
    store, suite, made, _ = merged_run
    record_file = store.trial_dir(made[0]) / "record.json"
    before = record_file.stat().st_mtime_ns
    assert sorted(build_merges(store, suite, suite.merge, log=lambda *_: None)) == sorted(made)
    assert record_file.stat().st_mtime_ns == before
    only_ties = suite_for(store.root.parent, tiny_model, store, methods=["ties"], scales=[0.5, 1.0], ties_density=0.5)
    build_merges(store, only_ties, only_ties.merge, log=lambda *_: None)
    kinds = {r.get("system") for r in store.finished().values() if r.get("kind") == "merged"}
    assert kinds == {f"{trained['model']} ties"} and not store.trial_dir("merged-task_arithmetic-rte_seed=1").exists()


def test_checkpoints_from_another_base_are_refused_by_name(trained, tiny_model, tmp_path):
    store = make_run(tmp_path / "run", trained, ["rte-3", "mrpc-1"])
    records = {r["trial_id"]: r for r in store.records()}
    records["rte-3"]["seed"] = 1  # the same seed as mrpc-1, so that they are merged together
    store.save_record(records["rte-3"])
    suite = suite_for(tmp_path, tiny_model, store)
    with pytest.raises(InputError) as e:
        build_merges(store, suite, suite.merge, log=lambda *_: None)
    assert "trials/mrpc-1/checkpoint" in str(e.value) and "cannot join a cross-task merge" in str(e.value)
    assert "fine-tuned from" in str(e.value)
