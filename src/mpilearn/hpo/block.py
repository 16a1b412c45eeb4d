"""A block's side of a search: receive trials, train them, report.

Every rank of a block runs `serve`. The block leader (its rank 0) receives
each Assignment from the coordinator and broadcasts it to the block; each
fold (sub-block) then runs an ordinary distributed training on its own
communicator with `training.train`. After each validation the fold leaders'
`on_epoch_end` hooks meet at the block leader, which reports the mean to the
coordinator and passes its prune decision back; returning True from the hook
stops every rank of the fold, so all folds of a trial stop together.

A trial fails, and the search goes on, when training ends with an error that
every rank of its fold raised alike (a bad model, a bad value), or when a loss
or the objective is not finite. Any other error follows the fail-fast rule:
train() aborts the whole job.
"""
from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from ..comm import Communicator
from ..errors import MpilearnError
from ..log import LOGGER_NAME
from .layout import COORDINATOR, Layout
from .protocol import Assignment, FoldEpoch, FoldResult, HpoTag, Outcome, Progress, Stop

# Results that must be finite for a trial to count (besides the objective).
_GUARDED = ("val_loss", "train_loss")


@dataclass
class BlockContext:
    control: Communicator  # all ranks of the job; the block leader talks to the coordinator on it
    block: Communicator  # the ranks of this block
    fold: Communicator  # the ranks of this fold (the block itself without --n-fold)
    layout: Layout
    block_index: int
    fold_index: int
    metric: str
    # --skip-bad-batches was asked for: skipped batches do not fail a trial.
    tolerate_skipped: bool = False


class _TrialPrefix(logging.Filter):
    """Prefix the training's log lines with the trial they belong to (the
    training's own prefix names the rank inside its fold)."""

    def __init__(self) -> None:
        super().__init__()
        self.prefix = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if self.prefix and isinstance(record.msg, str):
            record.msg = self.prefix + record.msg
        return True


_PREFIX = _TrialPrefix()


def serve(ctx: BlockContext) -> None:
    """Train the coordinator's trials until it says stop."""
    logger = logging.getLogger(LOGGER_NAME)
    if _PREFIX not in logger.filters:
        logger.addFilter(_PREFIX)
    leader = ctx.block.rank == 0
    while True:
        message: Any = None
        if leader:
            message, _, _ = ctx.control.recv_object(source=COORDINATOR, tag=HpoTag.ASSIGN)
        message = ctx.block.bcast_object(message) if ctx.block.size > 1 else message
        if isinstance(message, Stop):
            if message.error is not None:
                message.error.collective = True  # type: ignore[attr-defined]  # the coordinator reports it
                raise message.error
            return
        assert isinstance(message, Assignment)
        fold = f" fold {ctx.fold_index}" if ctx.layout.n_fold > 1 else ""
        _PREFIX.prefix = f"trial {message.number} (block {ctx.block_index}{fold}): "
        outcome = run_trial(ctx, message)
        _PREFIX.prefix = ""
        if leader:
            assert outcome is not None
            ctx.control.send_object(outcome, COORDINATOR, HpoTag.REPORT)


def run_trial(ctx: BlockContext, assignment: Assignment) -> Outcome | None:
    """This rank's part of one trial; the block leader returns the Outcome."""
    from ..training import train  # keras and the backend load on block ranks only

    started = time.perf_counter()
    config = assignment.configs[ctx.fold_index]
    fold_leader = ctx.fold.rank == 0
    watch: _Watch | None = None
    if fold_leader:
        watch = _BlockWatch(ctx, assignment) if ctx.block.rank == 0 else _FoldWatch(ctx)
    history: dict[str, Any] | None = None
    problem = ""
    try:
        history = train(config, comm=ctx.fold, on_epoch_end=watch.on_epoch_end if watch else None)
    except MpilearnError as error:
        if not getattr(error, "collective", False):
            raise  # not a verdict shared by the fold: fail fast
        problem = str(error)
    finally:
        _clear_keras_session()
    if watch is None:
        return None
    result = watch.result(history, problem)
    if isinstance(watch, _FoldWatch):
        ctx.block.send_object(result, ctx.layout.fold_leader(0), HpoTag.FOLD_REPORT)
        return None
    assert isinstance(watch, _BlockWatch)
    return watch.outcome(result, time.perf_counter() - started)


def _clear_keras_session() -> None:
    """Free the trial's model and reset Keras's name counters between trials."""
    try:
        import keras

        keras.backend.clear_session()
    except Exception:  # pragma: no cover - a backend that cannot clear keeps going
        pass


def read_row(row: dict[str, Any], metric: str) -> tuple[float | None, str, bool]:
    """(objective, problem, fatal) of one validation row."""
    if metric not in row:
        names = ", ".join(k for k in row if k.startswith("val_") or k == "train_loss")
        return None, f"--metric {metric} is not among the validation results ({names})", True
    for key in (metric, *_GUARDED):
        value = row.get(key)
        if value is not None and not math.isfinite(value):
            return None, f"{key} is {value} after epoch {row.get('epoch')}", False
    return float(row[metric]), "", False


