"""`bench run` end to end through the CLI: real Ray Tune, Ray Train and DeepSpeed, on GLUE slices."""

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.config.suite import load_suite
from benchmark.plan.trials import make_plan
from benchmark.train.checkpoints import load_predictions
from tasks.glue import GLUE_TASKS
from tasks.metrics import compute_metrics, task_score
from tests.conftest import bench, plain_logits


@pytest.fixture(scope="module")
def tiny_run(tiny_model, glue_dir, cache_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e")
    suite = {
        "name": "e2e",
        "model": str(tiny_model),
        "tasks": ["rte", "stsb"],
        "data": {"max_train_samples": 64, "max_eval_samples": 32},
        "training": {"epochs": 2, "batch_size": 16, "max_seq_length": 64},
        "search": {"grid": {"learning_rate": [1e-3, 3e-4]}, "seeds": [1, 2]},
        "output": str(folder / "run"),
    }
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return path, folder / "run", proc


def test_dry_run_prints_the_plan_and_starts_nothing(tiny_run, tmp_path):
    path, _, _ = tiny_run
    proc = bench("run", path, "--dry-run", "--output", tmp_path / "dry")
    assert proc.returncode == 0, proc.stderr
    assert "8 trials (8 to run)" in proc.stdout and "rte_lr=0.001_seed=1" in proc.stdout
    assert "1 worker(s) x (1 CPU, 0 GPU)" in proc.stdout
    assert not (tmp_path / "dry").exists()
    # The cost estimate: one calibration per task, then cached, so `bench validate` prints the same figures.
    assert proc.stdout.count("Calibrating tiny-bert0 on") == 2, proc.stdout
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("Estimate: 8 trials, ")]
    assert re.search(r"trial-hours; wall about \d+:\d\d:\d\d with 2 at once; disk about \d+\.\d\d GiB", line)
    again = bench("validate", path)
    assert again.returncode == 0 and line in again.stdout and "Calibrating" not in again.stdout, again.stdout


def test_the_estimate_places_trials_longest_first_on_the_free_slots():
    from benchmark.run.estimate import _makespan, clock

    assert _makespan([10, 10, 10, 10], 2) == 20 and _makespan([30, 10, 10, 10], 2) == 30
    assert _makespan([3, 5, 3, 4, 3], 2) == 10  # longest first: 5 then 3 + 3 on one slot, 4 + 3 + 3 on the other
    assert _makespan([], 3) == 0 and clock(3725) == "1:02:05"


def test_run_writes_a_leaderboard_for_every_task(tiny_run):
    _, run, proc = tiny_run
    board = json.loads((run / "leaderboard.json").read_text())
    assert board["suite"] == "e2e"
    assert board["trials"] == {"finished": 8, "stopped": 0, "diverged": 0, "failed": 0, "total": 8}
    rows = {r["kind"]: r for r in board["rows"]}
    assert set(rows) == {"single", "zero-shot", "probe"}  # the floors are on by default
    row = rows["single"]
    assert row["seeds"] == 2
    assert set(row["scores"]) == {"rte", "stsb"}
    assert set(row["scores"]["stsb"]) == {"pearson", "spearmanr"} and set(row["scores"]["rte"]) == {"accuracy"}
    assert row["average"] == pytest.approx(np.mean(list(row["task_scores"].values())))
    assert (run / "leaderboard.md").read_text().startswith("# Leaderboard: e2e")
    assert "Leaderboard" in proc.stdout  # printed with rich at the end
    assert "finished rte_lr=0.001_seed=1" in proc.stdout  # plain log lines when stdout is not a terminal


def test_every_trial_is_recorded_with_a_checkpoint_that_matches_its_score(tiny_run):
    _, run, _ = tiny_run
    records = [json.loads(p.read_text()) for p in sorted(run.glob("trials/*/record.json"))]
    assert len(records) == 8 and all(r["status"] == "finished" for r in records)
    for r in records:
        assert len(r["epochs"]) == 2 and r["wall_seconds"] > 0 and r["train_samples"] == 128
        assert r["train_samples_per_s"] > 0 and r["peak_memory_mb"] > 0
        folder = run / r["checkpoint"]
        assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
        logits, labels = load_predictions(folder)
        task = GLUE_TASKS[r["task"]]
        assert task_score(compute_metrics(task, logits, labels)) == pytest.approx(r["best_score"])
    assert not list(run.glob("ray/**/model.safetensors"))  # no second copy left in Ray's storage
    assert not list(run.glob("trials/*/progress.json"))  # a record replaces a trial's progress file


def test_table_rebuilds_the_leaderboard_from_the_run_directory(tiny_run):
    _, run, _ = tiny_run
    proc = bench("table", run)
    assert proc.returncode == 0 and proc.stdout == (run / "leaderboard.md").read_text()
    proc = bench("table", run, "--format", "json")
    assert json.loads(proc.stdout)["rows"] == json.loads((run / "leaderboard.json").read_text())["rows"]


