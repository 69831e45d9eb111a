"""Ensembles end to end: `bench run` with an `ensemble:` section through the CLI, then `bench ensemble` and
`bench table` on the finished run, all on a tiny random BERT and GLUE slices."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.train.checkpoints import load_predictions
from ensembles.combine import mean_prob
from tasks.glue import GLUE_TASKS
from tasks.metrics import compute_metrics, task_score
from tasks.splits import score_on, split_dev
from tests.conftest import bench, plain_logits

METHODS = ["mean_prob", "vote", "greedy", "soup_uniform", "soup_greedy"]


@pytest.fixture(scope="module")
def run(tiny_model, glue_dir, cache_dir, tmp_path_factory):
    import shutil

    folder = tmp_path_factory.mktemp("ensemble-e2e")
    shutil.copytree(tiny_model, folder / "tiny")  # the folder's name is the model's name in the rows
    suite = {
        "name": "ens",
        "model": str(folder / "tiny"),
        "tasks": ["rte", "stsb"],
        "data": {"max_train_samples": 64, "max_eval_samples": 40},
        "training": {"epochs": 2, "batch_size": 16, "max_seq_length": 64},
        "search": {"grid": {"learning_rate": [1e-3, 3e-4, 1e-4]}, "seeds": [1]},
        "ensemble": {"methods": METHODS, "k": [2, None], "split_seed": 5},
        "output": str(folder / "run"),
    }
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return path, folder / "run", proc


def rows_by_system(run_dir: Path) -> dict:
    return {r["system"]: r for r in json.loads((run_dir / "leaderboard.json").read_text())["rows"]}


def checkpoints(run_dir: Path, task: str) -> dict:
    """trial id -> (logits, labels) of the task's kept checkpoints, read straight from the trial folders."""
    out = {}
    for record in map(lambda p: json.loads(p.read_text()), sorted(run_dir.glob("trials/*/record.json"))):
        if record["task"] == task:
            out[record["trial_id"]] = load_predictions(run_dir / record["checkpoint"])
    return out


def test_the_leaderboard_holds_a_row_per_method_and_pool_beside_the_best_single(run):
    _, run_dir, proc = run
    rows = rows_by_system(run_dir)
    expected = {f"tiny {m} ({pool})" for m in METHODS for pool in ("top 2", "all")} | {
        "tiny best single checkpoint",
        "tiny (single)",
        "tiny (zero-shot)",  # the floors, as in every leaderboard
        "tiny (probe)",
    }
    assert set(rows) == expected
    for system, row in rows.items():
        if system in ("tiny (single)", "tiny (zero-shot)", "tiny (probe)"):
            assert "members" not in row
            continue
        assert row["protocol"]["name"] == "split-half" and row["protocol"]["split_seed"] == 5
        assert set(row["members"]) == {"rte", "stsb"} and row["seeds"] == 1
        assert row["average"] == pytest.approx(np.mean(list(row["task_scores"].values())))
    assert rows["tiny best single checkpoint"]["kind"] == "single"
    assert rows["tiny mean_prob (top 2)"]["kind"] == "ensemble"
    assert (
        rows["tiny mean_prob (top 2)"]["compute"]["inference_passes"] == 2
        and rows["tiny mean_prob (all)"]["compute"]["inference_passes"] == 3
    )
    assert (
        rows["tiny soup_uniform (all)"]["compute"]["inference_passes"] == 1
        and rows["tiny soup_greedy (all)"]["compute"]["inference_passes"] == 1
    )
    greedy = rows["tiny greedy (all)"]
    assert greedy["compute"]["inference_passes"] == np.mean([len(m) for m in greedy["members"].values()])
    assert all(sum(w) == pytest.approx(1.0) for w in greedy["member_weights"].values())
    md = (run_dir / "leaderboard.md").read_text()
    assert "| passes |" in md and "split-half protocol, seed 5" in md
    assert "Members, tiny mean_prob (top 2): rte: " in md
    assert "Ensembles of rte (3), stsb (3) candidates" in proc.stdout


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_best_single_and_pools_are_chosen_on_the_selection_half_and_scored_on_the_report_half(run, task):
    _, run_dir, _ = run
    rows = rows_by_system(run_dir)
    spec = GLUE_TASKS[task]
    saved = checkpoints(run_dir, task)
    labels = next(iter(saved.values()))[1]
    halves = split_dev(spec, {"validation": 40}, seed=5)
    assert not set(halves.selection["validation"]) & set(halves.report["validation"])
    selection = {t: score_on(spec, lg, labels, halves.selection)[1] for t, (lg, _) in saved.items()}
    ranked = sorted(saved, key=lambda t: -selection[t])  # ties keep trial-id order, as the builder does
    best = rows["tiny best single checkpoint"]
    assert best["members"][task] == ranked[:1]
    assert best["task_scores"][task] == pytest.approx(score_on(spec, saved[ranked[0]][0], labels, halves.report)[1])
    top2 = rows["tiny mean_prob (top 2)"]
    assert top2["members"][task] == ranked[:2]
    combined = mean_prob(spec, [saved[t][0] for t in ranked[:2]])
    assert top2["task_scores"][task] == pytest.approx(score_on(spec, combined, labels, halves.report)[1])


