"""Tokenise a task once per (data, tokenizer, max length) and cache the result on disk.

Token ids are kept flat with offsets (one array per split), so a cached task loads in milliseconds,
pickles compactly into Ray's object store, and a second trial never tokenises again.

A pair task for a bi-encoder (`training.pair_encoding: bi`) keeps its two texts apart: each tokenised alone,
the first in the split's own arrays, the second in `second`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.common.atomic import atomic_replace_dir, atomic_write_json, staging_dir_for
from benchmark.common.checks import file_stats, folder_files
from benchmark.common.hashing import fingerprint
from tasks.augment import Augmentation, augment_dataset
from tasks.loading import data_files, load_split
from tasks.spans import encode_questions, qa_labels
from tasks.spec import CHOICES, CONTEXT, TOKENS, TaskSpec, TaskType, Windowing
from tasks.words import IGNORE, encode_words

CACHE_FORMAT = 1
BI = "bi"  # training.pair_encoding's value that encodes a pair's texts apart


def encodes_apart(task: TaskSpec, pair_encoding: str) -> bool:
    """Whether `task`'s texts are tokenised one by one: a bi-encoder's pair task (a single text has no pair)."""
    return pair_encoding == BI and len(task.text_columns) == 2


@dataclass
class EncodedSplit:
    ids: np.ndarray  # int32, all examples concatenated
    offsets: np.ndarray  # int64, len n + 1
    labels: np.ndarray  # int64 class ids or float32 scores
    type_ids: np.ndarray | None  # int8 segment ids, same layout as `ids`, when the model uses them
    second: EncodedSplit | None = None  # texts encoded apart: the second text of each pair (the same labels)
    # Tagging (tasks/words.py): the examples above are windows of sentences; `labels` holds each sentence's word
    # tags (sentences x words, IGNORE past a sentence's end), and these say how windows map to them.
    token_labels: np.ndarray | None = None  # int64, layout of `ids`: a word's tag at its first sub-token, else IGNORE
    word: np.ndarray | None = None  # int64, layout of `ids`: the word's index at its first sub-token, else -1
    sentence: np.ndarray | None = None  # int64 per window: its sentence
    # Multiple choice: each example is `choices` sequences (context and one choice), consecutive in `ids`.
    choices: int = 0
    # Extractive QA (tasks/spans.py): the examples above are windows of questions; `labels` holds each question's
    # packed QALabels (what decodes and scores its answer), and these say how windows map to them.
    question: np.ndarray | None = None  # int64 per window: its question
    span_labels: np.ndarray | None = None  # int64 (windows, 2): the answer's start and end token, 0 where outside

    def __len__(self) -> int:
        return (len(self.offsets) - 1) // (self.choices or 1)

    @property
    def token_lengths(self) -> np.ndarray:
        """Each example's tokens in this split's own arrays (the first text alone, for a pair encoded apart)."""
        return np.diff(self.offsets)

    @property
    def lengths(self) -> np.ndarray:
        """What batching groups by: the tokens of an example, both texts together for a pair encoded apart; the
        longest choice of a multiple-choice example (every choice is padded to it)."""
        if self.choices:
            return self.token_lengths.reshape(-1, self.choices).max(axis=1)
        return self.token_lengths + (self.second.token_lengths if self.second is not None else 0)

    @property
    def examples(self) -> int:
        """What is scored and resampled: a sentence of a tagging task, else an example (a row of `labels`)."""
        return len(self.labels)

    @property
    def window_words(self) -> int:
        """Tagging: the most words a window predicts."""
        starts = self.word >= 0
        return int(np.add.reduceat(starts, self.offsets[:-1]).max()) if len(self) else 0

    def example(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.ids[a:b], None if self.type_ids is None else self.type_ids[a:b]


@dataclass
class TaskData:
    task: TaskSpec
    splits: dict[str, EncodedSplit]  # "train" and each of task.eval_splits
    cache_key: str = ""
    augmented_examples: int = 0  # training examples added by augmentation (tasks/augment.py)

    @property
    def train(self) -> EncodedSplit:
        return self.splits["train"]

    @property
    def eval_splits(self) -> dict[str, EncodedSplit]:
        return {s: self.splits[s] for s in self.task.eval_splits}


def windows_note(data: TaskData) -> str | None:
    """A tagging task's sentences longer than one window, said per split (None: none, or not tagging)."""
    split = {s: data.splits[s] for s in data.task.splits if data.splits[s].sentence is not None}  # train first
    counts = {s: int((np.bincount(e.sentence, minlength=e.examples) > 1).sum()) for s, e in split.items()}
    if not any(counts.values()):
        return None
    parts = ", ".join(f"{n} of {split[s].examples} {s}" for s, n in counts.items() if n)
    return f"{parts} sentence(s) exceed max_seq_length: split into windows, one prediction per word"


