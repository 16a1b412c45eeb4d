"""`mpilearn train`: options -> RunConfig -> training on every rank."""
from __future__ import annotations

import argparse
import ast
from typing import Any, Sequence

from ..config import ALGORITHMS, LOG_LEVELS, SHARD_MODES, AlgorithmConfig, DataConfig, ModelConfig, RunConfig
from ..data.filelist import read_file_list
from ..errors import ConfigError


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("positional", nargs="*", metavar="MODEL TRAIN_LIST VAL_LIST",
                        help="mpi_learn-style positional form: model spec, training list, validation list")
    parser.add_argument("--model", help="built-in name (see `mpilearn models`), file.py:function, .keras or Keras JSON file")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the model builder (repeatable)")
    parser.add_argument("--train", help="training file list (one HDF5 path a line)")
    parser.add_argument("--val", help="validation file list")
    parser.add_argument("-n", "--processes", type=int, help="launch this many processes with mpiexec (1 master + N-1 workers)")
    parser.add_argument("--algo", default="downpour", choices=ALGORITHMS, help="training algorithm")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32, help="batch size per worker")
    parser.add_argument("--optimizer", default="adam", help="any optimizer name Keras knows")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    parser.add_argument("--loss", default=None, help="Keras loss name (default: from the labels)")
    parser.add_argument("--metrics", default=None, help="comma-separated Keras metrics (default: accuracy for classification)")
    parser.add_argument("--sync-every", type=int, default=1, help="batches a worker accumulates before each exchange")
    parser.add_argument("--features-name", default="features", help="HDF5 dataset of the inputs")
    parser.add_argument("--labels-name", default="labels", help="HDF5 dataset of the targets")
    parser.add_argument("--shard", default="files", choices=SHARD_MODES, help="split whole files or every file's samples among workers")
    parser.add_argument("--prefetch", type=int, default=2, help="batches read ahead in a background thread")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="", help="output directory (default: runs/<timestamp>)")
    parser.add_argument("--backend", default=None, choices=("torch", "jax", "tensorflow"), help="Keras backend (default: $KERAS_BACKEND or torch)")
    parser.add_argument("--threads", type=int, default=None, help="compute threads per rank (default: cores per node / ranks per node)")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)


def _model_args(pairs: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    parsed = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--model-arg must be KEY=VALUE, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word is a string
        parsed.append((key, value))
    return tuple(parsed)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    model, train, val = args.model, args.train, args.val
    if args.positional:
        if len(args.positional) != 3:
            raise ConfigError("the positional form is: mpilearn train MODEL TRAIN_LIST VAL_LIST")
        model, train, val = model or args.positional[0], train or args.positional[1], val or args.positional[2]
    if not model:
        raise ConfigError("--model is required (see `mpilearn models`)")
    if not train:
        raise ConfigError("--train is required: a file listing the training HDF5 files")
    if args.processes is not None and args.processes < 1:
        raise ConfigError(f"-n must be a positive integer, got {args.processes}")
    metrics = tuple(m for m in args.metrics.split(",") if m) if args.metrics is not None else None
    return RunConfig(
        data=DataConfig(
            train_files=read_file_list(train),
            val_files=read_file_list(val) if val else (),
            features_name=args.features_name,
            labels_name=args.labels_name,
            batch_size=args.batch,
            shard=args.shard,
            prefetch=args.prefetch,
        ),
        model=ModelConfig(
            spec=model,
            model_args=_model_args(args.model_arg),
            optimizer=args.optimizer,
            learning_rate=args.lr,
            loss=args.loss,
            metrics=metrics,
        ),
        algorithm=AlgorithmConfig(name=args.algo, sync_every=args.sync_every),
        epochs=args.epochs,
        seed=args.seed,
        run_dir=args.run_dir,
        backend=args.backend,
        threads=args.threads,
        log_level=args.log_level,
    )
