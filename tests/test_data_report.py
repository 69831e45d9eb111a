"""`bench data`: what is in a task's data, counted exactly on a CSV task built to hold each finding (issue 42)."""

import csv
import json
from pathlib import Path

import yaml

from benchmark.cli import main
from tasks.data_report import normalise

WORDS = "river stone light garden city window paper music table winter forest letter cloud bread".split()


def sentence(i: int) -> str:
    """Distinct sentences that share no word 3-gram with each other (no near duplicates by accident)."""
    return " ".join(f"{WORDS[(i + k) % len(WORDS)]}{i}x{k}" for k in range(6))


def write_csv(path: Path, rows: list[tuple[str, str]]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def test_bench_data_counts_each_finding_exactly(tmp_path, tiny_model, capsys):
    train = [(sentence(i), "pos" if i % 2 else "neg") for i in range(40)]
    train += [train[3], train[7], train[7]]  # 3 exact duplicates (input and label)
    train += [(train[10][0].upper() + "  ", "pos" if train[10][1] == "neg" else "neg")]  # 1 input, two labels
    train += [("   ", "neg")]  # 1 empty text
    train += [("Schr\u00c3\u00b6dinger\u00e2\u0080\u0099s cat " + sentence(99), "pos")]  # UTF-8 read as Latin-1
    test = [train[20], train[21]] + [(sentence(100 + i), "neg") for i in range(10)]  # 2 rows also in train
    validation = [(sentence(200 + i), "pos") for i in range(10)]
    task = {
        "name": "reviews", "text_columns": ["text"], "labels": ["neg", "pos"],
        "train": write_csv(tmp_path / "train.csv", train), "validation": write_csv(tmp_path / "dev.csv", validation),
        "test": write_csv(tmp_path / "test.csv", test),
    }  # fmt: skip
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"name": "d", "model": str(tiny_model), "tasks": [task],
                                    "training": {"max_seq_length": 16}, "output": str(tmp_path / "out")}))  # fmt: skip
    assert main(["data", str(path)]) == 0
    assert "reviews" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    splits = {r["split"]: r for r in report["tasks"]["reviews"]}
    train_report = splits["train"]
    assert train_report["rows"] == len(train) == 46
    assert train_report["duplicates"] == 3 and train_report["conflicting"] == 1 and train_report["empty"] == 1
    assert train_report["duplicate_inputs"] == 4  # the conflicting text repeats an input too
    assert train_report["near_duplicates"] == 0 and train_report["mojibake"] == 1
    counts = {name: sum(r[1] == name for r in train) for name in ("neg", "pos")}
    assert train_report["labels"] == counts
    test_split = next(s for s in splits if s not in ("train", "validation"))
    assert train_report["overlap"][test_split]["rows"] == 2 and train_report["overlap"]["validation"]["rows"] == 0
    assert train_report["overlap"][test_split]["examples"] == [0, 1]
    # six words of 3 word pieces each at least, with [CLS] and [SEP]: every sentence is cut at 16 tokens
    assert train_report["truncated"] == train_report["rows"] - 1 and train_report["max_seq_length"] == 16
    assert (tmp_path / "out" / "data_report.md").read_text().startswith("# Data report: d")


def test_normalising_ignores_case_width_and_spacing():
    assert normalise("  The\u00a0CAT\tsat ") == normalise("the cat sat") == "the cat sat"
    assert normalise("\uff21BC") == "abc"  # a full-width letter (NFKC)


def test_results_data_is_rebuilt_from_its_committed_records(tmp_path, capsys):
    import shutil

    from benchmark.measure.data import main as study

    results = Path(__file__).resolve().parents[1] / "results" / "data"
    shutil.copytree(results / "records", tmp_path / "records")
    assert study(["--out", str(tmp_path), "--from-records"]) == 0
    rebuilt = (tmp_path / "README.md").read_text().replace(str(tmp_path), "results/data")
    assert rebuilt == (results / "README.md").read_text()
    saved = json.loads((results / "records" / "data_report.json").read_text())["tasks"]
    sst2, stsb = saved["sst2"][0], saved["stsb"][0]
    assert sst2["duplicate_inputs"] == 371 and stsb["duplicate_inputs"] == 44  # the issue's own counts
    assert stsb["overlap"]["validation"]["rows"] == 6 and stsb["overlap"]["validation"]["texts"] == 308
