"""Scaling on one machine: one trial on 1 and 2 DeepSpeed workers; two concurrent trials on one Ray node and on
a simulated two-node Ray cluster.

    python -m benchmark.measure.scaling --out results/scaling

Everything runs through `bench run` (Ray Tune + Ray Train + DeepSpeed) on the embedded model and a GLUE slice.
- workers: the same trial with `workers_per_trial` 1 (all CPUs in one rank) and 2 (ZeRO-2 across two gloo
  ranks, the CPUs split between them): training samples/s, wall time, dev score.
- nodes: two trials (two seeds) at once, 1 worker x 1 CPU each, on one Ray node holding the machine's CPUs,
  and on a Ray cluster of two nodes (a head and a worker raylet, 1 CPU each) on the same machine, joined with
  `--address`: where each trial ran, samples/s and suite wall time. Both nodes share this machine's cores, so
  the cluster shows that trials spread and results come back, not more compute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from benchmark.measure import write_report
from benchmark.measure.suites import run_suite_command


def suite(name: str, args, work: Path, workers: int, cpus: float, seeds: list[int]) -> dict:
    return {
        "name": name,
        "model": args.model,
        "tasks": [args.task],
        "data": {"max_train_samples": args.train_samples, "max_eval_samples": args.eval_samples},
        "training": {"epochs": args.epochs, "batch_size": 32, "max_seq_length": args.max_seq_length, "zero_stage": 2},
        "search": {"seeds": seeds},
        "resources": {"workers_per_trial": workers, "cpus_per_worker": cpus},
        "storage": str(work / "shared-storage"),
        "output": str(work / name),
    }


def summary(wall: float, records: list[dict]) -> dict:
    return {
        "wall": wall,
        "trials": len(records),
        "finished": sum(r["status"] == "finished" for r in records),
        "samples_per_s": [r["train_samples_per_s"] for r in records],
        "score": [r["best_score"] for r in records],
        "nodes": sorted({n for r in records for n in r["node_ids"]}),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    p.add_argument("--task", default="sst2")
    p.add_argument("--train-samples", type=int, default=1024)
    p.add_argument("--eval-samples", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-seq-length", type=int, default=64)
    p.add_argument("--work", default="/tmp/bench-scaling")
    p.add_argument("--out", default="results/scaling")
    args = p.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    if work.exists():
        raise SystemExit(f"{work} exists: give a fresh --work")
    work.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    cpus = len(os.sched_getaffinity(0))
    results = {}
    for workers in (1, 2):
        name = f"workers-{workers}"
        print(name, flush=True)
        results[name] = summary(*run_suite_command(suite(name, args, work, workers, cpus / workers, [1]), work))
        print("  " + json.dumps(results[name]), flush=True)

    print("one node, two trials", flush=True)
    results["one-node"] = summary(*run_suite_command(suite("one-node", args, work, 1, 1, [1, 2]), work))
    print("  " + json.dumps(results["one-node"]), flush=True)

    # Imported here for start-up speed (ray).
    from ray.cluster_utils import Cluster

    print("two nodes, two trials", flush=True)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        results["two-nodes"] = summary(
            *run_suite_command(suite("two-nodes", args, work, 1, 1, [1, 2]), work, address=cluster.address)
        )
    finally:
        cluster.shutdown()
    print("  " + json.dumps(results["two-nodes"]), flush=True)

    command = "python -m benchmark.measure.scaling " + " ".join(sys.argv[1:] if argv is None else argv)
    w1, w2 = results["workers-1"], results["workers-2"]
    lines = [
        "# Scaling on one machine",
        "",
        f"Command: `{command}`",
        "",
        f"Date {time.strftime('%Y-%m-%d')}; machine: {platform.processor() or platform.machine()}, {cpus} CPUs; "
        f"model {args.model or 'all-MiniLM-L6-v2 (embedded)'}; task {args.task}, {args.train_samples} training / "
        f"{args.eval_samples} dev examples, {args.epochs} epoch(s), batch 32, max length {args.max_seq_length}, "
        "bf16, ZeRO-2.",
        "",
        "| setup | trials finished | nodes used | train samples/s per trial | dev score | suite wall (s) |",
        "|---|---:|---:|---|---|---:|",
    ]
    labels = {
        "workers-1": f"1 trial, 1 worker x {cpus} CPUs",
        "workers-2": f"1 trial, 2 workers x {cpus / 2:g} CPUs",
        "one-node": "2 trials at once, one node (2 CPUs)",
        "two-nodes": "2 trials at once, two nodes (1 CPU each)",
    }
    for key, label in labels.items():
        r = results[key]
        lines.append(
            f"| {label} | {r['finished']}/{r['trials']} | {len(r['nodes'])} | "
            f"{', '.join(f'{x:.1f}' for x in r['samples_per_s'])} | {', '.join(f'{x:.2f}' for x in r['score'])} | "
            f"{r['wall']:.0f} |"
        )
    lines += [
        "",
        f"Two workers against one on the same CPUs: {w2['samples_per_s'][0] / w1['samples_per_s'][0]:.2f}x "
        "training samples/s.",
    ]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