@pytest.mark.parametrize(
    "system", ["tiny best single checkpoint", "tiny vote (all)", "tiny greedy (top 2)", "tiny soup_greedy (all)"]
)
def test_prediction_files_cover_the_report_half_and_reproduce_the_row(run, system):
    from safetensors.numpy import load_file

    _, run_dir, _ = run
    row = rows_by_system(run_dir)[system]
    for task, paths in row["predictions"].items():
        (path,) = paths
        tensors = load_file(str(run_dir / path))
        report = split_dev(GLUE_TASKS[task], {"validation": 40}, seed=5).report["validation"]
        np.testing.assert_array_equal(tensors["validation/indices"], report)
        assert len(tensors["validation/logits"]) == len(report) == len(tensors["validation/labels"])
        metrics = compute_metrics(
            GLUE_TASKS[task], {"validation": tensors["validation/logits"]}, {"validation": tensors["validation/labels"]}
        )
        assert task_score(metrics) == pytest.approx(row["task_scores"][task], abs=1e-4)


def test_a_soup_of_the_runs_checkpoints_is_a_model_that_loads_and_reproduces_its_scores(run, glue_dir, cache_dir):
    import torch
    from safetensors.torch import load_file

    from tasks.loading import load_split

    _, run_dir, _ = run
    row = rows_by_system(run_dir)["tiny soup_uniform (all)"]
    folder = run_dir / row["soups"]["rte"]
    # Its weights are the mean of its three ingredients' (to the precision they are stored in).
    ingredients = [
        load_file(str(run_dir / "trials" / t / "checkpoint" / "model.safetensors")) for t in row["members"]["rte"]
    ]
    soup = load_file(str(folder / "model.safetensors"))
    for name in ("classifier.weight", "bert.encoder.layer.1.output.dense.weight"):
        mean = sum(w[name].float() for w in ingredients) / 3
        torch.testing.assert_close(soup[name].float(), mean, rtol=1e-2, atol=1e-3)
    # Running it on dev, as a user would, gives the logits saved beside it, which give the row's report-half score.
    dev = load_split(GLUE_TASKS["rte"], "validation", glue_dir, cache_dir, 40)
    logits = plain_logits(folder, dev, max_length=64)
    saved, labels = load_predictions(folder)
    np.testing.assert_allclose(logits, saved["validation"], atol=0.05)  # bf16, batched differently
    report = {"validation": split_dev(GLUE_TASKS["rte"], {"validation": 40}, seed=5).report["validation"]}
    assert score_on(GLUE_TASKS["rte"], saved, labels, report)[1] == pytest.approx(row["task_scores"]["rte"])


