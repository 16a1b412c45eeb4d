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
    from .main import main

    with tempfile.TemporaryDirectory(prefix="mpilearn-demo-") as tmp:
        data = Path(tmp)
        status = main(["make-data", str(data), "--files", str(DEMO_FILES), "--val-files", "1",
                       "--events-per-file", str(DEMO_EVENTS), "--shape", DEMO_SHAPE, "--seed", "1"])
        if status:
            return status
        argv = ["train", "--model", "calo-cnn", "--train", str(data / "train.txt"), "--val", str(data / "val.txt"),
                "--epochs", str(args.epochs), "-n", str(args.processes)]
        from ..rundir import default_run_dir

        run_dir = args.run_dir or default_run_dir()
        argv += ["--run-dir", run_dir, "--timeline", str(Path(run_dir) / "timeline.json"), "--monitor"]
        status = main(argv)
        if status == 0:
            print(f"plots of this run: mpilearn report {run_dir}")
        return status
