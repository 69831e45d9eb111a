"""The trial plan: models x tasks x grid points x seeds, each trial with a stable, readable id.

With a `multitask:` section the plan also holds, per model, grid point and seed, one joint trial over the
multi-task tasks (`kind` "multitask"; it records one result per task, under `task_ids`), and with two-stage
training one ordinary single-task trial per task (`kind` "two-stage") whose model is that task's export from
the joint trial: it runs once the joint trial has finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from benchmark.common.errors import InputError
from benchmark.common.hashing import canonical, fingerprint
from benchmark.config.suite import Suite
from benchmark.plan.points import check_expansion, grid_points, stage_two_points, stage_two_training_for, training_for
from benchmark.plan.points import points as expand_points
from benchmark.records.store import RunStore
from benchmark.train.pooling import sentence_transformers_pooling
from tasks.augment import Augmentation
from tasks.spec import TaskType, Windowing

SHORT_KEYS = {
    "learning_rate": "lr",
    "batch_size": "bs",
    "epochs": "ep",
    "warmup_ratio": "warmup",
    "weight_decay": "wd",
    "max_seq_length": "len",
    "gradient_accumulation_steps": "accum",
    "init_seed": "init",
}


@dataclass(frozen=True)
class TrialSpec:
    trial_id: str
    model_name: str
    model_path: str
    task: str
    point: dict  # the grid point: the hyperparameters this trial varies
    seed: int
    training: dict  # every hyperparameter, the grid point applied
    fingerprint: str  # changes when anything that shapes the result changes
    kind: str = "single"  # "single", "multitask" (a joint trial) or "two-stage"
    tasks: tuple = ()  # multitask: the tasks trained jointly
    mixture: dict | None = None  # multitask: the sampler and heads (benchmark.train.mixing.Mixture)
    task_ids: dict | None = None  # multitask: task -> the id its record and checkpoint go under
    stage_one: str | None = None  # two-stage: the joint trial whose export it starts from
    chain: str | None = None  # chain: its label, `mrpc→rte`
    source_task: str | None = None  # chain: the task of this run whose best checkpoint it starts from
    # The split-half seed whose selection half chooses the kept epoch (None: the whole dev set); see selection_seed.
    selection_seed: int | None = None

    @property
    def record_ids(self) -> list[str]:
        """The ids of the records this trial writes: its own, or a joint trial's one per task."""
        return list(self.task_ids.values()) if self.task_ids else [self.trial_id]

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def with_sampled(self, sampled: dict) -> "TrialSpec":
        """The same trial once an adaptive search has chosen its values (the id and fingerprint stay)."""
        return dataclasses.replace(self, point={**self.point, **sampled}, training={**self.training, **sampled})

    @property
    def point_key(self) -> str:
        return canonical(self.point)


def data_key(model_name: str, task: str, training: dict) -> str:
    """Trials that share this key share one tokenised (and augmented) copy of the task."""
    augmentation = Augmentation.of(training)
    return (
        f"{model_name}/{task}/{training['max_seq_length']}"
        + (f"/augment={canonical(augmentation.to_dict())}" if augmentation.enabled else "")
        + ("/bi" if training.get("pair_encoding") == "bi" else "")
        + (f"/windows={canonical(windows.to_dict())}" if (windows := Windowing.of(training)) != Windowing() else "")
    )


def check_families(suite: Suite) -> None:
    """A task whose family a requested stage cannot handle is refused before anything starts, in one line that
    names the stage (docs/tasks.md keeps the table)."""
    for task in suite.tasks:
        for stage, why in _unsupported_stages(suite, task):
            raise InputError(f"task {task.name}", f"{stage}: {why}")


def _unsupported_stages(suite: Suite, task) -> list[tuple[str, str]]:
    """(stage, why) for each stage the suite asks of `task` that its family does not have yet."""
    family = task.type.value
    if task.type not in (TaskType.TAGGING, TaskType.EXTRACTIVE_QA):
        return []
    config, later = suite.config, f"the {family} family is not supported there yet; single-task trials train it"
    copies = [config.training.augment_copies, *config.search.grid.get("augment_copies", [])]
    # word-level edits would have to carry each word's tag along, or an answer's character offsets
    asked = [("training.augment_copies", any(copies))]
    if task.type is TaskType.EXTRACTIVE_QA:
        asked += [
            ("multitask", suite.mixture is not None and task.name in suite.mixture.tasks),
            ("chains", any(task.name in (c.source, c.target) for c in suite.chains)),
        ]
    return [(stage, later) for stage, wanted in asked if wanted]


