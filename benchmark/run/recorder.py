"""The driver's bookkeeping of running trials: progress as results arrive, the best checkpoint as it improves, a
record when a trial ends. Plain values in (trial ids, result dicts); `run.tune` forwards Tune's events to it, so it
is tested without Tune."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark.plan.trials import TrialSpec
from benchmark.records.store import DONE_STATUSES, RunStore, trial_record
from benchmark.run.storage import download
from benchmark.train.checkpoints import BEST_DIR, parameter_count
from benchmark.train.curves import CURVES_DIR, CurveWriter
from tasks.metrics import OBJECTIVE

CHECKPOINT_PATH_KEY = "checkpoint_path"  # a result's saved folder in storage: `best/` and `state/` inside
# What a record keeps of each evaluation (besides the task's metrics).
EPOCH_FIELDS = ("epoch", OBJECTIVE, "selection_score", "train_loss", "learning_rate", "optimizer_steps",
                "train_samples", "train_seconds", "train_samples_per_s", "eval_seconds", "eval_samples_per_s",
                "peak_memory_mb", "node_id", "trainable_parameters", "train_precision", "device", "pooling",
                "pair_encoding")  # fmt: skip
# A joint trial's fields shared by its tasks' records (each task's own scores come from `tasks`).
JOINT_FIELDS = ("epoch", "learning_rate", "optimizer_steps", "train_samples", "train_seconds", "train_samples_per_s",
                "eval_seconds", "eval_samples_per_s", "peak_memory_mb", "node_id", "train_precision", "device",
                "pooling", "pair_encoding")  # fmt: skip


@dataclass(frozen=True)
class TrialEnd:
    """What the scheduler knows of a trial when it ends."""

    training: dict  # its hyperparameters as they ended (PBT may have changed them)
    failures: int = 0  # retries
    sampled: dict | None = None  # values a search algorithm chose when it started


class TrialRecorder:
    def __init__(self, store: RunStore, tasks: dict, storage: str, resources: dict):
        self.store, self.tasks, self.storage, self.resources = store, tasks, storage, resources
        self.specs: dict[str, TrialSpec] = {}
        self.live: dict[str, dict] = {}
        self.curves: dict[str, CurveWriter] = {}
        self.ended: set[str] = set()  # recorded since they last started: an ending told twice is recorded once

    def expect(self, specs: list[TrialSpec]) -> None:
        self.specs.update({s.trial_id: s for s in specs})

    def _state(self, name: str) -> dict:
        if name not in self.live:
            saved = self.store.read_progress(name) or {}
            self.live[name] = {
                "history": saved.get("history", []),
                "best": saved.get("best", -math.inf),
                "state": saved.get("state"),
                "exploits": saved.get("exploits", []),
                "started": time.time() - saved.get("seconds", 0.0),
            }
        return self.live[name]

    def started(self, name: str) -> None:
        self.ended.discard(name)
        self._state(name)

    def result(self, name: str, training: dict, result: dict) -> None:
        """An evaluation (or a diverged trial's last word); `training`: the trial's hyperparameters now."""
        state = self._state(name)
        if result.get("diverged"):
            state["diverged"] = result.get("error", "diverged")
            return
        if "epoch" not in result:
            return
        if name not in self.curves:
            self.curves[name] = CurveWriter(self.store.root / CURVES_DIR / name)
        if self.specs[name].kind == "multitask":
            self._multitask_result(name, state, result)
            self.curves[name].write(result, [])
            return
        task = self.tasks[self.specs[name].task]
        row = {k: result[k] for k in (*EPOCH_FIELDS, *task.metric_keys()) if k in result}
        donor, new_attempt = result.get("restored_from_trial"), result.get("attempt") != state.get("attempt")
        state["attempt"] = result.get("attempt")
        if new_attempt and donor and donor != name:
            # PBT's exploit: from here the trial continues another trial's state, so its step count may go back.
            exploit = {"donor": donor, "from_step": result["restored_from_step"], "at_index": len(state["history"])}
            state["exploits"].append({**exploit, "training": training})
        since = state["exploits"][-1]["at_index"] if state["exploits"] else 0
        if any(h.get("optimizer_steps") == row.get("optimizer_steps") for h in state["history"][since:]):
            return  # a trial resumed from its own state repeating an evaluation it had reported
        state["history"].append(row)
        state["augmented_examples"] = result.get("augmented_examples", 0)
        self.curves[name].write(result, task.metric_keys())
        path = result.get(CHECKPOINT_PATH_KEY)
        chose = result.get("selection_score", result[OBJECTIVE])  # what chose the kept epoch
        if path and result.get("is_best") and chose > state["best"]:
            try:
                self.store.install_checkpoint(name, lambda folder: download(f"{path}/{BEST_DIR}", self.storage, folder))
                state["best"] = chose
            except OSError as e:  # a full or failing disk: the old checkpoint stays; the trial is recorded failed
                state["write_error"] = f"cannot write its checkpoint: {e}"
        if path and result.get("state_saved", True):  # a trial's last report may carry its best checkpoint only
            state["state"] = path
        self._save_progress(name, state, state["state"], state["exploits"])

    def _save_progress(self, name: str, state: dict, saved_state: str | None, exploits: list) -> None:
        self.store.save_progress(name, {
            "trial_id": name, "fingerprint": self.specs[name].fingerprint, "history": state["history"],
            "best": state["best"], "state": saved_state, "exploits": exploits,
            "seconds": time.time() - state["started"],
        })  # fmt: skip

    def _multitask_result(self, name: str, state: dict, result: dict) -> None:
        """A joint trial's evaluation: install the export of each task that improved; a retry starts over."""
        spec = self.specs[name]
        if result.get("attempt") != state.get("attempt"):
            state["attempt"], state["history"] = result.get("attempt"), []
        row = {k: result[k] for k in EPOCH_FIELDS if k in result}
        keep = (OBJECTIVE, "selection_score", "train_loss", "train_steps", "train_samples", "optimizer_steps")
        row["tasks"] = {
            t: {k: v for k, v in result["tasks"][t].items() if k in (*keep, *self.tasks[t].metric_keys())}
            for t in spec.tasks
        }
        state["history"].append(row)
        path = result.get(CHECKPOINT_PATH_KEY)
        for task in result.get("improved", []) if path else []:
            try:
                source = f"{path}/{BEST_DIR}/{task}"
                self.store.install_checkpoint(spec.task_ids[task], lambda f, s=source: download(s, self.storage, f))
            except OSError as e:  # as for one task: the old export stays, and the joint trial is recorded failed
                state["write_error"] = f"cannot write its checkpoint for {task}: {e}"
        state["best"] = max(state["best"], result.get("selection_score", result[OBJECTIVE]))
        self._save_progress(name, state, None, [])

    def completed(self, name: str, end: TrialEnd) -> None:
        state = self._state(name)
        epochs = self.specs[name].training["epochs"]
        if state.get("write_error"):
            # The kept checkpoint may be an older epoch than the history's best: the next `bench run` starts the
            # trial over rather than resume it.
            self._record(name, end, "failed", state["write_error"])
            self.store.clear_progress(name)
        elif state.get("diverged"):
            self._record(name, end, "diverged", state["diverged"])
        elif state["history"] and state["history"][-1]["epoch"] < epochs:
            self._record(name, end, "stopped")
        else:
            self._record(name, end, "finished")

    def failed(self, name: str, end: TrialEnd, error: str) -> None:
        self._record(name, end, "failed", error)

    def _record(self, name: str, end: TrialEnd, status: str, error: str | None = None) -> None:
        if name in self.ended:
            return
        self.ended.add(name)
        state = self._state(name)
        if name in self.curves:
            self.curves.pop(name).close()
        spec = self.specs[name].with_sampled(end.sampled) if end.sampled else self.specs[name]
        if status in ("finished", "stopped") and not state["history"]:
            status, error = "failed", "the trial reported no evaluation"
        if spec.kind == "multitask":
            self._record_multitask(name, end, spec, state, status, error)
            return
        task = self.tasks[spec.task]
        folder = self.store.checkpoint_dir(name)
        has_checkpoint = folder.is_dir()
        self.store.save_record(
            trial_record(
                spec.to_dict(), task.to_dict(), task.metric_keys(), state["history"], status,
                str(folder.relative_to(self.store.root)) if has_checkpoint else None,
                time.time() - state["started"], error, self.resources,
                parameter_count(folder) if has_checkpoint else None,
                final_training=end.training, exploits=state["exploits"], node_ids=_node_ids(state),
                failures=end.failures, kind=spec.kind, augmented_examples=state.get("augmented_examples", 0),
                **({"stage_one": spec.stage_one} if spec.stage_one else {}),
                **({"chain": spec.chain} if spec.chain else {}),
            )
        )  # fmt: skip
        self.live.pop(name, None)

    def _record_multitask(self, name: str, end: TrialEnd, spec: TrialSpec, state: dict, status: str,
                          error: str | None) -> None:  # fmt: skip
        """One record per task, as a single-task trial's, under the task's own id: leaderboards, tables and
        ensembles then treat each task's export like any checkpoint. The joint trial's time is split evenly."""
        wall = time.time() - state["started"]
        for t in spec.tasks:
            record_id, task = spec.task_ids[t], self.tasks[t]
            epochs = [
                {**{k: h[k] for k in JOINT_FIELDS if k in h}, **h["tasks"][t], "mean_score": h[OBJECTIVE]}
                for h in state["history"]
            ]
            folder = self.store.checkpoint_dir(record_id)
            has_checkpoint = folder.is_dir()
            self.store.save_record(
                trial_record(
                    {**spec.to_dict(), "trial_id": record_id, "task": t}, task.to_dict(), task.metric_keys(), epochs,
                    status, str(folder.relative_to(self.store.root)) if has_checkpoint else None,
                    wall / len(spec.tasks), error, self.resources, parameter_count(folder) if has_checkpoint else None,
                    final_training=end.training, kind="multitask", joint_trial=name, joint_wall_seconds=wall,
                    mixture=spec.mixture, node_ids=_node_ids(state), failures=end.failures,
                )
            )  # fmt: skip
        if status in DONE_STATUSES:  # the per-task records supersede the joint trial's progress file
            self.store.clear_progress(name)
        self.live.pop(name, None)


def _node_ids(state: dict) -> list[str]:
    return sorted({h["node_id"] for h in state["history"] if h.get("node_id")})


def error_text(error_file: str | None) -> str:
    """The last line of a failed trial's traceback."""
    try:
        text = Path(error_file).read_text() if error_file else ""
    except OSError:
        text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:2000] if lines else "the trial failed (no error text)"
