"""One training run on every rank: agree on inputs, build, train, write outputs.

Everything that can be wrong with the user's input is checked on rank 0
before training and the verdict is broadcast, so a bad file or option ends
every rank at once with the same error (printed once, by rank 0). Anything
that fails later is unexpected and aborts the whole job (see cli.main).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import backends, checkpoint, faults, models, preflight, startup_times
from .algorithms import defaults
from .comm import ALIVE_S, Communicator, world
from .comm.agreement import decide_on_root
from .comm.topology import Role, Topology
from .config import RunConfig
from .data.sharding import shard
from .data import pipeline
from .data.sources import Signature, Source
from .env import default_threads
from .errors import CheckpointError, ConfigError, DataError, MpilearnError, abort_job, is_collective
from .history import History
from .log import get_logger, result, setup_logging
from .monitor import Monitor, write_gathered
from . import supervisor as supervising
from .roles.checkpointer import Checkpointer, restore_state
from .roles.job import Job, Workload
from .roles.master import run_master
from .roles.peer import run_peers
from .roles.worker import run_worker
from .roles import spread, validation
from .roles.validator import InlineValidator, validation_reader
from .roles.watchdog import BUSY_S, FIRST_EXCHANGE_S, Watchdog
from .timeline import Timeline, trace_document
from .interrupt import STOP, Interrupted, signal_name
from .rundir import (
    HISTORY,
    MODEL,
    RunDirLock,
    atomic_write_json,
    default_run_dir,
    prepare_run_dir,
    remove_empty_run_dir,
    remove_leftovers,
    save_model_atomic,
)

# The resolved configuration of a run, written into its directory before training.
CONFIG = "config.json"

ArrayPair = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Rank 0's verdict on the inputs, broadcast to every rank."""

    run_dir: str
    counts: tuple[int, ...]
    signature: Signature
    loss: str | None
    metrics: tuple[str, ...] | None
    # Classes per target, for building a command-line model: one-hot width or largest class id + 1.
    classes: tuple[int, ...] = ()
    # Where validation runs, "workers" (spread, roles/spread.py) or "master" (rank 0), and what the ranks that
    # validate a share rebuild the validation source from.
    validate_on: str = "master"
    val_counts: tuple[int, ...] = ()
    val_signature: Signature | None = None


@dataclasses.dataclass
class RootInputs:
    """What rank 0 opens while it checks the inputs, and keeps to itself (never broadcast)."""

    run_dir: str = ""
    # Held from the checks to the end of the run: no other job trains into the same directory.
    lock: RunDirLock | None = None
    # The validation source (inspected, nothing read: validation streams its samples).
    validation: Source | None = None
    # The model built from the command line's spec (mpilearn.fit passes its own).
    model: Any = None


def _open_train(config: RunConfig, arrays: Any, workers: int) -> Source:
    """Rank 0: HDF5 files, arrays, a PyDataset or a batch function (see data/pipeline.py)."""
    return pipeline.open_train(config.data, arrays, workers, config.seed)


def _open_validation(config: RunConfig, arrays: Any) -> Source | None:
    return pipeline.open_validation(config.data, arrays, config.seed)


def _check_model_fits_data(model: Any, signature: Signature, where: str) -> None:
    """Each model input against the data's input of the same position."""
    inputs = getattr(model, "inputs", None) or []
    if not inputs:
        return
    if len(inputs) != len(signature.sample_shapes):
        raise DataError(
            f"{where}: the data have {len(signature.sample_shapes)} input(s) ({signature.describe_inputs()}) "
            f"but the model takes {len(inputs)}"
        )
    names = signature.input_names or ("samples",) * len(inputs)
    for tensor, shape, name in zip(inputs, signature.sample_shapes, names):
        expected = tuple(tensor.shape[1:])
        if len(expected) != len(shape) or any(e is not None and e != s for e, s in zip(expected, shape)):
            what = "samples have" if len(inputs) == 1 else f"input {name!r} has"
            raise DataError(f"{where}: {what} shape {shape} but the model expects {expected}")


def _check_loss_fits_labels(loss: str | None, signature: Signature, where: str) -> None:
    if loss in ("categorical_crossentropy", "CategoricalCrossentropy") and (
        "int" in signature.label_dtype or len(signature.label_shape) != 1
    ):
        raise DataError(
            f"{where}: labels of shape {signature.label_shape} ({signature.label_dtype}) are not one-hot rows, "
            "as categorical_crossentropy needs (use --loss sparse_categorical_crossentropy for class ids)"
        )


