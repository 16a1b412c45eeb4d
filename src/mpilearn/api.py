"""`mpilearn.fit`: distributed training with the feel of `Model.fit`.

Run the same script on every rank (`mpiexec -n 3 python train.py`): rank 0
becomes the master, the others workers. The model is compiled by the user as
usual; its optimizer, loss and metrics are the ones used.
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any, Sequence

from . import options as option_table
from .data.filelist import resolve_files
from .errors import ConfigError

if TYPE_CHECKING:
    from .fit_result import History


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


def fit(
    model: Any,
    train: Any,
    validation: Any = None,
    *,
    callbacks: Sequence[Any] | None = None,
    comm: Any = None,
    **options: Any,
) -> History:
    """Train `model` on every rank of the MPI job, like `model.fit`; returns a Keras `History`.

    Run the same script on every rank: `mpiexec -n 3 python train.py` (rank 0
    is the master, the others workers). Compile the model first, as for
    `Model.fit`: its optimizer, loss and metrics are the ones used.

    The returned `History` has `history.history` (`loss` and each `val_*`
    per epoch), `history.epoch`, `history.model`, `history.run_dir` (default
    `runs/<timestamp>`, announced by rank 0 when training starts) and, as a
    dict, the history.json record (`history["epochs"]`, `history["samples_seen"]`).

    `train` and `validation` take a file-list path, an HDF5 path, a list of
    HDF5 paths, numpy arrays `(x, y)` or `(x, y, sample_weight)` (x and y may
    be lists or dicts of arrays for several inputs or outputs), a
    `keras.utils.PyDataset`, or a function returning one worker's batches for
    one epoch (called with `worker_index`, `num_workers`, `epoch`, `seed` as
    far as it takes them). Batches are re-cut to `batch_size`. Arrays are
    split among workers by sample. When this returns, the model on every rank
    holds the trained central weights, and rank 0 has written history.json and
    model.keras into `run_dir`.

    `callbacks` are Keras callbacks run on rank 0 with the central model, as
    in `Model.fit` (EarlyStopping, ModelCheckpoint, CSVLogger, TensorBoard,
    ReduceLROnPlateau, TerminateOnNaN, your own); when one stops training,
    every rank stops. `comm` is the mpilearn Communicator to train on
    (default: every rank of the job).

    The other keyword arguments are the training options of `mpilearn train`
    under their field names (`batch_size`, `algorithm`, `sync_every`, ...),
    with the same defaults; they are listed below.
    """
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        raise ConfigError("mpilearn.fit needs a compiled model: call model.compile(optimizer, loss, metrics) first")
    train_files, train_data = _split(train, "train")
    val_files, val_data = _split(validation, "validation")
    values = option_table.keyword_values(options)
    if isinstance(train_data, tuple):  # arrays are one part: only a split by sample gives every worker some
        if options.get("shard", "samples") != "samples":
            raise ConfigError(
                f"shard={options['shard']!r} splits HDF5 files among workers; arrays are split by sample "
                "(leave shard out or give shard='samples')"
            )
        values[("data", "shard")] = "samples"
    values.update(
        {
            ("data", "train_files"): train_files,
            ("data", "val_files"): val_files,
            ("model", "spec"): f"<{type(model).__name__} {getattr(model, 'name', '')}>",
        }
    )
    config = option_table.build(values)
    from .startup import start_ranks
    from .training import train as run

    from .fit_result import History

    comm = start_ranks(config, comm, before_keras=False)
    record = run(
        config, model=model, train_arrays=train_data, validation_arrays=val_data, callbacks=callbacks, comm=comm
    )
    return History(record, model)


fit.__signature__ = option_table.fit_signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, **extra)
        for name, extra in (("model", {}), ("train", {}), ("validation", {"default": None}))
    ],
    [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in ("callbacks", "comm")],
)
fit.__doc__ = (fit.__doc__ or "") + "\n" + option_table.fit_doc()
