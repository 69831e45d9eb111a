"""Parity over seeds: bench, run through `bench run`, against a plain Hugging Face `Trainer`, same setup.

    python -m benchmark.measure.parity --out results/parity

The embedded model on full RTE, MRPC, STS-B and CoLA (GLUE's training set; scored on GLUE's dev set); lr 5e-5,
batch 32, max length 128, 3 epochs, warm-up 0.1, weight decay 0.01, clipping 1.0; seeds 1, 2 and 3 on both sides,
at the precision `precision: auto` picks on this machine. The score is the last epoch's: nothing is selected.
bench runs one trial at a time with every CPU (the Trainer's threads). The Trainer seeds before it builds the
model, so its head is seeded. Each (task, system, seed) is kept in `parity.json` as it finishes, and bench's run
directory resumes: the command can run in parts (a part with other seeds adds to the rows already there). The
README is written from parity.json alone: per task and precision, Welch's t-test of a difference and an equivalence
test (TOST) at ±MARGIN, each Holm-corrected across the lines, and a verdict; `--from-records` rebuilds it without
training. `run_bench` and `run_hf_trainer` also serve throughput.py and gpu.py (the trainer without Ray, side by
side on the same work).

    python -m benchmark.measure.parity --from-records --out results/parity
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.common.atomic import atomic_write_json, atomic_write_text
from benchmark.common.errors import InputError
from benchmark.common.hardware import machine_description, resolve_precision
from benchmark.common.quiet import quiet_libraries
from benchmark.config.statistics import check_equivalence_margin
from benchmark.measure.suites import run_suite_command
from benchmark.results.bootstrap import ALPHA, Welch, seed_std, welch_t
from benchmark.results.statistics import BETTER, EQUIVALENT, WORSE, adjust_p, seeds_needed, verdict
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
# The equivalence margin in score points (0-100), fixed before judging: about one seed std of these tasks (0.6-2.3
# points over three seeds), so a smaller gap is what re-running either side with another seed gives anyway.
MARGIN = 2.0


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


@dataclass(frozen=True)
class Line:
    """One table line: a task at one precision, each side's per-seed scores and mean training speed."""

    task: str
    precision: str
    cpus: str
    bench: list[float]
    trainer: list[float]
    bench_speed: float | None
    trainer_speed: float | None


@dataclass(frozen=True)
class Judgement:
    """A line's two tests, Holm-corrected across the table's lines (one family each), and what they show."""

    test: Welch | None  # None: fewer than two seeds a side, or no spread at all
    p_adjusted: float | None  # the difference's Welch t-test
    tost_p_adjusted: float | None  # the equivalence test at ±margin
    kind: str  # the verdict's first words, which the goal line groups by: "equivalent", "inconclusive", ...
    verdict: str
    seeds_needed: int | None  # seeds a side for the TOST to pass, on inconclusive lines where it can be sized


def parity_lines(rows: list[dict]) -> list[Line]:
    """The table's lines, in the issue's task order, then by precision."""
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))
    lines = []
    for task in tasks:
        for precision in sorted({r["precision"] for r in rows if r["task"] == task}):
            side = {
                s: [r for r in rows if (r["task"], r["system"], r["precision"]) == (task, s, precision)]
                for s in SYSTEMS
            }
            speed = {s: float(np.mean([r["train_samples_per_s"] for r in side[s]])) if side[s] else None for s in side}
            lines.append(
                Line(
                    task,
                    precision,
                    " / ".join(sorted({r["cpu"] for r in side["bench"] + side["trainer"]})),
                    [r["score"] for r in side["bench"]],
                    [r["score"] for r in side["trainer"]],
                    speed["bench"],
                    speed["trainer"],
                )
            )
    return lines


def judge(lines: list[Line], margin: float) -> list[Judgement]:
    """Per line, Welch's t-test of bench - Trainer and the TOST at ±margin (Welch's df: two one-sided t-tests at
    ALPHA, so the 90% Welch interval inside ±margin), each family Holm-corrected over the lines that have tests."""
    tests = [welch_t(np.array(line.bench), np.array(line.trainer)) for line in lines]
    tested = [t for t in tests if t is not None]
    p_adjusted = iter(adjust_p([t.p() for t in tested], "holm"))
    tost_adjusted = iter(adjust_p([t.tost_p(margin) for t in tested], "holm"))
    # Sized at ALPHA / lines, the level Holm asks of the smallest p: enough for the line to pass on its own.
    alpha_each = ALPHA / max(1, len(tested))
    out = []
    for line, test in zip(lines, tests):
        have = min(len(line.bench), len(line.trainer))
        if test is None:
            kind = "not enough seeds" if have < 2 else "no spread over seeds"
            out.append(Judgement(None, None, None, kind, f"{kind} (n={have})", None))
            continue
        p, tost = next(p_adjusted), next(tost_adjusted)
        shown = verdict({"significant": p < ALPHA, "equivalent": tost < ALPHA, "delta": test.delta}, margin)
        needed = None
        if shown in (BETTER, WORSE):
            kind, words = "different", f"different (bench {'higher' if shown == BETTER else 'lower'})"
        elif shown == EQUIVALENT:
            kind, words = "equivalent", f"equivalent within ±{margin:g}"
        elif abs(test.delta) >= margin:
            kind, words = "cannot be shown", f"cannot be shown at ±{margin:g} (|d| ≥ {margin:g})"
        else:
            pooled = seed_std(np.array(line.bench), np.array(line.trainer))
            needed = max(have + 1, seeds_needed({"seed_std": pooled, "delta": test.delta}, margin, alpha_each))
            kind, words = "inconclusive", f"inconclusive (would need about {needed} seeds a side)"
        out.append(Judgement(test, p, tost, kind, words, needed))
    return out


