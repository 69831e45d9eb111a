"""Extractive QA data: SQuAD-format JSON and JSON Lines rows into one shape, checked, and split by article.

Every source ends in Hugging Face's SQuAD layout, a row per question: `id`, `title` (its article), `context`,
`question`, and `answers` with lists `text` and `answer_start` (character offsets into the decoded context).

Only SQuAD v1.1's dev set is under the data root (its SOURCES.md), so a local `squad` carves train, validation and
test from it by **article**: no paragraph, and no article, is in two splits, so no test question's context is ever
trained on. The carving is seeded and recorded (`article_partition`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark.common.errors import InputError, first_line
from tasks.splits import HELD_OUT

# What a malformed file raises while it is read: bad JSON or bytes, a missing key, a list where an object should
# be (AttributeError, TypeError), a number that is not one, JSON nested deeper than Python's recursion limit.
MALFORMED = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)


def read_squad_json(path: Path) -> list[dict]:
    """The questions of a SQuAD-format file (`{"data": [{"title", "paragraphs": [{"context", "qas"}]}]}`)."""
    try:
        return _squad_rows(json.loads(Path(path).read_text(encoding="utf-8"))["data"])
    except MALFORMED as e:
        raise InputError(str(path), f"not a SQuAD-format JSON file ({type(e).__name__}: {first_line(e)})") from None


def _squad_rows(data: list) -> list[dict]:
    rows = []
    for a, article in enumerate(data):
        title = str(article.get("title", a))
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                answers = qa.get("answers", [])
                rows.append({
                    "id": qa.get("id"), "title": title, "context": context, "question": qa.get("question", ""),
                    "answers": {"text": [x["text"] for x in answers],
                                "answer_start": [int(x["answer_start"]) for x in answers]},
                })  # fmt: skip
    return rows


def read_qa_rows(path: Path) -> list[dict]:
    """A user task's rows: SQuAD-format JSON, or JSON Lines in the layout above (`title` optional)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(str(path), f"not UTF-8 text ({first_line(e)})") from None
    try:
        whole = json.loads(text)
    except MALFORMED:
        whole = None  # JSON Lines
    if isinstance(whole, dict) and "data" in whole:
        return read_squad_json(path)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            answers = row.get("answers") or {"text": [], "answer_start": []}
            rows.append({
                "id": row.get("id"), "title": str(row.get("title", "")), "context": row.get("context", ""),
                "question": row.get("question", ""),
                "answers": {"text": list(answers.get("text", [])),
                            "answer_start": [int(x) for x in answers.get("answer_start", [])]},
            })  # fmt: skip
        except MALFORMED as e:
            raise InputError(f"{path}: line {n}", f"not a question in SQuAD's layout ({type(e).__name__}: "
                             f"{first_line(e)})") from None  # fmt: skip
    return rows


def check_qa_rows(rows: list[dict], source: str, labelled: bool = True) -> None:
    """One line naming the file and question for: a question without an id, an id used twice, an empty context,
    a labelled question without an answer, an answer_start whose slice of the context is not the answer's text."""
    seen = set()
    for n, row in enumerate(rows, 1):
        qid = row["id"]
        if qid is None or str(qid) == "":
            raise InputError(f"{source}: question {n}", "has no id")
        if qid in seen:
            raise InputError(f"{source}: question {qid}", "its id is used twice")
        seen.add(qid)
        if not str(row["context"]).strip():
            raise InputError(f"{source}: question {qid}", "has an empty context")
        answers = row["answers"]
        if len(answers["text"]) != len(answers["answer_start"]):
            raise InputError(f"{source}: question {qid}", "answers: text and answer_start differ in length")
        if labelled and not answers["text"]:
            raise InputError(f"{source}: question {qid}", "has no answer")
        for text, start in zip(answers["text"], answers["answer_start"]):
            if row["context"][start : start + len(text)] != text:
                got = row["context"][start : start + len(text)]
                raise InputError(
                    f"{source}: question {qid}", f"answer_start {start} slices {got!r} of the context, not {text!r}"
                )


def article_partition(titles: list[str], fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Question indices of "train" and each held-out split, whole articles each: the articles are shuffled with
    `seed` and dealt to the held-out splits until each holds its share of the questions; the rest train."""
    order = list(dict.fromkeys(titles))
    rng = np.random.default_rng(seed)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    by_title = {t: [] for t in order}
    for i, t in enumerate(titles):
        by_title[t].append(i)
    out, at = {}, 0
    for split in (s for s in HELD_OUT if s in fractions):  # a fixed order: a recorded task's keys come back sorted
        wanted, taken = fractions[split] * len(titles), []
        while at < len(shuffled) and (not taken or len(taken) < wanted):
            taken += by_title[shuffled[at]]
            at += 1
        out[split] = np.array(sorted(taken), dtype=np.int64)
    out["train"] = np.array(sorted(i for t in shuffled[at:] for i in by_title[t]), dtype=np.int64)
    if len(out["train"]) == 0:
        raise InputError("data.holdout", f"leaves no article of {len(order)} to train on")
    return out
