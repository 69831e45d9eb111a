"""The `bench` command. Exit codes: 0 done, 2 bad input (one line on stderr, nothing started), 1 anything else."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from benchmark.common.errors import InputError, one_line
from benchmark.common.paths import check_writable_dir
from benchmark.common.quiet import quiet_libraries
from benchmark.config.ensemble import METHODS, EnsembleConfig, check_ensemble
from benchmark.config.statistics import check_equivalence_margin
from benchmark.train.modeling import load_tokenizer, resolve_model
from tasks.augment import Augmentation
from tasks.glue import GLUE_TASKS
from tasks.registry import REGISTRY
from tasks.spec import TaskType, Windowing


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other input error
        print(f"bench: error: {message} (see bench --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bench",
        description="Fine-tune BERT-family encoders on GLUE and your tasks; search, ensemble and publish the results.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _suite_commands(sub)
    _results_commands(sub)
    _checkpoint_commands(sub)
    _other_commands(sub)
    return parser


def _suite_commands(sub) -> None:
    """`bench run` and `bench validate`: the commands that take a suite."""
    run = sub.add_parser("run", help="run a suite and write its leaderboard")
    run.add_argument("suite", help="the suite YAML file")
    run.add_argument("--output", help="run directory (overrides the suite's `output`)")
    run.add_argument(
        "--address",
        help="join this Ray cluster (auto, or ray://host:10001) instead of starting Ray locally; default: "
        "$RAY_ADDRESS where it is set",
    )
    run.add_argument("--dry-run", action="store_true", help="print the trial plan and resources, then exit")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a suite key, e.g. --set training.epochs=1 (repeatable)",
    )

    validate = sub.add_parser("validate", help="check a suite (keys, types, tasks, data, model) without running it")
    validate.add_argument("suite")
    validate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    data = sub.add_parser("data", help="what is in each task's data (duplicates, overlaps, lengths); changes nothing")
    data.add_argument("suite")
    data.add_argument("--output", help="where data_report.json and .md go (default: the suite's output folder)")
    data.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")


def _results_commands(sub) -> None:
    """`bench table` and `bench report`: leaderboards of run directories."""
    table = sub.add_parser("table", help="the leaderboard of one or more run directories (their trials merged)")
    table.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    table.add_argument("--format", choices=["md", "csv", "latex", "html", "json"], default="md")
    _statistics_options(table)
    table.add_argument(
        "--calibration",
        action="store_true",
        help="add calibration columns per classification task: ECE, ECE after temperature scaling, NLL, Brier and "
        "the temperature",
    )
    table.add_argument(
        "--compute",
        action="store_true",
        help="add compute columns: device-hours, training samples/s, parameters, inference passes",
    )

    report = sub.add_parser(
        "report",
        help="write one self-contained HTML report (tables, statistics, plots) of "
        "one or more run directories (their trials merged)",
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--output", help="the HTML file to write (default: the first RUN_DIR/report.html)")
    _statistics_options(report)


def _checkpoint_commands(sub) -> None:
    """`bench predict` and `bench ensemble`: what a finished run's checkpoints make."""
    predict = sub.add_parser("predict", help="write GLUE submission files from the best checkpoint of each task")
    predict.add_argument("run_dir", metavar="RUN_DIR")
    predict.add_argument(
        "--split",
        choices=["test"],
        default="test",
        help="the split to predict: the tasks' unlabelled test splits (GLUE's test.tsv files)",
    )
    predict.add_argument("--output", help="folder for the files (default: RUN_DIR/submission)")
    predict.add_argument(
        "--system",
        help="the leaderboard row whose checkpoints predict (its name or a unique part of "
        "it); default: the best row with checkpoints",
    )

    ensemble = sub.add_parser(
        "ensemble",
        help="combine a finished run's checkpoints (prediction ensembles and weight "
        "soups) and add them to its leaderboard",
    )
    ensemble.add_argument("run_dir", metavar="RUN_DIR")
    ensemble.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="mean_prob, vote, greedy, soup_uniform, soup_greedy (default: the suite's "
        "ensemble.methods, else all five)",
    )
    ensemble.add_argument(
        "--k",
        nargs="+",
        type=int,
        metavar="K",
        help="candidate pools: the top K checkpoints of each task by selection-half score, one "
        "ensemble per K (default: the suite's ensemble.k, else every checkpoint)",
    )
    ensemble.add_argument(
        "--split-seed",
        type=int,
        help="seed of the selection/report split of each dev set (default: the suite's ensemble.split_seed)",
    )


