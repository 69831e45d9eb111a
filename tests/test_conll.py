"""CoNLL-style tagging files (tasks/conll.py): the layouts in $BENCH_DATA_DIR, IOB1 to IOB2, and bad input."""

import os
from pathlib import Path

import pytest

from benchmark.common.errors import InputError
from tasks.conll import check_tags, iob2, read_conll, tag_set

DATA = Path(os.environ.get("BENCH_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def entities(sentences) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in sentences:
        for tag in s.tags:
            if tag.startswith("B-"):
                counts[tag[2:]] = counts.get(tag[2:], 0) + 1
    return counts


@pytest.mark.skipif(not (DATA / "conll2003").is_dir(), reason="needs $BENCH_DATA_DIR/conll2003")
def test_conll2003_reads_as_its_sources_count_it_and_iob1_reads_as_the_iob2_copy():
    train = read_conll(DATA / "conll2003" / "train.txt")
    assert len(train) == 14041 and sum(len(s.tokens) for s in train) == 203621  # SOURCES.md, DOCSTART skipped
    assert entities(train) == {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}  # the shared-task paper's
    assert entities(read_conll(DATA / "conll2003" / "test.txt")) == {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}
    old = read_conll(DATA / "conll2003" / "iob1" / "eng.train")
    assert [s.tags for s in old] == [s.tags for s in train] and [s.tokens for s in old] == [s.tokens for s in train]
    assert tag_set(train) == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER")


@pytest.mark.skipif(not (DATA / "wnut17").is_dir(), reason="needs $BENCH_DATA_DIR/wnut17")
def test_wnut17_splits_sentences_on_tab_only_lines():
    train = read_conll(DATA / "wnut17" / "wnut17train.conll")
    assert len(train) == 3394 and sum(len(s.tokens) for s in train) == 62730  # not ~1,000 run-together sentences
    assert sum(entities(train).values()) == 1975
    dev = read_conll(DATA / "wnut17" / "emerging.dev.conll")
    assert len(dev) == 1009 and entities(dev)["creative-work"] == 105


def test_iob1_entities_start_with_b_and_iob2_is_kept():
    assert iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG"]) == (
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG",
    )  # fmt: skip
    tags = ("B-PER", "I-PER", "O", "B-LOC", "B-LOC")
    assert iob2(tags) == tags


def test_bad_files_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nGerman JJ B-MISC\n")
    with pytest.raises(InputError, match=r"bad.txt:6: has 3 column\(s\); the file's first token line has 4"):
        read_conll(path)
    path.write_text("EU B-ORG\nrejects O\n\nGerman B-MSIC\ncall O\n")
    sentences = read_conll(path)
    assert [s.line for s in sentences] == [1, 4]
    with pytest.raises(InputError, match=r"bad.txt:4: tag 'B-MSIC' is not one of the task's tags"):
        check_tags(sentences, ("O", "B-ORG", "I-ORG", "B-MISC", "I-MISC"), str(path))
    path.write_text("\n\n-DOCSTART- O\n\n")
    with pytest.raises(InputError, match="holds no sentence"):
        read_conll(path)