def _check_algorithm_fits_model(config: RunConfig, model: Any) -> None:
    from .algorithms import registry

    if models.has_own_train_step(model) and not config.algorithm.spec.own_train_step:
        raise ConfigError(
            f"{type(model).__name__} trains through its own train_step, which works with --algo "
            f"{' or '.join(registry.names(lambda spec: spec.own_train_step))} (weight deltas), not {config.algorithm.name}"
        )


def _count_classes(source: Source, where: str, given: bool) -> tuple[int, ...]:
    """Rank 0: classes per target, for the model builder. One-hot rows give
    their width; integer class ids are scanned (label datasets only) for the
    largest id, unless the user gave num_classes."""
    signature = source.signature
    classes = [shape[0] if shape else 1 for shape in signature.label_shapes]
    targets = signature.class_id_targets
    if targets and not given:
        largest = source.largest_labels()
        if largest is None:
            raise DataError(
                f"{where}: integer class labels from a batch function or PyDataset: give the number of "
                "classes to the model with --model-arg num_classes=K"
            )
        for target, top in zip(targets, largest):
            classes[target] = top + 1
    return tuple(classes)


def _build_cli_model(
    config: RunConfig, signature: Signature, classes: Sequence[int]
) -> tuple[Any, str, tuple[str, ...]]:
    """Build and compile the model of a command-line run from its spec."""
    models.set_random_seed(config.seed)
    # Several inputs or targets (HDF5 groups, comma-separated names): lists of shapes and class counts.
    num_classes = classes[0] if len(classes) == 1 else list(classes)
    input_shape = signature.sample_shape if len(signature.sample_shapes) == 1 else list(signature.sample_shapes)
    custom_objects = models.load_custom_objects(config.model.custom_objects)
    model = models.build_model(config.model.spec, input_shape, num_classes, config.model.model_kwargs, custom_objects)
    loss = config.model.loss or models.default_loss(signature.label_shape, signature.label_dtype)
    metrics = config.model.metrics if config.model.metrics is not None else models.default_metrics(loss)
    logits = backends.outputs_logits(model)
    loss_object = models.loss_for(loss, logits, signature.label_shape, signature.label_dtype)
    if not getattr(model, "compiled", False):  # a builder may compile its model itself (a GAN's two optimizers)
        models.compile_model(model, config.model.optimizer, config.model.learning_rate, loss_object, metrics)
    return model, loss, metrics


def _announce_outputs(config: RunConfig, log: Any, validation_given: bool) -> None:
    """Rank 0 says where the run writes, and when it has nothing to validate on."""
    log.info("writing to %s (config.json, history.json, model.keras)", config.run_dir)
    data = config.data
    if not (validation_given or data.val_files or data.val_function):
        log.warning(
            "no validation data (--val LIST, or validation= in mpilearn.fit): nothing is validated; "
            "epochs report the training loss only"
        )


