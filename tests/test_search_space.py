import pytest

from benchmark.common.errors import InputError
from benchmark.common.schema import parse
from benchmark.config.search import SearchConfig, check_search, sample_space
from benchmark.config.suite import load_suite
from benchmark.plan.trials import make_plan
from tests.test_suite import write_suite


def checked(**search) -> SearchConfig:
    config = parse(SearchConfig, search, "search")
    check_search(config)
    return config


def test_samples_are_reproducible_and_inside_their_bounds():
    config = checked(
        space={
            "learning_rate": {"loguniform": [1e-5, 1e-3]},
            "warmup_ratio": {"uniform": [0, 0.2]},
            "batch_size": {"choice": [16, 32]},
            "epochs": {"randint": [2, 5]},
        },
        num_samples=50,
    )
    a = sample_space(config.space, 50, seed=0)
    assert a == sample_space(config.space, 50, seed=0) and a != sample_space(config.space, 50, seed=1)
    assert all(1e-5 <= p["learning_rate"] <= 1e-3 and 0 <= p["warmup_ratio"] <= 0.2 for p in a)
    assert {p["batch_size"] for p in a} == {16, 32} and {p["epochs"] for p in a} == {2, 3, 4}
    logs = sorted(p["learning_rate"] for p in a)
    assert logs[len(logs) // 2] < 2e-4  # log-uniform: the median sits near the geometric mean (1e-4)
    assert config.resolved_algorithm == "random"


@pytest.mark.parametrize(
    "search, message",
    [
        ({"space": {"learning_rate": {"lognormal": [1, 2]}}}, "unknown distribution"),
        ({"space": {"learning_rate": {"uniform": [1e-3, 1e-4]}}}, "low (0.001) must be below high"),
        ({"space": {"learning_rate": {"loguniform": [0.0, 1e-4]}}}, "must be at least"),
        ({"space": {"batch_size": {"uniform": [8, 16]}}}, "uniform is for real-valued"),
        ({"space": {"learning_rate": {"randint": [1, 5]}}}, "randint is for integer"),
        ({"space": {"epochs": {"randint": [0, 3]}}}, "must be at least 1"),
        ({"space": {"precision": {"choice": ["bf16", "fp8"]}}}, "must be one of auto, fp32, bf16, fp16"),
        ({"space": {"learning_rate": [1e-5]}}, "expected a mapping"),
        ({"space": {"learnin_rate": {"uniform": [0, 1]}}}, "did you mean 'learning_rate'"),
        ({"grid": {"learning_rate": [1e-5]}, "space": {"learning_rate": {"uniform": [1e-5, 1e-4]}}}, "also a grid key"),
        ({"algorithm": "grid", "space": {"learning_rate": {"uniform": [1e-5, 1e-4]}}}, "grid cannot sample"),
        ({"algorithm": "random"}, "needs a space to sample"),
        ({"num_samples": 4}, "only applies to a sampled space"),
        ({"scheduler": {"type": "pbt"}, "grid": {"epochs": [1, 2]}}, "pbt needs a grid or space over one of"),
        ({"scheduler": {"type": "asah"}}, "did you mean 'asha'"),
        (
            {"scheduler": {"type": "pbt"}, "grid": {"learning_rate": [1e-5, 2e-5]}, "save_state": False},
            "needs save_state",
        ),
        ({"scheduler": {"type": "hyperband"}, "save_state": False}, "hyperband pauses and restores"),
    ],
)
def test_bad_search_sections(search, message):
    with pytest.raises(InputError) as e:
        checked(**search)
    assert message in str(e.value)


def test_optuna_missing_is_a_clear_input_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna":
            raise ImportError("no optuna")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    with pytest.raises(InputError, match=r"optuna is not installed; pip install 'bench\[optuna\]'"):
        checked(algorithm="optuna", space={"learning_rate": {"loguniform": [1e-5, 1e-4]}})


def test_random_plan_crosses_grid_samples_and_seeds(tmp_path, glue_dir):
    path = write_suite(
        tmp_path,
        search={
            "grid": {"batch_size": [8, 16]},
            "seeds": [1, 2],
            "num_samples": 3,
            "space": {"learning_rate": {"loguniform": [1e-5, 1e-3]}},
        },
    )
    plan = make_plan(load_suite(path))
    assert len(plan) == 2 * 3 * 2
    assert plan[0].trial_id == "rte_bs=8_sample=000_seed=1"
    assert plan[0].training["learning_rate"] == plan[1].training["learning_rate"] != plan[2].training["learning_rate"]
    again = make_plan(load_suite(path))
    assert [t.fingerprint for t in again] == [t.fingerprint for t in plan]


def test_optuna_plan_fixes_ids_and_uses_the_first_seed(tmp_path, glue_dir):
    pytest.importorskip("optuna")
    path = write_suite(
        tmp_path,
        search={
            "algorithm": "optuna",
            "num_samples": 3,
            "seeds": [7, 8],
            "space": {"learning_rate": {"loguniform": [1e-5, 1e-3]}},
        },
    )
    plan = make_plan(load_suite(path))
    assert [t.trial_id for t in plan] == [f"rte_optuna={n:03d}_seed=7" for n in range(3)]
    sampled = plan[0].with_sampled({"learning_rate": 3e-5})
    assert sampled.training["learning_rate"] == 3e-5 and sampled.fingerprint == plan[0].fingerprint


def test_a_resumed_optuna_study_is_warm_started_with_its_finished_trials(tmp_path, glue_dir):
    pytest.importorskip("optuna")
    from benchmark.records.store import RunStore
    from benchmark.run.tune import _optuna, tune_distribution

    space = {"learning_rate": {"loguniform": [1e-5, 1e-3]}, "warmup_ratio": {"uniform": [0.0, 0.2]}}
    path = write_suite(tmp_path, search={"algorithm": "optuna", "num_samples": 4, "space": space})
    suite = load_suite(path)
    plan = make_plan(suite)
    store = RunStore(tmp_path / "run")
    finished = [(3e-5, 0.1, 61.0), (2e-4, 0.05, 66.5)]
    for spec, (lr, warmup, score) in zip(plan, finished):  # two trials of an earlier, interrupted run
        point = {**spec.point, "learning_rate": lr, "warmup_ratio": warmup}
        store.save_record({"trial_id": spec.trial_id, "status": "finished", "task": spec.task,
                           "model": spec.model_name, "grid_point": point, "best_score": score})  # fmt: skip
    spec = {"task": plan[0].task, "model_name": plan[0].model_name, "point": plan[0].point}
    searcher = _optuna(suite.config.search, spec, store)
    # what Tune does with it: the space, flattened by Ray, and the warm start added to Optuna's study
    sampled = {k: tune_distribution(d) for k, d in suite.config.search.space.items()}
    assert searcher.set_search_properties("best_score", "max", {"trial": {}, "sampled": sampled})
    trials = searcher._ot_study.trials
    assert [t.value for t in trials] == [61.0, 66.5]
    assert trials[1].params == {"sampled/learning_rate": 2e-4, "sampled/warmup_ratio": 0.05}
    assert searcher.suggest("t1")["sampled"].keys() == {"learning_rate", "warmup_ratio"}  # and it goes on sampling