def _table_line(line: Line, judged: Judgement) -> str:
    cells = [
        f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.2f} (n={len(v)})" if v else "—"
        for v in (line.bench, line.trainer)
    ]
    test = judged.test
    if test is not None:
        low, high = test.interval(2 * ALPHA)  # the TOST's interval
        diff = f"{test.delta:+.2f} [{low:+.2f}, {high:+.2f}]"
    elif line.bench and line.trainer:  # a point difference until both sides have seeds
        diff = f"{np.mean(line.bench) - np.mean(line.trainer):+.2f} (no interval)"
    else:
        diff = "—"
    ps = [f"{p:.3f}" if p is not None else "—" for p in (judged.p_adjusted, judged.tost_p_adjusted)]
    rates = [f"{v:.1f}" if v else "—" for v in (line.bench_speed, line.trainer_speed)]
    ratio = f"{line.bench_speed / line.trainer_speed:.2f}x" if line.bench_speed and line.trainer_speed else "—"
    return (
        f"| {line.task} | {line.precision} | {line.cpus} | {'/'.join(GLUE_TASKS[line.task].metric_keys())} | "
        f"{cells[0]} | {cells[1]} | {diff} | {ps[0]} | {ps[1]} | {judged.verdict} | {rates[0]} | {rates[1]} | "
        f"{ratio} |"
    )


def _fill_commands(lines: list[Line], judged: list[Judgement], margin: float) -> list[str]:
    """What is missing, and the commands that would fill it: a third seed a side where a line has fewer, and the
    seeds an inconclusive line's estimate asks for."""
    flag = "" if margin == MARGIN else f" --equivalence-margin {margin:g}"
    out = []
    for line, j in zip(lines, judged):
        have = min(len(line.bench), len(line.trainer))
        label = f"{line.task} {line.precision}"
        if have < 3:
            seeds, why = list(range(have + 1, 4)), f"{label}: {have} seed(s) a side, the study runs three"
        elif j.seeds_needed is not None:
            seeds, why = list(range(have + 1, j.seeds_needed + 1)), f"{label}: about {j.seeds_needed} seeds a side"
        else:
            continue
        listed = " ".join(map(str, seeds)) if len(seeds) <= 3 else f"$(seq {seeds[0]} {seeds[-1]})"
        command = (
            f"python -m benchmark.measure.parity --tasks {line.task} --seeds {listed} "
            f"--precision {line.precision} --out results/parity{flag}"
        )
        out.append(f"- {why}: `{command}`")
    return out


def summarize(rows: list[dict], saved: dict, margin: float = MARGIN) -> str:
    """The README, from parity.json alone: its rows, and the parts (commands and dates) that wrote them."""
    hp = setup("auto")
    wall = f"wall time {saved['wall_seconds'] / 60:.1f} min over {len(saved['parts'])} part(s)"
    rebuild = "python -m benchmark.measure.parity --from-records --out results/parity" + (
        "" if margin == MARGIN else f" --equivalence-margin {margin:g}"
    )
    lines = parity_lines(rows)
    judged = judge(lines, margin)
    tested = sum(j.test is not None for j in judged)
    out = [
        "# Parity over seeds: bench against Hugging Face Trainer (full data)",
        "",
        "Trained by `python -m benchmark.measure.parity --out results/parity`, run in parts: "
        + "; ".join(f"`{p['command']}` ({p['date']})" for p in saved["parts"])
        + f". This page is written from `parity.json` alone (`{rebuild}` rebuilds it without training).",
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
        f"How a line is judged, fixed before the numbers: the equivalence margin is ±{margin:g} score points "
        f"(`--equivalence-margin`, default {MARGIN:g}: about one seed std of these tasks, so a smaller gap is one "
        "that re-running with another seed gives anyway). Per line, Welch's t-test of a difference, and an "
        f"equivalence test (TOST: two one-sided Welch t-tests at {ALPHA:g}, Welch's df; it passes exactly when the "
        f"90% Welch interval lies inside ±{margin:g}); each family Holm-corrected across the table's {tested} "
        "tested lines. Verdict: `different` where the corrected difference test has p < 0.05, else `equivalent` "
        "where the corrected TOST has p < 0.05, else `cannot be shown` where the observed difference |d| is at "
        "least the margin, else `inconclusive`, with the seeds a side a TOST would need: n = 2 (z_{1-a} + "
        "z_0.9)^2 s^2 / (M - |d|)^2, s the two sides' pooled seed std, 90% power, a = 0.05 / (tested lines), the "
        "level Holm asks of the table's smallest p, at least one more than the line has; normal (z) quantiles, "
        "so with few seeds it is a lower bound. A 95% interval that holds 0 is not evidence of parity.",
        "",
        "| task | precision | CPU | metric | bench score (mean ± std) | Trainer score (mean ± std) | "
        f"bench − Trainer [90% Welch] | p, difference (Holm) | p, TOST ±{margin:g} (Holm) | verdict | "
        "bench train samples/s | Trainer train samples/s | speed-up |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
        *[_table_line(line, j) for line, j in zip(lines, judged)],
        "",
        "Scores are the task score on 0-100 (the mean of the task's metrics), one per seed; std over seeds. The "
        "interval is uncorrected. Speeds compare within a line only: lines at different precisions or on "
        "different CPUs are different machines' figures.",
        "",
    ]
    kinds = {}
    for line, j in zip(lines, judged):
        kinds.setdefault(j.kind, []).append(f"{line.task} {line.precision}")
    met = bool(judged) and all(j.kind == "equivalent" for j in judged)
    out.append(
        f"Goal: bench's score within ±{margin:g} of the Trainer's on every task and precision, shown by the "
        "equivalence test: "
        + ("met" if met else "not met")
        + "".join(f"; {kind}: {', '.join(labels)}" for kind, labels in kinds.items())
        + "."
    )
    fills = _fill_commands(lines, judged, margin)
    if fills:
        out += [
            "",
            "Missing, and the parts that would fill it (seeds by the estimate above; each part keeps the rows already "
            "here and adds the seeds it names; run a line's seeds on a machine like its CPU column):",
            "",
            *fills,
        ]
    return "\n".join(out) + "\n"


