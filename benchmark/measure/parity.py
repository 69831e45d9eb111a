"""Full-data parity: the bench trainer (DeepSpeed, no Ray) against a plain Hugging Face `Trainer`, same setup.

    python -m benchmark.measure.parity --tasks rte mrpc stsb cola --out results/parity

Same model (the embedded default), data, hyperparameters (lr 5e-5, 3 epochs, batch 32, max length 128,
seed 42, warm-up 10%, weight decay 0.01, clipping 1.0), precision and machine. Reports dev scores per epoch
and training throughput (samples/s, evaluation excluded) of both, side by side, task by task.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.common.quiet import quiet_libraries
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.local import run_local_trial
from benchmark.train.modeling import build_classifier, embedded_model_path, load_tokenizer
from tasks.encoding import encode_task
from tasks.glue import GLUE_TASKS
from tasks.loading import load_split, resolve_glue_dir
from tasks.metrics import compute_metrics, task_score


def run_bench(task, model_path, hp, seed, glue_dir, cache, workdir, max_train=None, max_eval=None) -> dict:
    data = encode_task(task, load_tokenizer(model_path), hp.max_seq_length, glue_dir, cache, max_train, max_eval)
    started = time.perf_counter()
    result = run_local_trial(
        hp, model_path, seed, data, workdir / f"bench-{task.name}", log=lambda line: print("  bench", line, flush=True)
    )
    wall = time.perf_counter() - started
    train_samples = sum(len(data.train) for _ in range(hp.epochs))
    train_seconds = sum(e["train_seconds"] for e in result.epochs)
    eval_samples = sum(len(s) for s in data.eval_splits.values()) * len(result.epochs)
    return {
        "epochs": [{k: e[k] for k in ("epoch", "score", *task.metric_keys(), "train_loss")} for e in result.epochs],
        "train_samples_per_s": train_samples / train_seconds,
        "wall_seconds": wall,
        "epoch_train_samples_per_s": [e["train_samples_per_s"] for e in result.epochs],
        "eval_samples_per_s": eval_samples / sum(e["eval_seconds"] for e in result.epochs),
    }


def run_hf_trainer(
    task,
    model_path,
    hp,
    seed,
    glue_dir,
    cache,
    workdir,
    group_by_length=False,
    max_train=None,
    max_eval=None,
    pad_to_max_length=False,
) -> dict:
    """A plain Trainer, as run_glue.py would set it up (`pad_to_max_length`: run_glue.py's default padding)."""
    # Imported here for start-up speed (datasets, transformers).
    import datasets
    from transformers import DataCollatorWithPadding, Trainer

    tokenizer = load_tokenizer(model_path)
    splits = {s: load_split(task, s, glue_dir, cache, max_train if s == "train" else max_eval) for s in task.splits}

    def tokenize(batch):
        return tokenizer(*[batch[c] for c in task.text_columns], truncation=True, max_length=hp.max_seq_length)

    encoded = datasets.DatasetDict(
        {s: ds.map(tokenize, batched=True, remove_columns=list(task.text_columns)) for s, ds in splits.items()}
    )
    model = build_classifier(model_path, task.label_names)
    eval_split = next(iter(task.eval_splits))

    def metrics_fn(pred):
        metrics = compute_metrics(task, {eval_split: pred.predictions}, {eval_split: pred.label_ids})
        return {**metrics, "score": task_score(metrics)}

    timer = _epoch_timer()
    args = _hf_arguments(task, hp, seed, workdir, group_by_length)
    epochs, eval_seconds = [], []

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded[eval_split],
        data_collator=DataCollatorWithPadding(
            tokenizer, padding="max_length" if pad_to_max_length else True, max_length=hp.max_seq_length
        ),
        compute_metrics=metrics_fn,
        callbacks=[timer, _eval_log(task, epochs, eval_seconds)],
    )
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    return {
        "epochs": epochs,
        "train_samples_per_s": len(encoded["train"]) * hp.epochs / sum(timer.seconds),
        "wall_seconds": wall,
        "eval_samples_per_s": len(encoded[eval_split]) * len(eval_seconds) / sum(eval_seconds),
        "epoch_train_samples_per_s": [len(encoded["train"]) / s for s in timer.seconds],
    }


def _hf_arguments(task, hp, seed: int, workdir: Path, group_by_length: bool):
    """The Trainer's arguments for bench's hyperparameters (no checkpoints, an evaluation per epoch)."""
    # Imported here for start-up speed (transformers).
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(workdir / f"hf-{task.name}"),
        learning_rate=hp.learning_rate,
        num_train_epochs=hp.epochs,
        per_device_train_batch_size=hp.batch_size,
        per_device_eval_batch_size=hp.eval_batch_size,
        warmup_steps=hp.warmup_ratio,
        weight_decay=hp.weight_decay,
        max_grad_norm=hp.max_grad_norm,
        adam_epsilon=hp.adam_epsilon,
        seed=seed,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        bf16=hp.precision == "bf16",
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        disable_tqdm=True,
    )


