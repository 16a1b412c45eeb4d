"""`mpilearn.fit`: distributed training with the feel of `Model.fit`.

Run the same script on every rank (`mpiexec -n 3 python train.py`): rank 0
becomes the master, the others workers. The model is compiled by the user as
usual; its optimizer, loss and metrics are the ones used.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from .config import AlgorithmConfig, DataConfig, ModelConfig, RunConfig
from .data.filelist import resolve_files
from .data.options import DEFAULT_COPY_COMMAND, SHUFFLE_CHUNK, SHUFFLE_WINDOW
from .errors import ConfigError



def _is_pydataset(data: Any) -> bool:
    from .data.python_sources import is_pydataset as check  # h5py and keras load only when fit is called

    return check(data)


def _split(data: Any, what: str) -> tuple[tuple[str, ...], Any]:
    """A data argument -> (HDF5 files, None) or ((), the Python data: arrays
    (x, y[, sample_weight]), a keras.utils.PyDataset or a batch function)."""
    if data is None:
        return (), None
    if isinstance(data, tuple) and len(data) in (2, 3) and not any(isinstance(a, (str, os.PathLike)) for a in data):
        return (), data
    if callable(data) or _is_pydataset(data):
        return (), data
    return resolve_files(data, what), None


def _shard(shard: str, train: Any) -> str:
    """Arrays are one part, shared by sample; a batch function shards itself."""
    if train is None or _is_pydataset(train):
        return shard
    return "files" if callable(train) else "samples"


def fit(
    model: Any,
    train: Any,
    validation: Any = None,
    *,
    epochs: int = 1,
    batch_size: int = 32,
    algorithm: str = AlgorithmConfig.name,
    sync_every: int = 1,
    seed: int = 0,
    run_dir: str | os.PathLike = "",
    features_name: str = "features",
    labels_name: str = "labels",
    shard: str = "files",
    prefetch: int = 2,
    sample_weights_name: str = "",
    even_policy: str = "cycle",
    shuffle_chunk: int = SHUFFLE_CHUNK,
    shuffle_window: int = SHUFFLE_WINDOW,
    preload: bool = False,
    memory_limit: str = "",
    cache_dir: str | os.PathLike = "",
    copy_command: str = DEFAULT_COPY_COMMAND,
    threads: int | None = None,
    callbacks: Sequence[Any] | None = None,
    validate_every: int = 0,
    background_validation: bool = False,
    progress: str = "auto",
    quiet: bool = False,
    monitor: bool = False,
    timeline: str | os.PathLike = "",
    log_level: str = "info",
) -> dict[str, Any]:
    """Train `model` on every rank of the MPI job; returns the history.

    `train` and `validation` take a file-list path, an HDF5 path, a list of
    HDF5 paths, numpy arrays `(x, y)` or `(x, y, sample_weight)` (x and y may
    be lists or dicts of arrays for several inputs or outputs), a
    `keras.utils.PyDataset`, or a function returning one worker's batches for
    one epoch (called with `worker_index`, `num_workers`, `epoch`, `seed` as
    far as it takes them). Batches are re-cut to `batch_size`. The data
    options (`preload`, `cache_dir`, `even_policy`, ...) are those of
    `mpilearn train` (see the README). When this returns, the
    model on every rank holds the trained central weights, and rank 0 has
    written history.json and model.keras into `run_dir`.

    `callbacks` are Keras callbacks run on rank 0 with the central model, as
    in `Model.fit` (EarlyStopping, ModelCheckpoint, CSVLogger, TensorBoard,
    ReduceLROnPlateau, TerminateOnNaN, your own); when one stops training,
    every rank stops. `validate_every` validates every N master updates too;
    `background_validation` validates in a thread so workers never wait;
    `progress` is "auto" (a bar on a terminal, else log lines), "bar" or
    "lines"; `monitor` samples CPU and memory of every rank into monitor.json;
    `timeline` writes a Chrome-trace JSON of every rank's activity.
    """
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        raise ConfigError("mpilearn.fit needs a compiled model: call model.compile(optimizer, loss, metrics) first")
    train_files, train_arrays = _split(train, "train")
    val_files, val_arrays = _split(validation, "validation")
    config = RunConfig(
        data=DataConfig(
            train_files=train_files,
            val_files=val_files,
            features_name=features_name,
            labels_name=labels_name,
            sample_weights_name=sample_weights_name,
            batch_size=batch_size,
            shard=_shard(shard, train_arrays),  # type: ignore[arg-type]
            prefetch=prefetch,
            shuffle_chunk=shuffle_chunk,
            shuffle_window=shuffle_window,
            even_policy=even_policy,  # type: ignore[arg-type]
            preload=preload,
            memory_limit=memory_limit,
            cache_dir=str(cache_dir),
            copy_command=copy_command,
        ),
        model=ModelConfig(spec=f"<{type(model).__name__} {getattr(model, 'name', '')}>"),
        algorithm=AlgorithmConfig(name=algorithm, sync_every=sync_every),
        epochs=epochs,
        seed=seed,
        run_dir=str(run_dir),
        threads=threads,
        validate_every=validate_every,
        background_validation=background_validation,
        progress=progress,
        quiet=quiet,
        monitor=monitor,
        timeline=str(timeline),
        log_level=log_level,
    )
    from .training import train as run

    return run(config, model=model, train_arrays=train_arrays, validation_arrays=val_arrays, callbacks=callbacks)
