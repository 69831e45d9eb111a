"""The run store under load and under a failing disk, without Ray: the driver's recorder is fed the plain values
that `run.tune` hands it from Tune's events.

Many trials ending in the same controller step, records written from many threads at once, and a checkpoint
write that the OS refuses (RLIMIT_FSIZE: a real EFBIG from write(2), as from a full disk or a quota).
"""

import resource
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from benchmark.config.suite import load_suite
from benchmark.plan.trials import make_plan
from benchmark.records.store import RunStore
from benchmark.results.board import leaderboard_from_runs
from benchmark.run.recorder import CHECKPOINT_PATH_KEY, TrialEnd, TrialRecorder
from benchmark.run.runner import pending_trials
from benchmark.train.checkpoints import BEST_DIR, checkpoint_problem
from tests.conftest import write_easy_task


class TuneTrial:
    """A planned trial as the recorder sees it: its id, and how it ended."""

    def __init__(self, spec):
        self.name, self.training, self.end = spec.trial_id, spec.training, TrialEnd(spec.training)


def recorder_for(tmp_path: Path, tiny_model, seeds: int, **extra):
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        yaml.safe_dump(
            {
                "name": "r",
                "model": str(tiny_model),
                "tasks": [write_easy_task(tmp_path / "easy", train=16, dev=8)],
                "training": {"epochs": 1, "batch_size": 8, "max_seq_length": 16},
                "search": {"seeds": list(range(1, seeds + 1))},
                "output": str(tmp_path / "run"),
                **extra,
            }
        )
    )
    suite = load_suite(suite_file)
    plan = make_plan(suite)
    store = RunStore(suite.output)
    store.write_suite(suite.to_dict())
    recorder = TrialRecorder(store, {t.name: t for t in suite.tasks}, str(tmp_path / "storage"), {})
    recorder.expect(plan)
    return recorder, store, plan


def result(epoch: int, score: float, checkpoint: Path | None = None) -> dict:
    out = {"epoch": epoch, "score": score, "accuracy": score, "optimizer_steps": 2 * epoch, "attempt": "a"}
    if checkpoint is not None:
        out.update({CHECKPOINT_PATH_KEY: str(checkpoint), "is_best": True})
    return out


def test_many_trials_ending_in_one_step_are_each_recorded_once(tiny_model, tmp_path):
    recorder, store, plan = recorder_for(tmp_path, tiny_model, seeds=60)
    trials = [TuneTrial(spec) for spec in plan]
    for n, trial in enumerate(trials):
        recorder.result(trial.name, trial.training, result(1, 50.0 + n % 7))
    for trial in trials:  # Tune's controller reports every ending of one step in a row
        recorder.completed(trial.name, trial.end)
    for trial in trials[:5]:  # an ending reported twice (a restored experiment) must not count twice
        recorder.completed(trial.name, trial.end)
    records = store.records()
    assert sorted(r["trial_id"] for r in records) == sorted(s.trial_id for s in plan)
    assert all(r["status"] == "finished" and len(r["epochs"]) == 1 for r in records)
    assert not list(store.trials.glob("*/progress.json")) and not list(store.trials.glob("*/.*.tmp"))
    board, _ = leaderboard_from_runs([store.root])
    assert board["trials"]["finished"] == 60
    assert pending_trials(store, plan) == []


def test_a_report_without_a_state_keeps_the_last_state_to_resume_from(tiny_model, tmp_path):
    """A trial's last evaluation reports its checkpoint without a training state (only PBT needs one): an
    interrupted run resumes that trial from the state before, not from a folder that holds none."""
    recorder, store, plan = recorder_for(tmp_path, tiny_model, seeds=1)
    trial = TuneTrial(plan[0])
    recorder.result(
        trial.name, trial.training, {**result(1, 50.0), CHECKPOINT_PATH_KEY: "s/step-2", "state_saved": True}
    )
    assert store.read_progress(trial.name)["state"] == "s/step-2"
    recorder.result(
        trial.name, trial.training, {**result(2, 40.0), CHECKPOINT_PATH_KEY: "s/step-4", "state_saved": False}
    )
    assert store.read_progress(trial.name)["state"] == "s/step-2"


