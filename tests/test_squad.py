"""Extractive QA's pieces: the official SQuAD v1.1 metric, windows over long contexts and decoding back to text,
the reader's checks, and the article-disjoint carving of the local dev file."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmark.common.errors import InputError
from tasks.metrics.squad import normalize_answer, per_question, squad_metrics
from tasks.spans import NO_OFFSET, QALabels, check_windows, decode_answers, encode_questions, qa_labels, window_slots
from tasks.spec import Windowing
from tasks.squad import article_partition, check_qa_rows, read_qa_rows, read_squad_json

DATA = Path(os.environ.get("BENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")).resolve()
needs_squad = pytest.mark.skipif(not (DATA / "squad").is_dir(), reason="needs $BENCH_DATA_DIR/squad")


def test_the_metric_is_the_official_squad_v1_definition():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theory") == "theory"  # "the" only as a word
    golds = [["Denver Broncos", "The Denver Broncos", "Broncos"], ["1850s"], ["Saint Bernadette Soubirous"], ["x"]]
    predictions = ["the denver broncos.", "in the 1850s", "Bernadette", ""]
    values = per_question(predictions, golds)
    assert values["exact_match"].tolist() == [1.0, 0.0, 0.0, 0.0]  # articles, case and punctuation do not count
    # "in the 1850s" against "1850s": precision 1/2, recall 1 -> F1 2/3; "Bernadette": 1/1, 1/3 -> 1/2; empty: 0
    assert values["f1"] == pytest.approx([1.0, 2 / 3, 0.5, 0.0])
    # the maximum over gold answers, not the first: "Broncos" alone matches the third exactly
    assert per_question(["broncos"], [golds[0]])["exact_match"][0] == 1.0
    assert squad_metrics(predictions, golds) == pytest.approx({"exact_match": 0.25, "f1": (1 + 2 / 3 + 0.5) / 4})


def _long_context(rng, words: int, answer: str) -> tuple[str, int]:
    vocab = ["river", "stone", "north", "city", "built", "old", "bridge", "market", "wall", "king"]
    left = " ".join(rng.choice(vocab, words // 2))
    context = f"{left} {answer} " + " ".join(rng.choice(vocab, words // 2))
    return context, len(left) + 1


def test_windows_cover_a_long_context_and_decode_the_answer_back_to_its_characters(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    rng = np.random.default_rng(0)
    answers = ["Saint Bernadette Soubirous", "in 1858", "the Grotto at Lourdes, France"]
    contexts, starts = zip(*(_long_context(rng, 300, a) for a in answers))
    questions = ["To whom did the Virgin Mary appear in 1858 in Lourdes France? " * 4, "When?", "Where?"]
    labelled = [(s, a) for s, a in zip(starts, answers)]
    w = encode_questions(questions, list(contexts), labelled, tokenizer, 128, 32, 16)
    assert w.split_questions == 3  # 300 words do not fit one window of 128
    lengths = np.diff(w.offsets)
    assert lengths.max() <= 128
    for k in range(len(w)):  # the question is cut to 16 sub-tokens: at most 16 + 3 tokens outside the context
        assert (w.char_start[w.offsets[k] : w.offsets[k + 1]] == NO_OFFSET).sum() <= 16 + 3
    # every window holding the whole answer points at it; the others at [CLS]
    found = set()
    for k in range(len(w)):
        a, q = w.offsets[k], w.question[k]
        if w.start[k] == 0:
            assert w.end[k] == 0
            continue
        text = contexts[q][w.char_start[a + w.start[k]] : w.char_end[a + w.end[k]]]
        assert text == answers[q]
        found.add(int(q))
    assert found == {0, 1, 2}
    # logits that peak at the targets decode to the answers' exact characters; a window without the answer has
    # lower peaks, and spans too long or reversed are never chosen. Laid out per question as the split's labels are.
    golds = [{"text": [a], "answer_start": [s]} for s, a in zip(starts, answers)]
    labels = QALabels.unpack(qa_labels(w, list(contexts), golds, Windowing()).pack())  # as checkpoints keep them
    assert labels.golds() == [[a] for a in answers] and labels.contexts == list(contexts)
    logits = np.full((3, labels.char_start.shape[1], lengths.max(), 2), -5.0)
    for k, (q, slot) in enumerate(zip(w.question, window_slots(w.question))):
        if w.start[k]:
            logits[q, slot, w.start[k], 0], logits[q, slot, w.end[k], 1] = 8.0, 8.0
        logits[q, slot, 0] = 20.0  # [CLS] is outside the context: never a span
        logits[q, slot, lengths[k] :] = 30.0  # past the window's end: never read
    texts, scores = decode_answers(logits, labels)
    assert texts == answers and (scores == 16.0).all()
    labels.max_answer_length = 2
    texts, _ = decode_answers(logits, labels)
    assert texts[0] != answers[0] and texts[1] == "in 1858"  # 2 sub-tokens at most


def test_window_settings_that_cannot_cut_a_context_are_named(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert check_windows(tokenizer, 384, 128, 64) is None
    assert "doc_stride 128 is not smaller than the 61 context tokens" in check_windows(tokenizer, 128, 128, 64)
    assert "leaves no room" in check_windows(tokenizer, 64, 16, 64)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r[1].update(id=None), "question 2: has no id"),
        (lambda r: r[1].update(id=r[0]["id"]), "question q1: its id is used twice"),
        (lambda r: r[0].update(context="  "), "question q1: has an empty context"),
        (lambda r: r[0]["answers"].update(answer_start=[3]), "question q1: answer_start 3 slices ' ca' of the context"),
    ],
)
def test_bad_qa_rows_are_named_by_file_and_question(change, message, tmp_path):
    rows = [
        {"id": "q1", "context": "The cat sat.", "question": "Who?", "answers": {"text": ["cat"], "answer_start": [4]}},
        {"id": "q2", "context": "It rained.", "question": "Did?", "answers": {"text": ["rained"], "answer_start": [3]}},
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    check_qa_rows(read_qa_rows(path), str(path))
    change(rows)
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(InputError, match=message):
        check_qa_rows(read_qa_rows(path), str(path))


@needs_squad
def test_the_local_dev_file_is_read_checked_and_carved_by_article():
    rows = read_squad_json(DATA / "squad" / "dev-v1.1.json")
    check_qa_rows(rows, "dev-v1.1.json")  # SOURCES.md: every answer_start slices its text
    assert len(rows) == 10570 and len({r["title"] for r in rows}) == 48
    assert len({r["context"] for r in rows}) == 2067
    titles = [r["title"] for r in rows]
    parts = article_partition(titles, {"validation": 0.1, "test": 0.2}, seed=0)
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(len(rows)))
    articles = {s: {titles[i] for i in idx} for s, idx in parts.items()}
    contexts = {s: {rows[i]["context"] for i in idx} for s, idx in parts.items()}
    for a, b in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        assert not articles[a] & articles[b] and not contexts[a] & contexts[b]
    assert len(parts["validation"]) >= 0.1 * len(rows) and len(parts["test"]) >= 0.2 * len(rows)
    again = article_partition(titles, {"validation": 0.1, "test": 0.2}, seed=0)
    assert all((again[s] == parts[s]).all() for s in parts)  # seeded


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"data": ' + b"[" * 100000 + b"]" * 100000 + b"}", "line 1: not a question in SQuAD's layout (Recursion"),
        (b'{"data": [["not", "an", "article"]]}', "not a SQuAD-format JSON file (AttributeError"),
        (b'{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "q", "answers": [{"answer_start": 0}]}]}]}]}',
         "not a SQuAD-format JSON file (KeyError"),
        (b'{"id": "a", "context": "c", "question": "q"}\n["a", "list"]\n', "qa.json: line 2: not a question"),
        (b'{"id": "a", "context": "c", "answers": {"text": ["c"], "answer_start": ["x"]}}\n', "line 1: not a question"),
        (b"\xff\xfe\x00not utf-8", "not UTF-8 text"),
    ],
)  # fmt: skip
def test_a_malformed_qa_file_is_one_line_naming_it(content, message, tmp_path):
    path = tmp_path / "qa.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_qa_rows(path)
    assert message in str(e.value) and "qa.json" in str(e.value) and "\n" not in str(e.value), str(e.value)
