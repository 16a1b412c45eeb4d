"""A block's side of a search: receive trials, train them, report.

Every rank of a block runs `serve`. The block leader (its rank 0) receives
each Assignment from the coordinator and broadcasts it to the block; each
fold (sub-block) then runs an ordinary distributed training on its own
communicator with `training.train`. After each validation every fold
leader's `on_epoch_end` hook sends the objective to the block leader, which
reports each epoch that all folds have reached (their mean) to the
coordinator and gets its prune decision back. Folds never wait for each
other; a stop (pruned, or another fold failing) reaches a fold at its next
epoch end, and returning True from the hook stops every rank of that fold.

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
from ..interrupt import Interrupted, signal_name
from ..log import LOGGER_NAME
from .layout import COORDINATOR, Layout
from .protocol import Assignment, FoldAck, FoldEpoch, FoldResult, FoldStop, HpoTag, Interrupt, Outcome, Progress, Stop

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
            message, _, _ = ctx.control.recv_object(
                source=COORDINATOR, tag=HpoTag.ASSIGN, timeout=ctx.control.limit, what="the wait for the next trial"
            )
        message = ctx.block.bcast_object(message, what="the wait for the next trial") if ctx.block.size > 1 else message
        if isinstance(message, Stop):
            if message.error is not None:
                raise message.error.on_every_rank()  # the coordinator reports it
            if message.interrupted:
                raise Interrupted(
                    f"search interrupted by {signal_name(message.interrupted)}", message.interrupted
                ).on_every_rank()  # the coordinator reports it
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
        watch = _BlockWatch(ctx, assignment.number) if ctx.block.rank == 0 else _FoldWatch(ctx, assignment.number)
    history: dict[str, Any] | None = None
    problem = ""
    interrupted = 0
    try:
        history = train(config, comm=ctx.fold, on_epoch_end=watch.on_epoch_end if watch else None)
    except Interrupted as error:
        if not error.collective:
            raise  # a second signal: stop at once
        interrupted = error.signum  # the search stops; this trial does not count
    except MpilearnError as error:
        if not error.collective:
            raise  # not a verdict shared by the fold: fail fast
        problem = str(error)
    finally:
        _clear_keras_session()
    if watch is None:
        return None
    result = watch.result(history, problem)
    if interrupted:
        result = FoldResult(ctx.fold_index, epochs=watch.epochs, interrupted=interrupted)
    if isinstance(watch, _FoldWatch):
        watch.finish(result)
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

    def __init__(self, ctx: BlockContext, number: int) -> None:
        self.ctx = ctx
        self.number = number
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
    """A fold leader that is not the block leader. It reports each epoch and
    trains on without waiting: folds differ in size, and a master that waited
    for the slowest fold would leave its workers idle (and trip their
    watchdog). A stop from the block leader is picked up at the next epoch end."""

    def __init__(self, ctx: BlockContext, number: int) -> None:
        super().__init__(ctx, number)
        self.stop = False
        self.leader = ctx.layout.fold_leader(0)

    def on_epoch_end(self, row: dict[str, Any]) -> bool:
        self.epochs += 1
        value, problem, fatal = read_row(row, self.ctx.metric)
        self.ctx.block.send_object(
            FoldEpoch(self.ctx.fold_index, int(row["epoch"]), value, problem, fatal), self.leader, HpoTag.FOLD_REPORT
        )
        self.stop = self.stop or bool(problem)  # failing: the block leader fails the trial
        while (received := self.ctx.block.poll_object(source=self.leader, tag=HpoTag.FOLD_DECISION)) is not None:
            self._take(received[0])
        return self.stop

    def _take(self, message: Any) -> bool:
        """True when `message` is the block leader's last word on this trial."""
        if isinstance(message, FoldStop) and message.number == self.number:
            self.stop = True
        return isinstance(message, FoldAck)

    def finish(self, result: FoldResult) -> None:
        """Send the fold's end and wait for the acknowledgement: every stop
        sent before it has then been received, none is left for the next trial."""
        block = self.ctx.block
        block.send_object(result, self.leader, HpoTag.FOLD_REPORT)
        while not self._take(
            block.recv_object(
                source=self.leader, tag=HpoTag.FOLD_DECISION, timeout=block.limit, what="the end of a trial"
            )[0]
        ):
            pass


