"""GPU check: the bench trainer (DeepSpeed, no Ray) and Hugging Face `Trainer` on the same card, same process.

    python -m benchmark.measure.gpu --out results/gpu

Needs only torch, transformers, deepspeed and this repository (no Ray, no network, no GLUE data): the
models are a BERT-base-sized random BERT (12 layers, hidden 768, built here, so no weights are needed) and
the embedded all-MiniLM-L6-v2; the data is a synthetic task whose every example fills `--max-seq-length`
tokens, so FLOPs per sample are exact. Each system trains `--epochs` epochs at batch `--batch-size` in bf16
(bench: DeepSpeed bf16 ZeRO-2; Trainer: bf16 autocast); the last epoch's training samples/s is reported, with
model FLOPs utilisation against the card's dense bf16 peak:
    FLOPs per sample = T * (6 N + 12 L H T)   (N non-embedding parameters, L layers, H hidden, T tokens)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from benchmark.common.quiet import quiet_libraries
from benchmark.measure import write_report
from benchmark.train.hyperparams import TrainingConfig
from benchmark.train.modeling import embedded_model_path, load_tokenizer, save_random_bert
from tasks.user import user_task_from_decl

# Dense bf16 peak, FLOP/s, by the name torch reports.
PEAK_BF16 = {
    "H200": 989.4e12,
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989.4e12,
    "GH200": 989.4e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
}


def card_peak(name: str) -> float | None:
    for key, peak in PEAK_BF16.items():  # longest names first where they overlap (H100 PCIe before H100)
        if key in name:
            return peak
    return None


def synthetic_task(folder: Path, examples: int, dev: int, words: int, seed: int = 0):
    """A two-class user task of long random sentences: truncation makes every example exactly max length."""
    vocab = [w for w in load_tokenizer(embedded_model_path()).get_vocab() if w.isalpha() and len(w) > 2]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", examples), ("dev", dev)):
        rows = ["text,label"] + [f"{' '.join(rng.choices(vocab, k=words))},{rng.choice('ab')}" for _ in range(n)]
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    decl = {
        "name": "synthetic",
        "train": str(folder / "train.csv"),
        "validation": str(folder / "dev.csv"),
        "text_columns": ["text"],
        "labels": ["a", "b"],
    }
    return user_task_from_decl(decl, "synthetic", folder, set())


def flops_per_sample(model_path: str, tokens: int) -> float:
    # Imported here for start-up speed (transformers).
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_path)
    model = AutoModel.from_config(config)
    embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    n = sum(p.numel() for p in model.parameters()) - embedding
    return tokens * (6 * n + 12 * config.num_hidden_layers * config.hidden_size * tokens)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models",
        nargs="+",
        default=["bert-base-random", "embedded"],
        help="bert-base-random, embedded, or model folders",
    )
    p.add_argument("--systems", nargs="+", default=["bench", "trainer"], choices=["bench", "trainer"])
    p.add_argument("--examples", type=int, default=8192)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--zero-stage", type=int, default=2, choices=[0, 1, 2])
    p.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: by name)")
    p.add_argument("--out", default="results/gpu")
    return p.parse_args(argv)


def main(argv=None) -> int:
    # Imported here for start-up speed (torch).
    import torch

    args = parse_args(argv)
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else card_peak(card)
    rows = measure(args, peak)
    command = "python -m benchmark.measure.gpu " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# GPU check: bench trainer vs Hugging Face Trainer",
        "",
        f"Command: `{command}`",
        "",
        f"Date {time.strftime('%Y-%m-%d')}; card: {card}; dense bf16 peak "
        f"{peak / 1e12 if peak else float('nan'):.0f} TFLOP/s; torch {torch.__version__}; batch {args.batch_size}, "
        f"length {args.max_seq_length} (every example full), bf16, bench ZeRO-{args.zero_stage}; "
        f"{args.examples} synthetic examples x {args.epochs} epochs, last epoch's throughput.",
        "",
        "| model | system | train samples/s | model TFLOP/s | MFU | eval samples/s | peak GPU memory GB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "-"
        mem = f"{r['peak_memory_gb']:.1f}" if r["peak_memory_gb"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['system']} | {r['train_samples_per_s']:.0f} | {r['tflops']:.1f} | {mfu} | "
            f"{r['eval_samples_per_s']:.0f} | {mem} |"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.json").write_text(json.dumps(rows, indent=2))
    write_report(args.out, "\n".join(lines) + "\n")
    return 0


def measure(args: argparse.Namespace, peak: float | None) -> list[dict]:
    """Each model trained by each system; a row of throughput, MFU and memory each."""
    # Imported here for start-up speed (torch).
    import torch

    # Imported here for start-up speed (torch).
    from benchmark.measure.parity import run_bench, run_hf_trainer

    quiet_libraries()
    hp = TrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_seq_length=args.max_seq_length,
        precision="bf16",
        zero_stage=args.zero_stage,
        warmup_ratio=0.1,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = Path(tmp)
        task = synthetic_task(work / "data", args.examples, 512, words=2 * args.max_seq_length)
        for name in args.models:
            if name == "bert-base-random":
                path = str(save_random_bert(work / "bert-base", hidden=768, layers=12, heads=12, intermediate=3072))
            else:
                path = embedded_model_path() if name == "embedded" else name
            flops = flops_per_sample(path, args.max_seq_length)
            for system in args.systems:
                print(f"{name}: {system}", flush=True)
                run = run_bench if system == "bench" else run_hf_trainer
                started = time.perf_counter()
                r = run(task, path, hp, 42, None, work / "cache", work / f"{name}-{system}")
                last = r["epoch_train_samples_per_s"][-1]
                rows.append(
                    {
                        "model": name,
                        "system": system,
                        "train_samples_per_s": last,
                        "eval_samples_per_s": r["eval_samples_per_s"],
                        "tflops": last * flops / 1e12,
                        "mfu": last * flops / peak if peak else None,
                        "wall_seconds": time.perf_counter() - started,
                        "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30
                        if torch.cuda.is_available()
                        else None,
                    }
                )
                print("  " + json.dumps(rows[-1]), flush=True)
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()
    return rows


if __name__ == "__main__":
    sys.exit(main())