def test_table_formats_statistics_and_compute_from_a_real_run(tiny_run):
    _, run, _ = tiny_run
    board = json.loads((run / "leaderboard.json").read_text())
    (row,) = [r for r in board["rows"] if r["kind"] == "single"]
    for task in ("rte", "stsb"):
        low, high = row["ci"]["task_scores"][task]
        assert low <= row["task_scores"][task] <= high and row["ci"]["examples"][task] == 32
        assert len(row["predictions"][task]) == 2 and all((run / p).is_file() for p in row["predictions"][task])
    assert row["compute"]["parameters"] > 0 and row["compute"]["device_hours"] > 0
    proc = bench("table", run, "--format", "latex", "--compute")
    assert proc.returncode == 0 and "\\toprule" in proc.stdout and "CPU-hours" in proc.stdout
    proc = bench("table", run, "--baseline", "no-such-model")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--baseline" in proc.stderr


def test_merged_run_directories_are_tested_against_the_baseline(tiny_run, tmp_path):
    """A copy of the run under another model name: the same predictions, so no difference is significant."""
    import shutil

    _, run, _ = tiny_run
    other = tmp_path / "other"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("ray"))
    for path in other.glob("trials/*/record.json"):
        path.write_text(path.read_text().replace('"model": "', '"model": "copy-of-'))
    # Seeds fixed (two-level draws would resample each row's seeds independently): identical rows give p = 1.
    proc = bench("table", run, other, "--baseline", "copy-of", "--bootstrap-level", "examples", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    board = json.loads(proc.stdout)
    rows = {r["model"].startswith("copy-of-"): r for r in board["rows"] if r["kind"] == "single"}
    assert board["statistics"]["baseline"] == [rows[True]["system"]] and rows[True]["significance"] is None
    for test in rows[False]["significance"]["task_scores"].values():
        assert test["delta"] == 0.0 and test["p"] == 1.0 and not test["significant"]
    assert all(Path(p).is_absolute() for files in rows[True]["predictions"].values() for p in files)


def test_report_is_one_html_file_with_the_plots(tiny_run):
    _, run, _ = tiny_run
    proc = bench("report", run)
    assert proc.returncode == 0, proc.stderr
    page = (run / "report.html").read_text()
    # epochs, compute, search space, the reliability diagram of the best classification rows (no ensembles)
    assert page.count('<img src="data:image/png;base64,') == 4
    assert "95% confidence intervals" in page and "rte_lr=0.001_seed=2" in page
    assert "Calibration: reliability diagrams" in page


def test_predict_writes_glue_submission_files_from_the_best_checkpoints(tiny_run, glue_dir, cache_dir):
    from benchmark.train.inference import predict_logits
    from tasks.loading import load_split

    _, run, _ = tiny_run
    proc = bench("predict", run, "--split", "test")
    assert proc.returncode == 0, proc.stderr
    rte = (run / "submission" / "RTE.tsv").read_text().splitlines()
    stsb = (run / "submission" / "STS-B.tsv").read_text().splitlines()
    assert rte[0] == stsb[0] == "index\tprediction" and len(rte) == 3001 and len(stsb) == 1380
    assert rte[1].split("\t")[0] == "0" and {line.split("\t")[1] for line in rte[1:]} <= {
        "entailment",
        "not_entailment",
    }
    assert all(0.0 <= float(line.split("\t")[1]) <= 5.0 for line in stsb[1:])
    manifest = json.loads((run / "submission" / "submission.json").read_text())
    used = manifest["files"]["RTE.tsv"]
    # The checkpoint that made it, run the same way on its dev slice, gives back its stored dev logits.
    record = json.loads((run / "trials" / used["trial"] / "record.json").read_text())
    dev = load_split(GLUE_TASKS["rte"], "validation", glue_dir, cache_dir, 32)
    logits = predict_logits(
        run / record["checkpoint"],
        GLUE_TASKS["rte"],
        dev,
        record["training"]["max_seq_length"],
        record["training"]["eval_batch_size"],
    )
    stored, labels = load_predictions(run / record["checkpoint"])
    np.testing.assert_allclose(logits, stored["validation"], atol=2e-2)
    metrics = compute_metrics(GLUE_TASKS["rte"], {"validation": logits}, {"validation": np.asarray(dev["label"])})
    assert task_score(metrics) == pytest.approx(record["best_score"])


def test_resolved_suite_is_saved_and_reloads_to_the_same_plan(tiny_run):
    path, run, _ = tiny_run
    saved = load_suite(run / "suite.yaml")
    assert [t.fingerprint for t in make_plan(saved)] == [t.fingerprint for t in make_plan(load_suite(path))]
    assert yaml.safe_load((run / "suite.yaml").read_text())["training"]["warmup_ratio"] == 0.1  # defaults filled in


def test_the_same_command_again_reruns_no_finished_trial(tiny_run):
    path, run, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in run.glob("*/*/record.json")}
    assert len(before) == 8 + 1 + 4  # the trials; the floors: zero-shot (stsb only), a probe per task and seed...
    started = time.time()
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_mtime_ns for p in run.glob("*/*/record.json")} == before  # ...kept, not computed again
    assert "Floors:" not in proc.stdout
    assert time.time() - started < 60


