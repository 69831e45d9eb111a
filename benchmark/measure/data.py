"""What is in the data bench benchmarks on: the data report (`bench data`) of GLUE's five smaller tasks, CoNLL-2003
and SQuAD, with what of it matters for a reported score.

    python -m benchmark.measure.data --out results/data
    python -m benchmark.measure.data --out results/data --from-records   # the README again from its records

Reads every row of configs/data.yaml's tasks (no caps), under the embedded model's tokenizer, and writes
`records/data_report.json` (every count, with the rows of each finding) and the README from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmark.common.atomic import atomic_write_json
from benchmark.common.hardware import machine_description
from benchmark.config.suite import load_suite
from benchmark.measure import code_line, write_report
from benchmark.run.data import as_json, as_markdown, data_reports, from_json

SUITE = "configs/data.yaml"


def share(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,} ({100 * part / whole:.1f}%)" if whole else "0"


def what_matters(reports: dict) -> list[str]:
    """Which findings can move a reported score, and why, from the counts."""
    by = {task: {r.split: r for r in splits} for task, splits in reports.items()}
    lines = ["## What matters for a reported score", ""]
    for task in ("stsb", "cola", "rte", "mrpc"):
        train, dev = by[task]["train"], by[task]["validation"]
        o = train.overlap["validation"]
        texts = dev.rows * (2 if task != "cola" else 1)
        lines.append(
            f"- {task}: {share(o.rows, dev.rows)} dev rows are training rows ({o.near_rows} more within the near "
            f"threshold), and {share(o.texts, texts)} dev sentences are a sentence of some training row."
        )
    lines += [
        "",
        "A dev row that is also a training row is scored on an example the model was fitted to, so a dev (or GLUE-"
        "dev-as-test) score is optimistic by up to that share of the rows; these shares are small. A shared "
        "sentence matters more for a bi-encoder, which embeds each sentence alone (`pair_encoding: bi`), than for "
        "a cross-encoder, which sees the pair: for a bi-encoder these dev sentences were trained on. RTE's and "
        "MRPC's are premises and news sentences that recur in new pairs. All of these are GLUE's own splits, so "
        "published scores carry the same overlap: they are comparable with bench's rows, not clean held-out "
        "estimates.",
        "",
    ]
    rte_train, rte_dev = by["rte"]["train"], by["rte"]["validation"]
    lines.append(
        f"- Truncation: at max_seq_length {rte_train.max_seq_length}, RTE cuts "
        f"{share(rte_train.truncated, rte_train.rows)} training pairs and "
        f"{share(rte_dev.truncated, rte_dev.rows)} dev pairs (the premise's end, where the "
        f"evidence may be): this can cost RTE points; 99% of its training pairs fit in {rte_train.lengths['p99']} "
        "tokens. No other GLUE task here is cut at this length."
    )
    sst2 = by["sst2"]["train"]
    lines += [
        f"- Duplicates within train (SST-2: {share(sst2.duplicate_inputs, sst2.rows)} rows repeat an input, "
        f"and {sst2.conflicting} inputs carry both labels; its {sst2.near_duplicates:,} near duplicates are SST-2's "
        "phrases, sub-spans of its sentences, by construction) weight those examples more in training; they do "
        "not touch a dev score directly. Conflicting labels are label noise at these counts "
        f"(CoLA {by['cola']['train'].conflicting}, STS-B {by['stsb']['train'].conflicting} inputs with two scores).",
        f"- Mojibake (STS-B: {by['stsb']['train'].mojibake} training and {by['stsb']['validation'].mojibake} dev "
        f"rows, RTE: {rte_train.mojibake} and {rte_dev.mojibake}) turns an apostrophe into three odd tokens: a "
        "small cost, which `ftfy` would undo.",
    ]
    conll = by.get("conll2003", {})
    if "train" in conll:
        o = conll["train"].overlap
        lines.append(
            "- CoNLL-2003: "
            + " and ".join(f"{share(v.rows, conll[s].rows)} {s} sentences" for s, v in o.items())
            + " are training sentences: datelines (`LONDON 1996-08-30`) and table headings (`Scorers :`), whose "
            "entities are easy and seen; they lift entity F1 a little, as in every published CoNLL-2003 score."
        )
    squad = by.get("squad", {})
    if "train" in squad:
        rows = {s: r.rows for s, r in squad.items()}
        o = squad["train"].overlap
        lines.append(
            f"- SQuAD, carved by article ({', '.join(f'{s} {n:,}' for s, n in rows.items())} questions): "
            + "; ".join(f"{s}: {v.rows} questions and {v.texts:,} texts also in train" for s, v in o.items())
            + " (a context is a text, once per question): the article split keeps every paragraph on one side. Its "
            "near duplicates are questions on one paragraph (the context dominates the shingles), and its "
            "'truncated' counts questions longer than one window, which QA reads in several (doc_stride)."
        )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/data")
    parser.add_argument("--from-records", action="store_true", help="rebuild the README from records/ only")
    args = parser.parse_args(argv)
    out, suite = Path(args.out), load_suite(SUITE)
    records = out / "records" / "data_report.json"
    if args.from_records:
        saved = json.loads(records.read_text())
    else:
        started = time.time()
        saved = {**as_json(suite, data_reports(suite)), "seconds": round(time.time() - started, 1),
                 "machine": machine_description(), "date": time.strftime("%Y-%m-%d"), "code": code_line()}  # fmt: skip
        atomic_write_json(records, saved)
    reports = from_json(saved)
    lines = [
        "# Data: what is in GLUE's five smaller tasks, CoNLL-2003 and SQuAD",
        "",
        f"Command: `python -m benchmark.measure.data --out {args.out}` (the table: `bench data {SUITE}`), from "
        "records/data_report.json.",
        "",
        f"{saved['code']} Read in {saved['seconds']} s on {saved['machine']['cpu']}, {saved['date']}; every row, no "
        "caps. GLUE's splits as GLUE ships them: train, and the dev set GLUE rows report on.",
        "",
        as_markdown(suite, reports).split("\n", 2)[2].rstrip(),
        "",
        *what_matters(reports),
    ]
    write_report(str(out), "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
