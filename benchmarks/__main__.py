"""`python -m benchmarks NAME [options]` (also `mpilearn bench NAME`).

Each benchmark measures in subprocesses with pinned threads, repeats its
cases side by side, writes benchmarks/results/NAME.json (plus a dated copy in
results/runs/) and prints a one-line summary. `report` turns the results into
docs/benchmarks.md; `simulate` is the scaling model.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import common
from .registry import BENCHMARKS


def _parser(selected: str | None) -> argparse.ArgumentParser:
    """Only the selected benchmark's module is imported (for its options), so a
    broken or slow-to-import benchmark never stands in the way of the others."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="name", required=True, metavar="NAME")
    for name, (_, text) in BENCHMARKS.items():
        # "resolve": a benchmark's own --out or --quick replaces the harness's.
        sub = commands.add_parser(name, help=text, description=text, conflict_handler="resolve")
        sub.add_argument("--quick", action="store_true", help="a short smoke run (not a measurement)")
        sub.add_argument("--out", default="", help=f"result JSON (default: benchmarks/results/{name}.json)")
        sub.add_argument(
            "--nice",
            type=int,
            default=0,
            help="niceness of the measured processes (negative, as root: most of a busy shared machine)",
        )
        if name == selected:
            add = getattr(_module(name), "add_arguments", None)
            if add is not None:
                add(sub)
    report = commands.add_parser("report", help="write docs/benchmarks.md from benchmarks/results/*.json")
    report.add_argument("--out", default=str(common.ROOT / "docs" / "benchmarks.md"))
    report.add_argument("--readme-table", action="store_true", help="print the scaling table of README.md instead")
    commands.add_parser("list", help="the benchmarks and their descriptions")
    return parser


def _module(name: str) -> Any:
    return importlib.import_module(BENCHMARKS[name][0])


def run_benchmark(name: str, args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Run one benchmark and wrap its result with what the report needs."""
    started, load_before = time.time(), common.load()
    print(f"{name}: starting (load {' '.join(map(str, load_before))}, {common.cores()} cores)", flush=True)
    threads = getattr(args, "threads", None) or 1
    for variable in common.THREAD_VARIABLES:  # benchmarks that measure in this process
        os.environ.setdefault(variable, str(threads))
    common.NICE = getattr(args, "nice", 0) or 0
    module = _module(name)
    result = module.run(args)
    if "rows" not in result:
        result["rows"] = _rows_of_models(result)
    wrapped = {
        "benchmark": name,
        "command": "python -m benchmarks " + shlex.join(list(argv)),
        "date": common.now(),
        "duration_s": round(time.time() - started, 1),
        "quick": bool(getattr(args, "quick", False)),
        "nice": common.NICE,
        "machine": common.machine(),
        "load_before": load_before,
        "load_after": common.load(),
        **result,
    }
    summarize = getattr(module, "summarize", None)
    wrapped["summary"] = result.get("summary") or (
        summarize(result) if summarize else common.summary_of(name, wrapped["rows"])
    )
    return wrapped


def _rows_of_models(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows of a result in the data-pipeline layout: per model a
    `ratio` {median, min, max} against a numeric `target`."""
    rows = []
    target = result.get("target")
    for entry in result.get("models", []):
        ratio = entry.get("ratio") or {}
        values = entry.get("passes", {})
        row = {
            "metric": "HDF5 / in-memory samples/s",
            "group": entry.get("model", ""),
            "unit": "ratio",
            "target": f">= {target}" if isinstance(target, (int, float)) else None,
            "median": ratio.get("median"),
            "min": ratio.get("min"),
            "max": ratio.get("max"),
            "n": len(values.get("hdf5", [])) or None,
        }
        row["met"] = common.meets(row["median"], row["target"])
        if row["median"]:
            row["rel_spread"] = (row["max"] - row["min"]) / 2 / abs(row["median"])
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    args = _parser(selected).parse_args(argv)
    if args.name == "list":
        for name, (_, text) in BENCHMARKS.items():
            print(f"{name:18s} {text}")
        print(f"{'report':18s} write docs/benchmarks.md from benchmarks/results/*.json")
        return 0
    if args.name == "report":
        from .report import readme_table, write_report

        if args.readme_table:
            print(readme_table())
            return 0
        path = write_report(Path(args.out))
        print(f"wrote {path}")
        return 0
    try:
        result = run_benchmark(args.name, args, argv)
    except common.BenchmarkError as error:
        print(f"benchmark {args.name} failed: {error}", file=sys.stderr)
        return 1
    path = common.write_result(args.name, result, Path(args.out) if args.out else None)
    print(result["summary"])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
