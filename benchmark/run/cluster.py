"""Ray itself: start it or join a cluster, fit trials to its resources, free what a stopped trial held."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import ray
from ray import tune
from ray._raylet import PlacementGroupID
from ray.util.placement_group import PlacementGroup

import benchmark
import ensembles
import tasks
from benchmark.common.errors import InputError

# bench's trials need none of these, and each costs start-up time or processes: node loss is handled by Tune's
# retry from the trial's last saved state, Train's metrics would go to a dashboard bench does not start, Ray's
# patched print would interleave with bench's display, and usage reports need a network.
RAY_SETTINGS = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}

logger = logging.getLogger(__name__)


def connect(address: str | None) -> None:
    """Start Ray locally, or join the cluster at `address`, else at $RAY_ADDRESS (Ray's own variable: `ray job
    submit` sets it for its entrypoint, and a user who started `ray start --head` once can set it to skip seconds
    of start-up on every run)."""
    if ray.is_initialized():
        return
    where = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    os.environ.update(RAY_SETTINGS)  # a local cluster's processes inherit the driver's environment
    if address:
        # The cluster's nodes may not have bench installed: ship its code with the job (the suite module,
        # which trials import, reads the ensemble section's schema from ensembles/).
        kwargs["runtime_env"] = {
            "py_modules": [Path(m.__file__).parent for m in (benchmark, tasks, ensembles)],
            "env_vars": RAY_SETTINGS,
        }
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(where, f"cannot connect to Ray at {address}: {str(e).splitlines()[0]}") from None
    else:
        # "local": a new Ray of bench's own. Without it Ray joins the last cluster started on this machine (`ray
        # start`, or another program's), whose life and resources are not this run's.
        ray.init(address="local", **kwargs)


def concurrency(resources, cluster: dict, nodes: list[dict]) -> int:
    """How many trials fit at once; refuse a trial that can never be placed instead of waiting forever."""
    per_trial_cpu = resources.workers_per_trial * resources.cpus_per_worker
    per_trial_gpu = resources.workers_per_trial * resources.gpus_per_worker
    biggest_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
    biggest_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
    if resources.cpus_per_worker > biggest_cpu:
        raise InputError(
            "resources.cpus_per_worker",
            f"{resources.cpus_per_worker:g} CPUs per worker, but the largest node has {biggest_cpu:g}",
        )
    if resources.gpus_per_worker > biggest_gpu:
        raise InputError(
            "resources.gpus_per_worker",
            f"{resources.gpus_per_worker:g} GPUs per worker, but the largest node has {biggest_gpu:g}",
        )
    total_cpu = cluster.get("CPU", 0)
    if per_trial_cpu > total_cpu:
        raise InputError(
            "resources",
            f"one trial needs {per_trial_cpu:g} CPUs ({resources.workers_per_trial} workers x "
            f"{resources.cpus_per_worker:g}), but the cluster has {cluster.get('CPU', 0):g}",
        )
    fits = math.floor(total_cpu / per_trial_cpu)
    if per_trial_gpu:
        fits = min(fits, math.floor(cluster.get("GPU", 0) / per_trial_gpu))
    if resources.max_concurrent_trials:
        fits = min(fits, resources.max_concurrent_trials)
    return max(1, fits)


class ReleaseStoppedTrials(tune.Callback):
    """Frees the workers of trials that Tune ended from outside: a scheduler's stop or pause ends the trial's
    actor while its Train run is still going, and that run's placement group lives as long as the job. Ray Train
    reaps such groups only where the dashboard's state API runs, so without this a stopped trial holds its CPUs
    for the rest of the run."""

    def __init__(self):
        self.groups: dict[str, set[str]] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        group = result.get("placement_group")
        if group:
            held = self.groups.setdefault(str(trial), set())
            _remove_placement_groups(held - {group})  # a restored trial's earlier attempts
            held.intersection_update({group})
            held.add(group)

    def on_step_end(self, iteration, trials, **info):
        for trial in trials:
            if trial.status != "RUNNING" and self.groups.get(str(trial)):
                _remove_placement_groups(self.groups.pop(str(trial)))


def _remove_placement_groups(ids) -> None:
    for hex_id in ids:
        group = PlacementGroup(PlacementGroupID(bytes.fromhex(hex_id)))
        try:
            if ray.util.placement_group_table(group).get("state") not in (None, "REMOVED"):
                ray.util.remove_placement_group(group)
        except Exception as e:  # already gone with its job or node
            logger.debug("placement group %s: %s", hex_id, e)