def tokenizer_fingerprint(tokenizer) -> str:
    """Identifies the tokenizer by what it does (vocabulary and rules), not by where it was loaded from."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # Calling the tokenizer with truncation or padding changes these; they do not change the tokens we cache.
        state.pop("truncation", None)
        state.pop("padding", None)
        payload = json.dumps(state, sort_keys=True)
    else:
        payload = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def encode_task(
    task: TaskSpec,
    tokenizer,
    max_seq_length: int,
    glue_dir: Path | None,
    cache_dir: Path,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    sample_seed: int = 0,
    augmentation: Augmentation | None = None,
    stamp: str | None = None,
    pair_encoding: str = "cross",
    windowing: Windowing | None = None,
) -> TaskData:
    """Load and tokenise every split of `task`, from the cache when the same work was done before. With an
    augmentation, the training split gets its augmented copies (cached per augmentation and seed). `stamp`
    (`source_stamp`) lets the next run find the result without reading the data or loading the tokenizer.
    `pair_encoding` "bi": a pair's texts tokenised apart (`encodes_apart`). `windowing`: an extractive QA task's
    windows (its defaults when None)."""
    windowing = _windowing(task, windowing)
    raw = {}
    for split in task.splits:
        cap = max_train_samples if split == "train" else max_eval_samples
        raw[split] = load_split(task, split, glue_dir, cache_dir, cap, sample_seed)
    augment = augmentation is not None and augmentation.enabled
    apart = encodes_apart(task, pair_encoding)
    key = hashlib.sha256(
        json.dumps(
            {
                "format": CACHE_FORMAT,
                "task": task.to_dict(),
                "data": {s: content_hash(ds) for s, ds in raw.items()},
                "tokenizer": tokenizer_fingerprint(tokenizer),
                "max_seq_length": max_seq_length,
                **({"augmentation": augmentation.to_dict()} if augment else {}),
                **({"pair_encoding": BI} if apart else {}),  # keys made before it stay
                **({"windowing": windowing.to_dict()} if windowing else {}),
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:24]
    folder = cache_dir / "encoded" / f"{task.name}-{key}"
    original = len(raw["train"])
    if (folder / "splits.safetensors").is_file():
        splits = _read(folder)
    else:
        if augment:
            # multiple choice: the context is edited, the choices kept (an edit may not change which one is right)
            texts = (CONTEXT,) if task.type is TaskType.MULTIPLE_CHOICE else task.text_columns
            raw["train"] = augment_dataset(raw["train"], texts, augmentation)
        splits = {
            s: encode_split(task, ds, tokenizer, max_seq_length, pair_encoding, windowing) for s, ds in raw.items()
        }
        staging = staging_dir_for(folder)
        try:
            _write(staging, splits)
            atomic_replace_dir(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    data = TaskData(task, splits, key, len(splits["train"]) - original)
    if stamp is not None:
        atomic_write_json(_stamp_file(cache_dir, stamp), {"key": key, "augmented_examples": data.augmented_examples})
    return data


def source_stamp(
    task: TaskSpec,
    model_path: str,
    max_seq_length: int,
    glue_dir: Path | None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    sample_seed: int = 0,
    augmentation: Augmentation | None = None,
    pair_encoding: str = "cross",
    windowing: Windowing | None = None,
) -> str | None:
    """What `encode_task` would read, named by its files' paths, sizes and modification times (the task's data
    files and every file of the tokenizer's folder), with the settings; None when anything comes from the hub.
    A second run finds its encoded data by this in milliseconds; a changed file only costs a fresh encoding."""
    files = data_files(task, glue_dir)
    model = Path(model_path)
    stats = file_stats([*files.values(), *folder_files(model)]) if files is not None and model.is_dir() else None
    if stats is None:
        return None
    payload = {
        "format": CACHE_FORMAT,
        "task": task.to_dict(),
        "files": stats,
        "settings": [max_seq_length, max_train_samples, max_eval_samples, sample_seed],
        "augmentation": augmentation.to_dict() if augmentation is not None and augmentation.enabled else None,
        **({"pair_encoding": BI} if encodes_apart(task, pair_encoding) else {}),
        **({"windowing": w.to_dict()} if (w := _windowing(task, windowing)) else {}),
    }
    return fingerprint(payload)


def _windowing(task: TaskSpec, windowing: Windowing | None) -> Windowing | None:
    """An extractive QA task's windowing (its defaults when not given); None for every other family."""
    return (windowing or Windowing()) if task.type is TaskType.EXTRACTIVE_QA else None


