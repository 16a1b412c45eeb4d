"""`mpilearn optimize`: a distributed hyperparameter search with Optuna.

Takes every option of `mpilearn train` (the base of each trial) plus the
search options below, and launches itself under mpiexec with -n like train.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .. import env
from ..errors import ConfigError
from ..hpo.config import PRUNERS, SAMPLERS, SearchConfig
from .train import add_train_arguments, config_from_args, self_launch


def _claim_option(parser: argparse.ArgumentParser, option: str) -> None:
    """Take `option` over from a training option of the same name (for
    example a checkpoint `--resume RUN_DIR` of train): its destination keeps
    its default, so config_from_args still finds it."""
    for action in list(parser._actions):  # noqa: SLF001 - argparse has no public lookup by option string
        if option in action.option_strings:
            parser.set_defaults(**{action.dest: action.default})
            parser._handle_conflict_resolve(None, [(option, action)])  # type: ignore[arg-type]  # noqa: SLF001


def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)
    search = parser.add_argument_group("search options")
    search.add_argument(
        "--space",
        default="",
        help="search space: a TOML or YAML file of parameter tables, or path/to/file.py:function "
        "(default: search_space(trial) of the --model file)",
    )
    search.add_argument(
        "--trials", type=int, default=10, help="finished trials (complete, pruned or failed) to end with"
    )
    search.add_argument(
        "--block-size",
        type=int,
        default=0,
        help="ranks per training block (default: one block of all ranks but the coordinator)",
    )
    search.add_argument(
        "--n-fold", type=int, default=1, help="K-fold cross-validation over the training files, folds in parallel"
    )
    search.add_argument(
        "--sampler", default="tpe", choices=SAMPLERS, help="tpe (default), gp (Bayesian), cmaes, nsga2 (genetic)"
    )
    search.add_argument(
        "--sampler-startup-trials", type=int, default=None, help="random trials before the sampler's model starts"
    )
    search.add_argument("--population", type=int, default=10, help="NSGA-II population size")
    search.add_argument("--pruner", default="none", choices=PRUNERS, help="stop hopeless trials early")
    search.add_argument(
        "--pruner-startup-trials", type=int, default=5, help="median pruner: completed trials before pruning"
    )
    search.add_argument(
        "--pruner-warmup-epochs", type=int, default=0, help="median pruner: epochs before a trial can be pruned"
    )
    search.add_argument(
        "--metric", default="val_loss", help="validation result to optimise (val_loss, val_accuracy, ...)"
    )
    search.add_argument(
        "--direction",
        default=None,
        choices=("minimize", "maximize"),
        help="default: minimize for losses and errors, else maximize",
    )
    search.add_argument("--storage", default="", help="Optuna storage URL (default: sqlite:///RUN_DIR/study.db)")
    search.add_argument("--study-name", default="mpilearn")
    _claim_option(parser, "--resume")
    search.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        dest="resume_search",
        help="continue the search in RUN_DIR (or --run-dir): finished trials are kept, "
        "interrupted ones marked failed and queued again",
    )


def search_config_from_args(args: argparse.Namespace) -> SearchConfig:
    resume: Any = args.resume_search
    if isinstance(resume, str):
        if args.run_dir and args.run_dir != resume:
            raise ConfigError(f"--resume {resume} and --run-dir {args.run_dir} name different directories")
        args.run_dir = resume
    run = config_from_args(args)
    # Every other search option has the name of its SearchConfig field.
    copied = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(SearchConfig)
        if f.name not in ("run", "resume", "direction")
    }
    return SearchConfig(run=run, resume=bool(resume), direction=args.direction or "", **copied)


def optimize(args: argparse.Namespace, argv: list[str]) -> int:
    from ..optional import require

    require("hpo", "mpilearn optimize")
    search = search_config_from_args(args)  # bad options fail here, before any process starts
    if getattr(args, "print_config", False):
        import dataclasses
        import json

        print(json.dumps(dataclasses.asdict(search), indent=2, default=str))
        return 0
    if args.processes and not env.under_mpi_launcher():
        from ..hpo.layout import Layout

        Layout(
            args.processes, search.block_size or max(1, args.processes - 1), search.n_fold
        )  # refused before launching
    status = self_launch(args, argv)
    if status is not None:
        return status
    from ..startup import start_ranks

    start_ranks(search.run)
    from ..hpo.search import run_search

    return run_search(search)
