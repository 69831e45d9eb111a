"""What is in a task's data, before anything trains on it: `bench data` (benchmark/run/data.py) and `bench run`.

Per split: rows, the label distribution, token lengths under the model's tokenizer and how many rows
`max_seq_length` cuts, empty texts and mojibake (ftfy), and in train exact and near duplicates and identical inputs
with conflicting labels; between train and every other split, the rows and the single texts found in both.

Texts are compared normalised: Unicode NFKC, lower case, whitespace collapsed. An example's input is all its texts
together (a pair is one input); a "text" is one of them (a pair's sentences each, a QA question's context). Near
duplicates are MinHash estimates (datasketch) of the Jaccard similarity of word 3-gram shingles at or above
NEAR_THRESHOLD; each row counts once, against any earlier row, and exact duplicates are not counted again.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tasks.spec import CHOICES, CONTEXT, TOKENS, TaskSpec, TaskType

NEAR_THRESHOLD = 0.8
NUM_PERM = 64  # MinHash permutations: the Jaccard estimate's standard error is about 1/sqrt(64) = 0.125
PERCENTILES = (50, 90, 95, 99)
EXAMPLES = 5  # rows quoted per finding


@dataclass
class Overlap:
    """Another split against train: its rows whose whole input is in train (exact, near), and its single texts that
    are a text of some training row (a pair's sentence seen in another pair)."""

    rows: int
    near_rows: int
    texts: int
    examples: list[int] = field(default_factory=list)  # row numbers (0-based, split order) of exact overlaps


@dataclass
class SplitReport:
    split: str
    rows: int
    labels: dict  # class name -> rows; a regression: mean, std, min, max; tagging: tag -> tokens
    lengths: dict  # percentile ("p50", ...) and "max" -> tokens
    truncated: int  # rows longer than max_seq_length tokens
    max_seq_length: int
    empty: int  # rows with an empty or whitespace-only text
    mojibake: int  # rows with a text ftfy finds badly decoded
    duplicates: int | None = None  # train: rows whose input and label repeat an earlier row's
    duplicate_inputs: int | None = None  # train: rows whose input repeats an earlier row's, whatever the labels
    near_duplicates: int | None = None  # train: rows within NEAR_THRESHOLD of an earlier row, not exact duplicates
    conflicting: int | None = None  # train: distinct inputs that carry more than one label
    overlap: dict[str, Overlap] = field(default_factory=dict)  # train only: per other split
    examples: dict[str, list[int]] = field(default_factory=dict)  # finding -> row numbers


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def example_texts(task: TaskSpec, ds) -> list[tuple[str, ...]]:
    """Each example's texts, as the family lays them out."""
    if task.type is TaskType.TAGGING:
        return [(" ".join(words),) for words in ds[TOKENS][:]]
    if task.type is TaskType.MULTIPLE_CHOICE:
        return [(c, *choices) for c, choices in zip(ds[CONTEXT][:], ds[CHOICES][:])]
    if task.type is TaskType.EXTRACTIVE_QA:
        return list(zip(ds["question"][:], ds[CONTEXT][:]))
    return list(zip(*(ds[c][:] for c in task.text_columns)))


def label_values(task: TaskSpec, ds) -> list | None:
    if "label" not in ds.column_names or task.type is TaskType.EXTRACTIVE_QA:
        return None
    labels = ds["label"][:]
    if task.type is TaskType.TAGGING:
        return [tuple(tags) for tags in labels]
    return labels


def label_distribution(task: TaskSpec, labels: list | None) -> dict:
    if labels is None:
        return {}
    if task.is_regression:
        v = np.asarray(labels, dtype=np.float64)
        return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}
    if task.type is TaskType.TAGGING:
        counts = Counter(t for tags in labels for t in tags)
    else:
        counts = Counter(labels)
    names = task.label_names or ()
    return {(names[k] if isinstance(k, int) and k < len(names) else str(k)): n for k, n in sorted(counts.items())}


