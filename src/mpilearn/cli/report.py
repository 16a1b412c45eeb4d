"""`mpilearn report RUN_DIR [RUN_DIR ...] [--out DIR]`: plots and a summary."""

from __future__ import annotations

import argparse


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories (several: curves overlaid to compare), or a search directory",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where the PNGs and summary.txt go (default: the run directory; RUN_DIR/compare for several)",
    )


def report(args: argparse.Namespace) -> int:
    from ..optional import require
    from ..report import write_report

    require("report", "mpilearn report (its plots)")
    written = write_report(args.run_dirs, args.out)
    for path in written:
        print(path)
    print((written[-1]).read_text(), end="")
    return 0
