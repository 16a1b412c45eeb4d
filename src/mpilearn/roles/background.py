"""Background validation (`--background-validation`, masters only).

At an epoch end the master copies the central weights into a numpy snapshot
and goes on serving workers while a thread loads the snapshot into a second
model (`keras.models.clone_model` + compile) and evaluates it. The supervisor
picks up the results after later updates (see supervisor.py). The validation
thread competes with the master for CPU.
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..backends import ModelBackend
from ..errors import ConfigError
from ..history import History
from ..timeline import Timeline
from .validator import Validator


@dataclass
class Result:
    """One validation of a snapshot: of an epoch end, or of a --validate-every point."""

    kind: Literal["epoch", "updates"]
    epoch: float
    # updates, samples_seen and time_s when the snapshot was taken.
    counts: dict[str, Any]
    loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)


class BackgroundValidation:
    """Evaluates snapshots of the central weights on a second model in one
    background thread, in submission order."""

    def __init__(self, backend: ModelBackend, validator: Validator, history: History, timeline: Timeline) -> None:
        from .. import backends

        self.central, self.history, self.timeline = backend, history, timeline
        model = _twin(backend.model)
        self.backend = backends.for_model(model)
        if self.backend.layout != backend.layout:
            raise ConfigError(
                "--background-validation: the cloned model's variables differ from the model's; validate inline"
            )
        self.validator = validator.twin(model)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpilearn-validation")
        self.pending: collections.deque[tuple[Future, Result]] = collections.deque()
        self.lock = threading.Lock()  # one evaluation at a time on the twin model

    def busy(self) -> bool:
        """A validation is still queued or running."""
        return any(not future.done() for future, _ in self.pending)

    def submit(
        self,
        epoch: float,
        kind: Literal["epoch", "updates"] = "epoch",
        counts: dict[str, Any] | None = None,
        loss: float | None = None,
    ) -> None:
        """Snapshot the central weights now (master thread) and validate them later."""
        history = self.history
        snapshot = np.empty(self.central.layout.size, dtype=np.float32)
        self.central.get_weights(snapshot)
        counts = counts or {
            "updates": history.updates,
            "samples_seen": history.samples_seen,
            "time_s": round(history.elapsed(), 3),
        }
        result = Result(kind, epoch, counts, loss)
        self.pending.append((self.executor.submit(self._evaluate, snapshot, result), result))

    def _evaluate(self, snapshot: np.ndarray, result: Result) -> Result:
        with self.lock:
            started = time.time()
            self.backend.set_weights(snapshot)
            result.metrics = self.validator.evaluate(result.epoch)
            self.timeline.record("validate (background)", started, time.time(), thread=1)
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
