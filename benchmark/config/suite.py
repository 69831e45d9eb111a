"""The suite: one YAML file, validated whole before anything starts, with every default filled in."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from benchmark.common.errors import InputError
from benchmark.common.hardware import bf16_warning
from benchmark.common.paths import is_dir, local_path, resolve_cache_dir
from benchmark.common.schema import parse, suggest
from benchmark.common.yamlfile import read_yaml
from benchmark.config.chains import Chain, check_chains
from benchmark.config.ensemble import SOUP_METHODS, EnsembleConfig, EnsembleSettings, check_ensemble
from benchmark.config.floors import FloorsConfig, FloorSettings, check_floors
from benchmark.config.merge import MergeConfig, MergeSettings, check_merge
from benchmark.config.search import SearchConfig, check_grid, check_search
from benchmark.config.statistics import MARGIN_KEY, StatisticsConfig, check_equivalence_margin
from benchmark.config.tracking import TrackingConfig, TrackingSettings, check_tracking
from benchmark.train.hyperparams import FREEZING_KEYS, TrainingConfig
from benchmark.train.mixing import Mixture, MultitaskConfig, check_multitask
from benchmark.train.model_support import Wanted, check_model_support
from benchmark.train.modeling import ModelRef, max_positions, num_layers, resolve_model
from tasks.glue import GLUE_TASKS, dev_as_test
from tasks.registry import REGISTRY, registry_task, resolve_data_dir
from tasks.spec import TaskSpec, TaskType
from tasks.user import user_task_from_decl

MAX_TRIALS = 100_000  # far beyond any study; a bound keeps a typo from building millions of trials
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class HoldoutConfig:
    """What a user task without a validation or test file holds out of its training file (stratified by label)."""

    validation: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})
    test: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})  # 0: no test split, no test score
    seed: int = field(default=0, metadata={"min": 0, "max": 2**32 - 1})


@dataclass
class DataConfig:
    glue_dir: str | None = None  # null: glue/ under data_dir, else $BENCH_GLUE_DIR, else the hub
    # The data root: a folder per source (glue/, conll2003/, wnut17/, superglue/, ...); null: $BENCH_DATA_DIR.
    data_dir: str | None = None
    # One cap for every task, or a cap per task ({rte: 2000, sst2: 1500}; a task not named keeps all its rows).
    max_train_samples: int | dict[str, int] | None = field(default=None, metadata={"min": 1})
    max_eval_samples: int | None = field(default=None, metadata={"min": 1})
    # Which random slice the caps above keep, the same for every trial; numpy seeds are 32-bit.
    sample_seed: int = field(default=0, metadata={"min": 0, "max": 2**32 - 1})
    cache_dir: str | None = None  # null: $BENCH_CACHE_DIR, else ~/.cache/bench
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    # GLUE's dev set: `validation` (GLUE's convention: it chooses and reports) or `test` (validation is held out
    # of train, data.holdout.validation of it, and the dev set is scored once, after all selection).
    glue_dev: Literal["validation", "test"] = "validation"

    def train_cap(self, task: str) -> int | None:
        """How many training rows `task` keeps (None: all)."""
        caps = self.max_train_samples
        return caps.get(task) if isinstance(caps, dict) else caps


@dataclass
class ResourcesConfig:
    workers_per_trial: int = field(default=1, metadata={"min": 1, "max": 4096})
    cpus_per_worker: float = field(default=1.0, metadata={"min": 0.01})
    gpus_per_worker: float = field(default=0.0, metadata={"min": 0.0})
    max_concurrent_trials: int | None = field(default=None, metadata={"min": 1})  # null: as many as fit


@dataclass
class SuiteConfig:
    name: str
    tasks: list[Any] = field(metadata={"nonempty": True})  # GLUE names, task files (.yaml), or inline user tasks
    model: str | list[str] | None = None  # null: the embedded default
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    multitask: MultitaskConfig = field(default_factory=MultitaskConfig)  # tasks trained jointly (and two-stage)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)  # run at the end of `bench run`
    merge: MergeConfig = field(default_factory=MergeConfig)  # cross-task merges, before the ensembles
    floors: FloorsConfig = field(default_factory=FloorsConfig)  # zero-shot and probe rows: what fine-tuning must beat
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # MLflow: a run per trial, a parent per run
    chains: list[Any] = field(default_factory=list)  # intermediate-task transfer: 'mrpc -> rte', ...
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)  # the leaderboard's, fixed in advance
    output: str | None = None  # null: runs/<name>
    storage: str | None = None  # Ray storage (shared folder or URI); null: <output>/ray
    trust_remote_code: bool = False


@dataclass
class Suite:
    config: SuiteConfig
    models: list[ModelRef]
    tasks: list[TaskSpec]
    output: Path
    task_entries: list[Any]  # the tasks as written to the resolved suite.yaml (user-task paths made absolute)
    ensemble: EnsembleSettings | None = None  # checked after the plan's size is known
    mixture: Mixture | None = None  # the `multitask:` section checked; None: no joint training
    chains: list[Chain] = field(default_factory=list)  # the `chains:` section checked
    merge: MergeSettings | None = None  # the `merge:` section checked
    floors: FloorSettings | None = None  # the `floors:` section checked
    tracking: TrackingSettings | None = None  # the `tracking:` section checked; None: no tracking
    warnings: list[str] = field(default_factory=list)  # one line each, printed by every command that loads it

    @property
    def name(self) -> str:
        return self.config.name

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self.config)
        d["tasks"] = self.task_entries
        d["output"] = str(self.output)
        d["model"] = [m.path for m in self.models] if isinstance(self.config.model, list) else self.models[0].path
        d["chains"] = [
            {"source": c.path, "target": c.target, "name": c.source} if c.path else f"{c.source} -> {c.target}"
            for c in self.chains
        ]
        return d


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """`--set training.epochs=1` style overrides; values are parsed as YAML scalars or lists."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item}", "expected KEY=VALUE, for example training.epochs=1")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise InputError(f"--set {item}", "the value is not valid YAML") from None
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {item}", f"{'.'.join(parts[: i + 1])} is not a mapping")
        node[parts[-1]] = value
    return data


