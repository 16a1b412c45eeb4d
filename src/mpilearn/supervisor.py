"""What rank 0 does around the training loop besides training: progress,
Keras callbacks, validation every N updates and background validation.

The roles call two hooks on rank 0: `job.on_epoch_end(row)` after each epoch
validation (set up in training.py, it ends in `Supervisor.epoch_end`) and
`job.on_update()` after each update the master folds in (peer 0 calls it
after each of its steps). Both return True to stop training; a master then
answers STOP to each worker's next message.

Background validation (`--background-validation`, masters only): at an
epoch end the master copies the central weights into a numpy snapshot and
goes on serving workers while a thread loads the snapshot into a second
model (`keras.models.clone_model` + compile) and evaluates it. The result is
picked up after a later update: the row, the callbacks and the stop decision
come one or more updates late, and callbacks that act on the model
(ModelCheckpoint, EarlyStopping's restore_best_weights) see the central model
as it is then, a few updates past the snapshot that was validated. The
validation thread also competes with the master for CPU.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from .comm import world
from .comm.topology import Role
from .config import RunConfig
from .errors import ConfigError
from .history import History
from .log import get_logger
from .progress import Progress, resolve_mode
from .roles.validation import evaluate


def _steps_per_epoch(job: Any) -> int:
    """Roughly the master updates in one epoch (Keras's `steps` param)."""
    config = job.config
    per_update = config.data.batch_size * config.algorithm.sync_every
    if config.algorithm.lockstep:
        per_update *= job.topology.num_workers
    return max(1, math.ceil(job.samples_per_epoch / per_update))


class Supervisor:
    def __init__(self, config: RunConfig, history: History, model: Any, callbacks: Sequence[Any] = ()) -> None:
        from . import callbacks as keras_callbacks  # imports keras: the backend is set by now

        self.config = config
        self.history = history
        self.model = model
        self.log = get_logger()
        # The user's callbacks (mpilearn.fit), then the command-line shortcuts (whose metric is checked).
        self.shortcuts = keras_callbacks.from_config(config.callbacks, config.run_dir)
        self.all_callbacks = list(callbacks) + self.shortcuts
        self.callbacks: Any = None
        self.progress: Progress | None = None
        self.background: BackgroundValidation | None = None
        self.job: Any = None
        self._last_validated = 0

    # ---- set-up and tear-down ----------------------------------------------
    def attach(self, job: Any, role: Role) -> None:
        """Hook into the job's loop and start the progress display and callbacks."""
        from .callbacks import CallbackRunner

        self.job = job
        config = self.config
        job.on_update = self.on_update
        if config.background_validation:
            if role is Role.MASTER and job.validation is not None:
                self.background = BackgroundValidation(job)
                job.background = self.background
            else:
                self.log.info("--background-validation applies to runs with a master and validation data: validating inline")
        start_epoch = getattr(job, "start_epoch", 0)
        self.callbacks = CallbackRunner(self.model, self.all_callbacks, config.epochs, _steps_per_epoch(job), start_epoch,
                                        self.shortcuts)
        best_key = config.callbacks.early_stopping or config.callbacks.target_metric or None
        mode = resolve_mode(config.progress, config.quiet)
        if mode == "bar" and config.progress == "auto" and job.comm.size != world().size:
            mode = "lines"  # one block of a larger job (hyperparameter search): several blocks, one terminal
        self.progress = Progress(mode, config.epochs, job.samples_per_epoch, self.log,
                                 best_key if best_key and best_key.startswith("val_") else None, start_epoch)
        for row in self.history.epochs:  # a resumed run's best so far
            self.progress.best.see(row)
        self._last_validated = self.history.updates
        self.callbacks.begin()
        self.progress.start(self.history.samples_seen)

    def finish(self) -> None:
        """After the loop: collect outstanding background validations, end the callbacks."""
        try:
            if self.background is not None:
                for row in self.background.drain():
                    self._background_row(row, stopping=False)
        finally:
            if self.progress is not None:
                self.progress.close()
        if self.callbacks is not None:
            self.callbacks.end()

    # ---- hooks the roles call ------------------------------------------------
    def epoch_end(self, row: dict[str, Any]) -> bool:
        """An epoch was validated: show it and run the callbacks; True stops."""
        elapsed = self.history.elapsed()
        if self.progress is not None:
            self.progress.row(row, self.history.samples_seen / elapsed if elapsed else 0.0)
        if self.callbacks is None:
            return False
        stop = self.callbacks.epoch_end(row, last=row["epoch"] >= self.config.epochs)
        if stop:
            self.log.info("%s stopped training after epoch %d", self.callbacks.stopped_by or "a callback", row["epoch"])
        return stop

    def on_update(self, samples: int | None = None, loss: float | None = None, updates: int | None = None) -> bool:
        """After an update. Peers pass this epoch's counts, which reach the
        history only at the epoch's end; a master's are in it already."""
        history = self.history
        samples_now = history.samples_seen + (samples or 0)
        updates_now = history.updates + (updates or 0)
        # The running loss costs a sum over workers: computed only for whoever shows or uses it.
        running = (lambda: loss) if loss is not None else history.running_loss
        stop = False
        if self.progress is not None:
            self.progress.update(samples_now, running)
        if self.callbacks is not None and self.callbacks.batch_hooks:
            with self.job.timeline.span("callbacks"):
                if self.callbacks.update(running()):
                    stop = self._stop(f"by {self.callbacks.stopped_by or 'a callback'} at a batch end", early=True)
        every = self.config.validate_every
        if every and updates_now - self._last_validated >= every and self.job.validation is not None:
            self._last_validated = updates_now
            loss = running()
            counts = {"updates": updates_now, "samples_seen": samples_now, "time_s": round(history.elapsed(), 3)}
            epoch = round(samples_now / max(1, self.job.samples_per_epoch), 3)
            if self.background is not None:
                # Skipped while the thread is still busy: a slower validation than N updates
                # would otherwise queue up snapshots without end. Epoch validations always run.
                if not self.background.busy():
                    self.background.submit(epoch, "updates", counts, loss)
            else:
                with self.job.timeline.span("validate"):
                    metrics = evaluate(self.job.model, self.job.validation, self.config.data.batch_size)
                self._updates_row(metrics, epoch, counts, loss)
        if self.background is not None:
            for row in self.background.ready():
                stop = self._background_row(row, stopping=True) or stop
        return stop

    # ---- helpers -------------------------------------------------------------
    def _updates_row(self, metrics: dict[str, float], epoch: float, counts: dict[str, Any], loss: float | None) -> None:
        row = self.history.record_validation(metrics, epoch, counts, loss)
        if self.progress is not None:
            self.progress.row(row, 0.0)

    def _background_row(self, result: "Result", stopping: bool) -> bool:
        if result.kind == "updates":
            self._updates_row(result.metrics, result.epoch, result.counts, result.loss)
            return False
        row = self.history.record_epoch(int(result.epoch), result.metrics, counts=result.counts)
        stop = bool(self.job.on_epoch_end(row))
        if stop and stopping:
            return self._stop(f"after epoch {int(result.epoch)}", early=int(result.epoch) < self.config.epochs)
        return False

    def _stop(self, why: str, early: bool) -> bool:
        if not self.history.stopped_early:
            self.log.info("stopping: requested %s", why)
        self.history.stopped_early = self.history.stopped_early or early
        return True


class Result:
    __slots__ = ("kind", "epoch", "counts", "loss", "metrics")

    def __init__(self, kind: str, epoch: float, counts: dict[str, Any], loss: float | None) -> None:
        self.kind, self.epoch, self.counts, self.loss = kind, epoch, counts, loss
        self.metrics: dict[str, float] = {}


class BackgroundValidation:
    """Evaluates snapshots of the central weights on a second model in one
    background thread, in submission order."""

    def __init__(self, job: Any) -> None:
        from . import backends

        self.job = job
        self.model = _twin(job.model)
        self.backend = backends.for_model(self.model)
        if self.backend.layout != job.backend.layout:
            raise ConfigError("--background-validation: the cloned model's variables differ from the model's; validate inline")
        self.snapshot_size = job.backend.layout.size
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpilearn-validation")
        self.pending: collections.deque[tuple[Future, Result]] = collections.deque()
        self.lock = threading.Lock()  # one evaluation at a time on the twin model

    def busy(self) -> bool:
        """A validation is still queued or running."""
        return any(not future.done() for future, _ in self.pending)

    def submit(self, epoch: float, kind: str = "epoch", counts: dict[str, Any] | None = None, loss: float | None = None) -> None:
        """Snapshot the central weights now (master thread) and validate them later."""
        history = self.job.history
        snapshot = np.empty(self.snapshot_size, dtype=np.float32)
        self.job.backend.get_weights(snapshot)
        counts = counts or {"updates": history.updates, "samples_seen": history.samples_seen, "time_s": round(history.elapsed(), 3)}
        result = Result(kind, epoch, counts, loss)
        self.pending.append((self.executor.submit(self._evaluate, snapshot, result), result))

    def _evaluate(self, snapshot: np.ndarray, result: Result) -> Result:
        job = self.job
        with self.lock:
            started = time.time()
            self.backend.set_weights(snapshot)
            result.metrics = evaluate(self.model, job.validation, job.config.data.batch_size)
            job.timeline.record("validate (background)", started, time.time(), thread=1)
        return result

    def ready(self) -> list[Result]:
        """Finished results, in submission order (stops at the first unfinished one)."""
        done = []
        while self.pending and self.pending[0][0].done():
            done.append(self.pending.popleft()[0].result())
        return done

    def drain(self) -> list[Result]:
        results = [future.result() for future, _ in self.pending]
        self.pending.clear()
        self.executor.shutdown(wait=True)
        return results


def _twin(model: Any) -> Any:
    """A second, compiled instance of the model's architecture."""
    import keras

    try:
        twin = keras.models.clone_model(model)
    except Exception:  # a compiled Sequential recompiles from its config, which fails for unregistered functions
        try:
            twin = type(model).from_config(model.get_config())
        except Exception as exc:
            raise ConfigError(
                f"--background-validation needs a model that keras.models.clone_model can copy (functional or Sequential): {exc}"
            ) from None
    try:
        twin.compile_from_config(model.get_compile_config())
    except Exception:  # unregistered custom loss or metric: reuse the objects themselves
        compiled = getattr(model, "_compile_metrics", None)
        twin.compile(loss=model.loss, metrics=getattr(compiled, "_user_metrics", None))
    sample = getattr(model, "inputs", None)
    if sample and not twin.built:
        twin.build(tuple(sample[0].shape))
    return twin
