"""Entry point of the `mpilearn` command."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .. import env
from ..errors import MpilearnError
from .launch_options import add_launch_arguments
from .options import CommandParser
from .train import add_train_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="mpilearn", description="Distributed training of Keras models over MPI.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(commands.add_parser("train", help="train a model on HDF5 files"))
    from .optimize import add_optimize_arguments

    add_optimize_arguments(commands.add_parser("optimize", help="distributed hyperparameter search with Optuna"))

    data = commands.add_parser("make-data", help="write synthetic calorimeter-shower HDF5 files")
    data.add_argument("outdir")
    data.add_argument("--files", type=int, default=4, help="training files")
    data.add_argument("--val-files", type=int, default=1, help="validation files")
    data.add_argument("--events-per-file", type=int, default=500)
    data.add_argument("--shape", default="25,25,25", help="D,H,W of the calorimeter")
    data.add_argument("--classes", type=int, default=3, help="particle types")
    data.add_argument("--seed", type=int, default=0)

    demo = commands.add_parser(
        "demo", help="train the calorimeter CNN on a small synthetic data set, 1 master + 2 workers"
    )
    demo.add_argument("-n", "--processes", type=int, default=3)
    demo.add_argument("--epochs", type=int, default=5)
    demo.add_argument("--run-dir", default="", help="output directory (default: runs/<timestamp>)")
    add_launch_arguments(demo)
    demo.add_argument(
        "--data-dir", default="data/demo", help="where the demo data are written once and kept (default: data/demo)"
    )

    commands.add_parser("models", help="list the built-in models")
    from .info import add_info_arguments
    from .report import add_report_arguments

    add_report_arguments(commands.add_parser("report", help="plots and a summary of one or more run directories"))
    add_info_arguments(
        commands.add_parser("info", help="versions of MPI, mpi4py, Keras and the backend, and the rank layout")
    )
    bench = commands.add_parser("bench", help="run a benchmark: python -m benchmarks NAME (needs a source checkout)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="NAME [options]")
    return parser


def _report(error: BaseException, rank: int | None) -> None:
    from ..interrupt import Interrupted

    where = "" if rank is None else f" on rank {rank}"
    kind = "" if isinstance(error, Interrupted) else "error"  # a stop the user asked for is no error
    print(f"mpilearn: {kind}{where}{': ' if kind or where else ''}{error}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:  # everything after it belongs to `python -m benchmarks`
        return _bench(arguments[1:])
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "config", None):  # --config FILE: the file's options, overridden by the command line
            from .config_file import reparse_with_file

            if args.command == "optimize":
                from .optimize import add_optimize_arguments as build
            else:
                build = add_train_arguments
            args = reparse_with_file(args, list(sys.argv[1:] if argv is None else argv), build)
        if args.command == "models":
            from ..models import describe_builtins

            for name, summary in describe_builtins():
                print(f"{name:12s} {summary}")
            return 0
        if args.command == "make-data":
            from .make_data import make_data

            return make_data(args)
        if args.command == "report":
            from .report import report

            return report(args)
        if args.command == "info":
            from .info import info

            return info(args)
        if args.command == "demo":
            from .demo import demo

            return demo(args)
        if args.command == "optimize":
            from .optimize import optimize

            return optimize(args, list(sys.argv[1:] if argv is None else argv))
        from .train import train

        return train(args, list(sys.argv[1:] if argv is None else argv))
    except MpilearnError as error:
        # Errors raised identically on every rank are reported once, by rank 0.
        rank = env.launcher_rank()
        if not getattr(error, "collective", False) or rank in (None, 0):
            _report(error, None)
        return error.exit_status
    except BrokenPipeError:
        # `mpilearn info | head`: the reader left. Quietly, as other command-line tools do; stdout goes to
        # /dev/null so that Python's own flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _bench(arguments: list[str]) -> int:
    """`mpilearn bench NAME ...`: run `python -m benchmarks NAME ...` from the
    source checkout. benchmarks/ lives beside src/, outside the package, so
    an installed wheel does not have it."""
    import subprocess
    from pathlib import Path

    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / "benchmarks" / "__main__.py").is_file():
            return subprocess.call([sys.executable, "-m", "benchmarks", *arguments], cwd=root)
    print(
        "mpilearn bench: benchmarks/ is not here: it is part of the source checkout, not of the installed package; "
        "clone the repository and run `mpilearn bench NAME` (or `python -m benchmarks NAME`) inside it",
        file=sys.stderr,
    )
    return 2
