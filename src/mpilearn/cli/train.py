"""`mpilearn train`: options -> RunConfig -> training on every rank."""
from __future__ import annotations

import argparse
import ast
import dataclasses
from typing import Any, Sequence

from ..config import ALGORITHMS, COMPRESSIONS, LOG_LEVELS, LR_SCALINGS, AlgorithmConfig, CheckpointConfig, ModelConfig, RunConfig
from ..errors import ConfigError
from .train_data import add_data_arguments, data_config
from .train_extras import add_extra_train_arguments, extra_config


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("positional", nargs="*", metavar="MODEL TRAIN_LIST VAL_LIST",
                        help="mpi_learn-style positional form: model spec, training list, validation list")
    parser.add_argument("--model", help="built-in name (see `mpilearn models`), file.py:function, .keras or Keras JSON file")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the model builder (repeatable)")
    parser.add_argument("--custom-objects", default=None, metavar="FILE.py", help="custom layers/losses/metrics for .keras and JSON models")
    parser.add_argument("--train", help="training file list (one HDF5 path a line), or path/to/file.py:function returning batches")
    parser.add_argument("--val", help="validation file list, or path/to/file.py:function")
    parser.add_argument("-n", "--processes", type=int, help="launch this many processes with mpiexec (1 master + N-1 workers)")
    parser.add_argument("--algo", default=AlgorithmConfig.name, choices=ALGORITHMS, help="training algorithm (see `mpilearn info`)")
    parser.add_argument("--epochs", type=int, default=None, help="passes over the training data (default 5)")
    parser.add_argument("--batch", type=int, default=32, help="batch size per worker")
    parser.add_argument("--optimizer", default="adam", help="any optimizer name Keras knows")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    parser.add_argument("--loss", default=None, help="Keras loss name (default: from the labels)")
    parser.add_argument("--metrics", default=None, help="comma-separated Keras metrics (default: accuracy for classification)")
    parser.add_argument("--sync-every", type=int, default=1, help="batches a worker accumulates (EASGD: local steps) before each exchange")
    algo = parser.add_argument_group("algorithm options")
    algo.add_argument("--elastic-force", type=float, default=0.9, help="EASGD moving rate beta (alpha = beta / workers)")
    algo.add_argument("--elastic-lr", type=float, default=None, help="EASGD workers' learning rate (default: --lr, else 0.01)")
    algo.add_argument("--elastic-momentum", type=float, default=0.0, help="EASGD workers' Nesterov momentum (EAMSGD when > 0)")
    algo.add_argument("--worker-optimizer", default="sgd", help="EASGD workers' optimizer")
    algo.add_argument("--synchronous", action="store_true", help="EASGD: exchange with all workers at once")
    algo.add_argument("--gem-lr", type=float, default=0.01, help="GEM proxy learning rate")
    algo.add_argument("--gem-momentum", type=float, default=0.9, help="GEM proxy momentum")
    algo.add_argument("--gem-kappa", type=float, default=1.0, help="GEM energy factor kappa")
    algo.add_argument("--compression", default="none", choices=COMPRESSIONS, help="allreduce: number format of the exchanged gradients")
    algo.add_argument("--max-staleness", type=int, default=None, help="asynchronous modes: drop updates older than this many master steps")
    algo.add_argument("--masters", type=int, default=1, help="M >= 2: a top master and M-1 sub-masters (downpour, easgd)")
    algo.add_argument("--lr-scaling", default="none", choices=LR_SCALINGS, help="scale the learning rate by the number of workers")
    algo.add_argument("--warmup-epochs", type=float, default=0.0, help="gradual learning-rate warmup (Goyal et al. 2017)")
    add_data_arguments(parser)  # data sets, shuffling, --preload, --cache-dir
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", default="", help="output directory (default: runs/<timestamp>)")
    parser.add_argument("--backend", default=None, choices=("torch", "jax", "tensorflow"), help="Keras backend (default: $KERAS_BACKEND or torch)")
    parser.add_argument("--threads", type=int, default=None, help="compute threads per rank (default: cores per node / ranks per node)")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument("--master-gpu", action="store_true", help="GPU machines: give the master a GPU too (default: CPU)")
    ckpt = parser.add_argument_group("checkpoints and failures")
    ckpt.add_argument("--checkpoint-every", type=int, default=0, metavar="E", help="write a checkpoint every E epochs")
    ckpt.add_argument("--checkpoint-every-seconds", type=float, default=0.0, metavar="S", help="write a checkpoint at the first epoch end S seconds after the last")
    ckpt.add_argument("--keep-checkpoints", type=int, default=3, metavar="K", help="checkpoints kept")
    ckpt.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    ckpt.add_argument("--skip-bad-batches", action="store_true", help="skip (and count) batches whose loss is NaN or infinite instead of stopping")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for a silent rank before stopping the job (default: adaptive)")
    parser.add_argument("--timeline", default="", metavar="FILE", help="write a Chrome-trace (Perfetto) JSON of every rank's activity")
    add_extra_train_arguments(parser)  # --config, callbacks, --validate-every, progress, --monitor


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
    if args.resume:
        return _resumed_config(args)
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
        data=data_config(args, train, val),
        model=ModelConfig(
            spec=model,
            model_args=_model_args(args.model_arg),
            custom_objects=args.custom_objects,
            optimizer=args.optimizer,
            learning_rate=args.lr,
            loss=args.loss,
            metrics=metrics,
        ),
        algorithm=AlgorithmConfig(
            name=args.algo,
            sync_every=args.sync_every,
            elastic_force=args.elastic_force,
            elastic_lr=args.elastic_lr,
            elastic_momentum=args.elastic_momentum,
            worker_optimizer=args.worker_optimizer,
            synchronous=args.synchronous,
            gem_lr=args.gem_lr,
            gem_momentum=args.gem_momentum,
            gem_kappa=args.gem_kappa,
            compression=args.compression,
            max_staleness=args.max_staleness,
            masters=args.masters,
            lr_scaling=args.lr_scaling,
            warmup_epochs=args.warmup_epochs,
        ),
        epochs=args.epochs if args.epochs is not None else 5,
        seed=args.seed,
        run_dir=args.run_dir,
        backend=args.backend,
        threads=args.threads,
        log_level=args.log_level,
        timeline=args.timeline,
        **extra_config(args),
        timeout=args.timeout,
        skip_bad_batches=args.skip_bad_batches,
        master_gpu=args.master_gpu,
        checkpoint=CheckpointConfig(
            every_epochs=args.checkpoint_every,
            every_seconds=args.checkpoint_every_seconds,
            keep=args.keep_checkpoints,
        ),
    )


def _resumed_config(args: argparse.Namespace) -> RunConfig:
    """The saved configuration of RUN_DIR; --epochs, --threads, --timeout and
    --log-level given now still apply (more epochs, another machine)."""
    import json
    from pathlib import Path

    from ..checkpoint import latest

    run_dir = Path(args.resume)
    try:
        saved = json.loads((latest(run_dir) / "state.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--resume {run_dir}: the latest checkpoint has no readable configuration ({exc})") from None
    config = RunConfig.from_dict(saved)
    changes: dict[str, Any] = {"run_dir": str(run_dir), "threads": args.threads, "timeout": args.timeout, "log_level": args.log_level}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    return config.replace(**changes, checkpoint=dataclasses.replace(config.checkpoint, resume=True))
