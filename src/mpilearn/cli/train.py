"""`mpilearn train`: options -> RunConfig -> training on every rank.

The training options are generated from the fields of config.py (see
options.py); this module adds the few that belong to the command line only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from .. import env, options
from ..config import RunConfig
from ..data.filelist import HDF5_SUFFIXES, resolve_files
from ..data.python_sources import is_function_spec
from ..errors import ConfigError
from .launch_options import add_launch_arguments, launch_hosts, processes_to_launch, without_launch_options
from .options import add_option_arguments


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "positional",
        nargs="*",
        metavar="MODEL TRAIN_LIST VAL_LIST",
        help="mpi_learn-style positional form: model spec, training list, validation list (default: none)",
    )
    parser.add_argument(
        "--train",
        help="training data: a file list (one HDF5 path a line), an HDF5 file, a quoted glob "
        "('data/*.h5'), or path/to/file.py:function returning batches (required)",
    )
    parser.add_argument("--val", help="validation data, in the forms of --train (default: none, no validation)")
    parser.add_argument(
        "-n",
        "--processes",
        type=int,
        help="launch this many processes with mpiexec (1 master + N-1 workers) "
        "(default: none, the ranks of the current launcher)",
    )
    add_launch_arguments(parser)  # --mpiexec, --hosts, --hostfile
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its latest checkpoint (default: none)",
    )
    files = parser.add_argument_group("configuration files")
    files.add_argument(
        "--config",
        metavar="FILE",
        help="read options from a TOML, YAML or JSON file; command-line flags win (default: none)",
    )
    files.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration (JSON) and exit (default: off)"
    )
    add_option_arguments(parser)


def _files_or_function(text: str | None, option: str) -> tuple[tuple[str, ...], str]:
    """--train/--val: a file list, an HDF5 file, a glob of HDF5 files, or path/to/file.py:function."""
    if not text:
        return (), ""
    if is_function_spec(text):
        return (), text
    return resolve_files(text, option), ""


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if args.resume:
        return _resumed_config(args)
    given = dict(vars(args))
    if args.positional:
        if given.get("train") and any(Path(p).suffix.lower() in HDF5_SUFFIXES for p in args.positional):
            raise ConfigError(
                "--train and --val take one argument each: quote a glob so that mpilearn expands it "
                "(--train 'data/*.h5'), or list the files in a text file"
            )
        if len(args.positional) != 3:
            raise ConfigError("the positional form is: mpilearn train MODEL TRAIN_LIST VAL_LIST")
        for key, value in zip(("model", "train", "val"), args.positional):
            given[key] = given.get(key) or value
    if not given.get("model"):
        raise ConfigError("--model is required (see `mpilearn models`)")
    if not given.get("train"):
        raise ConfigError("--train is required: a file listing the training HDF5 files")
    if args.processes is not None and args.processes < 1:
        raise ConfigError(f"-n must be a positive integer, got {args.processes}")
    values = options.command_line_values(given)
    train_files, train_function = _files_or_function(given["train"], "--train")
    val_files, val_function = _files_or_function(given.get("val"), "--val")
    values.update(
        {
            ("data", "train_files"): train_files,
            ("data", "train_function"): train_function,
            ("data", "val_files"): val_files,
            ("data", "val_function"): val_function,
        }
    )
    config = options.build(values)
    from ..optional import require_for_run

    require_for_run(config)  # backend, --tensorboard, --monitor: before any process starts
    return config


# What a resumed run may change: how it runs, not what it trains (shown in --resume's refusal).
RESUME_MAY_CHANGE = {
    "": (
        "epochs",
        "threads",
        "timeout",
        "log_level",
        "quiet",
        "progress",
        "monitor",
        "timeline",
        "master_gpu",
        "skip_bad_batches",
        "validate_every",
        "background_validation",
    ),
    "algorithm": ("servers",),  # checkpoints hold the whole vector's optimizer state, cut again for any S
    "checkpoint": ("every_epochs", "every_seconds", "keep"),
    "callbacks": ("early_stopping", "patience", "target_metric", "target_op", "target_value", "tensorboard"),
    "data": ("prefetch", "preload", "memory_limit", "cache_dir", "copy_command"),
}


def _resumed_config(args: argparse.Namespace) -> RunConfig:
    """The saved configuration of RUN_DIR, with the options of RESUME_MAY_CHANGE
    given now applied. Any other option given must equal the saved value (a
    requeue script may repeat the whole first command), else it is refused:
    never silently ignored."""
    import json
    from pathlib import Path

    from ..checkpoint import latest

    run_dir = Path(args.resume)
    try:
        saved = json.loads((latest(run_dir) / "state.json").read_text())["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--resume {run_dir}: the latest checkpoint has no readable configuration ({exc})") from None
    config = RunConfig.from_dict(saved)
    given = {k: v for k, v in vars(args).items() if k not in ("resume", "run_dir")}
    values = options.command_line_values(given)
    flags = {(o.section, o.name): o.flag for o in options.cli_options()}
    changes: dict[tuple[str, str], Any] = {}
    for (section, name), value in values.items():
        current = getattr(getattr(config, section) if section else config, name)
        if name in RESUME_MAY_CHANGE.get(section, ()):
            changes[(section, name)] = value
        elif _differs(value, current):
            raise ConfigError(
                f"--resume {run_dir}: {flags.get((section, name), name)} {_shown(value)} differs from the run's "
                f"{_shown(current)}; a resumed run keeps what it trains (it may change --epochs, --threads, "
                "--timeout, --log-level, --servers, progress, checkpoint, callback and data-reading options)"
            )
    for option, name in (("--train", "train_files"), ("--val", "val_files")):
        text = getattr(args, option[2:], None)
        if text and _files_or_function(text, option)[0] != getattr(config.data, name):
            raise ConfigError(f"--resume {run_dir}: {option} {text} names other files than the run's")
    if args.run_dir and Path(args.run_dir).resolve() != run_dir.resolve():
        raise ConfigError(f"--resume {run_dir}: --run-dir {args.run_dir} is another directory (leave it out)")
    resumed = options.build(changes, config) if changes else config
    return resumed.replace(run_dir=str(run_dir), checkpoint=dataclasses.replace(resumed.checkpoint, resume=True))


def _differs(value: Any, current: Any) -> bool:
    if isinstance(current, tuple) and isinstance(value, (list, tuple)):
        return tuple(value) != current
    return bool(value != current)


def _shown(value: Any) -> str:
    if value is None:
        return "default"
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _print_chosen(config: RunConfig, processes: int) -> None:
    """What "auto" options become with this many processes, and why (on stderr: stdout stays the JSON)."""
    from ..algorithms import defaults
    from ..comm.topology import Topology

    topology = Topology(processes, config.algorithm.masters, peers_only=not config.algorithm.has_master)
    _, reasons = defaults.resolve(config, topology.num_workers, config.model.optimizer)  # a name: no Keras import
    for reason in reasons or ("no option depends on the number of workers here",):
        print(f"with -n {processes}: {reason}", file=sys.stderr)


def train(args: argparse.Namespace, argv: list[str]) -> int:
    """`mpilearn train`: relaunch under mpiexec for -n, else start this rank and train."""
    config = config_from_args(args)  # bad options fail here, before any process starts
    if args.print_config:
        import json

        print(json.dumps(config.to_dict(), indent=2))
        _print_chosen(config, args.processes or 1)
        return 0
    if config.checkpoint.resume:
        from ..checkpoint import finished_message

        done = finished_message(config)  # a requeued job whose run already ended: no ranks to start
        if done:
            if env.launcher_rank() in (None, 0):
                print(done, flush=True)
            return 0
    status = self_launch(args, argv)
    if status is not None:
        return status
    from ..startup import start_ranks

    comm = start_ranks(config)
    import keras  # noqa: F401  # here, to be timed apart: most of a rank's start-up

    from .. import startup_times

    startup_times.mark("keras")
    from ..training import train as run

    run(config, comm=comm)  # a failure on one rank aborts every rank (errors.abort_job)
    return 0


def self_launch(args: argparse.Namespace, argv: list[str]) -> int | None:
    """With -n N > 1 (or --hosts) outside any launcher: run this command on N
    ranks under mpiexec and return its status; None: run here."""
    hosts = launch_hosts(args)
    processes = processes_to_launch(args, hosts)
    if not processes or env.under_mpi_launcher() or (processes == 1 and not hosts):
        return None
    from ..launch import relaunch

    return relaunch(processes, without_launch_options(argv), args.mpiexec, hosts)
