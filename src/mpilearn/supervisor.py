"""What rank 0 does around the training loop besides training: the one
epoch-end path (evaluate, record, callbacks, checkpoint, stop), progress,
validation every N updates and background validation.

The loops call two methods on rank 0: `epoch_reached(epoch, optimizer)`
when every worker has finished an epoch (the master; peer 0 after the
peers' epoch), and `on_update()` after each update the master folds in
(peer 0 after each of its steps). Both return True to stop training; a
master then answers STOP to each worker's next message. The end of the run
adds a final validation through the same path (`final_validation`).

With --background-validation (see roles/background.py) an epoch end only
snapshots the weights and writes the checkpoint; the row, the callbacks and
the stop decision come one or more updates late, from `on_update`, and
callbacks that act on the model (ModelCheckpoint, EarlyStopping's
restore_best_weights) see the central model as it is then, a few updates
past the snapshot that was validated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from .config import RunConfig
from .history import History, progress_line
from .interrupt import STOP
from .log import get_logger
from .progress import Progress, resolve_mode
from .roles.background import BackgroundValidation, Result
from .roles.checkpointer import Checkpointer
from .roles.job import Workload
from .roles.validator import Validator
from .timeline import Timeline

if TYPE_CHECKING:
    from .callbacks import CallbackRunner

# A hook called on the validating rank after each epoch row; True stops training (mpilearn.fit, HPO pruning).
EpochHook = Callable[[dict[str, Any]], bool]


class Supervisor:
    def __init__(
        self,
        config: RunConfig,
        history: History,
        workload: Workload,
        timeline: Timeline,
        validator: Validator,
        checkpointer: Checkpointer,
        callbacks: CallbackRunner,
        progress: Progress,
        background: BackgroundValidation | None = None,
        user_hook: EpochHook | None = None,
    ) -> None:
        self.config, self.history, self.workload, self.timeline = config, history, workload, timeline
        self.validator, self.checkpointer, self.callbacks, self.progress = validator, checkpointer, callbacks, progress
        self.background, self.user_hook = background, user_hook
        self.log = get_logger()
        self._last_validated = history.updates

    # ---- set-up and tear-down ----------------------------------------------
    def start(self) -> None:
        """Just before the clock starts: the callbacks' on_train_begin and the progress display."""
        for row in self.history.epochs:  # a resumed run's best so far
            self.progress.best.see(row)
        self.callbacks.begin()
        self.progress.start(self.history.samples_seen)

    def finish(self) -> None:
        """After the loop: outstanding background validations and the callbacks' on_train_end."""
        try:
            if self.background is not None:
                for result in self.background.drain():
                    self._background_row(result, stopping=False)
        finally:
            self.progress.close()
        self.callbacks.end()

    def final_validation(self) -> None:
        """The end of the run: a last row when updates came after the last validation."""
        history = self.history
        if not history.epochs or history.epochs[-1]["updates"] != history.updates:
            epochs_done = sum(1 for r in history.epochs if r.get("kind") != "updates")  # not --validate-every rows
            row = history.record_epoch(epochs_done + 1, self.validator.evaluate(epochs_done + 1))
            row["final"] = True
            self.log.info(
                "%s", progress_line(row, self.config.epochs, history.samples_seen / max(history.train_time_s, 1e-9))
            )

    # ---- the epoch-end path ----------------------------------------------------
    def epoch_reached(self, epoch: int, optimizer: Any) -> bool:
        """Every worker has finished `epoch` (1-based). `optimizer` is the one that steps the central
        weights on this rank (its state goes into the checkpoint), None when none does. True stops."""
        # SIGTERM/SIGINT: stop at this epoch end, with a checkpoint when checkpoints are on (interrupt.py).
        interrupted = STOP.requested and epoch < self.config.epochs
        if self.background is not None:  # the row, callbacks and stop decision come later, from on_update
            self.background.submit(epoch)
            self.checkpointer(epoch, optimizer, force=interrupted)
            return STOP.act(interrupted)
        with self.timeline.span("validate"):
            metrics = self.validator.evaluate(epoch)
        stop = self._close_epoch(epoch, metrics)
        self.checkpointer(epoch, optimizer, force=interrupted)
        requested = stop and self.stop(f"after epoch {epoch}", early=epoch < self.config.epochs)
        return STOP.act(interrupted) or requested

    def _close_epoch(self, epoch: int, metrics: dict[str, float], counts: dict[str, Any] | None = None) -> bool:
        """Record the epoch's row, show it, run the callbacks and the user's hook; True asks to stop."""
        row = self.history.record_epoch(epoch, metrics, counts=counts)
        elapsed = self.history.elapsed()
        self.progress.row(row, self.history.samples_seen / elapsed if elapsed else 0.0)
        stop = self.callbacks.epoch_end(row, last=row["epoch"] >= self.config.epochs)
        if stop:
            self.log.info("%s stopped training after epoch %d", self.callbacks.stopped_by or "a callback", row["epoch"])
        return (bool(self.user_hook(row)) if self.user_hook else False) or stop

    def stop(self, why: str, early: bool) -> bool:
        """Training stops: said once, and recorded as early when epochs were left."""
        if not self.history.stopped_early:
            self.log.info("stopping: requested %s", why)
        self.history.stopped_early = self.history.stopped_early or early
        return True

    # ---- after each update -----------------------------------------------------
    def on_update(self, samples: int | None = None, loss: float | None = None, updates: int | None = None) -> bool:
        """After an update. Peers pass this epoch's counts, which reach the
        history only at the epoch's end; a master's are in it already."""
        history = self.history
        samples_now = history.samples_seen + (samples or 0)
        updates_now = history.updates + (updates or 0)
        # The running loss costs a sum over workers: computed only for whoever shows or uses it.
        running = (lambda: loss) if loss is not None else history.running_loss
        stop = False
        self.progress.update(samples_now, running)
        if self.callbacks.batch_hooks:
            with self.timeline.span("callbacks"):
                if self.callbacks.update(running()):
                    stop = self.stop(f"by {self.callbacks.stopped_by or 'a callback'} at a batch end", early=True)
        every = self.config.validate_every
        if every and updates_now - self._last_validated >= every and self.validator.available:
            self._last_validated = updates_now
            loss = running()
            counts = {"updates": updates_now, "samples_seen": samples_now, "time_s": round(history.elapsed(), 3)}
            epoch = round(samples_now / max(1, self.workload.samples_per_epoch), 3)
            if self.background is not None:
                # Skipped while the thread is still busy: a slower validation than N updates
                # would otherwise queue up snapshots without end. Epoch validations always run.
                if not self.background.busy():
                    self.background.submit(epoch, "updates", counts, loss)
            else:
                with self.timeline.span("validate"):
                    metrics = self.validator.evaluate(epoch)
                self._updates_row(metrics, epoch, counts, loss)
        if self.background is not None:
            for result in self.background.ready():
                stop = self._background_row(result, stopping=True) or stop
        return stop

    # ---- helpers -------------------------------------------------------------
    def _updates_row(self, metrics: dict[str, float], epoch: float, counts: dict[str, Any], loss: float | None) -> None:
        row = self.history.record_validation(metrics, epoch, counts, loss)
        self.progress.row(row, 0.0)

    def _background_row(self, result: Result, stopping: bool) -> bool:
        if result.kind == "updates":
            self._updates_row(result.metrics, result.epoch, result.counts, result.loss)
            return False
        epoch = int(result.epoch)
        stop = self._close_epoch(epoch, result.metrics, result.counts)
        return stop and stopping and self.stop(f"after epoch {epoch}", early=epoch < self.config.epochs)


