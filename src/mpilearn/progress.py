"""Progress on rank 0: a live tqdm bar on a terminal, plain log lines otherwise.

Under `mpiexec` no rank's stdout is a terminal (the launcher pipes it), so
`mpilearn train -n N`, which starts mpiexec itself, tells its ranks through
MPILEARN_TTY (the terminal's width) that its own output is one. With a user's
own mpiexec in a terminal, `--progress bar` asks for the bar. Log lines carry
no carriage returns or escape codes, so SLURM and CI logs stay readable; a
long epoch still gets a line every LINE_INTERVAL_S seconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from typing import Any, Callable

from .env import TTY
from .history import progress_line

# Seconds between two in-epoch log lines when no bar is shown.
LINE_INTERVAL_S = 30.0
# Seconds between two refreshes of the bar's text (the bar itself is throttled by tqdm).
BAR_REFRESH_S = 0.5


def resolve_mode(setting: str, quiet: bool) -> str:
    """'bar', 'lines' or 'off' for a --progress setting."""
    if quiet:
        return "off"
    if setting != "auto":
        return setting
    return "bar" if sys.stdout.isatty() or os.environ.get(TTY) else "lines"


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Best:
    """The best value so far of one validation metric (lower is better for losses)."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self.value: float | None = None

    def see(self, row: dict[str, Any]) -> None:
        if self.key is None:
            self.key = next((k for k in ("val_accuracy", "val_loss") if k in row), None) or next(
                (k for k in row if k.startswith("val_")), None
            )
        key = self.key
        value = row.get(key) if key else None
        if key is None or value is None or not math.isfinite(float(value)):
            return
        lower = "loss" in key or "error" in key
        if self.value is None or (value < self.value if lower else value > self.value):
            self.value = float(value)

    def text(self) -> str:
        return f"best {self.key} {self.value:.4f}" if self.value is not None and self.key else ""


class Progress:
    def __init__(
        self,
        mode: str,
        epochs: int,
        samples_per_epoch: int,
        log: logging.Logger,
        best_key: str | None = None,
        start_epoch: int = 0,
    ) -> None:
        self.mode = mode
        self.epochs = epochs
        self.samples_per_epoch = max(1, samples_per_epoch)
        self.total = self.samples_per_epoch * epochs
        self.log = log
        self.best = Best(best_key)
        self.bar: Any = None
        self._stack = contextlib.ExitStack()
        self._start = time.perf_counter()
        self._start_samples = start_epoch * self.samples_per_epoch
        self._last_text = 0.0
        self._last_line = time.perf_counter()

    def start(self, samples: int = 0) -> None:
        self._start = time.perf_counter()
        self._start_samples = samples
        self._last_line = self._start
        if self.mode != "bar":
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        columns = os.environ.get(TTY, "")
        self.bar = self._stack.enter_context(
            tqdm(
                total=self.total,
                initial=samples,
                unit="sample",
                unit_scale=True,
                file=sys.stdout,
                mininterval=BAR_REFRESH_S,
                ncols=int(columns) if columns.isdigit() and int(columns) > 20 else None,
                desc=self._epoch_text(samples),
                leave=True,
                smoothing=0.1,
            )
        )
        # Log lines (epoch results) print above the bar instead of through it.
        self._stack.enter_context(logging_redirect_tqdm([self.log]))

    def _epoch_text(self, samples: int) -> str:
        return f"epoch {min(self.epochs, samples // self.samples_per_epoch + 1)}/{self.epochs}"

    def update(self, samples: int, running_loss: Callable[[], float | None]) -> None:
        """Samples trained so far (all workers) and how to get the epoch's running mean loss."""
        now = time.perf_counter()
        if self.bar is not None:
            if now - self._last_text >= BAR_REFRESH_S:
                self._last_text = now
                loss = running_loss()
                parts = [f"loss {loss:.4f}" if loss is not None else "", self.best.text()]
                self.bar.set_description_str(self._epoch_text(samples), refresh=False)
                self.bar.set_postfix_str("  ".join(p for p in parts if p), refresh=False)
            self.bar.update(samples - self.bar.n)
        elif self.mode == "lines" and now - self._last_line >= LINE_INTERVAL_S:
            self._last_line = now
            loss = running_loss()
            rate = (samples - self._start_samples) / max(now - self._start, 1e-9)
            within = samples % self.samples_per_epoch
            eta = (self.total - samples) / rate if rate > 0 else float("nan")
            text = f"{self._epoch_text(samples)}  {100 * within // self.samples_per_epoch}%  {rate:.0f} samples/s"
            if loss is not None:
                text += f"  loss {loss:.4f}"
            if self.best.text():
                text += f"  {self.best.text()}"
            if math.isfinite(eta):
                text += f"  ETA {_duration(eta)}"
            self.log.info("%s", text)

    def row(self, row: dict[str, Any], samples_per_s: float) -> None:
        """One validation result: a log line (above the bar when there is one)."""
        self.best.see(row)
        if row.get("kind") == "updates":
            metrics = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_") or k == "train_loss")
            self.log.info(
                "validation at update %d (epoch %.2f)  %s  %.1fs", row["updates"], row["epoch"], metrics, row["time_s"]
            )
        else:
            self.log.info("%s", progress_line(row, self.epochs, samples_per_s))

    def close(self) -> None:
        self._stack.close()
        self.bar = None