def _epoch_timer():
    """A Trainer callback timing each epoch's training, before its evaluation runs."""
    # Imported here for start-up speed (transformers).
    from transformers import TrainerCallback

    class EpochTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.start = [], None

        def on_epoch_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kw):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def _eval_log(task, epochs: list, eval_seconds: list):
    """A Trainer callback appending each evaluation's scores to `epochs` and its time to `eval_seconds`."""
    # Imported here for start-up speed (transformers).
    from transformers import TrainerCallback

    class EvalLog(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kw):
            eval_seconds.append(metrics["eval_runtime"])
            row = {"epoch": round(state.epoch), "score": metrics["eval_score"]}
            row.update({k: metrics[f"eval_{k}"] for k in task.metric_keys()})
            epochs.append(row)
            print("  hf   ", json.dumps(row), flush=True)

    return EvalLog()


def summarize(results: dict, command: str, hp: TrainingConfig, seed: int) -> str:
    lines = [
        "# Parity: bench trainer vs Hugging Face Trainer (full data)",
        "",
        f"Command: `{command}`",
        "",
        f"Model all-MiniLM-L6-v2 (embedded); lr {hp.learning_rate:g}, {hp.epochs} epochs, batch {hp.batch_size}, "
        f"max length {hp.max_seq_length}, seed {seed}, warm-up {hp.warmup_ratio:g}, weight decay {hp.weight_decay:g}, "
        f"clipping {hp.max_grad_norm:g}, precision {hp.precision} (bench: DeepSpeed ZeRO-{hp.zero_stage}, "
        f"length-grouped batches; Trainer: torch autocast, random batches). "
        f"Machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads.",
        "",
        "| task | metric | bench best epoch | Trainer best epoch | bench last epoch | Trainer last epoch | "
        "bench train samples/s | Trainer train samples/s | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        keys = GLUE_TASKS[name].metric_keys()
        b, h = r["bench"], r["hf"]

        def fmt(e, keys=keys):
            return "/".join(f"{100 * e[k]:.1f}" for k in keys)

        bb, hb = max(b["epochs"], key=lambda e: e["score"]), max(h["epochs"], key=lambda e: e["score"])
        lines.append(
            f"| {name} | {'/'.join(keys)} | {fmt(bb)} (ep {bb['epoch']}) | {fmt(hb)} (ep {hb['epoch']}) | "
            f"{fmt(b['epochs'][-1])} | {fmt(h['epochs'][-1])} | {b['train_samples_per_s']:.1f} | "
            f"{h['train_samples_per_s']:.1f} | {b['train_samples_per_s'] / h['train_samples_per_s']:.2f}x |"
        )
    avg_b = np.mean([max(e["score"] for e in r["bench"]["epochs"]) for r in results.values()])
    avg_h = np.mean([max(e["score"] for e in r["hf"]["epochs"]) for r in results.values()])
    lines += ["", f"Average task score (best epoch): bench {avg_b:.2f}, Trainer {avg_h:.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["rte", "mrpc", "stsb", "cola"])
    p.add_argument("--model", default=None, help="default: the embedded all-MiniLM-L6-v2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--zero-stage", type=int, default=2, choices=[0, 1, 2], help="the bench trainer's ZeRO stage")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--glue-dir", default=None)
    p.add_argument("--cache-dir", default=str(Path("~/.cache/bench").expanduser()))
    p.add_argument("--out", default="results/parity")
    args = p.parse_args(argv)
    quiet_libraries()
    model_path = args.model or embedded_model_path()
    hp = TrainingConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        precision=args.precision,
        zero_stage=args.zero_stage,
    )
    glue_dir, cache, out = resolve_glue_dir(args.glue_dir), Path(args.cache_dir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-parity-"))
    results = {}
    try:
        for name in args.tasks:
            task = GLUE_TASKS[name]
            print(f"{name}: bench trainer", flush=True)
            bench = run_bench(task, model_path, hp, args.seed, glue_dir, cache, workdir)
            print(f"{name}: Hugging Face Trainer", flush=True)
            hf = run_hf_trainer(task, model_path, hp, args.seed, glue_dir, cache, workdir)
            results[name] = {"bench": bench, "hf": hf}
            (out / f"{name}.json").write_text(json.dumps(results[name], indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    command = "python -m benchmark.measure.parity " + " ".join(sys.argv[1:] if argv is None else argv)
    report = summarize(results, command, hp, args.seed)
    (out / "README.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
