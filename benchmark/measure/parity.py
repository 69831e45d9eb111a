"""Parity over seeds: bench, run through `bench run`, against a plain Hugging Face `Trainer`, same setup.

    python -m benchmark.measure.parity --out results/parity

The embedded model on full RTE, MRPC, STS-B and CoLA (GLUE's training set; scored on GLUE's dev set); lr 5e-5,
batch 32, max length 128, 3 epochs, warm-up 0.1, weight decay 0.01, clipping 1.0; seeds 1, 2 and 3 on both sides,
at the precision `precision: auto` picks on this machine. The score is the last epoch's: nothing is selected.
bench runs one trial at a time with every CPU (the Trainer's threads). The Trainer seeds before it builds the
model, so its head is seeded. Each (task, system, seed) is kept in `parity.json` as it finishes, and bench's run
directory resumes: the command can run in parts. `run_bench` and `run_hf_trainer` also serve throughput.py and
gpu.py (the trainer without Ray, side by side on the same work).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch

from benchmark.common.atomic import atomic_write_json, atomic_write_text
from benchmark.common.hardware import machine_description, resolve_precision
from benchmark.common.quiet import quiet_libraries
from benchmark.measure.suites import run_suite_command
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
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    tokenizer = load_tokenizer(model_path)
    splits = {s: load_split(task, s, glue_dir, cache, max_train if s == "train" else max_eval) for s in task.splits}

    def tokenize(batch):
        return tokenizer(*[batch[c] for c in task.text_columns], truncation=True, max_length=hp.max_seq_length)

    encoded = datasets.DatasetDict(
        {s: ds.map(tokenize, batched=True, remove_columns=list(task.text_columns)) for s, ds in splits.items()}
    )
    set_seed(seed)  # the head is drawn from the seed, as bench's is
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


SYSTEMS = ("bench", "trainer")
TASK_ORDER = ["rte", "mrpc", "stsb", "cola"]


def setup(precision: str) -> TrainingConfig:
    """The issue's fixed setup: both sides train with exactly these."""
    return TrainingConfig(
        epochs=3,
        learning_rate=5e-5,
        batch_size=32,
        max_seq_length=128,
        warmup_ratio=0.1,
        weight_decay=0.01,
        max_grad_norm=1.0,
        precision=precision,
    )


def bench_suite(task: str, hp: TrainingConfig, seeds: list[int], output: Path) -> dict:
    """One task's suite: full training set, GLUE's dev set scored each epoch, one trial at a time on every CPU."""
    return {
        "name": f"parity-{task}",
        "output": str((output / f"{task}-{hp.precision}").resolve()),  # bench refuses a run's trials at other settings
        "model": None,  # the embedded default
        "tasks": [task],
        "training": {
            k: getattr(hp, k)
            for k in (
                "epochs",
                "learning_rate",
                "batch_size",
                "max_seq_length",
                "warmup_ratio",
                "weight_decay",
                "max_grad_norm",
                "precision",
            )
        },
        "search": {"seeds": seeds},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": os.cpu_count() or 1},
        "ensemble": {"methods": []},
    }


def bench_rows(task: str, hp: TrainingConfig, seeds: list[int], output: Path, cpu: str) -> list[dict]:
    """Run (or resume) the task's suite through `bench run` and read each seed's last epoch from its record."""
    output.mkdir(parents=True, exist_ok=True)
    _, records = run_suite_command(bench_suite(task, hp, seeds, output), output)
    return [
        _row(task, "bench", r["seed"], r["precision"], cpu, r["epochs"][-1], r["train_samples_per_s"]) for r in records
    ]