def merge_bench_rows(rows: list[dict], fresh: list[dict], task: str, precision: str) -> list[dict]:
    """The rows with bench's fresh rows of `task` at `precision` in place of those of the same seeds: a part run with
    other seeds keeps the earlier seeds' rows, whether or not their run directory is still on this machine."""
    seeds = {r["seed"] for r in fresh}
    return [
        r
        for r in rows
        if (r["task"], r["system"], r["precision"]) != (task, "bench", precision) or r["seed"] not in seeds
    ] + fresh


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=None, help=f"run these now (default: {' '.join(TASK_ORDER)})")
    p.add_argument("--from-records", action="store_true", help="train nothing: rebuild the README from parity.json")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument(
        "--equivalence-margin",
        type=float,
        default=MARGIN,
        metavar="M",
        help=f"score points (0-100): the TOST's margin, ±M (default {MARGIN:g})",
    )
    p.add_argument("--glue-dir", default=None)
    p.add_argument("--cache-dir", default=str(Path("~/.cache/bench").expanduser()))
    p.add_argument("--output", default="runs/parity", help="bench's run directories, one per task and precision")
    p.add_argument("--out", default="results/parity")
    args = p.parse_args(argv)
    try:
        margin = check_equivalence_margin(args.equivalence_margin, "--equivalence-margin")
        if args.from_records and args.tasks is not None:
            raise InputError("--from-records", "trains nothing: drop --tasks")
    except InputError as e:
        print(e, file=sys.stderr)
        return 2
    out = Path(args.out)
    path = out / "parity.json"
    if args.from_records:
        if not path.is_file():
            print(f"--from-records: {path} not found", file=sys.stderr)
            return 2
        saved = json.loads(path.read_text())
        atomic_write_text(out / "README.md", summarize(saved["rows"], saved, margin))
        return 0
    quiet_libraries()
    machine = machine_description()
    cpu = f"{machine['cpu']} ({', '.join(machine['cpu_flags'])})" if machine["cpu_flags"] else machine["cpu"]
    precision = resolve_precision(args.precision)
    hp, tasks = setup(precision), args.tasks or TASK_ORDER
    glue_dir, cache = resolve_glue_dir(args.glue_dir), Path(args.cache_dir)
    saved = json.loads(path.read_text()) if path.is_file() else {"rows": [], "wall_seconds": 0.0, "parts": []}
    rows, started = saved["rows"], time.perf_counter()
    command = "python -m benchmark.measure.parity " + " ".join(sys.argv[1:] if argv is None else argv)
    parts = [*saved["parts"], {"command": command, "date": time.strftime("%Y-%m-%d %H:%M")}]

    def save() -> str:
        """parity.json and the README from it, after every run: a part stopped half way loses only its current run."""
        rows.sort(key=lambda r: (r["task"], r["system"], r["precision"], r["seed"]))
        state = {"rows": rows, "wall_seconds": round(saved["wall_seconds"] + time.perf_counter() - started, 1)}
        state["parts"] = parts
        atomic_write_json(path, state)
        report = summarize(rows, state, margin)
        atomic_write_text(out / "README.md", report)
        return report

    out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        print(f"{task}: bench run, seeds {args.seeds}", flush=True)
        rows[:] = merge_bench_rows(rows, bench_rows(task, hp, args.seeds, Path(args.output), cpu), task, precision)
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