def load_suite(path: str | Path, overrides: list[str] = (), output: str | None = None) -> Suite:
    """Parse and check a suite. Everything that can be checked without reading data is checked here."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise InputError(str(path), "the suite is empty")
    if not isinstance(data, dict):
        raise InputError(str(path), "a suite must be a mapping of keys (name, model, tasks, ...)")
    data = apply_overrides(data, list(overrides))
    config = parse(SuiteConfig, data, "")
    if not NAME_PATTERN.match(config.name):
        raise InputError("name", f"use letters, digits, '.', '-' and '_' (at most 100); got {config.name!r}")
    check_search(config.search)
    check_equivalence_margin(config.statistics.equivalence_margin, MARGIN_KEY)
    _check_resources(config)
    tasks, entries = _resolve_tasks(config.tasks, config.data)
    _check_train_caps(config.data, [t.name for t in tasks])
    mixture = check_multitask(config.multitask, {t.name: t for t in tasks})
    if mixture is not None:
        _check_multitask_search(config)
    models = _resolve_models(config)
    for m in models:
        limit = max_positions(m.path, config.trust_remote_code)
        longest = max(
            possible_values(config, "max_seq_length")
            + (_stage_two_values(config, "max_seq_length") if config.multitask.two_stage.enabled else [])
        )
        if limit is not None and longest > limit:
            raise InputError("training.max_seq_length", f"{longest} exceeds the {limit} positions of model {m.name}")
    _check_freezing(config, models, tasks, joint=mixture is not None)
    _check_model_support(config, models, joint=mixture is not None)
    for key in ("glue_dir", "data_dir"):
        value = getattr(config.data, key)
        if value and not is_dir(local_path(value, f"data.{key}")):
            raise InputError(f"data.{key}", f"folder not found: {local_path(value, f'data.{key}')}")
    _check_plan_size(config, models, tasks, joint=mixture is not None)
    out = local_path(output or config.output or f"runs/{config.name}", "--output" if output else "output")
    suite = Suite(config=config, models=models, tasks=tasks, output=out, task_entries=entries)
    suite.mixture = mixture
    suite.chains = check_chains(config.chains, [t.name for t in tasks], len(models), config.trust_remote_code)
    if suite.chains:
        _check_chain_search(config)
    suite.ensemble = check_ensemble(config.ensemble, "ensemble", base_models=len(models))
    _check_soup_init(config)
    suite.merge = check_merge(config.merge, [t.name for t in tasks])
    suite.floors = check_floors(config.floors, tasks)
    if "bf16" in possible_values(config, "precision") and (warning := bf16_warning(config.resources.gpus_per_worker)):
        suite.warnings.append(warning)
    suite.tracking = check_tracking(config.tracking, config.name)  # last: it may ask a server
    return suite


def _check_train_caps(data: DataConfig, tasks: list[str]) -> None:
    """A per-task cap names a task of the suite and keeps at least one row."""
    if not isinstance(data.max_train_samples, dict):
        return
    for task, cap in data.max_train_samples.items():
        where = f"data.max_train_samples.{task}"
        if task not in tasks:
            raise InputError(where, f"names no task of the suite; its tasks: {', '.join(tasks)}" + suggest(task, tasks))
        if cap < 1:
            raise InputError(where, f"must be at least 1, got {cap}")


def _check_plan_size(config: SuiteConfig, models: list, tasks: list, joint: bool) -> None:
    """Counted before the plan is built: a grid of a million points would otherwise take minutes to refuse."""
    search = config.search
    size = len(models) * len(tasks) * len(search.seeds) * math.prod(len(v) for v in search.grid.values())
    if search.resolved_algorithm in ("random", "optuna"):
        size *= search.num_samples
    if joint and config.multitask.two_stage.enabled:  # checked only when there is joint training
        size *= 1 + math.prod(len(v) for v in config.multitask.two_stage.grid.values())
    if size > MAX_TRIALS:
        raise InputError(
            "search",
            f"the plan has {size} trials, more than {MAX_TRIALS}; use a smaller grid, fewer samples or fewer seeds",
        )


def _check_freezing(config: SuiteConfig, models: list[ModelRef], tasks: list[TaskSpec], joint: bool) -> None:
    for epochs, head_only in itertools.product(
        possible_values(config, "epochs"), possible_values(config, "head_only_epochs")
    ):
        if head_only > epochs:
            raise InputError("training.head_only_epochs", f"{head_only} is more than the trial's {epochs} epochs")
    # A bi-encoder scores a pair by the cosine of its two embeddings: no head, so nothing to train alone.
    headless = [t.name for t in tasks if t.is_regression and len(t.text_columns) == 2]
    if (
        headless
        and "bi" in possible_values(config, "pair_encoding")
        and max(possible_values(config, "head_only_epochs"))
    ):
        raise InputError(
            "training.head_only_epochs",
            f"task {headless[0]} as a bi-encoder (pair_encoding: bi) is scored by the cosine of its two embeddings and "
            "has no head to train alone; set head_only_epochs: 0, or pair_encoding: cross",
        )
    deepest = max(possible_values(config, "freeze_layers"))
    for m in models:
        layers = num_layers(m.path, config.trust_remote_code)
        if deepest and (layers is None or deepest > layers):
            raise InputError("training.freeze_layers", f"{deepest} layers, but model {m.name} has {layers}")
    defaults = TrainingConfig()
    used = [k for k in FREEZING_KEYS if any(v != getattr(defaults, k) for v in possible_values(config, k))]
    if joint and used:
        raise InputError(
            f"training.{used[0]}",
            "freezing applies to single-task trials; the joint trials of "
            "multitask do not support it (multitask.two_stage.training may use it)",
        )


def _check_model_support(config: SuiteConfig, models: list[ModelRef], joint: bool) -> None:
    """Freezing and LoRA against each model's layout (benchmark/train/model_support.py); stage two counts too."""
    stage_two = config.multitask.two_stage.enabled and joint

    def values(key: str) -> list:
        return possible_values(config, key) + (_stage_two_values(config, key) if stage_two else [])

    defaults = TrainingConfig()
    freezing = [k for k in FREEZING_KEYS if any(v != getattr(defaults, k) for v in values(k))]
    wanted = Wanted(
        freezing_key=freezing[0] if freezing else None,
        lora=any(r > 0 for r in values("lora_r")),
        target_lists=values("lora_targets"),
        joint_lora=joint and any(r > 0 for r in possible_values(config, "lora_r")),
        mean_pooling="mean" in values("pooling"),
        poolings=tuple(values("pooling")),
        bi="bi" in values("pair_encoding"),
        joint_bi=joint and "bi" in possible_values(config, "pair_encoding"),
    )
    check_model_support(models, wanted, config.trust_remote_code)