def build(
    config: RunConfig,
    history: History,
    backend: Any,
    workload: Workload,
    timeline: Timeline,
    validator: Validator,
    checkpointer: Checkpointer,
    *,
    callbacks: Sequence[Any] = (),
    user_hook: EpochHook | None = None,
    background: bool = False,
    shares_terminal: bool = False,
    start_epoch: int = 0,
) -> Supervisor:
    """Rank 0's supervisor and what it needs: the Keras callbacks (the user's, then the command-line
    shortcuts), the progress display, and background validation when asked for and possible
    (`background`: this rank is a master). `shares_terminal`: one block of a larger job
    (hyperparameter search), whose terminal several blocks print to."""
    from . import callbacks as keras_callbacks  # imports keras: the backend is set by now

    shortcuts = keras_callbacks.from_config(config.callbacks, config.run_dir)
    runner = keras_callbacks.CallbackRunner(
        backend.model, list(callbacks) + shortcuts, config.epochs, workload.updates_per_epoch, start_epoch, shortcuts
    )
    best_key = config.callbacks.early_stopping or config.callbacks.target_metric or None
    mode = resolve_mode(config.progress, config.quiet)
    if mode == "bar" and config.progress == "auto" and shares_terminal:
        mode = "lines"
    log = get_logger()
    progress = Progress(
        mode,
        config.epochs,
        workload.samples_per_epoch,
        log,
        best_key if best_key and best_key.startswith("val_") else None,
        start_epoch,
    )
    validating = None
    if config.background_validation:
        if background and validator.available:
            validating = BackgroundValidation(backend, validator, history, timeline)
        else:
            log.info("--background-validation applies to runs with a master and validation data: validating inline")
    return Supervisor(
        config, history, workload, timeline, validator, checkpointer, runner, progress, validating, user_hook
    )