def test_a_run_directory_of_other_settings_is_refused(tiny_run):
    path, run, _ = tiny_run
    proc = bench("run", path, "--set", "training.epochs=3")
    assert proc.returncode == 2 and "run with other settings" in proc.stderr


def test_two_workers_share_one_trial_with_zero_2(tiny_model, glue_dir, cache_dir, tmp_path):
    suite = {
        "name": "ddp",
        "model": str(tiny_model),
        "tasks": ["rte"],
        "data": {"max_train_samples": 64, "max_eval_samples": 32},
        "training": {"epochs": 1, "batch_size": 16, "max_seq_length": 64, "zero_stage": 2},
        "resources": {"workers_per_trial": 2, "cpus_per_worker": 1},
        "output": str(tmp_path / "run"),
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "run").glob("trials/*/record.json")]
    assert record["status"] == "finished"
    # batch_size is the global batch: 64 examples / 16 = 4 optimizer steps, whatever the number of workers.
    assert record["epochs"][0]["optimizer_steps"] == 4 and record["train_samples"] == 64
    logits, _ = load_predictions(tmp_path / "run" / record["checkpoint"])
    assert logits["validation"].shape == (32, 2)  # both ranks' eval shards gathered


def test_the_embedded_model_end_to_end(glue_dir, cache_dir, tmp_path):
    """The real default model through `bench run`; its checkpoint reloads in plain transformers."""

    from tasks.loading import load_split

    suite = {
        "name": "embedded",
        "tasks": ["mrpc"],
        "data": {"max_train_samples": 96, "max_eval_samples": 48},
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 5e-5},
        "output": str(tmp_path / "run"),
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = bench("run", path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    board = json.loads((tmp_path / "run" / "leaderboard.json").read_text())
    assert board["rows"][0]["model"] == "all-MiniLM-L6-v2"
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "run").glob("trials/*/record.json")]
    folder = tmp_path / "run" / record["checkpoint"]
    dev = load_split(GLUE_TASKS["mrpc"], "validation", glue_dir, cache_dir, 48)
    logits = plain_logits(folder, dev, max_length=128)
    metrics = compute_metrics(GLUE_TASKS["mrpc"], {"validation": logits}, {"validation": np.asarray(dev["label"])})
    assert task_score(metrics) == pytest.approx(record["best_score"], abs=1e-6)


def test_the_driver_writes_each_trials_training_curves_for_tensorboard(tiny_run):
    from tests.test_curves import read_scalars

    _, run, proc = tiny_run
    assert f"tensorboard --logdir {run / 'tensorboard'}" in proc.stdout
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == sorted(p.name for p in (run / "trials").iterdir())
    scalars = read_scalars(run / "tensorboard" / "stsb_lr=0.001_seed=1")
    # 4 optimizer steps per epoch, a point every 10 steps (the default) and at each evaluation.
    assert [s for s, _ in scalars["train/loss"]] == [4, 8] and scalars["train/learning_rate"][-1] == (8, 0.0)
    assert [s for s, _ in scalars["dev/pearson"]] == [4, 8] and [s for s, _ in scalars["dev/spearmanr"]] == [4, 8]


def test_merged_runs_of_one_model_on_one_task_keep_a_row_each_named_by_their_suite(tiny_run, tmp_path):
    """One suite per arm of a study: the same model, kind and task in two runs stay two rows (not one pooled row
    choosing between the runs' trials), so one arm can be the baseline of the other."""
    import shutil

    _, run, _ = tiny_run
    other = tmp_path / "arm-b"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("ray"))
    suite = other / "suite.yaml"
    suite.write_text(suite.read_text().replace(f"name: {yaml.safe_load(suite.read_text())['name']}", "name: arm-b"))
    proc = bench("table", run, other, "--baseline", "arm-b", "--bootstrap-level", "examples", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    board = json.loads(proc.stdout)
    singles = [r for r in board["rows"] if r["kind"] == "single"]
    arm_b = [r for r in singles if r["system"].endswith(", arm-b)")]
    assert len(singles) == 2 and len(arm_b) == 1, [r["system"] for r in singles]
    assert board["statistics"]["baseline"] == [arm_b[0]["system"]]
    first = next(r for r in singles if r is not arm_b[0])
    assert first["task_scores"] == arm_b[0]["task_scores"]  # the same trials, each run its own row
    assert all(t["delta"] == 0.0 for t in first["significance"]["task_scores"].values())
    # Each run's trials keep their own ids (qualified by the suite's name): compute counts both runs' epochs.
    assert board["compute"]["trial_epochs"] == 2 * json.loads(bench("table", run, "--format", "json").stdout)[
        "compute"]["trial_epochs"]  # fmt: skip
    assert all(i.startswith("arm-b/") for ids in arm_b[0]["trial_ids"].values() for i in ids)