class _Watch:
    """What one fold leader sees of its training."""

    def __init__(self, ctx: BlockContext) -> None:
        self.ctx = ctx
        self.epochs = 0

    def on_epoch_end(self, row: dict[str, Any]) -> bool:
        raise NotImplementedError

    def result(self, history: dict[str, Any] | None, problem: str) -> FoldResult:
        fold = self.ctx.fold_index
        if problem:
            return FoldResult(fold, problem=problem, epochs=self.epochs)
        rows = (history or {}).get("epochs") or []
        if not rows:
            return FoldResult(fold, problem="training ended without a validation result", epochs=self.epochs)
        value, problem, fatal = read_row(rows[-1], self.ctx.metric)
        skipped = int((history or {}).get("skipped_batches") or 0)
        if skipped and not problem and not self.ctx.tolerate_skipped:
            problem = f"{skipped} batches had a NaN or infinite loss (pass --skip-bad-batches to tolerate them)"
        return FoldResult(fold, value=value, problem=problem, fatal=fatal, epochs=self.epochs)


class _FoldWatch(_Watch):
    """A fold leader that is not the block leader: report each epoch, obey."""

    def on_epoch_end(self, row: dict[str, Any]) -> bool:
        self.epochs += 1
        value, problem, fatal = read_row(row, self.ctx.metric)
        block = self.ctx.block
        block.send_object(FoldEpoch(self.ctx.fold_index, int(row["epoch"]), value, problem, fatal),
                          self.ctx.layout.fold_leader(0), HpoTag.FOLD_REPORT)
        stop, _, _ = block.recv_object(source=self.ctx.layout.fold_leader(0), tag=HpoTag.FOLD_DECISION)
        return bool(stop)


class _BlockWatch(_Watch):
    """The block leader: gathers every fold's epoch, asks the coordinator
    whether to prune, answers the folds, and builds the trial's Outcome."""

    def __init__(self, ctx: BlockContext, assignment: Assignment) -> None:
        super().__init__(ctx)
        self.number = assignment.number
        self.running = set(range(1, ctx.layout.n_fold))  # other folds still training
        self.ended: dict[int, FoldResult] = {}
        self.problems: list[tuple[str, bool]] = []
        self.pruned = False

    def _receive(self) -> tuple[Any, int]:
        message, source, _ = self.ctx.block.recv_object(tag=HpoTag.FOLD_REPORT)
        return message, source

    def _note_end(self, result: FoldResult) -> None:
        self.running.discard(result.fold)
        self.ended[result.fold] = result
        if result.problem:
            self.problems.append((result.problem, result.fatal))

    def on_epoch_end(self, row: dict[str, Any]) -> bool:
        self.epochs += 1
        epoch = int(row["epoch"])
        value, problem, fatal = read_row(row, self.ctx.metric)
        values = [value]
        if problem:
            self.problems.append((problem, fatal))
        waiting: list[int] = []
        pending = set(self.running)
        while pending:  # one message from every other fold still training
            message, source = self._receive()
            pending.discard(message.fold)
            if isinstance(message, FoldEpoch):
                waiting.append(source)
                values.append(message.value)
                if message.problem:
                    self.problems.append((message.problem, message.fatal))
            else:
                self._note_end(message)
        stop = bool(self.problems)
        if not stop:
            mean = statistics.fmean(v for v in values if v is not None)
            control = self.ctx.control
            control.send_object(Progress(self.number, epoch, mean), COORDINATOR, HpoTag.REPORT)
            prune, _, _ = control.recv_object(source=COORDINATOR, tag=HpoTag.DECISION)
            stop = self.pruned = bool(prune)
        for source in waiting:
            self.ctx.block.send_object(stop, source, HpoTag.FOLD_DECISION)
        return stop

    def outcome(self, own: FoldResult, seconds: float) -> Outcome:
        self._note_end(own)
        while self.running:  # folds that outlived this one: tell them to stop, collect their ends
            message, source = self._receive()
            if isinstance(message, FoldEpoch):
                self.ctx.block.send_object(True, source, HpoTag.FOLD_DECISION)
            else:
                self._note_end(message)
        results = [self.ended[f] for f in sorted(self.ended)]
        values = tuple(r.value for r in results)
        common = dict(number=self.number, fold_values=values, epochs=self.epochs, seconds=seconds)
        if self.problems:
            fatal = any(f for _, f in self.problems)
            error = next(p for p, f in self.problems if f == fatal)
            return Outcome(state="fail", error=error, fatal=fatal, **common)  # type: ignore[arg-type]
        if self.pruned:
            return Outcome(state="pruned", **common)  # type: ignore[arg-type]
        if any(v is None for v in values):
            return Outcome(state="fail", error="a fold ended without a result", **common)  # type: ignore[arg-type]
        return Outcome(state="complete", value=statistics.fmean(values), **common)  # type: ignore[arg-type]