def _check_chain_search(config: SuiteConfig) -> None:
    soups = [m for m in config.ensemble.methods if m.startswith("soup_")]
    if soups:  # a chain's checkpoints start from another initial model than its target's direct trials
        raise InputError(
            "ensemble.methods",
            f"{soups[0]} cannot take chain checkpoints (they start from the source "
            "task's checkpoint); use mean_prob, vote or greedy with chains",
        )
    if config.search.resolved_algorithm == "optuna":
        raise InputError("search.algorithm", "optuna is not supported with chains yet; use grid or random")


def _check_soup_init(config: SuiteConfig) -> None:
    """A soup averages checkpoints fine-tuned from one initialisation. With a null init seed each seed draws its own
    head, so over several seeds a soup could take only one seed's checkpoints: refused, to be set explicitly."""
    search = config.search
    soups = [m for m in config.ensemble.methods if m in SOUP_METHODS]
    seeds = 1 if search.resolved_algorithm == "optuna" else len(search.seeds)  # optuna runs the first seed only
    if soups and seeds > 1 and None in possible_values(config, "init_seed"):
        where = "training.init_seed"
        if "init_seed" in search.grid or "init_seed" in search.space:
            where = f"search.{'grid' if 'init_seed' in search.grid else 'space'}.init_seed"
        raise InputError(
            where,
            f"is null, so each of the {seeds} seeds starts from its own random head and {soups[0]} could average "
            "only one seed's checkpoints; set an init seed (e.g. 0) to fine-tune every seed from one initialisation",
        )