def trainer_row(task: str, hp: TrainingConfig, seed: int, glue_dir: Path, cache: Path, cpu: str) -> dict:
    model_path = embedded_model_path()
    workdir = Path(tempfile.mkdtemp(prefix="bench-parity-"))
    try:
        result = run_hf_trainer(GLUE_TASKS[task], model_path, hp, seed, glue_dir, cache, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _row(task, "trainer", seed, hp.precision, cpu, result["epochs"][-1], result["train_samples_per_s"])


def _row(task: str, system: str, seed: int, precision: str, cpu: str, last: dict, speed: float) -> dict:
    """A parity.json row from a run's last epoch (its score and the task's metrics)."""
    return {
        "task": task,
        "system": system,
        "seed": seed,
        "precision": precision,
        "cpu": cpu,
        "score": round(float(last["score"]), 4),
        "metrics": {k: round(float(last[k]), 6) for k in GLUE_TASKS[task].metric_keys()},
        "train_samples_per_s": round(float(speed), 2),
    }


def welch(a: list[float], b: list[float]) -> tuple[float, float, float] | None:
    """mean(a) - mean(b) with its 95% Welch interval; None with fewer than two runs a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = float(np.mean(a) - np.mean(b))
    if np.var(a) + np.var(b) == 0:  # identical runs on each side: the interval is the point
        return diff, diff, diff
    interval = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return diff, float(interval.low), float(interval.high)


def task_lines(task: str, rows: list[dict]) -> list[tuple[str, str, bool | None]]:
    """One table line per precision the task ran at: (line, label, whether the two sides stay within noise; None:
    not enough seeds yet)."""
    lines = []
    for precision in sorted({r["precision"] for r in rows if r["task"] == task}):
        side = {
            s: [r for r in rows if (r["task"], r["system"], r["precision"]) == (task, s, precision)] for s in SYSTEMS
        }
        scores = {s: [r["score"] for r in side[s]] for s in SYSTEMS}
        speed = {s: np.mean([r["train_samples_per_s"] for r in side[s]]) if side[s] else None for s in SYSTEMS}
        cpus = " / ".join(sorted({r["cpu"] for r in side["bench"] + side["trainer"]}))
        cells = [
            f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.2f} (n={len(v)})" if v else "—"
            for v in scores.values()
        ]
        test = welch(scores["bench"], scores["trainer"])
        if test is None:
            verdict, within = "not enough seeds yet", None
        else:
            within = test[1] <= 0 <= test[2]
            verdict = "within noise" if within else f"bench {'higher' if test[0] > 0 else 'lower'}: shown"
        diff = f"{test[0]:+.2f} [{test[1]:+.2f}, {test[2]:+.2f}]" if test else "—"
        if test is None and scores["bench"] and scores["trainer"]:  # a point difference until both sides have seeds
            diff = f"{np.mean(scores['bench']) - np.mean(scores['trainer']):+.2f} (no interval)"
        rates = [f"{v:.1f}" if v else "—" for v in speed.values()]
        ratio = f"{speed['bench'] / speed['trainer']:.2f}x" if speed["bench"] and speed["trainer"] else "—"
        line = (
            f"| {task} | {precision} | {cpus} | {'/'.join(GLUE_TASKS[task].metric_keys())} | {cells[0]} | "
            f"{cells[1]} | {diff} | {verdict} | {rates[0]} | {rates[1]} | {ratio} |"
        )
        lines.append((line, f"{task} {precision}", within))
    return lines


def summarize(rows: list[dict], saved: dict) -> str:
    """The README, from parity.json alone: its rows, and the parts (commands and dates) that wrote them."""
    hp = setup("auto")
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))
    wall = f"wall time {saved['wall_seconds'] / 60:.1f} min over {len(saved['parts'])} part(s)"
    lines = [
        "# Parity over seeds: bench against Hugging Face Trainer (full data)",
        "",
        "Written by `python -m benchmark.measure.parity --out results/parity`, run in parts: "
        + "; ".join(f"`{p['command']}` ({p['date']})" for p in saved["parts"])
        + ".",
        "",
        f"Model all-MiniLM-L6-v2 (embedded); full training sets, scored on GLUE's dev set at the last epoch (nothing "
        f"selected); lr {hp.learning_rate:g}, {hp.epochs} epochs, batch {hp.batch_size}, max length "
        f"{hp.max_seq_length}, warm-up {hp.warmup_ratio:g}, weight decay {hp.weight_decay:g}, clipping "
        f"{hp.max_grad_norm:g}. bench: `bench run`, one trial at a time on every CPU, DeepSpeed, length-grouped "
        "batches; Trainer: seeded before the model is built, random batches; both sides of a line at the same "
        "precision on the same machine, one run at a time with nothing else running; "
        f"{wall}.",
        "",
        "Precision: the one that ran, `--precision` (default `auto`: bf16 only on a CPU with native bf16, "
        "AVX512-BF16 or AMX; fp32 elsewhere). CPU: as each row records it, the model and the flags that matter "
        "(rows written before the flags were recorded give the model alone; they ran at `auto`'s fp32, on a "
        "CPU without native bf16).",
        "",
        "| task | precision | CPU | metric | bench score (mean ± std) | Trainer score (mean ± std) | "
        "bench − Trainer [95% Welch] | verdict | bench train samples/s | Trainer train samples/s | speed-up |",
        "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    verdicts = {}
    for task in tasks:
        for line, label, within in task_lines(task, rows):
            lines.append(line)
            verdicts[label] = within
    done = {t: v for t, v in verdicts.items() if v is not None}
    missing = [t for t, v in verdicts.items() if v is None]
    lines += [
        "",
        "Scores are the task score on 0-100 (the mean of the task's metrics), one per seed; std over seeds. "
        "The interval is Welch's t interval on the difference of the means. Speeds compare within a line only: "
        "lines at different precisions or on different CPUs are different machines' figures.",
        "",
        "Goal: no task differs by more than its noise (every interval holds 0): "
        + (("met" if all(done.values()) else "not met") + f" on {', '.join(done)}" if done else "no task measured yet")
        + (f"; not yet measured with two or more seeds a side: {', '.join(missing)}." if missing else "."),
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="*", default=TASK_ORDER, help="run these now (none: rewrite the README only)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--glue-dir", default=None)
    p.add_argument("--cache-dir", default=str(Path("~/.cache/bench").expanduser()))
    p.add_argument("--output", default="runs/parity", help="bench's run directories, one per task and precision")
    p.add_argument("--out", default="results/parity")
    args = p.parse_args(argv)
    quiet_libraries()
    machine = machine_description()
    cpu = f"{machine['cpu']} ({', '.join(machine['cpu_flags'])})" if machine["cpu_flags"] else machine["cpu"]
    precision = resolve_precision(args.precision)
    hp, out = setup(precision), Path(args.out)
    glue_dir, cache = resolve_glue_dir(args.glue_dir), Path(args.cache_dir)
    path = out / "parity.json"
    saved = json.loads(path.read_text()) if path.is_file() else {"rows": [], "wall_seconds": 0.0, "parts": []}
    rows, started = saved["rows"], time.perf_counter()
    command = "python -m benchmark.measure.parity " + " ".join(sys.argv[1:] if argv is None else argv)
    part = [{"command": command, "date": time.strftime("%Y-%m-%d %H:%M")}] if args.tasks else []
    parts = [*saved["parts"], *part]

    def save() -> str:
        """parity.json and the README from it, after every run: a part stopped half way loses only its current run."""
        rows.sort(key=lambda r: (r["task"], r["system"], r["precision"], r["seed"]))
        wall = saved["wall_seconds"] + (time.perf_counter() - started if args.tasks else 0.0)
        state = {"rows": rows, "wall_seconds": round(wall, 1), "parts": parts}
        atomic_write_json(path, state)
        report = summarize(rows, state)
        atomic_write_text(out / "README.md", report)
        return report

    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        print(f"{task}: bench run, seeds {args.seeds}", flush=True)
        fresh = bench_rows(task, hp, args.seeds, Path(args.output), cpu)
        rows[:] = [r for r in rows if (r["task"], r["system"], r["precision"]) != (task, "bench", precision)] + fresh
        save()
        for seed in args.seeds:
            if any(
                r["task"] == task and r["system"] == "trainer" and r["seed"] == seed and r["precision"] == precision
                for r in rows
            ):
                continue
            print(f"{task}: Hugging Face Trainer, seed {seed}", flush=True)
            rows.append(trainer_row(task, hp, seed, glue_dir, cache, cpu))
            save()
    print(save())
    return 0


if __name__ == "__main__":
    sys.exit(main())
