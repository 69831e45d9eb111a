"""CoNLL-style column files for tagging tasks: a token per line, blank lines between sentences.

The layouts in `$BENCH_DATA_DIR` differ (their SOURCES.md): CoNLL-2003 separates its 4 columns (token, POS, chunk,
NER) by spaces, and its IOB1 copies start an entity with `I-`; WNUT-17 has 2 tab-separated columns, and 2,394 of its
train file's sentence breaks are a line holding a single tab. So a line is split on tabs when it has one, else on
whitespace; any whitespace-only line ends a sentence; `-DOCSTART-` lines are skipped; and tags are read as IOB2
(`iob2`: an entity's first tag is `B-`), converting IOB1 on reading, which leaves IOB2 as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.common.errors import InputError

DOCSTART = "-DOCSTART-"
OUTSIDE = "O"


@dataclass(frozen=True)
class TaggedSentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    line: int  # where the sentence starts in its file (1-based), for messages


def read_conll(path: Path, tag_column: int = -1) -> list[TaggedSentence]:
    """The sentences of a CoNLL-style file, tags in IOB2. Every token line must have as many columns as the first;
    a line that does not is an input error naming the file and line."""
    path = Path(path)
    sentences, tokens, tags, start, columns = [], [], [], 0, None
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(str(path), f"cannot read as a CoNLL file: {e}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            if tokens:
                sentences.append(TaggedSentence(tuple(tokens), iob2(tags), start))
            tokens, tags = [], []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if parts[0] == DOCSTART:
            continue
        columns = columns or len(parts)
        if len(parts) != columns:
            raise InputError(
                f"{path}:{number}", f"has {len(parts)} column(s); the file's first token line has {columns}"
            )
        if not -columns <= tag_column < columns:
            raise InputError(str(path), f"tag column {tag_column} does not exist: its lines have {columns} column(s)")
        start = start if tokens else number
        tokens.append(parts[0])
        tags.append(parts[tag_column])
    if tokens:
        sentences.append(TaggedSentence(tuple(tokens), iob2(tags), start))
    if not sentences:
        raise InputError(str(path), "holds no sentence")
    return sentences


def iob2(tags: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """IOB1 or IOB2 tags as IOB2: an `I-X` that starts an entity (after `O` or another type) becomes `B-X`."""
    out, previous = [], OUTSIDE
    for tag in tags:
        if tag.startswith("I-") and (previous == OUTSIDE or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return tuple(out)


def tag_set(sentences: list[TaggedSentence]) -> tuple[str, ...]:
    """The tags a file uses, `O` first, then by entity type and B before I (a stable label order)."""
    found = {t for s in sentences for t in s.tags} - {OUTSIDE}
    return (OUTSIDE, *sorted(found, key=lambda t: (t[2:], t[:2])))


def check_tags(sentences: list[TaggedSentence], allowed: tuple[str, ...], source: str) -> None:
    """Every tag is in the declared set: else an input error naming the file, line and tag."""
    known = set(allowed)
    for sentence in sentences:
        for offset, tag in enumerate(sentence.tags):
            if tag not in known:
                raise InputError(
                    f"{source}:{sentence.line + offset}",
                    f"tag {tag!r} is not one of the task's tags ({', '.join(allowed)})",
                )
