"""The benchmarks `python -m benchmarks` runs and `report` describes."""

from __future__ import annotations

from pathlib import Path

# name -> (module, one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "overhead": ("benchmarks.overhead", "1 master + 1 worker (each algorithm) over plain model.fit, 1 thread per rank"),
    "scaling": ("benchmarks.scaling", "samples/s with 1, 2 (and 3-4 oversubscribed) processes per algorithm"),
    "ddp": ("benchmarks.ddp", "--algo allreduce on a torch.nn.Module vs PyTorch DistributedDataParallel (gloo)"),
    "master": (
        "benchmarks.master",
        "updates/s of one master per optimizer and model size, vs the memory-bandwidth bound",
    ),
    "transport": (
        "benchmarks.transport",
        "Communicator send/receive and allreduce vs raw mpi4py; CPU of a waiting rank",
    ),
    "time-to-accuracy": (
        "benchmarks.time_to_accuracy",
        "speed-up to 0.97 x one process's best accuracy and best accuracy vs one process, 2 and 4 workers per algorithm at defaults, 3 seeds",
    ),
    "backends": ("benchmarks.backends", "one process per Keras backend: mpilearn's step vs model.fit, samples/s"),
    "validation": (
        "benchmarks.validation",
        "rank-0, background and spread validation: wall time, master's share, rank 0's memory",
    ),
    "startup": (
        "benchmarks.startup",
        "launch to first batch of mpilearn train -n 3 --model calo-cnn, in parts per rank, vs import keras",
    ),
    "jitter": (
        "benchmarks.jitter",
        "a worker's per-batch compute time: its coefficient of variation, alone and with every core busy",
    ),
    "simulate": (
        "benchmarks.simulate",
        "discrete-event scaling model, 8 to 4096 workers, validated against the real runs",
    ),
    "emulate": (
        "benchmarks.emulate",
        "downpour on 8-32+ real MPI workers with emulated compute, 1 and S servers, vs the model",
    ),
}
DATA_PIPELINE = Path(__file__).resolve().parent / "data_pipeline.py"
if DATA_PIPELINE.exists():  # written separately; registered when present
    BENCHMARKS["data"] = ("benchmarks.data_pipeline", "the data pipeline")
