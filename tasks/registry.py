"""Registry tasks beyond GLUE, each read from its folder under the data root in its own layout, or from the hub.

The data root is `data.data_dir`, else `$BENCH_DATA_DIR`; it holds one folder per source, laid out as
`../shared/data` is: `glue/`, `conll2003/`, `wnut17/`, `superglue/`, `squad/`, `corpora/`. A task whose folder is
there reads its files (their SOURCES.md gives the layout); otherwise it reads the hub copy named in `hub`.

Each declaration is a TaskSpec with its files relative to the data root; `registry_task` makes them absolute.
Tag sets follow the hub copies' label ids, so a local and a hub run number tags alike.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tasks.glue import DEV_AS_TEST
from tasks.spec import CONTEXT, QA_METRICS, TOKENS, TaskSpec, TaskType

DATA_DIR_ENV = "BENCH_DATA_DIR"
SUPERGLUE_HUB = "aps/super_glue"
CONLL_FORMAT = "conll"  # a token per line, blank lines between sentences (tasks/conll.py)
ENTITY_METRICS = ("precision", "recall", "f1")  # entity level, micro-averaged over entities (seqeval)
SQUAD_FORMAT = "squad"  # SQuAD's JSON: articles, their paragraphs, their questions (tasks/squad.py)
QA_TEXT_COLUMNS = ("question", CONTEXT)  # what an extractive QA task reads, as a pair (tasks/spans.py)
# Local copies that hold fewer splits than the hub's: the shares of the training file's questions held out for
# validation and test, whole articles each (tasks/squad.py). Only SQuAD's dev set is under the data root.
LOCAL_HOLDOUT = {"squad": {"validation": 0.1, "test": 0.2}}


def resolve_data_dir(data_dir: str | None) -> Path | None:
    """The suite's `data.data_dir`, else $BENCH_DATA_DIR, else None (the hub)."""
    value = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser().resolve() if value else None


def _superglue(name, folder, text_columns, label_names, metrics, **kw) -> TaskSpec:
    return TaskSpec(
        name=name,
        text_columns=text_columns,
        label_names=label_names,
        metrics=metrics,
        files={"train": f"superglue/{folder}/train.jsonl", "validation": f"superglue/{folder}/val.jsonl"},
        file_format="json",
        hub=(SUPERGLUE_HUB, name),
        **kw,
    )


def _tagging(name, folder, files, tags, hub) -> TaskSpec:
    return TaskSpec(
        name=name,
        text_columns=(TOKENS,),
        label_names=tags,
        metrics=ENTITY_METRICS,
        label_column="ner_tags",  # the hub copies' column; CoNLL files have no header
        files={split: f"{folder}/{f}" for split, f in files.items()},
        file_format=CONLL_FORMAT,
        hub=(hub, None),
        final_test="test",
        type=TaskType.TAGGING,
    )


def _bio(*types: str) -> tuple[str, ...]:
    return ("O", *(f"{p}-{t}" for t in types for p in ("B", "I")))


REGISTRY: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        # Labels as SuperGLUE's JSONL spells them, in the hub copy's id order.
        _superglue(
            "cb", "CB", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral"), ("accuracy", "f1_macro")
        ),  # fmt: skip
        _superglue("boolq", "BoolQ", ("question", "passage"), ("false", "true"), ("accuracy",)),
        # COPA's premise and question word ("cause" or "effect") make the context each choice is read with.
        _superglue(
            "copa",
            "COPA",
            ("premise",),
            ("choice1", "choice2"),
            ("accuracy",),
            type=TaskType.MULTIPLE_CHOICE,
            choice_columns=("choice1", "choice2"),
            context_template="{premise} What was the {question}?",
        ),
        _tagging(
            "conll2003",
            "conll2003",
            {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
            _bio("PER", "ORG", "LOC", "MISC"),
            "eriktks/conll2003",
        ),
        TaskSpec(
            name="squad",
            text_columns=QA_TEXT_COLUMNS,
            label_names=None,
            metrics=QA_METRICS,
            label_column="answers",
            files={"train": "squad/dev-v1.1.json"},
            file_format=SQUAD_FORMAT,
            hub=("rajpurkar/squad", None),
            type=TaskType.EXTRACTIVE_QA,
        ),
        _tagging(
            "wnut17",
            "wnut17",
            {"train": "wnut17train.conll", "validation": "emerging.dev.conll", "test": "emerging.test.annotated"},
            _bio("corporation", "creative-work", "group", "location", "person", "product"),
            "leondz/wnut_17",
        ),
    )
}


def registry_task(name: str, data_dir: Path | None, dev_is_test: bool, validation: float, seed: int) -> TaskSpec:
    """Registry task `name`, reading its files under `data_dir` when its folder is there, else the hub.

    `dev_is_test` (the suite's `data.glue_dev: test`): a task without a labelled test split scores its public dev
    set once as the test split, and holds `validation` of its training rows out (seeded) for validation."""
    task = REGISTRY[name]
    folder = Path(next(iter(task.files.values()))).parent
    if data_dir is not None and (data_dir / folder).is_dir():
        task = dataclasses.replace(task, files={s: str(data_dir / f) for s, f in task.files.items()})
        if name in LOCAL_HOLDOUT:  # carved from the one file there, seeded, recorded in splits.json
            return dataclasses.replace(task, holdout=LOCAL_HOLDOUT[name], holdout_seed=seed, final_test="test")
    else:
        task = dataclasses.replace(task, files={}, file_format=None)
    if dev_is_test and task.final_test is None:
        files = {s: f for s, f in task.files.items() if s != "validation"}
        if task.files:
            files[DEV_AS_TEST] = task.files["validation"]
        task = dataclasses.replace(
            task,
            files=files,
            sources={DEV_AS_TEST: "validation"},
            holdout={"validation": validation},
            holdout_seed=seed,
            final_test=DEV_AS_TEST,
        )
    return task
