"""`--monitor`: every rank samples its CPU and memory (and the node's GPUs
when `nvidia-smi` is there) once a second in a daemon thread; at the end rank
0 gathers the samples and writes RUN_DIR/monitor.json.

CPU is the process's own share in percent of one core (over 100 with several
threads), as `top` shows it; memory is the resident set size. GPUs are read
by the first rank of each node only, since every rank of a node sees them all.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .log import get_logger
from .rundir import atomic_write_json

MONITOR = "monitor.json"
INTERVAL_S = 1.0
_GPU_QUERY = ["--query-gpu=index,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"]


def _gpu_sample(nvidia_smi: str) -> list[dict[str, float]] | None:
    try:
        out = subprocess.run([nvidia_smi, *_GPU_QUERY], capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        try:
            index, util, used, total = (float(f) for f in fields[:4])
        except ValueError:
            continue
        gpus.append({"index": int(index), "util_percent": util, "memory_mb": used, "memory_total_mb": total})
    return gpus


class Monitor:
    """Samples this process in a daemon thread until stopped."""

    def __init__(self, rank: int, role: str, local_rank: int = 0, interval_s: float = INTERVAL_S) -> None:
        import psutil

        self.rank, self.role, self.interval_s = rank, role, interval_s
        self.process = psutil.Process()
        self.nvidia_smi = shutil.which("nvidia-smi") if local_rank == 0 else None
        self.samples: dict[str, list[Any]] = {"t": [], "cpu_percent": [], "rss_mb": [], "threads": []}
        self.gpu: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mpilearn-monitor", daemon=True)
        self._start = 0.0

    def start(self) -> "Monitor":
        self._start = time.time()
        self.process.cpu_percent(None)  # the first reading only starts the interval
        self._thread.start()
        return self

    def _sample(self) -> None:
        with self.process.oneshot():
            cpu = self.process.cpu_percent(None)
            rss = self.process.memory_info().rss / 2**20
            threads = self.process.num_threads()
        now = time.time() - self._start
        self.samples["t"].append(round(now, 3))
        self.samples["cpu_percent"].append(round(cpu, 1))
        self.samples["rss_mb"].append(round(rss, 1))
        self.samples["threads"].append(threads)
        if self.nvidia_smi:
            gpus = _gpu_sample(self.nvidia_smi)
            if gpus is not None:
                self.gpu.append({"t": round(now, 3), "gpus": gpus})

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception:  # a failed reading must never disturb training
                continue

    def stop(self) -> dict[str, Any]:
        """End sampling (with one last sample) and return this rank's record."""
        self._stop.set()
        self._thread.join(timeout=5 * self.interval_s + 5)
        try:
            self._sample()
        except Exception:
            pass
        return {
            "rank": self.rank,
            "role": self.role,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start_time": self._start,
            **self.samples,
            "gpu": self.gpu,
        }


def write_gathered(comm: Any, monitor: Monitor, run_dir: Path) -> None:
    """Collective: every rank's record to rank 0, which writes monitor.json."""
    record = monitor.stop()
    records = comm.gather_object(record) if comm.size > 1 else [record]
    if comm.rank == 0:
        assert records is not None
        atomic_write_json(run_dir / MONITOR, {"interval_s": monitor.interval_s, "ranks": records})
        get_logger().info("wrote %s", run_dir / MONITOR)
