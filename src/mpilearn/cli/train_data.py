"""Data options of `mpilearn train` (kept apart from train.py's core options)."""
from __future__ import annotations

import argparse

from ..config import SHARD_MODES, DataConfig
from ..data.filelist import read_file_list
from ..data.options import DEFAULT_COPY_COMMAND, EVEN_POLICIES, SHUFFLE_CHUNK, SHUFFLE_WINDOW
from ..data.python_sources import is_function_spec


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--features-name", default="features",
                      help="HDF5 dataset of the inputs; a group (its datasets sorted by key) or comma-separated "
                           "datasets give a model with several inputs")
    data.add_argument("--labels-name", default="labels", help="HDF5 dataset, group or comma-separated datasets of the targets")
    data.add_argument("--sample-weights-name", default="", metavar="NAME", help="HDF5 dataset of per-sample loss weights")
    data.add_argument("--shard", default="files", choices=SHARD_MODES, help="split whole files or every file's samples among workers")
    data.add_argument("--prefetch", type=int, default=2, help="batches read ahead in a background thread")
    data.add_argument("--shuffle-chunk", type=int, default=SHUFFLE_CHUNK, metavar="N",
                      help="contiguous samples read at once; the order of chunks is shuffled every epoch")
    data.add_argument("--shuffle-window", type=int, default=SHUFFLE_WINDOW, metavar="K",
                      help="chunks whose samples are shuffled together (memory: N*K samples)")
    data.add_argument("--even-policy", default="cycle", choices=EVEN_POLICIES,
                      help="lockstep algorithms (sync, allreduce): cycle smaller shards up to the largest, "
                           "or drop what larger shards hold beyond the smallest")
    data.add_argument("--preload", action="store_true", help="read each worker's whole shard into memory before training")
    data.add_argument("--memory-limit", default="", metavar="SIZE", help="--preload: most memory a worker's shard may take (e.g. 8G)")
    data.add_argument("--cache-dir", default="", metavar="DIR", help="copy the files each node needs to this local directory ahead of use")
    data.add_argument("--copy-command", default=DEFAULT_COPY_COMMAND, metavar="TEMPLATE",
                      help="command that copies {src} to {dst} for --cache-dir (run without a shell), e.g. 'xrdcp -s {src} {dst}'")


def _files_or_function(text: str | None) -> tuple[tuple[str, ...], str]:
    """--train/--val: a file list, or path/to/file.py:function."""
    if not text:
        return (), ""
    if is_function_spec(text):
        return (), text
    return read_file_list(text), ""


def data_config(args: argparse.Namespace, train: str, val: str | None) -> DataConfig:
    train_files, train_function = _files_or_function(train)
    val_files, val_function = _files_or_function(val)
    return DataConfig(
        train_files=train_files,
        val_files=val_files,
        train_function=train_function,
        val_function=val_function,
        features_name=args.features_name,
        labels_name=args.labels_name,
        sample_weights_name=args.sample_weights_name,
        batch_size=args.batch,
        shard=args.shard,
        prefetch=args.prefetch,
        shuffle_chunk=args.shuffle_chunk,
        shuffle_window=args.shuffle_window,
        even_policy=args.even_policy,
        preload=args.preload,
        memory_limit=args.memory_limit,
        cache_dir=args.cache_dir,
        copy_command=args.copy_command,
    )