def test_the_same_command_again_keeps_the_ensembles(run):
    path, run_dir, _ = run
    state = run_dir / "ensembles" / "ensembles.json"
    before = state.stat().st_mtime_ns
    started = time.time()
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stderr
    assert "Ensembles: up to date" in proc.stdout and state.stat().st_mtime_ns == before
    assert time.time() - started < 90


def test_table_merges_the_ensemble_rows_from_the_directory_alone(run):
    _, run_dir, _ = run
    proc = bench("table", run_dir)
    assert proc.returncode == 0 and proc.stdout == (run_dir / "leaderboard.md").read_text()
    assert "tiny greedy (all)" in proc.stdout


def test_bench_ensemble_rebuilds_with_other_methods_and_pools(run, tmp_path):
    import shutil

    _, run_dir, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    proc = bench("ensemble", copy, "--methods", "vote", "greedy", "--k", "3", "--split-seed", "9")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = rows_by_system(copy)
    assert set(rows) == {"tiny (single)", "tiny best single checkpoint", "tiny vote (top 3)", "tiny greedy (top 3)",
                         "tiny (zero-shot)", "tiny (probe)"}  # fmt: skip
    assert rows["tiny vote (top 3)"]["protocol"]["split_seed"] == 9
    assert not (copy / "ensembles" / "soups").exists()  # the old soups went with the old ensembles


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "mean_prb"], "ensemble.methods[0]: unknown method 'mean_prb' (did you mean 'mean_prob'?)"),
        (["--k", "4"], "k: 4 is larger than the 3 candidate checkpoints of task rte"),
        (["--k", "0"], "ensemble.k: must be at least 1, got 0"),
        (["--split-seed", "-3"], "ensemble.split_seed: must be at least 0, got -3"),
        (["--k", "two"], "argument --k: invalid int value: 'two'"),
    ],
)
def test_bad_ensemble_flags_get_one_line_and_exit_code_2(run, args, message):
    _, run_dir, _ = run
    proc = bench("ensemble", run_dir, *args)
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_run_directory_without_checkpoints_gets_exit_code_2(run, tmp_path):
    _, run_dir, _ = run
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "suite.yaml").write_text((run_dir / "suite.yaml").read_text())
    proc = bench("ensemble", empty)
    assert proc.returncode == 2 and "no checkpoints to ensemble" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = bench("ensemble", tmp_path / "nothing-here")
    assert proc.returncode == 2 and "not a bench run directory" in proc.stderr


def test_a_studys_records_copy_rebuilds_its_tables_without_the_weights(run, tmp_path):
    from benchmark.measure.records import board_from_records, rebuilt_tables, table_markdown
    from benchmark.train.checkpoints import checkpoint_problem

    _, run_dir, _ = run
    board, _, copies = board_from_records(tmp_path / "study", "leaderboard", {"ens": run_dir}, compute=False)
    copy = copies["ens"]
    # The same table as `bench run` wrote from the run itself, from a copy that holds no model.
    assert table_markdown(board, compute=False) == (run_dir / "leaderboard.md").read_text()
    assert rebuilt_tables(tmp_path / "study") == {"leaderboard": (run_dir / "leaderboard.md").read_text()}
    assert list(run_dir.rglob("model.safetensors")) and not list(copy.rglob("model.safetensors"))
    assert not (copy / "ray").exists() and not (copy / "tensorboard").exists()
    size = sum(p.stat().st_size for p in copy.rglob("*") if p.is_file())
    assert size < sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) / 20
    # Each checkpoint folder keeps its dev predictions with their recorded hash: damage still shows.
    folders = [p.parent for p in copy.glob("trials/*/checkpoint/dev_predictions.safetensors")]
    assert len(folders) == 6 and all(checkpoint_problem(f) is None for f in folders)
    (folders[0] / "dev_predictions.safetensors").write_bytes(b"damaged")
    assert "does not match" in checkpoint_problem(folders[0])
