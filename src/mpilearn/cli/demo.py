"""`mpilearn demo`: a small synthetic data set and a 3-process training run."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

# Small enough to finish in a few minutes on 2 cores, large enough to learn.
DEMO_FILES = 4
DEMO_EVENTS = 500
DEMO_SHAPE = "25,25,25"


def demo(args: argparse.Namespace) -> int:
    from .make_data import make_data
    from .options import CommandParser
    from .train import add_train_arguments, train

    with tempfile.TemporaryDirectory(prefix="mpilearn-demo-") as tmp:
        data = Path(tmp)
        status = make_data(argparse.Namespace(outdir=str(data), files=DEMO_FILES, val_files=1, events_per_file=DEMO_EVENTS,
                                              shape=DEMO_SHAPE, classes=3, seed=1))
        if status:
            return status
        from ..rundir import default_run_dir

        run_dir = args.run_dir or default_run_dir()
        argv = ["--model", "calo-cnn", "--train", str(data / "train.txt"), "--val", str(data / "val.txt"),
                "--epochs", str(args.epochs), "-n", str(args.processes),
                "--run-dir", run_dir, "--timeline", str(Path(run_dir) / "timeline.json"), "--monitor"]
        for option in ("mpiexec", "hosts", "hostfile"):
            if getattr(args, option):
                argv += [f"--{option}", getattr(args, option)]
        parser = CommandParser(prog="mpilearn train")
        add_train_arguments(parser)
        status = train(parser.parse_args(argv), ["train", *argv])
        if status == 0:
            print(f"plots of this run: mpilearn report {run_dir}")
        return status
