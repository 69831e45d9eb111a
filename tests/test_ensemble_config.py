"""The suite's `ensemble:` section is checked like every other key, before anything starts."""

import pytest
import yaml

from benchmark.cli import main
from benchmark.config.suite import load_suite


@pytest.fixture
def suite_file(tmp_path, glue_dir, cache_dir):
    def write(ensemble, model=None):
        suite = {
            "name": "t",
            "model": model,
            "tasks": ["rte"],
            "data": {"max_train_samples": 16, "max_eval_samples": 8},
            "training": {"epochs": 1, "batch_size": 8},
            "search": {"grid": {"learning_rate": [1e-3, 2e-3]}, "seeds": [1, 2]},
            "output": str(tmp_path / "run"),
        }
        if ensemble is not None:
            suite["ensemble"] = ensemble
        path = tmp_path / "suite.yaml"
        path.write_text(yaml.safe_dump(suite))
        return path

    return write


def test_defaults_build_no_ensembles(suite_file):
    suite = load_suite(suite_file(None))
    assert suite.ensemble.methods == () and suite.ensemble.pool_sizes == (None,) and suite.ensemble.split_seed == 0
    assert suite.to_dict()["ensemble"] == {"methods": [], "k": None, "split_seed": 0}


def test_a_single_k_or_a_list_of_them(suite_file):
    assert load_suite(suite_file({"methods": ["vote"], "k": 3})).ensemble.pool_sizes == (3,)
    assert load_suite(suite_file({"methods": ["vote"], "k": [2, None]})).ensemble.pool_sizes == (2, None)


@pytest.mark.parametrize(
    "ensemble, message",
    [
        ({"methods": ["mean_prob", "soup"]}, "ensemble.methods[1]: unknown method 'soup'"),
        ({"methods": ["greddy"]}, "(did you mean 'greedy'?)"),
        ({"methods": ["vote", "vote"]}, "ensemble.methods: repeats a method"),
        ({"methods": "vote"}, "ensemble.methods: expected a list, got string 'vote'"),
        ({"methods": ["vote"], "k": 5}, "ensemble.k: 5 is larger than the 4 checkpoints per task this suite makes"),
        ({"methods": ["vote"], "k": [2, 2]}, "ensemble.k: repeats a value"),
        ({"methods": ["vote"], "k": []}, "ensemble.k: the list is empty"),
        ({"methods": ["vote"], "k": 0}, "ensemble.k: must be at least 1, got 0"),
        ({"methods": ["vote"], "k": "three"}, "ensemble.k: expected an integer, got string 'three' or expected a list"),
        ({"methods": ["vote"], "split_seed": -1}, "ensemble.split_seed: must be at least 0"),
        ({"method": ["vote"]}, "ensemble.method: unknown key (did you mean 'methods'?)"),
    ],
)
def test_a_bad_ensemble_section_gets_one_line_and_exit_code_2(suite_file, capsys, ensemble, message):
    assert main(["validate", str(suite_file(ensemble))]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_soups_need_one_base_model(suite_file, tiny_model, capsys):
    from benchmark.train.modeling import embedded_model_path

    models = [embedded_model_path(), str(tiny_model)]
    path = suite_file({"methods": ["mean_prob", "soup_greedy"]}, model=models)
    assert main(["validate", str(path)]) == 2
    assert (
        "ensemble.methods: soup_greedy averages weights fine-tuned from one base model, and this suite lists 2"
        in capsys.readouterr().err
    )
    # Prediction ensembles may mix models.
    assert load_suite(suite_file({"methods": ["mean_prob", "greedy"]}, model=models)).ensemble.methods