def _check_multitask_search(config: SuiteConfig) -> None:
    """A multi-task trial evaluates once per epoch and saves no training state (see benchmark/train/multitask.py)."""
    search = config.search
    if search.scheduler.type in ("hyperband", "pbt"):
        raise InputError(
            "search.scheduler",
            f"{search.scheduler.type} pauses and restores trials from saved states, "
            "which multi-task trials do not save; use fifo or asha with multitask",
        )
    if search.eval_every_steps:
        raise InputError("search.eval_every_steps", "multi-task trials evaluate once per epoch; remove it or multitask")
    if search.resolved_algorithm == "optuna":
        raise InputError("search.algorithm", "optuna is not supported with multitask yet; use grid or random")
    two_stage = config.multitask.two_stage
    soups = [m for m in config.ensemble.methods if m.startswith("soup_")]
    if two_stage.enabled and soups:
        # A soup averages checkpoints fine-tuned from one initial model; each stage-two trial starts from its own
        # stage-one export, so its checkpoints would be refused from any soup pool they land in.
        raise InputError(
            "ensemble.methods",
            f"{soups[0]} cannot take two-stage checkpoints (each starts from its own "
            "stage-one export); use mean_prob, vote or greedy with multitask.two_stage",
        )
    parse(TrainingConfig, two_stage.training, "multitask.two_stage.training")  # unknown keys and bad values
    check_grid(two_stage.grid, "multitask.two_stage.grid")
    workers = config.resources.workers_per_trial
    for b, a in itertools.product(
        _stage_two_values(config, "batch_size"), _stage_two_values(config, "gradient_accumulation_steps")
    ):
        if b % (workers * a):
            raise InputError(
                "multitask.two_stage",
                f"stage two's batch_size {b} is not divisible by workers_per_trial x "
                f"gradient_accumulation_steps ({workers} x {a})",
            )
    if "fp16" in _stage_two_values(config, "precision") and config.resources.gpus_per_worker == 0:
        raise InputError(
            "multitask.two_stage", "fp16 needs GPUs (resources.gpus_per_worker > 0); use bf16 or fp32 on CPU"
        )


def _stage_two_values(config: SuiteConfig, key: str) -> list:
    """Every value a hyperparameter can take in stage two (its grid, else its override, else stage one's)."""
    two_stage = config.multitask.two_stage
    if key in two_stage.grid:
        return two_stage.grid[key]
    if key in two_stage.training:
        return [two_stage.training[key]]
    return possible_values(config, key)


def _check_resources(config: SuiteConfig) -> None:
    r = config.resources
    batch_sizes = possible_values(config, "batch_size")
    accumulations = possible_values(config, "gradient_accumulation_steps")
    for b, a in itertools.product(batch_sizes, accumulations):
        if b % (r.workers_per_trial * a):
            raise InputError(
                "training.batch_size",
                f"{b} is not divisible by workers_per_trial x gradient_accumulation_steps "
                f"({r.workers_per_trial} x {a}); batch_size is the global batch of one optimizer step",
            )
    precisions = possible_values(config, "precision")
    if "fp16" in precisions and r.gpus_per_worker == 0:
        raise InputError(
            "training.precision", "fp16 needs GPUs (resources.gpus_per_worker > 0); use bf16 or fp32 on CPU"
        )
    if r.gpus_per_worker > 1 and not float(r.gpus_per_worker).is_integer():  # Ray refuses it when the trial starts
        raise InputError(
            "resources.gpus_per_worker", f"{r.gpus_per_worker}: more than one GPU must be a whole number of them"
        )
    if 0 < r.gpus_per_worker < 1 and r.workers_per_trial > 1:
        raise InputError("resources.gpus_per_worker", "a trial with several workers needs whole GPUs per worker")