def make_plan(suite: Suite) -> list[TrialSpec]:
    """Every trial of the suite. With Optuna, a trial's sampled values are chosen when it starts; the plan
    fixes how many trials each study runs and their ids (`optuna=N`), with the first seed."""
    check_families(suite)
    check_expansion(suite)
    search = suite.config.search
    if search.resolved_algorithm == "optuna":
        points = [{**p, "optuna": n} for p in grid_points(search.grid) for n in range(search.num_samples)]
        seeds = search.seeds[:1]
    else:
        points, seeds = expand_points(search), search.seeds
    plan = [
        make_trial(suite, model, task, point, seed)
        for model in suite.models
        for task in suite.tasks
        for point in points
        for seed in seeds
    ]
    tasks = {t.name: t for t in suite.tasks}
    plan += [
        make_chain_trial(suite, model, chain, tasks[chain.target], point, seed, plan)
        for model in suite.models
        for chain in suite.chains
        for point in points
        for seed in seeds
    ]
    if suite.mixture is not None:  # the suite refuses optuna with multitask: points and seeds are explicit
        joint = [
            make_multitask_trial(suite, model, point, seed)
            for model in suite.models
            for point in points
            for seed in seeds
        ]
        plan += joint
        if suite.config.multitask.two_stage.enabled:
            plan += [
                make_stage_two_trial(suite, j, task, p)
                for j in joint
                for task in j.tasks
                for p in stage_two_points(suite.config)
            ]
    return plan


def selection_seed(suite: Suite) -> int | None:
    """When the suite builds ensembles or merges, which report on the split-half protocol's report half of a dev set
    that has no test split beside it, trials keep the epoch best on the selection half, so nothing reported on the
    report half chose an epoch. (Tasks with a labelled test split choose on all of validation; the trainer knows.)"""
    merges = suite.merge is not None and suite.merge.methods
    return suite.config.ensemble.split_seed if (suite.ensemble and suite.ensemble.methods) or merges else None


def _with_selection(settings: dict, seed: int | None) -> dict:
    """A fingerprint's settings, with the selection seed only when there is one (older runs keep their prints)."""
    return settings if seed is None else {**settings, "selection_seed": seed}


# Training keys added after runs were made, with their defaults: at the default, a key stays out of fingerprints
# so that runs made before it keep their prints (and their finished trials).
ADDED_LATER = {
    "pooling": None, "pair_encoding": "cross", "init_seed": None,
    "doc_stride": 128, "max_query_length": 64, "max_answer_length": 30,
}  # fmt: skip


def _printed(training: dict, model_path: str | None = None) -> dict:
    """The training keys a fingerprint holds: one added later, at the value that ran before it existed, is left out,
    so that older runs keep their fingerprints. `pooling: model` (the default since results/pooling/) is
    fingerprinted as what it runs: a sentence-transformers folder's own pooling (as if set), else `null` (a plain
    transformers folder, a hub id, a checkpoint)."""
    if training.get("pooling") == "model":
        own = sentence_transformers_pooling(Path(model_path)) if model_path else None
        training = {**training, "pooling": own}
    return {k: v for k, v in training.items() if k not in ADDED_LATER or v != ADDED_LATER[k]}


def make_multitask_trial(suite: Suite, model, point: dict, seed: int) -> TrialSpec:
    mixture = suite.mixture
    training = training_for(suite.config, point).to_dict()
    tasks = {t.name: t for t in suite.tasks}
    data = {k: v for k, v in suite.config.data.__dict__.items() if k != "cache_dir"}
    digest = fingerprint(
        _with_selection(
            {
                "model": model.path,
                "tasks": [tasks[t].to_dict() for t in mixture.tasks],
                "mixture": mixture.to_dict(),
                "training": _printed(training, model.path),
                "seed": seed,
                "data": data,
                "workers": suite.config.resources.workers_per_trial,
            },
            selection_seed(suite),
        )
    )
    name = model.name if len(suite.models) > 1 else None
    id_part = _id_part(point, suite.config.search.grid)
    return TrialSpec(
        trial_id=trial_id("multitask", name, id_part, seed),
        model_name=model.name,
        model_path=model.path,
        task="multitask",
        point=point,
        seed=seed,
        training=training,
        fingerprint=digest,
        kind="multitask",
        tasks=mixture.tasks,
        mixture=mixture.to_dict(),
        task_ids={t: trial_id(f"multitask-{t}", name, id_part, seed) for t in mixture.tasks},
        selection_seed=selection_seed(suite),
    )


