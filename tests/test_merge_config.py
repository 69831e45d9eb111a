"""The suite's `merge:` section is checked like every other key, before anything starts."""

import pytest
import yaml

from benchmark.cli import main
from benchmark.config.suite import load_suite


@pytest.fixture
def suite_file(tmp_path, glue_dir, cache_dir):
    def write(merge, tasks=("rte", "mrpc")):
        suite = {
            "name": "t",
            "tasks": list(tasks),
            "data": {"max_train_samples": 16, "max_eval_samples": 8},
            "training": {"epochs": 1, "batch_size": 8},
            "search": {"seeds": [1, 2]},
            "output": str(tmp_path / "run"),
        }
        if merge is not None:
            suite["merge"] = merge
        path = tmp_path / "suite.yaml"
        path.write_text(yaml.safe_dump(suite))
        return path

    return write


def test_defaults_merge_nothing_and_name_every_task(suite_file):
    suite = load_suite(suite_file(None))
    assert suite.merge.methods == () and suite.merge.scales == (0.3, 0.5, 0.7, 1.0)
    assert suite.merge.ties_density == 0.2 and suite.merge.tasks == ("rte", "mrpc")
    assert suite.to_dict()["merge"] == {
        "methods": [],
        "scales": [0.3, 0.5, 0.7, 1.0],
        "ties_density": 0.2,
        "tasks": None,
    }


def test_a_merge_of_some_tasks(suite_file):
    path = suite_file({"methods": ["ties"], "tasks": ["mrpc", "rte"], "scales": [2]}, tasks=("rte", "mrpc", "stsb"))
    merge = load_suite(path).merge
    assert merge.tasks == ("mrpc", "rte") and merge.scales == (2.0,) and merge.methods == ("ties",)


@pytest.mark.parametrize(
    "merge, tasks, message",
    [
        ({"methods": ["ties", "dare"]}, None, "merge.methods[1]: unknown merge method 'dare'"),
        ({"methods": ["tie"]}, None, "(did you mean 'ties'?)"),
        ({"methods": ["ties", "ties"]}, None, "merge.methods: repeats a method"),
        ({"methods": ["ties"], "scales": [0.5, 0]}, None, "merge.scales[1]: must be in (0, 2], got 0"),
        ({"methods": ["ties"], "scales": [2.5]}, None, "merge.scales[0]: must be in (0, 2], got 2.5"),
        ({"methods": ["ties"], "scales": [-1]}, None, "merge.scales[0]: must be in (0, 2]"),
        ({"methods": ["ties"], "scales": []}, None, "merge.scales: the list is empty"),
        ({"methods": ["ties"], "ties_density": 0}, None, "merge.ties_density: must be in (0, 1], got 0"),
        ({"methods": ["ties"], "ties_density": 1.5}, None, "merge.ties_density: must be in (0, 1], got 1.5"),
        ({"methods": ["ties"], "tasks": ["rte"]}, None, "merge.tasks: merging needs at least two tasks, got 1: rte"),
        ({"methods": ["task_arithmetic"]}, ("rte",), "tasks: merging needs at least two tasks, got 1: rte"),
        ({"methods": ["ties"], "tasks": ["rte", "cola"]}, None, "merge.tasks[1]: 'cola' is not a task of this suite"),
        ({"methods": ["ties"], "scale": [1]}, None, "merge.scale: unknown key (did you mean 'scales'?)"),
    ],
)
def test_a_bad_merge_section_gets_one_line_and_exit_code_2(suite_file, capsys, merge, tasks, message):
    assert main(["validate", str(suite_file(merge, tasks or ("rte", "mrpc")))]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