def test_records_written_from_many_threads_at_once_are_complete_and_single(tmp_path):
    store = RunStore(tmp_path)
    barrier = threading.Barrier(16)

    def write(worker: int) -> None:
        barrier.wait()
        for n in range(25):  # each trial written by two threads (a retry racing its first ending)
            trial = f"t{(worker // 2) * 25 + n:03d}"
            store.save_record({"trial_id": trial, "status": "finished", "writer": worker, "payload": "x" * 20000})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records = store.records()
    assert len(records) == 200 and len({r["trial_id"] for r in records}) == 200
    assert all(len(r["payload"]) == 20000 for r in records)  # none half-written
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.fixture
def file_size_limit():
    """Writes past `limit` bytes fail with EFBIG for this process (Python ignores SIGXFSZ), until restored."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit(size: int | None) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft if size is None else size, hard))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_checkpoint_the_disk_refuses_is_reported_never_used_and_the_rerun_recovers(
    tiny_model, tmp_path, file_size_limit
):
    recorder, store, plan = recorder_for(tmp_path, tiny_model, seeds=2)
    saved = tmp_path / "storage" / "saved"
    shutil.copytree(tiny_model, saved / BEST_DIR)  # what a worker persisted: a model folder in safetensors
    weights = (saved / BEST_DIR / "model.safetensors").stat().st_size
    refused, fine = (TuneTrial(spec) for spec in plan)
    recorder.result(fine.name, fine.training, result(1, 70.0, saved))
    kept = store.checkpoint_dir(fine.name)
    assert checkpoint_problem(kept) is None

    file_size_limit(weights // 2)
    recorder.result(refused.name, refused.training, result(1, 80.0, saved))  # the copy fails half way
    recorder.result(fine.name, fine.training, result(2, 90.0, saved))  # a better epoch of a trial that had one
    file_size_limit(None)
    recorder.completed(refused.name, refused.end)
    recorder.completed(fine.name, fine.end)

    records = {r["trial_id"]: r for r in store.records()}
    assert records[refused.name]["status"] == "failed"
    error = records[refused.name]["error"]
    assert error.startswith("cannot write its checkpoint: [Errno 27]") and "File too large" in error
    assert records[refused.name]["checkpoint"] is None and not store.checkpoint_dir(refused.name).exists()
    # The trial that had a checkpoint keeps the whole earlier one, not half of the new one.
    assert records[fine.name]["status"] == "failed" and checkpoint_problem(kept) is None
    assert (kept / "model.safetensors").stat().st_size == weights
    assert not [p for p in store.trials.rglob(".*") if p.name.endswith(".tmp")]  # no staging left behind
    # The next `bench run` runs both again, from the start; with room on the disk they are kept.
    assert not list(store.trials.glob("*/progress.json"))
    assert [s.trial_id for s in pending_trials(store, plan)] == [refused.name, fine.name]
    rerun = TrialRecorder(store, recorder.tasks, recorder.storage, {})
    rerun.expect(plan)
    for trial in (refused, fine):
        rerun.started(trial.name)
        rerun.result(trial.name, trial.training, result(1, 80.0, saved))
        rerun.completed(trial.name, trial.end)
    records = {r["trial_id"]: r for r in store.records()}
    assert {r["status"] for r in records.values()} == {"finished"}
    assert all(checkpoint_problem(store.root / r["checkpoint"]) is None for r in records.values())
    assert pending_trials(store, plan) == []


def test_a_multitask_export_the_disk_refuses_fails_the_joint_trial_and_keeps_the_earlier_exports(
    tiny_model, tmp_path, file_size_limit
):
    second = {**write_easy_task(tmp_path / "easy2", train=16, dev=8), "name": "easy2"}
    recorder, store, plan = recorder_for(
        tmp_path,
        tiny_model,
        seeds=1,
        multitask={"tasks": ["easy", "easy2"]},
        tasks=[write_easy_task(tmp_path / "easy", train=16, dev=8), second],
    )
    (joint,) = [spec for spec in plan if spec.kind == "multitask"]
    saved = tmp_path / "storage" / "saved"
    for task in ("easy", "easy2"):  # what the worker persisted: one exported model folder per task
        shutil.copytree(tiny_model, saved / BEST_DIR / task)
    weights = (saved / BEST_DIR / "easy" / "model.safetensors").stat().st_size

    def joint_result(epoch: int, score: float) -> dict:
        tasks = {t: {"score": score, "accuracy": score} for t in ("easy", "easy2")}
        return {**result(epoch, score, saved), "tasks": tasks, "improved": ["easy", "easy2"]}

    trial = TuneTrial(joint)
    recorder.started(trial.name)
    recorder.result(trial.name, trial.training, joint_result(1, 60.0))
    exports = {t: store.checkpoint_dir(joint.task_ids[t]) for t in ("easy", "easy2")}
    assert all(checkpoint_problem(folder) is None for folder in exports.values())
    file_size_limit(weights // 2)
    recorder.result(trial.name, trial.training, joint_result(2, 70.0))  # both exports improve; the disk refuses
    file_size_limit(None)
    recorder.completed(trial.name, trial.end)

    records = {r["trial_id"]: r for r in store.records()}
    for task, folder in exports.items():
        record = records[joint.task_ids[task]]
        assert record["status"] == "failed" and "cannot write its checkpoint" in record["error"], record
        assert "[Errno 27]" in record["error"] and checkpoint_problem(folder) is None  # epoch 1's export, whole
    assert not [p for p in store.trials.rglob(".*") if p.name.endswith(".tmp")]
    assert joint in pending_trials(store, plan)  # the next `bench run` trains the joint trial again