def cached_task(task: TaskSpec, stamp: str, cache_dir: Path) -> TaskData | None:
    """The encoded task an earlier `encode_task(..., stamp=stamp)` wrote, or None."""
    try:
        found = json.loads(_stamp_file(cache_dir, stamp).read_text())
    except (OSError, ValueError):
        return None
    folder = cache_dir / "encoded" / f"{task.name}-{found['key']}"
    if not (folder / "splits.safetensors").is_file():
        return None
    return TaskData(task, _read(folder), found["key"], found["augmented_examples"])


def _stamp_file(cache_dir: Path, stamp: str) -> Path:
    return cache_dir / "encoded" / "stamps" / f"{stamp}.json"


def content_hash(ds) -> str:
    """Hash of the examples themselves: `datasets` fingerprints differ between a fresh and a cached load."""
    h = hashlib.sha256()
    for column in ds.column_names:
        h.update(column.encode())
        h.update("\x1f".join(map(str, ds[column][:])).encode())
    return h.hexdigest()


def encode_split(
    task: TaskSpec, ds, tokenizer, max_seq_length: int, pair_encoding: str = "cross", windowing: Windowing | None = None
) -> EncodedSplit:
    """Tokenise one split (not cached: `encode_task` caches whole tasks). Unlabelled splits get label -1 (NaN for
    regression). `pair_encoding` "bi": each text of a pair alone, each truncated to `max_seq_length`."""
    if task.type is TaskType.TAGGING:
        return _tagged(ds, tokenizer, max_seq_length)
    if task.type is TaskType.EXTRACTIVE_QA:
        return _questions(ds, tokenizer, max_seq_length, _windowing(task, windowing))
    labels = labels_of(task, ds)
    if task.type is TaskType.MULTIPLE_CHOICE:  # each choice read with the context, as a pair
        options = ds[CHOICES][:]
        n = len(options[0]) if options else 0
        contexts = [c for c in ds[CONTEXT][:] for _ in range(n)]
        encoded = _tokens([contexts, [o for row in options for o in row]], tokenizer, max_seq_length, labels)
        encoded.choices = n
        return encoded
    if encodes_apart(task, pair_encoding):
        first, second = (_tokens([ds[c][:]], tokenizer, max_seq_length, labels) for c in task.text_columns)
        first.second = second
        return first
    return _tokens([ds[c][:] for c in task.text_columns], tokenizer, max_seq_length, labels)


def _tagged(ds, tokenizer, max_seq_length: int) -> EncodedSplit:
    """A tagging split: its sentences cut into windows (tasks/words.py), word tags padded per sentence."""
    tags = ds["label"][:] if "label" in ds.column_names else None
    w = encode_words(ds[TOKENS][:], tags, tokenizer, max_seq_length)
    labels = _tag_rows(ds[TOKENS][:], tags)
    types = np.zeros(len(w.ids), dtype=np.int8) if "token_type_ids" in tokenizer.model_input_names else None
    return EncodedSplit(w.ids, w.offsets, labels, types, token_labels=w.labels, word=w.word, sentence=w.sentence)


def _questions(ds, tokenizer, max_seq_length: int, windowing: Windowing) -> EncodedSplit:
    """A QA split: its questions cut into windows over their contexts, trained on each question's first answer."""
    answers, contexts = ds["answers"][:], ds[CONTEXT][:]
    first = [(x["answer_start"][0], x["text"][0]) if x["text"] else None for x in answers]
    w = encode_questions(
        ds["question"][:], contexts, first, tokenizer, max_seq_length, windowing.doc_stride, windowing.max_query_length
    )
    labels = qa_labels(w, contexts, answers, windowing).pack()
    spans = np.stack([w.start, w.end], axis=1)
    return EncodedSplit(w.ids, w.offsets, labels, w.type_ids, question=w.question, span_labels=spans)