def train(
    config: RunConfig,
    model: Any = None,
    train_arrays: ArrayPair | None = None,
    validation_arrays: ArrayPair | None = None,
    on_epoch_end: supervising.EpochHook | None = None,
    comm: Communicator | None = None,
    callbacks: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Train on every rank of `comm` (default: all ranks); returns the history on every rank.

    `callbacks` are Keras callbacks, called on rank 0 with the central model
    as `Model.fit` calls them (see callbacks.py).

    `model` is the user's compiled model (mpilearn.fit) or None to build it
    from `config.model` (command line).
    """
    startup_times.begin_run()
    startup_times.mark("imports")
    comm = comm or world(config.poll_max_s)
    _bound_start_up(comm, config)
    try:
        return _train(config, comm, model, train_arrays, validation_arrays, on_epoch_end, callbacks)
    finally:
        comm.stop_beating()


def _bound_start_up(comm: Communicator, config: RunConfig) -> None:
    """Every collective of the run is bounded. Until every rank has started,
    ranks start minutes apart on a loaded machine (imports, model building):
    each rank beats (Communicator.beat), so a wait excuses a live rank, and
    names a stopped or dead one after --timeout (else ALIVE_S) or ALIVE_S of
    silence, whichever is longer; no wait is stretched beyond FIRST_EXCHANGE_S.
    Without thread support in MPI: every start-up wait lasts FIRST_EXCHANGE_S."""
    if comm.size > 1 and comm.beat(ALIVE_S, cap=FIRST_EXCHANGE_S):
        comm.limit = config.timeout if config.timeout is not None else ALIVE_S
    else:
        comm.limit = max(Watchdog(config.timeout).limit(), FIRST_EXCHANGE_S)


def _train(
    config: RunConfig,
    comm: Communicator,
    model: Any,
    train_arrays: ArrayPair | None,
    validation_arrays: ArrayPair | None,
    on_epoch_end: supervising.EpochHook | None,
    callbacks: Sequence[Any] | None,
) -> dict[str, Any]:
    try:
        topology = Topology(
            comm.size,
            config.algorithm.masters,
            peers_only=not config.algorithm.has_master,
            servers=config.algorithm.servers,
        )
    except MpilearnError as error:
        error.on_every_rank()  # every rank computes the same layout and the same error
        raise
    role = topology.role(comm.rank)
    log = setup_logging(comm.rank, role.value, "error" if config.quiet else config.log_level)
    if comm.rank == 0:
        log.info("%s", topology.describe())

    root = RootInputs()

    def plan() -> Plan:
        """Rank 0: lock the run directory, check everything; a failed check leaves no new directory behind."""
        fresh = not config.run_dir or not Path(config.run_dir).exists()
        run_dir = root.run_dir = str(prepare_run_dir(config.run_dir or default_run_dir()))
        root.lock = RunDirLock(Path(run_dir))  # refuses a run directory another job is using
        leftovers = remove_leftovers(Path(run_dir))
        if leftovers:
            log.info("removed %d temporary file(s) a killed run left in %s", len(leftovers), run_dir)
        try:
            return checked_plan()
        except BaseException:
            root.lock.release()
            root.lock = None
            if fresh:
                remove_empty_run_dir(Path(run_dir))
            raise

    def checked_plan() -> Plan:
        run_dir = root.run_dir
        preflight.check_output_paths(config, run_dir)
        source = _open_train(config, train_arrays, topology.num_workers)
        shard(
            source.counts, topology.num_workers, 0, pipeline.shard_mode(config.data, source)
        )  # enough data for the workers?
        pipeline.check_preload(config.data, source, topology.num_workers)
        root.validation = _open_validation(config, validation_arrays)
        startup_times.mark("data")
        where = config.data.train_files[0] if config.data.train_files else "training data"
        preflight.check_validation_fits_training(
            validation.first_sample(root.validation),
            source.signature,
            config.data.val_files[0] if config.data.val_files else "validation data",
        )
        loss = metrics = None
        classes: tuple[int, ...] = ()
        given = "num_classes" in config.model.model_kwargs
        preflight.check_loss_fits_labels(
            config.model.loss if model is None else getattr(model, "loss", None), source.signature, where
        )  # before the model is built: cheap
        if model is None:
            classes = _count_classes(source, where, given=given)
            root.model, loss, metrics = _build_cli_model(config, source.signature, classes)
            _check_loss_fits_labels(loss, source.signature, where)
            startup_times.mark("model")
        _check_model_fits_data((root.model or model), source.signature, where)
        preflight.check_outputs_fit_labels((root.model or model), source, where, counted=model is None and not given)
        _check_algorithm_fits_model(config, (root.model or model))
        placement, reasons = spread.choose_placement(config, topology, root.model or model, root.validation)
        if reasons:
            log.info("validating on rank 0: %s", "; ".join(reasons))
        if placement == "master":
            pipeline.check_validation_preload(config.data, root.validation)
        val = root.validation
        return Plan(
            run_dir,
            source.counts,
            source.signature,
            loss,
            metrics,
            classes,
            placement,
            tuple(val.counts) if val is not None and placement == "workers" else (),
            val.signature if val is not None and placement == "workers" else None,
        )

    STOP.install()  # SIGTERM/SIGINT from here on: stop at the next safe point (interrupt.py)
    try:
        agreed: Plan = decide_on_root(comm, plan, "the start-up checks")
        startup_times.mark("wait")  # the others, for rank 0's checks (it opens the data and builds the model)
        config = config.replace(run_dir=agreed.run_dir)
        if comm.rank == 0:
            _announce_outputs(config, log, validation_arrays is not None)
        _announce_ranks(comm, role)
        faults.at(comm.world_rank, "start")
        try:
            return _run(
                config,
                comm,
                topology,
                role,
                agreed,
                root,
                model,
                train_arrays,
                on_epoch_end,
                callbacks,
                validation_arrays,
            )
        except BaseException as error:
            if comm.size == 1 or is_collective(error):
                raise
            abort_job(comm.rank, role.value, error, comm.abort)
            raise  # not reached: abort ends the process
    finally:
        STOP.restore()
        if root.lock is not None:
            root.lock.release()


def _announce_ranks(comm: Communicator, role: Role) -> None:
    """Rank -> role, pid and host, so a launcher's report about a PID can be
    traced to its rank (launchers name processes, not ranks)."""
    ranks = comm.gather_object((role.value, os.getpid(), socket.gethostname())) if comm.size > 1 else None
    if ranks and len(ranks) <= 64:
        get_logger().info(
            "ranks: %s", ", ".join(f"{r} {name} pid {pid}@{host}" for r, (name, pid, host) in enumerate(ranks))
        )


def _resume(
    config: RunConfig, comm: Communicator, topology: Topology, backend: Any
) -> tuple[History, int, list[np.ndarray] | None]:
    """Load the latest checkpoint of config.run_dir: rank 0 takes the central
    weights and its optimizer's state (every peer does, under allreduce); with
    sharded servers rank 0 keeps the state for the servers (the third value)."""

    loaded: list[tuple[np.ndarray, list[np.ndarray], Path]] = []  # rank 0's arrays, never broadcast

    def load() -> dict[str, Any]:
        path, damaged = checkpoint.newest_good(Path(config.run_dir))
        for line in damaged:
            get_logger().warning("%s: resuming from the older %s", line, path.name)
        weights, values, state = checkpoint.load(path, backend.layout)
        if values and bool(state.get("sliced_optimizer")) != (topology.servers > 1):
            raise CheckpointError(
                f"checkpoint {path} holds the optimizer state of "
                f"{'sharded servers' if state.get('sliced_optimizer') else 'one master'}: resume it "
                f"{'with --servers 2 or more' if state.get('sliced_optimizer') else 'without --servers'}"
            )
        loaded.append((weights, values, path))
        saved = state["config"]["algorithm"]
        # History keys workers by rank: a resumed run on another --servers has its workers on other ranks.
        if saved["servers"] != topology.servers:
            shift = max(topology.masters, topology.servers) - max(saved["masters"], saved["servers"])
            state["history"]["workers"] = {str(int(r) + shift): v for r, v in state["history"]["workers"].items()}
        return {"epoch": state["epoch"], "history": state["history"], "path": str(path)}

    state = decide_on_root(comm, load, "loading the checkpoint")
    values: list[np.ndarray] | None = None
    if comm.rank == 0:
        weights, values, path = loaded.pop()
        backend.set_weights(weights)
        get_logger().info("resuming %s after epoch %d", path, state["epoch"])
        before = len(state["history"].get("workers", {}))
        if before and before != topology.num_workers:
            get_logger().warning(
                "resuming with %d workers where the run had %d: each worker's shard and batches change, so the run "
                "continues from the checkpoint but no longer repeats an uninterrupted run exactly",
                topology.num_workers,
                before,
            )
    if topology.peers_only and comm.size > 1:
        values = comm.bcast_object(values)
    sliced = None
    if values is not None and topology.servers > 1:
        sliced = values  # the servers' optimizers take their parts once they exist (roles/shards.py)
    elif values is not None and (comm.rank == 0 or topology.peers_only):
        restore_state(backend.model.optimizer, backend, values, Path(state["path"]), config.algorithm)
    return History.resumed(config.to_dict(), state["history"]), int(state["epoch"]), sliced


def _run(
    config: RunConfig,
    comm: Communicator,
    topology: Topology,
    role: Role,
    agreed: Plan,
    root: RootInputs,
    model: Any,
    train_arrays: ArrayPair | None,
    on_epoch_end: supervising.EpochHook | None,
    callbacks: Sequence[Any] | None = None,
    validation_arrays: ArrayPair | None = None,
) -> dict[str, Any]:
    if model is None:
        model = root.model
        if model is None:
            with comm.busy_while(
                BUSY_S
            ):  # the others may reach the next collective long before this rank's model is built
                model = _build_cli_model(config, agreed.signature, agreed.classes)[0]
            startup_times.mark("model")
    threads = config.threads or default_threads(comm.local_size)
    backends.set_threads(threads)
    backend = backends.for_model(model)
    source = pipeline.trusted_train(
        config.data, train_arrays, topology.num_workers, config.seed, agreed.counts, agreed.signature
    )
    startup_times.mark("data")
    # "auto" options become values for this many workers, this optimizer and these steps per epoch,
    # the same on every rank.
    config, reasons = defaults.resolve(
        config,
        topology.num_workers,
        getattr(model, "optimizer", None),
        pipeline.epoch_steps(config.data, source, topology.num_workers),
    )
    if comm.rank == 0:
        for reason in reasons:
            get_logger().info("%s", reason)
    node = pipeline.node_context(comm, config.data)  # collective: --cache-dir job token, --preload memory snapshot

    history = History(config.to_dict())
    start_epoch, sliced_state = 0, None
    if config.checkpoint.resume:
        history, start_epoch, sliced_state = _resume(config, comm, topology, backend)
        if start_epoch >= config.epochs:  # nothing left to train: every rank knows from the checkpoint
            return _already_finished(config, comm, history, backend, start_epoch)

    weights = np.empty(backend.layout.size, dtype=np.float32)
    backend.get_weights(weights)
    startup_times.mark("setup")
    comm.barrier(what="the start of training")  # names a rank that never got here (a broadcast cannot)
    comm.bcast_array(weights, root=0)  # every rank starts from rank 0's (initial or resumed) weights
    backend.set_weights(weights)
    startup_times.mark("wait")

    timeline = Timeline(comm.rank, role.value, bool(config.timeline))
    watchdog = Watchdog(config.timeout)
    val_source = root.validation
    if comm.rank != 0 and agreed.val_signature is not None:
        val_source = pipeline.trusted_validation(
            config.data, validation_arrays, agreed.val_counts, agreed.val_signature
        )
    spread_validator, validation_share = spread.parts(
        agreed.validate_on, config, comm, topology, backend, val_source, node, watchdog, timeline
    )  # collective
    workload = Workload(config, source, topology)
    reader = None
    if role in (Role.SOLO, Role.PEER, Role.WORKER):  # --preload and --cache-dir start before the clock
        reader = pipeline.WorkerData(
            source,
            config.data,
            config.seed,
            topology.num_workers,
            topology.worker_index(comm.rank),
            config.epochs,
            workload.steps_per_epoch,
            node,
        )
    startup_times.mark("data")
    supervisor = None
    if comm.rank == 0:  # progress display, Keras callbacks, validation, checkpoints
        atomic_write_json(Path(config.run_dir) / CONFIG, config.to_dict())
        supervisor = supervising.build(
            config,
            history,
            backend,
            workload,
            timeline,
            spread_validator or InlineValidator(backend.model, validation_reader(config.data, root.validation, node)),
            Checkpointer(config, backend, history, timeline, Path(config.run_dir)),
            callbacks=callbacks or (),
            user_hook=on_epoch_end,
            background=role is Role.MASTER,
            shares_terminal=comm.size < comm.world_size,
            start_epoch=start_epoch,
        )
        supervisor.start()
    job = Job(
        config,
        comm,
        topology,
        backend,
        workload,
        history,
        timeline,
        watchdog,
        reader,
        supervisor,
        start_epoch,
        models.has_own_train_step(model),
        validation_share,
        sliced_state,
    )
    monitor = Monitor(comm.rank, role.value, comm.local_rank).start() if config.monitor else None
    startup_times.mark("setup")
    comm.barrier()
    if reader is None:  # a master's start-up ends here; a rank that trains ends its with the first batch
        startup_times.finish("wait")
    else:
        startup_times.mark("wait")
    comm.stop_beating()  # every rank is here: from now on the training's own watchdog
    comm.limit = job.watchdog.limit()  # --timeout (or the adaptive limit), for every wait, the end included
    history.start_clock()
    if role in (Role.SOLO, Role.PEER):
        run_peers(job)
    elif role in (Role.MASTER, Role.SUBMASTER, Role.SERVER):
        run_master(job)
    else:
        run_worker(job)
        if validation_share is not None:
            validation_share.serve()  # the master's last validations are spread too, until it says DONE
    history.finish()
    if supervisor is not None:
        supervisor.finish()  # outstanding background validations, callbacks' on_train_end
        with comm.busy_while(BUSY_S):  # the others wait in the gather below
            if not STOP.acted:  # interrupted: no final row (the run raises below)
                supervisor.final_validation()
        supervisor.validator.release()  # workers serving a spread validation leave for the gather
    faults.at(comm.world_rank, "end")
    _stop_if_interrupted(job)

    if supervisor is not None:
        with comm.busy_while(BUSY_S):  # outputs
            _write_outputs(job)
    if monitor is not None:
        write_gathered(comm, monitor, Path(config.run_dir))
    if config.timeline:
        _write_timeline(job)
    backend.get_weights(weights)
    comm.bcast_array(weights, root=0)  # every rank returns the central weights
    backend.set_weights(weights)
    if job.reader is not None:
        job.reader.close()  # every rank has stopped reading: node-local copies can go
    return comm.bcast_object(history.to_dict() if comm.rank == 0 else None)


def _already_finished(
    config: RunConfig, comm: Communicator, history: History, backend: Any, epochs_done: int
) -> dict[str, Any]:
    """A resumed run whose checkpoint holds all --epochs: rewrite missing outputs, then stop."""
    run_dir = Path(config.run_dir)
    if comm.rank == 0:
        if not (run_dir / MODEL).exists():  # killed between the last checkpoint and the outputs
            atomic_write_json(run_dir / HISTORY, history.to_dict())
            save_model_atomic(backend.model, run_dir / MODEL)
        result(
            "%s already finished: %d of %d epochs trained; nothing to do (a larger --epochs trains on)",
            run_dir,
            epochs_done,
            config.epochs,
        )
    return history.to_dict()


def _stop_if_interrupted(job: Job) -> None:
    """After the loop: did the job stop for a signal? Rank 0 knows; every rank raises."""
    comm = job.comm
    startup = startup_times.record()  # each rank's start-up reaches rank 0 with this gather
    gathered: list[Any] | None = [startup]
    if comm.size > 1:  # a gather first: it names a rank that never finished its loop
        gathered = comm.gather_object(startup, what="the end of training")
    if comm.rank == 0:
        assert gathered is not None
        job.history.startup = startup_times.section(gathered, [job.topology.role(r).value for r in range(comm.size)])
        get_logger().info("%s", startup_times.summary(job.history.startup))
    verdict: tuple[int, str] | None = (
        (STOP.signum if STOP.acted else 0, _interrupt_message(job)) if comm.rank == 0 else None
    )
    if comm.size > 1:  # the others wait longer than rank 0 does for them: rank 0, who knows who is missing, reports
        verdict = comm.bcast_object(verdict, timeout=comm.limit and 2 * comm.limit + 5, what="the end of training")
    assert verdict is not None
    signum, message = verdict
    if not signum:
        return
    if job.reader is not None:
        job.reader.close()
    raise Interrupted(message, signum).on_every_rank()


def _interrupt_message(job: Job) -> str:
    if not STOP.acted:
        return ""
    run_dir = Path(job.config.run_dir)
    done = sum(1 for row in job.history.epochs if row.get("kind") != "updates")
    what = f"interrupted by {signal_name(STOP.signum)} " + (f"after epoch {done}" if done else "in the first epoch")
    if not job.config.checkpoint.enabled:
        return f"{what}; checkpoints are off (--checkpoint-every), so there is nothing to resume"
    try:
        newest = checkpoint.latest(run_dir)
    except MpilearnError:
        return f"{what}, before the first checkpoint; nothing to resume"
    return f"{what}; newest checkpoint {newest}; resume with: mpilearn train --resume {run_dir}"


def _write_timeline(job: Job) -> None:
    per_rank = job.comm.gather_object(job.timeline.events()) if job.comm.size > 1 else [job.timeline.events()]
    if job.comm.rank == 0:
        assert per_rank is not None
        path = Path(job.config.timeline)
        atomic_write_json(path, trace_document(per_rank))
        get_logger().info("wrote timeline %s (open in ui.perfetto.dev or chrome://tracing)", path)


def _write_outputs(job: Job) -> None:
    """Rank 0 after training: the history, the model and the final line."""
    history, run_dir = job.history, Path(job.config.run_dir)
    atomic_write_json(run_dir / HISTORY, history.to_dict())
    job.backend.sync_optimizer()
    save_model_atomic(job.model, run_dir / MODEL)
    last = history.epochs[-1] if history.epochs else {}
    result(
        "trained %d samples in %.1fs (%.0f samples/s)%s; wrote %s and %s",
        history.samples_seen,
        history.train_time_s,
        history.samples_seen / max(history.train_time_s, 1e-9),
        "".join(f", {k} {v:.4f}" for k, v in last.items() if k.startswith("val_")),
        run_dir / HISTORY,
        run_dir / MODEL,
    )
