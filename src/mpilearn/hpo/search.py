"""`run_search`: what every rank of `mpilearn optimize` runs.

Rank 0 checks the inputs and opens the study, then coordinates; the other
ranks split into blocks and folds and serve trials. Input errors end every
rank with one message (exit status 2); an unexpected error on any rank aborts
the whole job, as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..comm.agreement import decide_on_root
from ..comm import ALIVE_S, Communicator, world
from ..data.sharding import shard
from ..data.sources import Hdf5Source
from ..errors import MpilearnError, abort_job, is_collective
from ..interrupt import STOP
from ..log import get_logger, setup_logging
from ..rundir import default_run_dir, prepare_run_dir
from .block import BlockContext, serve
from .config import SearchConfig
from .folds import kfold
from .layout import COORDINATOR, Layout

if TYPE_CHECKING:
    from .space import SearchSpace

# Waiting between trials and for reports needs no sub-millisecond latency.
CONTROL_POLL_MAX_S = 0.01


@dataclass
class Opened:
    """What the coordinator (rank 0) opens while it checks the inputs, and keeps to itself (never broadcast)."""

    space: SearchSpace
    # (training files, validation files) of each fold; empty without --n-fold.
    folds: list[tuple[tuple[str, ...], tuple[str, ...]]]
    url: str
    study: Any  # optuna.Study: Optuna loads on the coordinator only


def run_search(search: SearchConfig) -> int:
    STOP.install()  # SIGTERM/SIGINT: the search stops after its running trials stop (coordinator.py)
    try:
        return _run_search(search)
    finally:
        STOP.restore()


def _run_search(search: SearchConfig) -> int:
    comm = world(search.run.poll_max_s)
    role = "coordinator" if comm.rank == COORDINATOR else "block"
    setup_logging(comm.rank, role, search.run.log_level)
    try:
        layout = Layout(comm.size, search.block_size or max(1, comm.size - 1), search.n_fold)
        topology = layout.check_algorithm(search.run.algorithm)
    except MpilearnError as error:
        error.on_every_rank()  # every rank finds the same
        raise
    block_index, fold_index = layout.block_of(comm.rank), layout.fold_of(comm.rank)
    # Private communicators: control (everyone), this block, this fold (the training's).
    control = comm.split(0)
    block = comm.split(-1 if block_index is None else block_index)
    fold = block.split(fold_index or 0)
    control.poll_max_s = block.poll_max_s = max(search.run.poll_max_s, CONTROL_POLL_MAX_S)
    _keep_alive(search, comm, control, block)

    opened: list[Opened] = []
    run_dir = Path(decide_on_root(control, lambda: _prepare(search, layout, topology.num_workers, opened)))
    if comm.rank != COORDINATOR:  # load Keras and its backend now that the inputs are known to be good
        import keras  # noqa: F401

        from .. import training  # noqa: F401
    control.barrier()  # every block is ready: a trial's time is its own, not the start-up's
    if comm.rank == COORDINATOR:
        return _coordinate(search, layout, control, run_dir, opened[0], layout.describe(topology))
    assert block_index is not None and fold_index is not None
    ctx = BlockContext(
        control, block, fold, layout, block_index, fold_index, search.metric, search.run.skip_bad_batches
    )
    try:
        serve(ctx)
    except BaseException as error:
        if not is_collective(error):
            abort_job(comm.rank, f"block {block_index}", error, comm.abort)
        raise
    return 0


def _keep_alive(search: SearchConfig, comm: Communicator, control: Communicator, block: Communicator) -> None:
    """For the whole search, the coordinator beats to every rank, every block
    rank to the coordinator and to its block: the waits between trials and
    for a trial's reports (as long as trials take) then name a stopped or dead
    rank after ALIVE_S of silence (or --timeout, if longer). A rank stuck
    inside a trial is the trial's watchdog's."""
    coordinator = comm.rank == COORDINATOR
    if control.beat(ALIVE_S, ranks=None if coordinator else [COORDINATOR]) and (coordinator or block.beat(ALIVE_S)):
        control.limit = block.limit = search.run.timeout if search.run.timeout is not None else ALIVE_S
    comm.stop_beating()  # the world's own beats (start-up): the search's communicators carry them now


def _prepare(search: SearchConfig, layout: Layout, workers: int, opened: list[Opened]) -> str:
    """Rank 0's checks before any trial: run directory, data, space, study."""
    from .space import check_space, load_space
    from .study import open_study, storage_url

    run_dir = prepare_run_dir(search.run.run_dir or default_run_dir())
    data = search.run.data
    source = Hdf5Source(data.train_files, data.features_name, data.labels_name)
    folds: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    if search.n_fold == 1:
        Hdf5Source(data.val_files, data.features_name, data.labels_name)
        shard(source.counts, workers, 0, data.shard)
    else:
        folds = kfold(data.train_files, search.n_fold)
        counts = dict(zip(data.train_files, source.counts))
        for train_files, _ in folds:
            shard([counts[f] for f in train_files], workers, 0, data.shard)
        if data.val_files:
            get_logger().info(
                "--n-fold %d: each fold validates on its held-out training files; --val is not used", search.n_fold
            )
    space = load_space(search.space, search.run.model.spec)
    check_space(space, search.run)
    epochs_tuned = space.distributions is None or "epochs" in space.distributions
    url = storage_url(search, run_dir)
    opened.append(Opened(space, folds, url, open_study(search, url, epochs_tuned)))
    return str(run_dir)


def _coordinate(
    search: SearchConfig, layout: Layout, control: Communicator, run_dir: Path, opened: Opened, described: str
) -> int:
    from ..interrupt import Interrupted
    from .coordinator import Coordinator, format_table

    log = get_logger()
    log.info("%s", described)
    coordinator = Coordinator(search, layout, control, opened.study, opened.space, run_dir, opened.folds, opened.url)
    try:
        coordinator.run()
        summary = coordinator.write_best()
    except Interrupted as error:
        if not is_collective(error):  # a second signal: stop at once
            abort_job(control.rank, "coordinator", error, control.abort)
        coordinator.write_best()  # what finished so far
        raise
    except MpilearnError as error:
        if error is not coordinator.fatal:
            abort_job(control.rank, "coordinator", error, control.abort)
        error.on_every_rank()  # every block raises it too
        raise
    except BaseException as error:
        abort_job(control.rank, "coordinator", error, control.abort)
        raise
    print(format_table(summary), flush=True)
    best = summary["best"]
    if best is None:
        raise MpilearnError(
            f"no trial completed ({summary['counts']['finished']} finished); see {run_dir / 'best.json'}"
        )
    settings = " ".join(f"{k}={v}" for k, v in best["settings"].items())
    print(f"best: trial {best['number']}, {summary['metric']} {best['value']:.6g}: {settings}", flush=True)
    print(f"wrote {run_dir / 'best.json'} (study: {summary['storage']})", flush=True)
    return 0
