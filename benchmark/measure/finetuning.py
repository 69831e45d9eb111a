"""Fine-tuning workflow options side by side: freezing, and data augmentation in a low-resource setting.

    python -m benchmark.measure.finetuning --study freezing --out results/freezing
    python -m benchmark.measure.finetuning --study augmentation --out results/augmentation

Every trial is one `bench trial` (the trainer with its real DeepSpeed engine, in this process, one after the
other: no Ray, so no start-up cost and no two trials sharing the CPUs while samples/s is measured) on the
embedded model, with the same seeds for every arm. `freezing`: full fine-tuning, the bottom half frozen
(embeddings and layers 0-2 of 6), and head only for the first epoch then everything, on rte and stsb.
`augmentation`: 10% of rte's and mrpc's training sets, with and without EDA augmentation (one copy per
example by random swap, deletion or insertion). The table gives each arm's best-epoch dev score (mean ± std
over seeds) and training samples/s. Each trial's result is kept under --work; rerunning skips those done.
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

from benchmark.common.quiet import quiet_libraries
from benchmark.measure import write_report
from benchmark.run.runner import resolve_cache_dir
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import embedded_model_path, load_tokenizer
from tasks.augment import Augmentation
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tasks.loading import load_split, resolve_glue_dir

STUDIES = {
    "freezing": {
        "tasks": ["rte", "stsb"],
        "seeds": [1, 2],
        "train_samples": 200,
        "eval_samples": 200,
        "training": {"epochs": 3, "learning_rate": 5.0e-5, "batch_size": 16, "max_seq_length": 128},
        "arms": {
            "full fine-tuning": {},
            "bottom half frozen": {"freeze_embeddings": True, "freeze_layers": 3},
            "head only, then all (1 epoch)": {"head_only_epochs": 1},
        },
    },
    "augmentation": {
        "tasks": ["rte", "mrpc"],
        "seeds": [1, 2, 3],
        "train_fraction": 0.1,
        "eval_samples": 200,
        "training": {"epochs": 3, "learning_rate": 5.0e-5, "batch_size": 16, "max_seq_length": 128},
        "arms": {
            "no augmentation": {},
            "EDA, 1 copy": {
                "augment_copies": 1,
                "augment_swap": 0.1,
                "augment_delete": 0.1,
                "augment_insert": 0.1,
                "augment_seed": 0,
            },
        },
    },
}


def train_samples(study: dict, task: str) -> int:
    if "train_fraction" not in study:
        return study["train_samples"]
    full = load_split(GLUE_TASKS[task], "train", resolve_glue_dir(None), resolve_cache_dir(None))
    return round(study["train_fraction"] * len(full))


def run_trial(study: dict, task: str, arm: dict, seed: int, model_path: str, folder: Path) -> dict:
    """One trial's record (epochs, samples/s, augmented examples), kept in `folder/result.json`."""
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    hp = TrainingConfig(**{**study["training"], "zero_stage": 0, **arm})
    data = encode_task(
        GLUE_TASKS[task],
        load_tokenizer(model_path),
        hp.max_seq_length,
        resolve_glue_dir(None),
        resolve_cache_dir(None),
        train_samples(study, task),
        study["eval_samples"],
        0,
        Augmentation.of(hp.to_dict()),
    )
    result = run_local_trial(
        hp, model_path, seed, data, folder, log=lambda line: print(f"  {task} seed {seed}: {line[:160]}", flush=True)
    )
    seconds = sum(e["train_seconds"] for e in result.epochs)
    record = {
        "task": task,
        "seed": seed,
        "epochs": result.epochs,
        "best_score": result.best_score,
        "train_samples_per_s": result.epochs[-1]["train_samples"] / seconds,
        "train_examples": len(data.train),
        "augmented_examples": data.augmented_examples,
        "wall_seconds": result.wall_seconds,
    }
    done.write_text(json.dumps(record))
    return record


def summarize(study_name: str, study: dict, runs: dict, command: str, wall: float) -> str:
    lines = [
        f"# Fine-tuning options: {study_name}",
        "",
        f"Command: `{command}`",
        "",
        f"Embedded all-MiniLM-L6-v2; seeds {study['seeds']}; training {json.dumps(study['training'])}, ZeRO-0 bf16; "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (a machine shared with "
        f"other jobs: samples/s compare arms of this run only, and only roughly); wall time {wall / 60:.1f} min; "
        f"date {time.strftime('%Y-%m-%d')}.",
        "",
        f"Slices: {study.get('train_samples') or str(study['train_fraction'] * 100) + '%'} training and "
        f"{study['eval_samples']} dev examples per task (seeded, the same for every arm).",
        "",
        "| task | arm | train examples | dev score (best epoch) | per seed | train samples/s | trainable parameters |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for (task, arm), records in runs.items():
        scores = [r["best_score"] for r in records]
        std = f" ± {np.std(scores, ddof=1):.2f}" if len(scores) > 1 else ""
        speed = np.mean([r["train_samples_per_s"] for r in records if r.get("train_samples_per_s")])
        trainable = " → ".join(
            dict.fromkeys(f"{e.get('trainable_parameters', 0) / 1e6:.1f}M" for e in records[0]["epochs"])
        )
        examples, added = records[0]["train_examples"], records[0]["augmented_examples"]
        lines.append(
            f"| {task} | {arm} | {examples}{f' ({added} added)' if added else ''} | {np.mean(scores):.2f}{std} | "
            f"{', '.join(f'{s:.1f}' for s in scores)} | {speed:.1f} | {trainable} |"
        )
    lines += [
        "",
        "Dev scores: the mean of the task's metrics on 0-100 at each trial's best epoch, on "
        f"{study['eval_samples']} dev examples (selection and report on the same dev set, the GLUE convention).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", choices=sorted(STUDIES), required=True)
    p.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    p.add_argument("--work", default=None, help="each trial's result (default: runs/measure-<study>)")
    p.add_argument("--out", required=True)
    p.add_argument("--train-samples", type=int, help="instead of the study's training slice (or fraction)")
    p.add_argument("--eval-samples", type=int, help="instead of the study's dev slice")
    p.add_argument("--epochs", type=int, help="instead of the study's epochs")
    args = p.parse_args(argv)
    quiet_libraries()
    study = dict(STUDIES[args.study])
    if args.train_samples:
        study = {k: v for k, v in study.items() if k != "train_fraction"} | {"train_samples": args.train_samples}
    if args.eval_samples:
        study["eval_samples"] = args.eval_samples
    if args.epochs:
        study["training"] = {**study["training"], "epochs": args.epochs}
    model_path = args.model or embedded_model_path()
    work = Path(args.work or f"runs/measure-{args.study}").resolve()
    started = time.perf_counter()
    runs = {}
    for task in study["tasks"]:
        for a, (arm_name, arm) in enumerate(study["arms"].items()):
            runs[task, arm_name] = []
            for seed in study["seeds"]:
                record = run_trial(study, task, arm, seed, model_path, work / f"{task}-arm{a}-seed{seed}")
                print(
                    f"{task} | {arm_name} | seed {seed}: {record['best_score']:.2f}, "
                    f"{record['train_samples_per_s']:.1f} samples/s",
                    flush=True,
                )
                runs[task, arm_name].append(record)
    command = "python -m benchmark.measure.finetuning " + " ".join(sys.argv[1:] if argv is None else argv)
    write_report(args.out, summarize(args.study, study, runs, command, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
