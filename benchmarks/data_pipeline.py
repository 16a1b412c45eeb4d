"""Does a worker wait for its data? Worker throughput with the samples read
from HDF5 files (chunk-wise shuffle, read-ahead thread) against the same
worker with its shard already in memory (--preload), side by side.

Both modes train the same model on the same files in the same sample order
through the real pipeline (data.pipeline.WorkerData) and the real backend
step (gradients, then the model's optimizer), with one compute thread, as
one worker of a job does. Repeats alternate the two modes so that a busy
machine slows both alike; the ratio of each repeat's pair is reported with
its median and spread.

    python benchmarks/data_pipeline.py --out data_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

NAME = "data-pipeline"
SUMMARY = "worker samples/s with data from HDF5 vs in memory (target: HDF5 >= 95% of memory)"
TARGET = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="calo-cnn,mlp", help="comma-separated built-in models")
    parser.add_argument("--shape", default="25,25,25", help="calorimeter D,H,W of the synthetic showers")
    parser.add_argument("--files", type=int, default=4, help="training files")
    parser.add_argument("--events-per-file", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", default="calo-cnn=1,mlp=4", help="epochs per timed pass, MODEL=N,... or one number")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes of each mode")
    parser.add_argument("--prefetch", type=int, default=2, help="batches read ahead (--prefetch)")
    parser.add_argument(
        "--shuffle-chunk", type=int, default=None, help="--shuffle-chunk (default: the training default)"
    )
    parser.add_argument(
        "--shuffle-window", type=int, default=None, help="--shuffle-window (default: the training default)"
    )
    parser.add_argument("--threads", type=int, default=1, help="compute threads")
    parser.add_argument(
        "--data-dir", default="", help="reuse or write the synthetic files here (default: a temporary directory)"
    )
    parser.add_argument("--out", default="", help="write the results as JSON to this file")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (not a measurement)")


def _epochs(text: str, model: str) -> int:
    if "=" not in text:
        return int(text)
    values = dict(item.split("=", 1) for item in text.split(","))
    return int(values.get(model, 1))


def _data(args: argparse.Namespace, directory: Path) -> list[str]:
    from mpilearn.data.filelist import read_file_list
    from mpilearn.data.synthetic import ShowerSpec, write_dataset

    listing = directory / "train.txt"
    if not listing.exists():
        shape = tuple(int(v) for v in args.shape.split(","))
        write_dataset(
            directory, ShowerSpec(files=args.files, val_files=0, events_per_file=args.events_per_file, shape=shape)
        )
    return list(read_file_list(listing))


def _model(name: str, signature: Any) -> Any:
    import keras

    from mpilearn import backends, models

    keras.utils.set_random_seed(0)
    model = models.build_model(name, signature.sample_shape, signature.label_shape[0])
    models.compile_model(model, "adam", 1e-3, "categorical_crossentropy", ())
    return backends.for_model(model)


def _timed_pass(backend: Any, reader: Any, first_epoch: int, epochs: int) -> tuple[float, float]:
    """Samples per second of `epochs` epochs of a worker's loop (batch, gradients, optimizer
    step), in wall time and in CPU time of the whole process (compute and reading threads)."""
    import numpy as np

    grads = np.zeros(backend.layout.num_trainable, dtype=np.float32)
    samples = 0
    start, cpu = time.perf_counter(), time.process_time()
    for epoch in range(first_epoch, first_epoch + epochs):
        for batch in reader.epoch(epoch):
            grads[:] = 0.0
            backend.accumulate_gradients(batch.x, batch.y, grads)
            backend.apply_gradients(grads)
            samples += batch.size
    return samples / (time.perf_counter() - start), samples / (time.process_time() - cpu)


def _reading_ms(readers: dict[str, Any], epochs: range) -> dict[str, dict[str, float]]:
    """Milliseconds per batch of the data side alone (no compute, nothing to overlap with): what
    the read-ahead thread must hide behind each batch's compute. Stable on a busy machine."""
    times: dict[str, list[float]] = {mode: [] for mode in readers}
    for epoch in epochs:
        for mode, reader in readers.items():
            start, batches = time.perf_counter(), 0
            for _ in reader.epoch(epoch):
                batches += 1
            times[mode].append((time.perf_counter() - start) * 1000 / batches)
    return {mode: _spread(v) for mode, v in times.items()}


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _bench_model(args: argparse.Namespace, name: str, files: list[str]) -> dict[str, Any]:
    from mpilearn.config import DataConfig
    from mpilearn.data.pipeline import WorkerData
    from mpilearn.data.sources import Hdf5Source

    source = Hdf5Source(files)
    backend = _model(name, source.signature)
    epochs = _epochs(args.epochs, name)
    shuffle = {k: v for k, v in (("shuffle_chunk", args.shuffle_chunk), ("shuffle_window", args.shuffle_window)) if v}
    readers = {
        mode: WorkerData(
            source,
            DataConfig(batch_size=args.batch, prefetch=args.prefetch, preload=mode == "memory", **shuffle),
            seed=0,
            workers=1,
            index=0,
            epochs=1 + 2 * args.repeats * epochs,
        )
        for mode in ("memory", "hdf5")
    }
    inline = {  # the same data without the read-ahead thread, for the data side alone
        mode: WorkerData(
            source,
            DataConfig(batch_size=args.batch, prefetch=0, preload=mode == "memory", **shuffle),
            seed=0,
            workers=1,
            index=0,
            epochs=3,
        )
        for mode in ("memory", "hdf5")
    }
    rates: dict[str, list[float]] = {"memory": [], "hdf5": []}
    cpu_rates: dict[str, list[float]] = {"memory": [], "hdf5": []}
    try:
        for mode in rates:  # warm-up: kernels, allocator, page cache
            _timed_pass(backend, readers[mode], 0, 1)
        for repeat in range(args.repeats):
            order = ("memory", "hdf5") if repeat % 2 == 0 else ("hdf5", "memory")
            for mode in order:
                wall, cpu = _timed_pass(backend, readers[mode], 1 + repeat * epochs, epochs)
                rates[mode].append(wall)
                cpu_rates[mode].append(cpu)
        reading = _reading_ms(inline, range(3))
    finally:
        for reader in (*readers.values(), *inline.values()):
            reader.close()
    ratios = [h / m for h, m in zip(rates["hdf5"], rates["memory"])]
    # Samples per CPU-second count the reading work even where it overlaps the compute: on a
    # busy machine (no core free for the reading thread) this ratio is the load-robust figure,
    # and a lower bound of the wall-time ratio on a worker with a core to spare.
    cpu_ratios = [h / m for h, m in zip(cpu_rates["hdf5"], cpu_rates["memory"])]
    return {
        "model": name,
        "sample_shape": list(source.signature.sample_shape),
        "samples_per_epoch": sum(source.counts),
        "epochs_per_pass": epochs,
        "memory_samples_per_s": _spread(rates["memory"]),
        "hdf5_samples_per_s": _spread(rates["hdf5"]),
        "ratio": _spread(ratios),
        "ratio_of_medians": statistics.median(rates["hdf5"]) / statistics.median(rates["memory"]),
        "cpu_ratio": _spread(cpu_ratios),
        "cpu_passes": {"memory": cpu_rates["memory"], "hdf5": cpu_rates["hdf5"]},
        "passes": {"memory": rates["memory"], "hdf5": rates["hdf5"]},
        "compute_ms_per_batch": 1000 * args.batch / statistics.median(rates["memory"]),
        "reading_ms_per_batch": reading,
        "meets_target": statistics.median(ratios) >= TARGET,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every model in both modes; the result is JSON-ready."""
    if getattr(args, "quick", False):  # `python -m benchmarks ... --quick`: a smoke run, not a measurement
        args.shape, args.events_per_file, args.repeats, args.epochs = "12,12,12", 100, 1, "1"
    os.environ.setdefault("KERAS_BACKEND", "torch")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from mpilearn import backends

    backends.set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="mpilearn-bench-") as scratch:
        directory = Path(args.data_dir or scratch)
        files = _data(args, directory)
        results = [_bench_model(args, name, files) for name in args.models.split(",") if name]
    return {
        "benchmark": NAME,
        "target": TARGET,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "func")},
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "models": results,
    }


def summarize(result: dict[str, Any]) -> str:
    """One line: each model's HDF5/memory throughput ratio (median and range)."""
    parts = []
    for m in result["models"]:
        r = m["ratio"]
        parts.append(
            f"{m['model']} {r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}] cpu {m['cpu_ratio']['median']:.3f} "
            f"({m['hdf5_samples_per_s']['median']:.0f}/{m['memory_samples_per_s']['median']:.0f} samples/s, "
            f"reading {m['reading_ms_per_batch']['hdf5']['median']:.1f} ms vs compute {m['compute_ms_per_batch']:.0f} ms a batch)"
        )
    verdict = "ok" if all(m["meets_target"] for m in result["models"]) else "BELOW TARGET"
    return f"{NAME}: HDF5/memory throughput " + "; ".join(parts) + f" -> {verdict} (target {result['target']:.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/data_pipeline.py", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(summarize(result))
    return 0 if all(m["meets_target"] for m in result["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
