import pytest
import ray
from ray.cluster_utils import Cluster

from benchmark.common.errors import InputError
from benchmark.config.suite import ResourcesConfig
from benchmark.run.cluster import concurrency, connect


@pytest.mark.parametrize(
    "resources, cluster, nodes, fits",
    [
        (ResourcesConfig(1, 1, 0), {"CPU": 2}, [{"CPU": 2}], 2),
        (ResourcesConfig(2, 1, 0), {"CPU": 2}, [{"CPU": 2}], 1),
        (ResourcesConfig(1, 2, 0), {"CPU": 8}, [{"CPU": 4}, {"CPU": 4}], 4),
        (ResourcesConfig(1, 1, 1), {"CPU": 16, "GPU": 2}, [{"CPU": 16, "GPU": 2}], 2),
        (ResourcesConfig(1, 1, 0, max_concurrent_trials=1), {"CPU": 2}, [{"CPU": 2}], 1),
    ],
)
def test_concurrency_counts_what_fits(resources, cluster, nodes, fits):
    assert concurrency(resources, cluster, nodes) == fits


@pytest.mark.parametrize(
    "resources, message",
    [
        (ResourcesConfig(1, 3, 0), "3 CPUs per worker, but the largest node has 2"),
        (ResourcesConfig(3, 1, 0), "one trial needs 3 CPUs"),
        (ResourcesConfig(1, 1, 1), "1 GPUs per worker, but the largest node has 0"),
    ],
)
def test_a_trial_that_can_never_be_placed_is_refused(resources, message):
    with pytest.raises(InputError, match=message):
        concurrency(resources, {"CPU": 2}, [{"CPU": 2}])


def test_without_an_address_bench_starts_its_own_ray_beside_a_running_one():
    # Ray's default joins the last cluster started on the machine (here a head node as `ray start` makes one); a
    # run beside it must not join it, or that cluster's end would end the run.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        connect(None)
        assert ray.get_runtime_context().gcs_address != cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()
