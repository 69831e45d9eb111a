"""EDA-style data augmentation of training data (Wei and Zou, 2019): new copies of each training example made
by random swap, deletion, insertion, or WordNet synonym replacement. Dev and test data are never touched.

Each copy applies one operation, drawn among those with a non-zero strength, to every text column of the
example; the label is kept. A strength is a fraction of the text's words: `swap` swaps that many pairs,
`delete` drops each word with that probability, `insert` inserts that many words (EDA inserts a synonym;
here another word of the same text, which needs no lexicon), `synonym` replaces that many words by a WordNet
synonym. Everything is drawn from `seed`, so the same seed gives the same examples (cached per seed with the
tokenised task).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark.common.errors import InputError

OPERATIONS = ("swap", "delete", "insert", "synonym")
WORDNET_HINT = (
    "synonym replacement needs WordNet: pip install nltk, then apt-get install wordnet-base "
    "(or python -m nltk.downloader wordnet)"
)
WORDNET_FOLDERS = ("/usr/share/wordnet",)  # Debian's wordnet-base


@dataclass(frozen=True)
class Augmentation:
    copies: int = 0
    swap: float = 0.0
    delete: float = 0.0
    insert: float = 0.0
    synonym: float = 0.0
    seed: int = 0

    @classmethod
    def of(cls, training: dict) -> "Augmentation":
        """From a trial's training hyperparameters (the `augment_*` keys)."""
        return cls(**{k: training[f"augment_{k}"] for k in cls.__dataclass_fields__})

    @property
    def enabled(self) -> bool:
        return self.copies > 0

    @property
    def operations(self) -> list[str]:
        return [op for op in OPERATIONS if getattr(self, op) > 0]

    def to_dict(self) -> dict:
        return asdict(self)


def check_augmentation(aug: Augmentation, where: str = "training") -> None:
    """One-line errors for copies without an operation, and for a missing WordNet. (Strengths without copies are
    allowed: a grid over augment_copies [0, 2] compares no augmentation with some.)"""
    if aug.copies and not aug.operations:
        raise InputError(
            f"{where}.augment_copies",
            "set a strength for at least one of augment_swap, augment_delete, augment_insert, augment_synonym",
        )
    if aug.copies and aug.synonym:
        wordnet()


def wordnet():
    """nltk's WordNet reader over the first WordNet database found (nltk's data path, then Debian's)."""
    try:
        # nltk: an optional dependency, imported only where it is used.
        from nltk.corpus import wordnet as wn
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError:
        raise InputError("training.augment_synonym", WORDNET_HINT) from None
    try:
        wn.ensure_loaded()
        return wn
    except LookupError:
        pass

    for folder in WORDNET_FOLDERS:
        if (Path(folder) / "data.noun").is_file():
            return WordNetCorpusReader(folder, None)
    raise InputError("training.augment_synonym", WORDNET_HINT)


def augment_texts(columns: list[list[str]], aug: Augmentation) -> list[tuple[int, list[str]]]:
    """New examples for the rows of `columns` (one list of texts per text column): (source row, texts) pairs,
    `aug.copies` per row, in row order."""
    rng = random.Random(aug.seed)
    lexicon = wordnet() if aug.synonym else None
    out = []
    for row in range(len(columns[0])):
        for _ in range(aug.copies):
            op = rng.choice(aug.operations)
            out.append(
                (row, [" ".join(_apply(op, str(col[row]).split(), getattr(aug, op), rng, lexicon)) for col in columns])
            )
    return out


def _apply(op: str, words: list[str], strength: float, rng: random.Random, lexicon) -> list[str]:
    if not words:
        return words
    words = list(words)
    count = max(1, round(strength * len(words)))
    if op == "delete":
        kept = [w for w in words if rng.random() >= strength]
        return kept or [rng.choice(words)]
    for _ in range(count):
        if op == "swap" and len(words) > 1:
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
        elif op == "insert":
            words.insert(rng.randrange(len(words) + 1), rng.choice(words))
        elif op == "synonym":
            i = rng.randrange(len(words))
            choices = sorted(
                {
                    lemma.name().replace("_", " ")
                    for synset in lexicon.synsets(words[i].lower())
                    for lemma in synset.lemmas()
                }
                - {words[i].lower()}
            )
            if choices:
                words[i] = rng.choice(choices)
    return words


def augment_dataset(ds, text_columns: tuple[str, ...], aug: Augmentation):
    """`ds` (a training split) followed by its augmented copies."""
    # Imported here for start-up speed (datasets).
    from datasets import Dataset, concatenate_datasets

    new = augment_texts([ds[c][:] for c in text_columns], aug)
    if not new:
        return ds
    extra = ds.select([row for row, _ in new]).to_dict()
    for i, column in enumerate(text_columns):
        extra[column] = [texts[i] for _, texts in new]
    return concatenate_datasets([ds, Dataset.from_dict(extra, features=ds.features)])
