"""Keras callbacks on the validating rank, called as `Model.fit` calls them.

Rank 0 holds the central model (the master's, or peer 0's under allreduce),
so callbacks run there with that model: `EarlyStopping`, `ModelCheckpoint`,
`CSVLogger`, `TensorBoard`, `ReduceLROnPlateau` (it sets the central
optimizer's learning rate, which every later update uses), `TerminateOnNaN`
and the user's own. A callback that sets `model.stop_training` stops the
whole job: the master answers STOP to each worker's next message.

The epoch logs are the ones `fit` passes: `loss` (mean training loss of the
epoch over all workers) and `val_<name>` for the validation loss and each
compiled metric. Batch hooks (`on_train_batch_end`, used by TerminateOnNaN)
are called after each master update with the epoch's running mean loss, as
`fit`'s loss tracker reports it, and only when some callback defines them.

Keras is imported at module level: import this module only after the
backend is chosen (training.py does so lazily).
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import keras

from .config import CallbacksConfig
from .errors import ConfigError
from .optional import require_tensorboard

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


class TargetMetric(keras.callbacks.Callback):
    """Stop training as soon as a logged metric reaches a target, e.g.
    `TargetMetric("val_accuracy", ">=", 0.9)`."""

    def __init__(self, monitor: str, op: str, value: float) -> None:
        super().__init__()
        if op not in _OPS:
            raise ConfigError(f"--target-metric operator must be one of {', '.join(_OPS)}; got {op!r}")
        self.monitor, self.op, self.value = monitor, op, float(value)
        self.reached_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is not None and _OPS[self.op](float(current), self.value):
            self.reached_epoch = epoch
            self.model.stop_training = True


def from_config(settings: CallbacksConfig, run_dir: str) -> list[keras.callbacks.Callback]:
    """The callbacks the command-line shortcuts ask for."""
    built: list[keras.callbacks.Callback] = []
    if settings.early_stopping:
        built.append(
            keras.callbacks.EarlyStopping(monitor=settings.early_stopping, patience=settings.patience, verbose=0)
        )
    if settings.target_metric:
        built.append(TargetMetric(settings.target_metric, settings.target_op, settings.target_value))
    if settings.tensorboard:
        require_tensorboard()
        built.append(keras.callbacks.TensorBoard(log_dir=settings.tensorboard.replace("{run_dir}", run_dir)))
    return built


def _monitored(callback: Any) -> tuple[str, str] | None:
    """(option, log key) a shortcut callback watches, to check against the logs."""
    if isinstance(callback, TargetMetric):
        return "--target-metric", callback.monitor
    if isinstance(callback, keras.callbacks.EarlyStopping):
        return "--early-stopping", callback.monitor
    return None


def _defines(callback: Any, hook: str) -> bool:
    return getattr(type(callback), hook, None) is not getattr(keras.callbacks.Callback, hook)


def epoch_logs(row: dict[str, Any]) -> dict[str, float]:
    """A history row -> the logs dict `fit` gives on_epoch_end."""
    logs: dict[str, float] = {}
    if "train_loss" in row:
        logs["loss"] = float(row["train_loss"])
    logs.update({k: float(v) for k, v in row.items() if k.startswith("val_")})
    return logs


def describe_callback(callback: Any) -> str:
    """`EarlyStopping(monitor='val_loss', patience=3)`, or the class name of another callback."""
    name = type(callback).__name__
    fields = [
        f"{key}={getattr(callback, key)!r}" for key in ("monitor", "patience", "target") if hasattr(callback, key)
    ]
    return f"{name}({', '.join(fields)})" if fields else name


class CallbackRunner:
    """A `keras.callbacks.CallbackList` around the central model, driven by
    the validations of a distributed run instead of `fit`'s loop."""

    def __init__(
        self,
        model: Any,
        callbacks: Sequence[Any],
        epochs: int,
        steps: int | None,
        start_epoch: int = 0,
        checked: Sequence[Any] = (),
    ) -> None:
        self.model = model
        self.callbacks = list(callbacks)
        self.list = keras.callbacks.CallbackList(
            self.callbacks, add_history=False, add_progbar=False, model=model, epochs=epochs, steps=steps, verbose=0
        )
        self.epoch = start_epoch
        self.batch = 0
        self.batch_hooks = any(
            _defines(c, h)
            for c in self.callbacks
            for h in ("on_train_batch_end", "on_batch_end", "on_train_batch_begin", "on_batch_begin")
        )
        # Shortcut callbacks whose metric must be in the logs (user callbacks get Keras's own warning).
        self.checked = [m for m in (_monitored(c) for c in checked) if m]
        self.logs: dict[str, float] = {}
        # The callback that set model.stop_training, described (for the stop message).
        self.stopped_by = ""

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def begin(self) -> None:
        self.model.stop_training = False
        self.list.on_train_begin()
        self.list.on_epoch_begin(self.epoch)

    def update(self, loss: float | None) -> bool:
        """After one master update; True when a batch hook stopped training."""
        if not self.batch_hooks:
            return False
        logs = {} if loss is None else {"loss": float(loss)}
        self.list.on_train_batch_begin(self.batch)
        self._each("on_train_batch_end", self.batch, logs)
        self.batch += 1
        return bool(self.model.stop_training)

    def epoch_end(self, row: dict[str, Any], last: bool) -> bool:
        """After the validation of an epoch; True when a callback stopped training."""
        logs = epoch_logs(row)
        for option, key in self.checked:
            if key not in logs:
                raise ConfigError(
                    f"{option}: {key!r} is not logged by this run; logged: {', '.join(sorted(logs)) or 'nothing'}"
                    + ("" if any(k.startswith("val_") for k in logs) else " (no validation data: give --val)")
                )
        self._each("on_epoch_end", self.epoch, logs)
        self.logs = logs
        stop = bool(self.model.stop_training)
        self.epoch += 1
        self.batch = 0
        if not stop and not last:
            self.list.on_epoch_begin(self.epoch)
        return stop

    def _each(self, hook: str, index: int, logs: dict[str, float]) -> None:
        """Call `hook` on every callback in order, as CallbackList does, noting
        the first one that stops training."""
        for callback in self.list.callbacks:
            was = bool(self.model.stop_training)
            getattr(callback, hook)(index, logs)
            if self.model.stop_training and not was and not self.stopped_by:
                self.stopped_by = describe_callback(callback)

    def end(self) -> None:
        self.list.on_train_end(self.logs)