def _other_commands(sub) -> None:
    """`bench trial` (one trial without Ray), `bench tasks` and `bench models`."""
    trial = sub.add_parser("trial", help="run one trial of a suite in this process, without Ray (for debugging)")
    trial.add_argument("suite")
    trial.add_argument(
        "--task",
        required=True,
        help="a task of the suite, or 'multitask' for its joint trial "
        "(each task's export then lands in OUTPUT/<task>/checkpoint)",
    )
    trial.add_argument("--seed", type=int, help="default: the suite's first seed")
    trial.add_argument("--output", required=True, help="folder for the best checkpoint and the epoch metrics")
    trial.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a suite key; pick a grid value with e.g. --set training.learning_rate=5e-5",
    )

    sub.add_parser("tasks", help="list the registry tasks bench knows (GLUE, SuperGLUE, NER)")
    models = sub.add_parser(
        "models",
        help="list the encoder families bench knows; with model folders, what bench finds in each (family, layers, "
        "parameters, tokenizer, whether freezing and LoRA apply)",
    )
    models.add_argument("folders", nargs="*", metavar="FOLDER", help="a model folder ('default': the embedded model)")


def _statistics_options(parser) -> None:
    # Imported here for start-up speed (numpy, yaml).
    from benchmark.results.bootstrap import LEVEL, LEVELS, MAX_RESAMPLES, RESAMPLES
    from benchmark.results.statistics import CORRECTION, CORRECTIONS

    parser.add_argument(
        "--baseline",
        metavar="SYSTEM",
        help="the row every other row is tested against (its name, or a unique part of it); default: for each "
        "row, the best single-model row scored on the same dev examples",
    )
    parser.add_argument(
        "--bootstrap",
        type=_positive_int,
        metavar="N",
        help="bootstrap resamples for intervals and tests (default: enough for the table's smallest corrected p "
        f"to fall below 0.01, {RESAMPLES} to {MAX_RESAMPLES})",
    )
    parser.add_argument(
        "--bootstrap-level",
        choices=LEVELS,
        default=LEVEL,
        help="what a resample draws: a row's seeds and the dev examples (a row with one seed: the examples), or "
        f"the dev examples only (default {LEVEL})",
    )
    parser.add_argument(
        "--correction",
        choices=CORRECTIONS,
        default=CORRECTION,
        help="correction for multiple comparisons over all the table's tests: Holm, Benjamini-Hochberg or none "
        f"(default {CORRECTION})",
    )
    parser.add_argument(
        "--equivalence-margin",
        type=float,
        metavar="M",
        help="score points (0-100): also test every compared pair for equivalence within ±M (TOST); default: the "
        "suite's statistics.equivalence_margin, else none",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except InputError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine refused (a full disk, a folder that became unwritable): not the input
        print(f"bench: error: {one_line(f'{e.filename}: {e.strerror}' if e.filename else str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Shutting Ray down takes seconds: a second Ctrl-C skips it.
        signal.signal(signal.SIGINT, _exit_now)
        print(
            "bench: interrupted; finished trials are kept in the run directory, and the same command resumes",
            file=sys.stderr,
            flush=True,
        )
        return 130


def _exit_now(*_) -> None:
    """Exit at once, and take the local Ray cluster this process started along (its processes ignore Ctrl-C)."""
    # Imported here for start-up speed (psutil).
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            child.kill()
        except psutil.Error:
            pass
    os._exit(130)


def _run(args) -> int:
    # Imported here for start-up speed (numpy, rich, yaml).
    from benchmark.config.suite import load_suite
    from benchmark.run.runner import run_suite

    quiet_libraries()
    suite = load_suite(args.suite, args.set, output=args.output)
    for warning in suite.warnings:
        print(warning, file=sys.stderr)
    run_suite(suite, address=args.address, dry_run=args.dry_run)
    return 0


def _validate(args) -> int:
    # Imported here for start-up speed (numpy, rich, yaml).
    from benchmark.config.suite import load_suite
    from benchmark.plan.points import grid_points
    from benchmark.plan.trials import make_plan
    from benchmark.run.runner import check_data, make_console, print_estimate

    quiet_libraries()
    suite = load_suite(args.suite, args.set)
    for warning in suite.warnings:
        print(warning, file=sys.stderr)
    check_writable_dir(suite.output, "output")
    check_data(suite)
    plan = make_plan(suite)
    kinds = {k: sum(t.kind == k for t in plan) for k in ("multitask", "two-stage", "chain")}
    extra = "".join(f", {n} {k}" for k, n in kinds.items() if n)
    print(
        f"{args.suite}: valid; {len(plan)} trials ({len(suite.models)} model(s) x {len(suite.tasks)} task(s) x "
        f"{len(grid_points(suite.config.search.grid))} grid point(s) x "
        f"{len(suite.config.search.seeds)} seed(s){extra}); "
        f"output {suite.output}"
    )
    print_estimate(make_console(), suite, plan, calibrate=False)  # cached calibrations only: validate stays quick
    return 0


def _data(args) -> int:
    # Imported here for start-up speed (datasets, numpy, rich, transformers, yaml).
    from benchmark.config.suite import load_suite
    from benchmark.run.data import data_reports, data_table, write_data_report
    from benchmark.run.runner import check_data, make_console

    quiet_libraries()
    suite = load_suite(args.suite, args.set, output=args.output)
    check_writable_dir(suite.output, "--output" if args.output else "output")
    check_data(suite)
    reports = data_reports(suite)
    console = make_console()
    console.print(data_table(suite, reports))
    console.print(f"Data report: {write_data_report(suite.output, suite, reports)}")
    return 0


def _table(args) -> int:
    # Imported here for start-up speed (numpy, yaml).
    from benchmark.results.board import leaderboard_from_runs
    from benchmark.results.tables import FORMATTERS

    margin = check_equivalence_margin(args.equivalence_margin, "--equivalence-margin")
    board, _ = leaderboard_from_runs(
        [Path(d) for d in args.run_dirs], args.baseline, args.bootstrap, args.correction, args.bootstrap_level, margin
    )
    sys.stdout.write(FORMATTERS[args.format](board, compute=args.compute, calibration=args.calibration))
    return 0


def _report(args) -> int:
    # Imported here for start-up speed (numpy, yaml).
    from benchmark.results.report import write_report

    margin = check_equivalence_margin(args.equivalence_margin, "--equivalence-margin")
    path = write_report(
        [Path(d) for d in args.run_dirs],
        Path(args.output) if args.output else None,
        args.baseline,
        args.bootstrap,
        args.correction,
        args.bootstrap_level,
        margin,
    )
    print(f"Report: {path}")
    return 0


def _predict(args) -> int:

    # Imported here for start-up speed (numpy, torch, yaml).
    from benchmark.results.submission import missing_for_glue, write_submission

    quiet_libraries()
    folder, written = write_submission(Path(args.run_dir), Path(args.output) if args.output else None, args.system)
    print(f"Submission files in {folder}: {', '.join(written) or 'none'}")
    missing = missing_for_glue(written)
    if missing:
        print(
            f"GLUE's server expects all of its files in one zip; "
            f"not made here: {', '.join(m + '.tsv' for m in missing)}"
        )
    return 0


def _ensemble(args) -> int:

    # Imported here for start-up speed (numpy, rich, torch, yaml).
    from benchmark.config.suite import load_suite
    from benchmark.records.lock import run_lock
    from benchmark.records.store import SUITE_FILE, RunStore
    from benchmark.results.final_scores import score_ensembles_on_test
    from benchmark.results.tables import rich_table
    from benchmark.run.runner import make_console, write_run_leaderboard
    from ensembles.build import build_ensembles

    quiet_libraries()
    store = RunStore(Path(args.run_dir))
    store.read_suite()  # refuses a folder that is not a run directory
    suite = load_suite(store.root / SUITE_FILE)  # the run's own suite: its data, tasks and ensemble section
    defaults = suite.config.ensemble
    config = EnsembleConfig(
        methods=args.methods or defaults.methods or list(METHODS),
        k=args.k if args.k is not None else defaults.k,
        split_seed=args.split_seed if args.split_seed is not None else defaults.split_seed,
    )
    settings = check_ensemble(config, where="ensemble", base_models=len(suite.models))
    console = make_console()
    with run_lock(store.root):  # it writes into the run: never beside a `bench run` on the same directory
        build_ensembles(store, suite, settings, log=console.print)
        score_ensembles_on_test(store, log=console.print)
        board = write_run_leaderboard(store)
    console.print(rich_table(board))
    console.print(f"Leaderboard: {store.root / 'leaderboard.md'}")
    return 0


def _trial(args) -> int:

    # Imported here for start-up speed (numpy, torch, yaml).
    from benchmark.config.suite import load_suite
    from benchmark.plan.trials import selection_seed
    from benchmark.train.local import run_local_trial

    quiet_libraries()
    suite = load_suite(args.suite, args.set)
    for warning in suite.warnings:
        print(warning, file=sys.stderr)
    tasks = {t.name: t for t in suite.tasks}
    joint = args.task == "multitask" and suite.mixture is not None
    if args.task not in tasks and not joint:
        raise InputError(
            "--task",
            f"'{args.task}' is not one of the suite's tasks ({', '.join(tasks)})"
            + (" or multitask" if suite.mixture else ""),
        )

    model, hp = suite.models[0], suite.config.training
    tokenizer = load_tokenizer(model.path, suite.config.trust_remote_code)
    seed = args.seed if args.seed is not None else suite.config.search.seeds[0]
    if suite.config.trust_remote_code:
        # Imported here for start-up speed (numpy, rich, yaml).
        from benchmark.run.runner import TRUST_WARNING

        print(TRUST_WARNING, file=sys.stderr)
    if joint:
        return _joint_trial(args, suite, tokenizer, seed)
    result = run_local_trial(
        hp,
        model.path,
        seed,
        _encoded(suite, tokenizer, args.task),
        Path(args.output),
        suite.config.trust_remote_code,
        log_every_steps=suite.config.search.log_every_steps,
        selection_seed=selection_seed(suite),
    )
    print(
        f"best epoch {result.best_epoch}: score {result.best_score:.2f}; "
        f"checkpoint in {Path(args.output) / 'checkpoint'}"
    )
    return 0


def _joint_trial(args, suite, tokenizer, seed: int) -> int:
    """`bench trial --task multitask`: the suite's joint trial, without Ray."""
    # Imported here for start-up speed (numpy, torch, yaml).
    from benchmark.plan.trials import selection_seed
    from benchmark.train.local import run_local_multitask_trial

    result = run_local_multitask_trial(
        suite.config.training,
        suite.models[0].path,
        seed,
        {t: _encoded(suite, tokenizer, t) for t in suite.mixture.tasks},
        suite.mixture,
        Path(args.output),
        suite.config.trust_remote_code,
        selection_seed=selection_seed(suite),
    )
    best = ", ".join(f"{t} {result.best_scores[t]:.2f} (epoch {result.best_epochs[t]})" for t in suite.mixture.tasks)
    print(
        f"best mean score {result.best_score:.2f} (epoch {result.best_epoch}); per task: {best}; "
        f"checkpoints in {Path(args.output)}/<task>/checkpoint"
    )
    return 0


def _encoded(suite, tokenizer, task: str):
    """One task of the suite tokenised as its trials see it (from the cache when done before)."""
    # Imported here for start-up speed (numpy, yaml).
    from benchmark.config.suite import cache_dir
    from tasks.encoding import encode_task
    from tasks.loading import resolve_glue_dir

    data, hp = suite.config.data, suite.config.training
    return encode_task(
        {t.name: t for t in suite.tasks}[task],
        tokenizer,
        hp.max_seq_length,
        resolve_glue_dir(data.glue_dir, data.data_dir),
        cache_dir(suite),
        data.train_cap(task),
        data.max_eval_samples,
        data.sample_seed,
        Augmentation.of(hp.to_dict()),
        windowing=Windowing.of(hp.to_dict()),
        pair_encoding=hp.pair_encoding,
    )


def _tasks(args) -> int:
    for name, t in {**GLUE_TASKS, **REGISTRY}.items():
        count = {TaskType.TAGGING: "tags", TaskType.MULTIPLE_CHOICE: "choices"}.get(t.type, "classes")
        kind = "regression" if t.is_regression else f"{t.type.value}, {len(t.label_names)} {count}"
        print(f"{name:9s} {kind:26s} metrics: {', '.join(t.metric_keys())}")
    return 0


def _models(args) -> int:
    # Imported here for start-up speed (numpy).
    from benchmark.train.model_info import family_lines, model_lines

    quiet_libraries()
    if not args.folders:
        print("\n".join(family_lines()))
    refs = [resolve_model(None if f == "default" else f, where=f"models[{i}]") for i, f in enumerate(args.folders)]
    for ref in refs:  # every folder checked before any is described
        print("\n".join(model_lines(ref)))
    return 0


COMMANDS = {
    "run": _run,
    "validate": _validate,
    "data": _data,
    "table": _table,
    "report": _report,
    "predict": _predict,
    "ensemble": _ensemble,
    "trial": _trial,
    "tasks": _tasks,
    "models": _models,
}


if __name__ == "__main__":
    sys.exit(main())