def token_lengths(texts: list[tuple[str, ...]], tokenizer, task: TaskSpec) -> np.ndarray:
    """Tokens per example with special tokens, as the model reads it (a pair together; QA: question and context;
    multiple choice: the context with its longest choice)."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    if task.type is TaskType.MULTIPLE_CHOICE:
        firsts = [t[0] for t in texts for _ in t[1:]]
        seconds = [c for t in texts for c in t[1:]]
        ids = tokenizer(firsts, seconds, add_special_tokens=True)["input_ids"]
        per_choice = np.array([len(x) for x in ids])
        bounds = np.cumsum([0] + [len(t) - 1 for t in texts])
        return np.array([per_choice[a:b].max() for a, b in zip(bounds[:-1], bounds[1:])])
    columns = list(zip(*texts))
    ids = tokenizer(*[list(c) for c in columns[:2]], add_special_tokens=True)["input_ids"]
    return np.array([len(x) for x in ids])


def length_summary(lengths: np.ndarray) -> dict:
    if not len(lengths):
        return {}
    return {**{f"p{p}": int(np.percentile(lengths, p)) for p in PERCENTILES}, "max": int(lengths.max())}


def shingles(text: str) -> set[bytes]:
    words = text.split()
    grams = [" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))]
    return {g.encode("utf-8") for g in grams}


def minhashes(inputs: list[str]) -> list:
    # Imported here for start-up speed (datasketch).
    from datasketch import MinHash

    return MinHash.bulk([shingles(t) for t in inputs], num_perm=NUM_PERM, seed=1)


def split_report(
    task: TaskSpec, split: str, ds, tokenizer, max_seq_length: int
) -> tuple[SplitReport, list[tuple], list | None]:
    """One split's own findings; the train-only ones are added by `task_report`."""
    # Imported here for start-up speed (ftfy).
    from ftfy.badness import is_bad

    texts = example_texts(task, ds)
    labels = label_values(task, ds)
    lengths = token_lengths(texts, tokenizer, task)
    empty = [i for i, t in enumerate(texts) if any(not x.strip() for x in t)]
    bad = [i for i, t in enumerate(texts) if any(is_bad(x) for x in t)]
    report = SplitReport(
        split=split,
        rows=len(texts),
        labels=label_distribution(task, labels),
        lengths=length_summary(lengths),
        truncated=int((lengths > max_seq_length).sum()),
        max_seq_length=max_seq_length,
        empty=len(empty),
        mojibake=len(bad),
        examples={"empty": empty[:EXAMPLES], "mojibake": bad[:EXAMPLES]},
    )
    return report, texts, labels


def task_report(task: TaskSpec, splits: dict, tokenizer, max_seq_length: int) -> list[SplitReport]:
    """Every split of a task (`splits`: name -> loaded split, train first), with train's duplicates, conflicts and
    overlaps with the others."""
    # Imported here for start-up speed (datasketch).
    from datasketch import MinHashLSH

    reports, inputs = {}, {}
    for name, ds in splits.items():
        report, texts, labels = split_report(task, name, ds, tokenizer, max_seq_length)
        reports[name], inputs[name] = report, ([tuple(normalise(x) for x in t) for t in texts], labels)
    if "train" not in reports:
        return list(reports.values())
    train, train_labels = inputs["train"]
    keys = [" \t ".join(t) for t in train]
    duplicates, repeated, labels_of = [], 0, {}
    for i, key in enumerate(keys):
        label = train_labels[i] if train_labels is not None else None
        known = labels_of.setdefault(key, set())
        repeated += bool(known)  # the input came before
        if label in known:
            duplicates.append(i)  # and with this label
        known.add(label)
    conflicting = [k for k, v in labels_of.items() if len(v) > 1]
    lsh, near, first_of = MinHashLSH(threshold=NEAR_THRESHOLD, num_perm=NUM_PERM), [], {}
    hashes = minhashes(keys)
    for i, (key, h) in enumerate(zip(keys, hashes)):
        if key in first_of:
            continue  # an exact duplicate (of input): counted above, not again
        if lsh.query(h):
            near.append(i)
        first_of[key] = i
        lsh.insert(str(i), h)
    report = reports["train"]
    report.duplicates, report.duplicate_inputs = len(duplicates), repeated
    report.near_duplicates, report.conflicting = len(near), len(conflicting)
    report.examples.update(duplicates=duplicates[:EXAMPLES], near_duplicates=near[:EXAMPLES],
                           conflicting=[first_of[k] for k in conflicting[:EXAMPLES]])  # fmt: skip
    train_texts = {x for t in train for x in t}
    for name, (other, _) in inputs.items():
        if name == "train":
            continue
        other_keys = [" \t ".join(t) for t in other]
        exact = [i for i, k in enumerate(other_keys) if k in first_of]
        near_rows = sum(1 for k, h in zip(other_keys, minhashes(other_keys)) if k not in first_of and lsh.query(h))
        texts = sum(1 for t in other for x in t if x in train_texts)
        report.overlap[name] = Overlap(rows=len(exact), near_rows=near_rows, texts=texts, examples=exact[:EXAMPLES])
    return list(reports.values())
