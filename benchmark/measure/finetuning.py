"""Fine-tuning workflow options side by side: freezing, and data augmentation in a low-resource setting.

    python -m benchmark.measure.finetuning --study freezing --out results/freezing
    python -m benchmark.measure.finetuning --study augmentation --out results/augmentation

Each arm runs through `bench run` (Ray Tune + Ray Train + DeepSpeed) on the embedded model, one run directory
per task and arm under --work, the same seeds for every arm. `freezing`: full fine-tuning, the bottom half
frozen (embeddings and layers 0-2 of 6), and head only for the first epoch then everything, on rte and stsb.
`augmentation`: 10% of rte's and mrpc's training sets, with and without EDA augmentation (one copy per
example by random swap, deletion or insertion). The table gives each arm's best-epoch dev score (mean ± std
over seeds) and training samples/s. Rerunning the command keeps the trials that finished.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmark.measure import write_report
from benchmark.quiet import quiet_libraries
from benchmark.runner import make_console, resolve_cache_dir, run_suite
from benchmark.suite import load_suite
from tasks.loading import load_split, resolve_glue_dir

STUDIES = {
    "freezing": {
        "tasks": ["rte", "stsb"], "seeds": [1, 2], "train_samples": 200, "eval_samples": 200,
        "training": {"epochs": 3, "learning_rate": 5.0e-5, "batch_size": 16, "max_seq_length": 128},
        "arms": {"full fine-tuning": {},
                 "bottom half frozen": {"freeze_embeddings": True, "freeze_layers": 3},
                 "head only, then all (1 epoch)": {"head_only_epochs": 1}},
    },
    "augmentation": {
        "tasks": ["rte", "mrpc"], "seeds": [1, 2, 3], "train_fraction": 0.1, "eval_samples": 200,
        "training": {"epochs": 3, "learning_rate": 5.0e-5, "batch_size": 16, "max_seq_length": 128},
        "arms": {"no augmentation": {},
                 "EDA, 1 copy": {"augment_copies": 1, "augment_swap": 0.1, "augment_delete": 0.1,
                                 "augment_insert": 0.1, "augment_seed": 0}},
    },
}


def train_samples(study: dict, task: str) -> int:
    if "train_fraction" not in study:
        return study["train_samples"]
    from tasks.glue import GLUE_TASKS

    full = load_split(GLUE_TASKS[task], "train", resolve_glue_dir(None), resolve_cache_dir(None))
    return round(study["train_fraction"] * len(full))


def suite_for(name: str, study: dict, task: str, arm: dict, work: Path, model: str | None) -> dict:
    return {
        "name": name, "model": model, "tasks": [task],
        "data": {"max_train_samples": train_samples(study, task), "max_eval_samples": study["eval_samples"]},
        "training": {**study["training"], "zero_stage": 0, **arm},
        "search": {"seeds": study["seeds"], "save_state": False},
        "output": str(work / name),
    }


def summarize(study_name: str, study: dict, runs: dict, command: str, wall: float) -> str:
    lines = [f"# Fine-tuning options: {study_name}", "", f"Command: `{command}`", "",
             f"Embedded all-MiniLM-L6-v2; seeds {study['seeds']}; training {json.dumps(study['training'])}, ZeRO-0 bf16; "
             f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (a machine shared with "
             f"other jobs: samples/s compare arms of this run only); wall time {wall / 60:.1f} min; "
             f"date {time.strftime('%Y-%m-%d')}.", "",
             "| task | arm | train examples | dev score (best epoch) | per seed | train samples/s | trainable parameters |",
             "|---|---|---:|---:|---|---:|---|"]
    for (task, arm), records in runs.items():
        scores = [r["best_score"] for r in records]
        std = f" ± {np.std(scores, ddof=1):.2f}" if len(scores) > 1 else ""
        speed = np.mean([r["train_samples_per_s"] for r in records if r.get("train_samples_per_s")])
        trainable = " → ".join(dict.fromkeys(f"{e.get('trainable_parameters', 0) / 1e6:.1f}M" for e in records[0]["epochs"]))
        examples = records[0]["train_samples"] // study["training"]["epochs"]
        added = records[0].get("augmented_examples", 0)
        lines.append(f"| {task} | {arm} | {examples}{f' ({added} added)' if added else ''} | {np.mean(scores):.2f}{std} | "
                     f"{', '.join(f'{s:.1f}' for s in scores)} | {speed:.1f} | {trainable} |")
    lines += ["", "Dev scores: the mean of the task's metrics on 0-100 at each trial's best epoch, on "
              f"{study['eval_samples']} dev examples (selection and report on the same dev set, the GLUE convention)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", choices=sorted(STUDIES), required=True)
    p.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    p.add_argument("--work", default=None, help="run directories (default: runs/measure-<study>)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    quiet_libraries()
    study = STUDIES[args.study]
    work = Path(args.work or f"runs/measure-{args.study}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    console = make_console()
    started = time.perf_counter()
    runs = {}
    for task in study["tasks"]:
        for a, (arm_name, arm) in enumerate(study["arms"].items()):
            config = suite_for(f"{args.study}-{task}-arm{a}", study, task, arm, work, args.model)
            path = work / f"{config['name']}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            run_suite(load_suite(path), console=console)
            runs[task, arm_name] = [json.loads(f.read_text()) for f in sorted(Path(config["output"]).glob("trials/*/record.json"))]
    command = "python -m benchmark.measure.finetuning " + " ".join(sys.argv[1:] if argv is None else argv)
    report = summarize(args.study, study, runs, command, time.perf_counter() - started)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