def window_settings(config: SuiteConfig) -> list[tuple[int, int, int]]:
    """Every (max_seq_length, doc_stride, max_query_length) an extractive QA task's windows can have in the plan."""
    keys = ("max_seq_length", "doc_stride", "max_query_length")
    return sorted(itertools.product(*(possible_values(config, k) for k in keys)))


def possible_values(config: SuiteConfig, key: str) -> list:
    """Every value a hyperparameter can take in this suite's plan."""
    search = config.search
    if key in search.grid:
        return search.grid[key]
    if key in search.space:
        ((kind, args),) = search.space[key].items()
        return args if kind == "choice" else list(range(args[0], args[1])) if kind == "randint" else args
    return [getattr(config.training, key)]


def _resolve_tasks(entries: list[Any], data: DataConfig) -> tuple[list[TaskSpec], list[Any]]:
    holdout, glue_dev = data.holdout, data.glue_dev
    fractions = {"validation": holdout.validation, "test": holdout.test}
    named = {**GLUE_TASKS, **REGISTRY}
    tasks, resolved = [], []
    for i, entry in enumerate(entries):
        where = f"tasks[{i}]"
        if isinstance(entry, str) and entry.lower().endswith((".yaml", ".yml")):
            file = local_path(entry, where)
            decl = read_yaml(file, "task")
            if not isinstance(decl, dict):
                raise InputError(
                    str(file), "a task file must be a mapping (name, train, validation, text_columns, ...)"
                )
            task = user_task_from_decl(decl, str(file), file.parent, set(named), fractions, holdout.seed)
        elif isinstance(entry, str) and entry in REGISTRY:
            if glue_dev == "test" and holdout.validation == 0:
                raise InputError(
                    "data.holdout.validation", "is 0, but data.glue_dev: test holds validation out of train"
                )
            task = registry_task(
                entry, resolve_data_dir(data.data_dir), glue_dev == "test", holdout.validation, holdout.seed
            )
        elif isinstance(entry, str):
            if entry not in GLUE_TASKS:
                raise InputError(
                    where,
                    f"unknown task '{entry}'"
                    + suggest(entry, named)
                    + f"; GLUE tasks are {', '.join(GLUE_TASKS)}, other registry tasks {', '.join(REGISTRY)}, "
                    "or give a task file (.yaml) or a mapping",
                )
            task = GLUE_TASKS[entry]
            if glue_dev == "test":
                if holdout.validation == 0:
                    raise InputError(
                        "data.holdout.validation", "is 0, but data.glue_dev: test holds validation out of train"
                    )
                task = dev_as_test(task, holdout.validation, holdout.seed)
        elif isinstance(entry, dict):
            task = user_task_from_decl(entry, where, Path.cwd(), set(named), fractions, holdout.seed)
        else:
            raise InputError(where, "a task is a GLUE name, a task file path, or a mapping")
        if any(t.name == task.name for t in tasks):
            raise InputError(where, f"task '{task.name}' is listed twice")
        tasks.append(task)
        resolved.append(entry if isinstance(entry, str) and entry in named else _user_entry(task))
    return tasks, resolved


def _user_entry(task: TaskSpec) -> dict:
    entry = {
        "name": task.name,
        **task.files,
        "format": task.file_format,
        "text_columns": list(task.text_columns),
        "label_column": task.label_column,
        "metrics": list(task.metrics),
    }
    if task.type in (TaskType.TAGGING, TaskType.MULTIPLE_CHOICE, TaskType.EXTRACTIVE_QA):
        entry["type"] = task.type.value
    if task.is_regression:
        entry["regression"] = True
    elif task.label_names is not None and task.type is not TaskType.MULTIPLE_CHOICE:
        entry["labels"] = list(task.label_names)
    if task.type is TaskType.TAGGING:
        entry["tag_column"] = task.tag_column
    if task.type is TaskType.MULTIPLE_CHOICE:
        entry["choice_columns"] = list(task.choice_columns)
        entry["context_template"] = task.context_template
    return entry


def _resolve_models(config: SuiteConfig) -> list[ModelRef]:
    specs = config.model if isinstance(config.model, list) else [config.model]
    if not specs:
        raise InputError("model", "the list of models is empty")
    where = (lambda i: f"model[{i}]") if isinstance(config.model, list) else (lambda i: "model")
    models = [resolve_model(spec, config.trust_remote_code, where(i)) for i, spec in enumerate(specs)]
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InputError("model", "two models share a name; give distinct folders or ids")
    return models


def cache_dir(suite: Suite) -> Path:
    """Where tokenised data and read splits are cached for this suite."""
    return resolve_cache_dir(suite.config.data.cache_dir)