class _BlockWatch(_Watch):
    """The block leader (fold 0's rank 0): collects every fold's epochs, asks
    the coordinator about each epoch all folds have reached (mean over the
    folds), stops every fold of a pruned or failing trial, and builds the
    trial's Outcome once every fold has ended."""

    def __init__(self, ctx: BlockContext, number: int) -> None:
        super().__init__(ctx, number)
        self.folds = ctx.layout.n_fold
        self.running = set(range(1, self.folds))  # other folds still training
        self.ended: dict[int, FoldResult] = {}
        self.values: dict[int, dict[int, float]] = {}  # epoch -> fold -> objective
        self.next_epoch = 1  # the next epoch to report to the coordinator
        self.problems: list[tuple[str, bool]] = []
        self.stopped = False  # every fold was told to stop (pruned or failing)
        self.pruned = False
        self.own_done = False
        self.interrupted = 0  # the search is stopping for this signal

    def on_epoch_end(self, row: dict[str, Any]) -> bool:
        self.epochs += 1
        value, problem, fatal = read_row(row, self.ctx.metric)
        self._record(0, int(row["epoch"]), value, problem, fatal)
        self._drain(wait=False)
        self._decide()
        return self.stopped

    def _record(self, fold: int, epoch: int, value: float | None, problem: str, fatal: bool) -> None:
        if problem or value is None:
            self.problems.append((problem or "no objective value", fatal))
            self._stop_all()
        else:
            self.values.setdefault(epoch, {})[fold] = value

    def _drain(self, wait: bool) -> None:
        """Take the folds' messages: all that arrived, or (wait) exactly one."""
        block, layout = self.ctx.block, self.ctx.layout
        while True:
            received = (
                block.recv_object(
                    tag=HpoTag.FOLD_REPORT,
                    timeout=block.limit,
                    what="the folds of a trial",
                    awaited=[layout.fold_leader(f) for f in sorted(self.running)],
                )
                if wait
                else block.poll_object(tag=HpoTag.FOLD_REPORT)
            )
            if received is None:
                return
            message, source, _ = received
            if isinstance(message, FoldEpoch):
                self._record(message.fold, message.epoch, message.value, message.problem, message.fatal)
            else:
                self._end(message)
                block.send_object(FoldAck(self.number), source, HpoTag.FOLD_DECISION)
            if wait:
                return

    def _end(self, result: FoldResult) -> None:
        self.running.discard(result.fold)
        self.ended[result.fold] = result
        if result.interrupted:
            self.interrupted = self.interrupted or result.interrupted
            self._stop_all()
        elif result.problem:
            self.problems.append((result.problem, result.fatal))
            self._stop_all()

    def _decide(self) -> None:
        """Report, in order, every epoch that all folds have reached."""
        while not self.stopped and len(self.values.get(self.next_epoch, {})) == self.folds:
            mean = statistics.fmean(self.values[self.next_epoch].values())
            control = self.ctx.control
            control.send_object(Progress(self.number, self.next_epoch, mean), COORDINATOR, HpoTag.REPORT)
            prune, _, _ = control.recv_object(
                source=COORDINATOR, tag=HpoTag.DECISION, timeout=control.limit, what="the wait for a prune decision"
            )
            self.next_epoch += 1
            if isinstance(prune, Interrupt):
                self.interrupted = prune.signum
                self._stop_all()
            elif prune and (self.running or not self.own_done):  # pruning a trial that has ended saves nothing
                self.pruned = True
                self._stop_all()

    def _stop_all(self) -> None:
        if self.stopped:
            return
        self.stopped = True  # fold 0 stops through its hook's return value
        for fold in sorted(self.running):
            self.ctx.block.send_object(FoldStop(self.number), self.ctx.layout.fold_leader(fold), HpoTag.FOLD_DECISION)

    def outcome(self, own: FoldResult, seconds: float) -> Outcome:
        self.own_done = True
        self._end(own)
        self._drain(wait=False)
        self._decide()
        while self.running:  # folds still training: follow them to their end
            self._drain(wait=True)
            self._decide()
        results = [self.ended[f] for f in sorted(self.ended)]
        values = tuple(r.value for r in results)
        common: dict[str, Any] = dict(number=self.number, fold_values=values, epochs=self.epochs, seconds=seconds)
        if self.interrupted:
            return Outcome(state="interrupted", signum=self.interrupted, **common)
        if self.problems:
            fatal = any(f for _, f in self.problems)
            error = next(p for p, f in self.problems if f == fatal)
            return Outcome(state="fail", error=error, fatal=fatal, **common)
        if self.pruned:
            return Outcome(state="pruned", **common)
        if any(v is None for v in values):
            return Outcome(state="fail", error="a fold ended without a result", **common)
        return Outcome(state="complete", value=statistics.fmean(v for v in values if v is not None), **common)