def labels_of(task: TaskSpec, ds) -> np.ndarray:
    """A loaded split's labels as its predictions are scored against: class ids or scores per example (-1 or NaN
    where unlabelled); tagging: tag ids, a row per sentence, IGNORE past its end."""
    if task.type is TaskType.TAGGING:
        return _tag_rows(ds[TOKENS][:], ds["label"][:] if "label" in ds.column_names else None)
    dtype = np.float32 if task.is_regression else np.int64
    if "label" in ds.column_names:
        return np.asarray(ds["label"][:], dtype=dtype)
    return np.full(len(ds), np.nan if task.is_regression else -1, dtype=dtype)


def _tag_rows(tokens: list[list[str]], tags: list[list[int]] | None) -> np.ndarray:
    rows = np.full((len(tokens), max((len(t) for t in tokens), default=1)), IGNORE, dtype=np.int64)
    for s, row in enumerate(tags or []):
        rows[s, : len(row)] = row
    return rows


def _tokens(columns: list[list[str]], tokenizer, max_seq_length: int, labels: np.ndarray) -> EncodedSplit:
    """The texts of one or two columns, one sequence per example."""
    ids, type_ids, offsets = [], [], [0]
    batch = 1000
    for start in range(0, len(columns[0]), batch):
        texts = [col[start : start + batch] for col in columns]
        enc = tokenizer(*texts, truncation=True, max_length=max_seq_length, return_attention_mask=False)
        for i, seq in enumerate(enc["input_ids"]):
            ids.extend(seq)
            offsets.append(offsets[-1] + len(seq))
            if "token_type_ids" in enc:
                type_ids.extend(enc["token_type_ids"][i])
    return EncodedSplit(
        ids=np.asarray(ids, dtype=np.int32),
        offsets=np.asarray(offsets, dtype=np.int64),
        labels=labels,
        type_ids=np.asarray(type_ids, dtype=np.int8) if type_ids else None,
    )


_FAMILY_ARRAYS = ("token_labels", "word", "sentence", "question", "span_labels")  # tagging's, extractive QA's


def _write(folder: Path, splits: dict[str, EncodedSplit]) -> None:
    # Imported here for start-up speed (safetensors).
    from safetensors.numpy import save_file

    tensors = {}
    for name, s in splits.items():
        tensors[f"{name}.ids"] = s.ids
        tensors[f"{name}.offsets"] = s.offsets
        tensors[f"{name}.labels"] = s.labels
        if s.type_ids is not None:
            tensors[f"{name}.type_ids"] = s.type_ids
        for key in _FAMILY_ARRAYS:
            if getattr(s, key) is not None:
                tensors[f"{name}.{key}"] = getattr(s, key)
        if s.choices:
            tensors[f"{name}.choices"] = np.asarray([s.choices], dtype=np.int64)
        if s.second is not None:
            tensors[f"{name}.ids_b"], tensors[f"{name}.offsets_b"] = s.second.ids, s.second.offsets
            if s.second.type_ids is not None:
                tensors[f"{name}.type_ids_b"] = s.second.type_ids
    save_file(tensors, str(folder / "splits.safetensors"))


def _read(folder: Path) -> dict[str, EncodedSplit]:
    # Imported here for start-up speed (safetensors).
    from safetensors.numpy import load_file

    tensors = load_file(str(folder / "splits.safetensors"))
    names = {k.rsplit(".", 1)[0] for k in tensors}
    splits = {}
    for n in names:
        labels, second = tensors[f"{n}.labels"], None
        if f"{n}.ids_b" in tensors:
            b = tensors[f"{n}.ids_b"], tensors[f"{n}.offsets_b"], labels, tensors.get(f"{n}.type_ids_b")
            second = EncodedSplit(*b)
        own = tensors[f"{n}.ids"], tensors[f"{n}.offsets"], labels, tensors.get(f"{n}.type_ids")
        choices = int(tensors[f"{n}.choices"][0]) if f"{n}.choices" in tensors else 0
        splits[n] = EncodedSplit(*own, second, **{k: tensors.get(f"{n}.{k}") for k in _FAMILY_ARRAYS}, choices=choices)
    return splits
