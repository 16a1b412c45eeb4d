"""What a run records: validation per epoch, per-worker training loss, counts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WorkerStats:
    """Running sums for one worker within the current epoch."""

    loss_sum: float = 0.0
    batches: int = 0
    samples: int = 0


@dataclass
class History:
    config: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    # worker rank -> list of per-epoch mean training loss
    worker_loss: dict[int, list[float]] = field(default_factory=dict)
    samples_seen: int = 0
    updates: int = 0
    train_time_s: float = 0.0
    stopped_early: bool = False
    # Asynchronous modes: master steps between the weights an update was
    # computed on and its arrival (staleness -> count), and updates dropped
    # for exceeding --max-staleness.
    staleness: dict[int, int] = field(default_factory=dict)
    dropped_updates: int = 0
    # Batches skipped for a NaN or infinite loss (--skip-bad-batches).
    skipped_batches: int = 0
    # worker rank -> per epoch: samples it trained, and when (s of training) its epoch ended
    # at the master: per-worker throughput for `mpilearn report`.
    worker_samples: dict[int, list[int]] = field(default_factory=dict)
    worker_epoch_end_s: dict[int, list[float]] = field(default_factory=dict)
    _start: float = field(default_factory=time.perf_counter, repr=False)
    _current: dict[int, WorkerStats] = field(default_factory=dict, repr=False)

    # Training time of the runs this one resumes.
    time_before: float = 0.0
    # Each rank's start-up, in parts, as the end of training gathers it (startup_times.section).
    startup: dict[str, Any] | None = None

    def start_clock(self) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return self.time_before + time.perf_counter() - self._start

    def record_update(self, worker: int, loss_sum: float, batches: int, samples: int, updates: int = 1) -> None:
        stats = self._current.setdefault(worker, WorkerStats())
        stats.loss_sum += loss_sum
        stats.batches += batches
        stats.samples += samples
        self.samples_seen += samples
        self.updates += updates

    def record_staleness(self, staleness: int) -> None:
        self.staleness[staleness] = self.staleness.get(staleness, 0) + 1

    def close_worker_epoch(self, worker: int) -> None:
        stats = self._current.pop(worker, WorkerStats())
        mean = stats.loss_sum / stats.batches if stats.batches else float("nan")
        self.worker_loss.setdefault(worker, []).append(mean)
        self.worker_samples.setdefault(worker, []).append(stats.samples)
        self.worker_epoch_end_s.setdefault(worker, []).append(round(self.elapsed(), 3))

    def running_loss(self) -> float | None:
        """Mean batch loss of the current epoch so far, over all workers (fit's running 'loss')."""
        batches = sum(s.batches for s in self._current.values())
        return sum(s.loss_sum for s in self._current.values()) / batches if batches else None

    def record_validation(
        self, metrics: dict[str, float], epoch: float, counts: dict[str, Any], train_loss: float | None
    ) -> dict[str, Any]:
        """A validation between epoch ends (--validate-every): a row of kind "updates" at fractional `epoch`."""
        row: dict[str, Any] = {"epoch": epoch, "kind": "updates"}
        row.update({f"val_{k}": float(v) for k, v in metrics.items()})
        if train_loss is not None:
            row["train_loss"] = float(train_loss)
        row.update(counts)
        self.epochs.append(row)
        return row

    def record_epoch(
        self, epoch: int, metrics: dict[str, float], counts: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The row of an epoch's validation; `counts` (updates, samples_seen, time_s) when the
        validated weights are a snapshot taken earlier (background validation)."""
        row: dict[str, Any] = {"epoch": epoch}
        row.update({f"val_{k}": float(v) for k, v in metrics.items()})
        losses = [v[epoch - 1] for v in self.worker_loss.values() if len(v) >= epoch]
        if losses:
            row["train_loss"] = sum(losses) / len(losses)
        row.update(
            counts or {"updates": self.updates, "samples_seen": self.samples_seen, "time_s": round(self.elapsed(), 3)}
        )
        self.epochs.append(row)
        return row

    def finish(self) -> None:
        self.train_time_s = self.elapsed()

    def snapshot(self) -> dict[str, Any]:
        """to_dict as of now, for a checkpoint taken mid-run."""
        self.train_time_s = self.elapsed()
        return self.to_dict()

    @classmethod
    def resumed(cls, config: dict[str, Any], saved: dict[str, Any]) -> "History":
        """Continue the history a checkpoint saved (inverse of to_dict)."""
        history = cls(config)
        history.epochs = list(saved["epochs"])
        history.worker_loss = {int(w): list(v["train_loss"]) for w, v in saved["workers"].items()}
        history.worker_samples = {int(w): list(v.get("samples", [])) for w, v in saved["workers"].items()}
        history.worker_epoch_end_s = {int(w): list(v.get("epoch_end_s", [])) for w, v in saved["workers"].items()}
        history.samples_seen = saved["samples_seen"]
        history.updates = saved["updates"]
        history.staleness = {int(k): v for k, v in saved.get("staleness", {}).items()}
        history.dropped_updates = saved.get("dropped_updates", 0)
        history.skipped_batches = saved.get("skipped_batches", 0)
        history.time_before = saved["train_time_s"]
        return history

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "epochs": self.epochs,
            "train_time_s": self.train_time_s,
            "samples_seen": self.samples_seen,
            "samples_per_s": self.samples_seen / self.train_time_s if self.train_time_s else None,
            "updates": self.updates,
            "stopped_early": self.stopped_early,
            "staleness": {str(k): v for k, v in sorted(self.staleness.items())},
            "dropped_updates": self.dropped_updates,
            "skipped_batches": self.skipped_batches,
            "workers": {
                str(w): {
                    "train_loss": losses,
                    "samples": self.worker_samples.get(w, []),
                    "epoch_end_s": self.worker_epoch_end_s.get(w, []),
                }
                for w, losses in sorted(self.worker_loss.items())
            },
            **({"startup": self.startup} if self.startup is not None else {}),
        }


def progress_line(row: dict[str, Any], epochs: int, samples_per_s: float) -> str:
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_") or k == "train_loss")
    where = "final validation" if row.get("final") else f"epoch {row['epoch']}/{epochs}"
    return f"{where}  {metrics}  updates {row['updates']}  {row['time_s']:.1f}s  {samples_per_s:.0f} samples/s"
