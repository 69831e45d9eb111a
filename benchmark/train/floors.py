"""The floors a fine-tuned row is judged against: what the encoder gives without fine-tuning.

- zero-shot (similarity regression pair tasks): the cosine of the untrained encoder's pooled embeddings of the two
  sentences, each encoded alone. all-MiniLM-L6-v2 scores about 87 Pearson on STS-B's dev set this way.
- probe: the encoder frozen, only a linear head trained on its pooled embeddings, once per seed (the seed draws the
  head's initialisation and the order of its mini-batches). A pair is read as (u, v, |u - v|, u * v), SentEval's
  features for a frozen sentence encoder. The kept epoch is chosen on the examples that choose a trial's epoch.
  Multiple choice: each choice is such a pair (the context's embedding u, the choice's v), scored by one linear
  output, the scores of a question's choices its logits. Tagging: each word is read as the encoder's hidden state at
  its first sub-token (sentences cut into windows as a trial's, tasks/words.py), tagged by a linear head.

Embeddings are computed once per task in fp32 (nothing here trains the encoder, so there is no training precision to
follow); the heads train on them in seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from benchmark.train.modeling import load_tokenizer
from benchmark.train.pooling import masked_mean
from tasks.encoding import labels_of
from tasks.metrics import compute_metrics, task_score
from tasks.spec import CHOICES, CONTEXT, TOKENS, TaskSpec, TaskType
from tasks.splits import score_on
from tasks.words import encode_words

PROBE_EPOCHS = 30  # the head's epochs over the frozen features; the best one on the choosing examples is kept
PROBE_BATCH = 32
PROBE_LR = 3e-3
PROBE_WEIGHT_DECAY = 1e-2
FLOOR_VERSION = 1  # in each floor record's fingerprint: a change to the recipe above computes the floors again


class FloorKind(str, enum.Enum):
    ZERO_SHOT = "zero-shot"
    PROBE = "probe"


FLOOR_KINDS = tuple(k.value for k in FloorKind)  # the row kinds of floors, as records and rows name them


def has_floor(kind: FloorKind, task: TaskSpec) -> bool:
    """Which task families have which floor: zero-shot only where the untrained encoder already answers the task
    (a similarity score between two texts); a probe for every family (a linear head on frozen embeddings) but
    extractive QA, whose reference points are the first-sentence and sliding-window baselines (docs/tasks.md)."""
    if kind is FloorKind.ZERO_SHOT:
        return task.is_regression and len(task.text_columns) == 2
    return task.type is not TaskType.EXTRACTIVE_QA


class FrozenEncoder:
    """The untrained encoder (transformers' base model, no head), pooling as a trial's head would read it."""

    def __init__(self, model_path: str, pooling: str, max_seq_length: int, trust_remote_code: bool = False):
        # Imported here for start-up speed (torch, transformers): `bench validate` reads this module's family rules.
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        self.tokenizer = load_tokenizer(model_path, trust_remote_code)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a classifier checkpoint's unused head weights are expected
        try:
            self.model = AutoModel.from_pretrained(
                model_path, trust_remote_code=trust_remote_code, use_safetensors=True, dtype=torch.float32
            ).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
        self.pooling, self.max_seq_length = pooling, max_seq_length

    def _hidden_states(self, ids: list[list[int]], batch_size: int):
        """(indices, last hidden states, attention mask) per batch of the token sequences `ids`, longest first
        (less padding)."""
        # Imported here for start-up speed (torch), as above.
        import torch

        order = np.argsort([-len(x) for x in ids], kind="stable")
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            padded = self.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            with torch.no_grad():
                hidden = self.model(**padded).last_hidden_state
            yield batch, hidden, padded["attention_mask"]

    def embed(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """Pooled embeddings of `texts`, in their order."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length)["input_ids"]
        out = np.zeros((len(ids), self.model.config.hidden_size), dtype=np.float32)
        for batch, hidden, mask in self._hidden_states(ids, batch_size):
            pooled = masked_mean(hidden, mask) if self.pooling == "mean" else hidden[:, 0]
            out[batch] = pooled.float().numpy()
        return out

    def embed_words(self, sentences: list[list[str]], batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """Each word's hidden state at its first sub-token, with (sentence, word) per row, sentences cut into
        windows of `max_seq_length` as a trial's are."""
        w = encode_words(sentences, None, self.tokenizer, self.max_seq_length)
        windows = [w.ids[w.offsets[k] : w.offsets[k + 1]].tolist() for k in range(len(w))]
        features, rows = [], []
        for batch, hidden, _ in self._hidden_states(windows, batch_size):
            hidden = hidden.float().numpy()
            for row, k in enumerate(batch):
                words = w.word[w.offsets[k] : w.offsets[k + 1]]
                at = np.flatnonzero(words >= 0)
                features.append(hidden[row, at])
                rows.append(np.stack([np.full(len(at), w.sentence[k]), words[at]], axis=1))
        width = self.model.config.hidden_size
        return (
            np.concatenate(features) if features else np.zeros((0, width), np.float32),
            np.concatenate(rows) if rows else np.zeros((0, 2), np.int64),
        )


@dataclass
class SplitEmbeddings:
    """One split's embeddings, one array per text column, and its labels. Multiple choice: the context's and the
    choices' (a row per choice, `choices` of them per example). Tagging: a row per word, `words` its (sentence,
    word) position in `labels` (sentences x words)."""

    columns: list[np.ndarray]
    labels: np.ndarray
    choices: int = 0
    words: np.ndarray | None = None

    def features(self) -> np.ndarray:
        """A row per example ((examples, choices, features) for multiple choice; a row per word for tagging)."""
        if len(self.columns) == 1:
            return self.columns[0]
        u, v = self.columns
        pairs = np.concatenate([u, v, np.abs(u - v), u * v], axis=1)
        return pairs.reshape(len(self.labels), self.choices, -1) if self.choices else pairs

    def targets(self) -> np.ndarray:
        """The label of each row of `features`."""
        return self.labels[self.words[:, 0], self.words[:, 1]] if self.words is not None else self.labels

    def logits(self, outputs: np.ndarray) -> np.ndarray:
        """The head's outputs per row as the family's logits: a question's choices' scores; a sentence's words'."""
        if self.choices:
            return outputs[..., 0]
        if self.words is None:
            return outputs
        out = np.zeros((*self.labels.shape, outputs.shape[-1]), dtype=outputs.dtype)
        out[self.words[:, 0], self.words[:, 1]] = outputs
        return out


def embed_split(encoder: FrozenEncoder, task: TaskSpec, ds) -> SplitEmbeddings:
    labels = labels_of(task, ds)
    if task.type is TaskType.TAGGING:
        features, words = encoder.embed_words(ds[TOKENS][:])
        return SplitEmbeddings([features], labels, words=words)
    if task.type is TaskType.MULTIPLE_CHOICE:
        options = ds[CHOICES][:]
        n = len(options[0]) if options else 0
        context = np.repeat(encoder.embed(ds[CONTEXT][:]), n, axis=0)
        return SplitEmbeddings([context, encoder.embed([o for row in options for o in row])], labels, choices=n)
    return SplitEmbeddings([encoder.embed(ds[c][:]) for c in task.text_columns], labels)


def zero_shot_logits(split: SplitEmbeddings) -> np.ndarray:
    """The cosine of the two texts' embeddings, as a regression task's one output."""
    u, v = split.columns
    norms = np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1)
    return ((u * v).sum(axis=1) / np.maximum(norms, 1e-12))[:, None].astype(np.float32)


@dataclass
class ProbeResult:
    logits: dict[str, np.ndarray]  # per split it was asked to predict
    epoch: int  # the kept one (1-based)
    selection_score: float


def fit_probe(
    task: TaskSpec,
    train: SplitEmbeddings,
    dev: dict[str, SplitEmbeddings],
    choose: dict[str, np.ndarray] | None,
    predict: dict[str, SplitEmbeddings],
    seed: int,
) -> ProbeResult:
    """Train a linear head on frozen features; keep the epoch with the best score on `choose` (dev split ->
    example indices; None: all of dev). Features are standardised by the training split's mean and std, and a
    regression target by its own."""
    # Imported here for start-up speed (torch), as above.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steps this small only wait on a second thread (27 s against 2 s on a busy machine)
    try:
        return _fit_probe(task, train, dev, choose, predict, seed)
    finally:
        torch.set_num_threads(threads)


def _fit_probe(task, train, dev, choose, predict, seed) -> ProbeResult:
    # Imported here for start-up speed (torch), as above.
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = train.features()
    flat = x.reshape(-1, x.shape[-1])
    mean, std = flat.mean(axis=0), flat.std(axis=0) + 1e-6

    def inputs(split: SplitEmbeddings) -> torch.Tensor:
        return torch.from_numpy((split.features() - mean) / std)

    labels = train.targets()
    if task.is_regression:
        y_mean, y_std = float(labels.mean()), float(labels.std()) + 1e-6
        target = torch.from_numpy((labels - y_mean) / y_std).float()
    else:
        target = torch.from_numpy(labels)
    head = torch.nn.Linear(x.shape[-1], 1 if train.choices else task.num_labels)  # a choice's score: one output
    with torch.no_grad():  # seeded: torch's default init would draw from the global generator
        head.weight.normal_(0.0, 0.02, generator=generator)
        head.bias.zero_()
    optimizer = torch.optim.AdamW(head.parameters(), lr=PROBE_LR, weight_decay=PROBE_WEIGHT_DECAY)
    train_x, dev_x = inputs(train), {s: inputs(e) for s, e in dev.items()}
    dev_labels = {s: e.labels for s, e in dev.items()}

    def outputs(split: SplitEmbeddings, features: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            out = head(features).numpy()
        return out * y_std + y_mean if task.is_regression else split.logits(out)

    best_score, best_epoch, best_state = -np.inf, 0, None
    for epoch in range(1, PROBE_EPOCHS + 1):
        for batch in torch.randperm(len(train_x), generator=generator).split(PROBE_BATCH):
            logits = head(train_x[batch])
            if train.choices:
                logits = logits.squeeze(-1)  # examples x choices
            if task.is_regression:
                loss = torch.nn.functional.mse_loss(logits.squeeze(-1), target[batch])
            else:
                loss = torch.nn.functional.cross_entropy(logits, target[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        dev_logits = {s: outputs(dev[s], f) for s, f in dev_x.items()}
        if choose is None:
            score = task_score(compute_metrics(task, dev_logits, dev_labels), task)
        else:
            score = score_on(task, dev_logits, dev_labels, choose)[1]
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    logits = {s: outputs(e, inputs(e)).astype(np.float32) for s, e in predict.items()}
    return ProbeResult(logits, best_epoch, float(best_score))