def make_stage_two_trial(suite: Suite, joint: TrialSpec, task: str, stage_two_point: dict) -> TrialSpec:
    """Stage two: `task` alone, from the encoder and head the joint trial exported for it (a checkpoint folder in
    this run directory, at the joint trial's best epoch for that task). Its grid point is the joint trial's with
    stage two's own values added as `stage_two.<key>`, so tables choose among both stages' configurations."""
    training = stage_two_training_for(suite.config, joint.point, stage_two_point).to_dict()
    point = {**joint.point, **{f"stage_two.{k}": v for k, v in stage_two_point.items()}}
    grid = {
        **suite.config.search.grid,
        **{f"stage_two.{k}": v for k, v in suite.config.multitask.two_stage.grid.items()},
    }
    name = joint.model_name if len(suite.models) > 1 else None
    return TrialSpec(
        trial_id=trial_id(f"two-stage-{task}", name, _id_part(point, grid), joint.seed),
        model_name=joint.model_name,
        model_path=str(RunStore(suite.output).checkpoint_dir(joint.task_ids[task])),
        task=task,
        point=point,
        seed=joint.seed,
        training=training,
        kind="two-stage",
        stage_one=joint.trial_id,
        fingerprint=fingerprint({"stage_one": joint.fingerprint, "task": task, "training": _printed(training)}),
        selection_seed=joint.selection_seed,
    )


def make_chain_trial(suite: Suite, model, chain, task, point: dict, seed: int, plan: list[TrialSpec]) -> TrialSpec:
    """The target task's trial, started from the source's best checkpoint. With a source task of this run, that
    checkpoint is chosen once the source's trials have finished (`benchmark.run.runner`); until then `model_path` is
    empty, and the fingerprint holds every source trial's, since any of them may become the start."""
    direct = make_trial(suite, model, task, point, seed)
    sources = (
        sorted(
            t.fingerprint for t in plan if t.kind == "single" and t.task == chain.source and t.model_name == model.name
        )
        if chain.path is None
        else [chain.path]
    )
    name = model.name if len(suite.models) > 1 else None
    return dataclasses.replace(
        direct,
        trial_id=trial_id(f"{chain.source}-to-{task.name}", name, _id_part(point, suite.config.search.grid), seed),
        model_path=chain.path or "",
        kind="chain",
        chain=chain.label,
        source_task=None if chain.path else chain.source,
        fingerprint=fingerprint({"direct": direct.fingerprint, "chain": chain.to_dict(), "sources": sources}),
    )


def make_trial(suite: Suite, model, task, point: dict, seed: int) -> TrialSpec:
    training = training_for(suite.config, point).to_dict()
    data = {k: v for k, v in suite.config.data.__dict__.items() if k != "cache_dir"}
    data["max_train_samples"] = suite.config.data.train_cap(task.name)  # its own cap: others' don't retrain it
    digest = fingerprint(
        _with_selection(
            {
                "model": model.path,
                "task": task.to_dict(),
                "training": _printed(training, model.path),
                "seed": seed,
                "data": data,
                "workers": suite.config.resources.workers_per_trial,
            },
            selection_seed(suite),
        )
    )
    return TrialSpec(
        trial_id=trial_id(
            task.name, model.name if len(suite.models) > 1 else None, _id_part(point, suite.config.search.grid), seed
        ),
        model_name=model.name,
        model_path=model.path,
        task=task.name,
        point=point,
        seed=seed,
        training=training,
        fingerprint=digest,
        selection_seed=selection_seed(suite),
    )


def _id_part(point: dict, grid: dict) -> dict:
    """Grid values name a trial; a random sample is named by its index (its values are in the record)."""
    return {k: v for k, v in point.items() if k in grid or k in ("sample", "optuna")}


def trial_id(task: str, model: str | None, point: dict, seed: int) -> str:
    parts = [task] + ([model] if model else [])
    parts += [f"{_short_key(k)}={_short(v)}" for k, v in sorted(point.items()) if k not in ("sample", "optuna")]
    parts += [f"{k}={point[k]:03d}" for k in ("sample", "optuna") if k in point]
    parts.append(f"seed={seed}")
    text = re.sub(r"[^A-Za-z0-9._=+-]", "-", "_".join(parts))
    if len(text) > 120:  # keep folder names short; the hash keeps them unique
        text = text[:100] + "_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return text


def _short_key(key: str) -> str:
    if key.startswith("stage_two."):  # two-stage trials' own grid values
        return "s2." + _short_key(key.removeprefix("stage_two."))
    return SHORT_KEYS.get(key, key)


def _short(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower()
