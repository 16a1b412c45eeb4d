"""`mpilearn demo`: a small synthetic data set and a 3-process training run."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

# Small enough to finish in a few minutes on 2 cores, large enough to learn.
DEMO_FILES = 4
DEMO_EVENTS = 500
DEMO_SHAPE = "25,25,25"
# Kept after the run (written once, reused), so the printed paths stay valid
# for a first training of one's own: mpilearn train --train data/demo/train.txt ...
DEMO_DATA = Path("data") / "demo"


def command(name: str = "mpilearn") -> str:
    """How to call this installation's `mpilearn` from here: the bare name
    when it is on PATH (an activated venv), else its path."""
    script = Path(sys.executable).parent / name
    if shutil.which(name) and Path(shutil.which(name) or "").resolve() == script.resolve():
        return name
    try:
        return os.path.relpath(script)
    except ValueError:
        return str(script)


def demo(args: argparse.Namespace) -> int:
    from ..optional import available
    from .make_data import make_data
    from .options import CommandParser
    from .train import add_train_arguments, train

    data = Path(args.data_dir)
    if not ((data / "train.txt").is_file() and (data / "val.txt").is_file()):
        status = make_data(
            argparse.Namespace(
                outdir=str(data),
                files=DEMO_FILES,
                val_files=1,
                events_per_file=DEMO_EVENTS,
                shape=DEMO_SHAPE,
                classes=3,
                seed=1,
            )
        )
        if status:
            return status
    else:
        print(f"using the demo data of an earlier run in {data} (delete it to write it again)")
    from ..rundir import default_run_dir

    run_dir = args.run_dir or default_run_dir()
    argv = [
        "--model",
        "calo-cnn",
        "--train",
        str(data / "train.txt"),
        "--val",
        str(data / "val.txt"),
        "--epochs",
        str(args.epochs),
        "-n",
        str(args.processes),
        "--run-dir",
        run_dir,
        "--timeline",
        str(Path(run_dir) / "timeline.json"),
    ]
    for option in ("mpiexec", "hosts", "hostfile"):
        if getattr(args, option, None):
            argv += [f"--{option}", getattr(args, option)]
    if available("psutil"):
        argv.append("--monitor")
    parser = CommandParser(prog="mpilearn train")
    add_train_arguments(parser)
    status = train(parser.parse_args(argv), ["train", *argv])
    if status == 0:
        report = f"{command()} report {run_dir}"
        if not available("matplotlib"):
            report = f"pip install 'mpilearn[report]', then {report}"
        print(
            f"plots of this run: {report}\n"
            f"train on the demo data yourself: {command()} train --model calo-cnn --train {data / 'train.txt'} "
            f"--val {data / 'val.txt'} --epochs 2 -n 3"
        )
    return status
