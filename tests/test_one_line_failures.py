"""Paths that gave a traceback or a wrong result instead of one line (issue 43): labels out of range, run
directories edited by hand, an output folder that cannot be written, GPUs Ray would refuse."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from benchmark.cli import main

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "results" / "pooling" / "records" / "cross-mean"  # a small committed run directory


def write_task_suite(tmp_path: Path, tiny_model, rows: list[dict], **extra) -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"name": "r", "train": str(tmp_path / "train.jsonl"), "text_columns": ["s"], "labels": ["neg", "pos"]}
    body = {"name": "s", "model": str(tiny_model), "tasks": [task], "data": {"holdout": {"validation": 0.5}}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**body, **extra}))
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("bad", [-1, 2, "-1"])
def test_a_label_outside_the_classes_is_refused_at_validate_naming_file_and_row(bad, tmp_path, tiny_model, capsys):
    rows = [{"s": f"text {i}", "label": i % 2} for i in range(8)]
    rows[5]["label"] = bad
    path = write_task_suite(tmp_path, tiny_model, rows)
    assert main(["validate", str(path)]) == 2
    err = one_line_error(capsys)
    # a JSON "-1" among numbers is read as the number: the column's type is one for all its rows
    assert "train.jsonl: row 6: label " in err and f"{int(bad)}" in err and "is not one of neg, pos" in err, err


def test_gpus_per_worker_of_one_and_a_half_is_refused_at_validate(tmp_path, tiny_model, capsys):
    rows = [{"s": f"text {i}", "label": i % 2} for i in range(8)]
    path = write_task_suite(tmp_path, tiny_model, rows, resources={"gpus_per_worker": 1.5})
    assert main(["validate", str(path)]) == 2
    assert "resources.gpus_per_worker: 1.5: more than one GPU must be a whole number" in one_line_error(capsys)


def test_an_output_that_cannot_be_a_folder_is_refused_at_validate_and_run(tmp_path, tiny_model, capsys):
    rows = [{"s": f"text {i}", "label": i % 2} for i in range(8)]
    (tmp_path / "taken").write_text("a file where the run directory's parent should be")
    path = write_task_suite(tmp_path, tiny_model, rows, output=str(tmp_path / "taken" / "run"))
    for command in ("validate", "run"):
        assert main([command, str(path)]) == 2
        err = one_line_error(capsys)
        assert f"output: {tmp_path / 'taken' / 'run'} cannot be made: {tmp_path / 'taken'} is a file" in err


def test_a_write_the_machine_refuses_is_one_line_with_exit_1(tmp_path, capsys):
    run = shutil.copytree(RUN, tmp_path / "run")
    (run / "report.html").mkdir()  # the report cannot replace a folder: an OSError, not bad input
    assert main(["report", str(run), "--bootstrap", "20"]) == 1
    assert "report.html" in one_line_error(capsys)


def table_json(run: Path, capsys) -> tuple[dict, str]:
    assert main(["table", str(run), "--format", "json", "--bootstrap", "20"]) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_a_record_of_the_wrong_shape_is_skipped_and_the_json_table_stays_valid(tmp_path, capsys):
    run = shutil.copytree(RUN, tmp_path / "run")
    whole, _ = table_json(run, capsys)
    source = json.loads(next((run / "trials").glob("*/record.json")).read_text())
    (run / "trials" / "edited").mkdir()
    for record, why in [
        ([1, 2], "a JSON list, not an object"),
        ("a string", "a JSON str, not an object"),
        (None, "a JSON NoneType, not an object"),
        ({"trial_id": "x"}, "its status is missing"),
        ({**source, "trial_id": "e", "epochs": "x"}, "its epochs is missing or not a list"),
        ({**source, "trial_id": "e", "epochs": [1]}, "an entry of its epochs is not an object"),
        ({**source, "trial_id": "e", "best_metrics": [1]}, "its best_metrics is missing or not a mapping or null"),
        ({**source, "trial_id": "e", "best_score": "high"}, "best_score, best_epoch or best_metrics hold"),
    ]:
        (run / "trials" / "edited" / "record.json").write_text(json.dumps(record))
        board, err = table_json(run, capsys)
        assert board["rows"] == whole["rows"]  # the other records' rows, unchanged
        assert "skipping unreadable record" in err and why in err and "Traceback" not in err, (record, err)


@pytest.mark.parametrize("text", ["name: [unclosed\n", "- just\n- a list\n", "\xff\xfe"])
def test_a_damaged_suite_yaml_in_a_run_directory_is_one_line(text, tmp_path, capsys):
    run = shutil.copytree(RUN, tmp_path / "run")
    (run / "suite.yaml").write_bytes(text.encode("latin-1"))
    for command in (["predict", str(run)], ["table", str(run), "--format", "json", "--bootstrap", "20"]):
        assert main(command) == 2
        assert "suite.yaml" in one_line_error(capsys)
