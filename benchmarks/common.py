"""What every benchmark shares: the machine's description and load, pinned
threads, subprocesses that always end, statistics and the result file.

Benchmarks never time anything in this process: every measurement runs in a
subprocess (or an `mpiexec` job) started with its thread pools capped, under
a hard timeout that kills the whole process group.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mpilearn.env import THREAD_POOL_VARIABLES, THREADS

ROOT = Path(__file__).resolve().parent.parent  # the repository checkout
BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
CACHE = BENCH_DIR / ".cache"  # generated data sets (not committed)

# Thread pools that must be capped before torch/numpy are imported in a rank.
THREAD_VARIABLES = (*THREAD_POOL_VARIABLES, THREADS)


class BenchmarkError(RuntimeError):
    """A benchmark could not run (a rank failed, a timeout, a missing tool)."""


# ---- the machine ---------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load() -> list[float]:
    """1, 5 and 15 minute load averages (what `uptime` prints)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _versions() -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    from importlib import metadata

    for name in ("mpilearn", "torch", "keras", "numpy", "mpi4py", "mpich"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def machine() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "cores": cores(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": _versions(),
    }


# ---- statistics ------------------------------------------------------------
def stats(values: Iterable[float | None]) -> dict[str, Any]:
    """Median and spread (min, max, and the half-range relative to the median)."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return {"median": None, "min": None, "max": None, "rel_spread": None, "n": 0, "values": []}
    med = float(np.median(vals))
    lo, hi = min(vals), max(vals)
    return {
        "median": med,
        "min": lo,
        "max": hi,
        "rel_spread": (hi - lo) / 2 / abs(med) if med else None,
        "n": len(vals),
        "values": vals,
    }


def ratios(numerators: Sequence[float | None], denominators: Sequence[float | None]) -> list[float | None]:
    """Pairwise ratios of measurements taken side by side (same repeat)."""
    return [n / d if n is not None and d else None for n, d in zip(numerators, denominators)]


def row(
    metric: str, values: Sequence[float | None], unit: str, target: str | None = None, group: str = "", **extra: Any
) -> dict[str, Any]:
    """One line of the result table. `target` is ">= X" or "<= X" (None: reported only)."""
    out: dict[str, Any] = {"metric": metric, "group": group, "unit": unit, "target": target}
    out.update(stats(values))
    out["met"] = meets(out["median"], target)
    out.update(extra)
    return out


def meets(value: float | None, target: str | None) -> bool | None:
    if target is None:
        return None
    if value is None:
        return False
    op, _, number = target.partition(" ")
    limit = float(number)
    return value >= limit if op == ">=" else value <= limit


# ---- subprocesses ----------------------------------------------------------
def rank_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured process: thread pools pinned to `threads`."""
    env = dict(os.environ)
    env.pop("MPILEARN_LAUNCHED", None)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    env.setdefault("KERAS_BACKEND", "torch")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    if beside.exists():
        return str(beside)
    from shutil import which

    found = which("mpiexec") or which("mpirun")
    if not found:
        raise BenchmarkError("no mpiexec found: install the mpich wheel (pip install mpich) or an MPI")
    return found


def mpi_argv(processes: int, argv: Sequence[str], bind: bool = False) -> list[str]:
    launcher = [mpiexec(), "-n", str(processes)]
    if bind:
        launcher += ["-bind-to", "core"]
    return [*launcher, *argv]


# Niceness of every measured process (`--nice N` of the harness; 0: unchanged).
# A negative value (root only) gives the benchmark most of a shared, busy machine.
NICE = int(os.environ.get("MPILEARN_BENCH_NICE", "0"))


def _renice(nice: int) -> None:
    """The measured process's niceness, and its session's: with scheduler autogroups (Linux's default
    for desktop kernels) niceness only orders processes inside one session, so the session's counts."""
    os.nice(nice)
    _set_autogroup("self", nice)


def _set_autogroup(pid: int | str, nice: int) -> None:
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        pass


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _keep_reniced(process: subprocess.Popen, nice: int) -> None:
    """mpiexec's ranks start sessions of their own (autogroups at nice 0): renice them as they appear."""
    done: set[int] = set()
    while process.poll() is None:
        for pid in _descendants(process.pid):
            if pid not in done:
                _set_autogroup(pid, nice)
                done.add(pid)
        time.sleep(0.2)


def run(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None, log: Path | None = None) -> str:
    """Run a command to completion; on timeout kill its whole process group.
    Returns its output; raises BenchmarkError when it fails."""
    start = time.monotonic()
    nice = NICE
    process = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(ROOT),
        env=env,
        start_new_session=True,
        preexec_fn=(lambda: _renice(nice)) if nice else None,
    )
    if nice:
        import threading

        threading.Thread(target=_keep_reniced, args=(process, nice), daemon=True).start()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        _keep_log(log, argv, output)
        raise BenchmarkError(
            f"{shlex.join(argv)} did not end within {timeout:.0f}s (killed)\n{_tail(output)}"
        ) from None
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    _keep_log(log, argv, output)
    if process.returncode != 0:
        raise BenchmarkError(
            f"{shlex.join(argv)} failed with status {process.returncode} after "
            f"{time.monotonic() - start:.0f}s\n{_tail(output)}"
        )
    return output


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _keep_log(log: Path | None, argv: Sequence[str], output: str) -> None:
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            handle.write(f"$ {shlex.join(argv)}\n{output}\n")


def run_ranks(
    kind: str,
    spec: dict[str, Any],
    processes: int,
    threads: int,
    timeout: float,
    bind: bool = False,
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """Run `python -m benchmarks.ranks KIND` on `processes` MPI ranks (plain
    python when processes == 0) and return what rank 0 wrote."""
    with tempfile.TemporaryDirectory(prefix="mpilearn-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps({**spec, "tmp": tmp}))
        argv = [sys.executable, "-m", "benchmarks.ranks", kind, str(spec_path), str(out_path)]
        if processes:
            argv = mpi_argv(processes, argv, bind)
        run(argv, timeout, rank_env(threads, extra_env), log)
        if not out_path.exists():
            raise BenchmarkError(f"benchmarks.ranks {kind} on {processes} rank(s) wrote no result")
        return json.loads(out_path.read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- data ------------------------------------------------------------------
def shower_arrays(n: int, shape: tuple[int, int, int] = (25, 25, 25), classes: int = 3, seed: int = 1) -> Path:
    """An .npz of `n` simulated calorimeter showers (the demo's generator),
    made once and cached, so every rank of every launch reads the same samples."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"showers_{n}_{'x'.join(map(str, shape))}_{classes}_{seed}.npz"
    if not path.exists():
        from mpilearn.data.synthetic import simulate_showers

        x, y = simulate_showers(n, shape, classes, np.random.default_rng(seed))
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, path)
    return path


def demo_files() -> Path:
    """The demo data set of `mpilearn demo` (4 x 500 events at 25^3, 1
    validation file), written once with `mpilearn make-data`; returns its folder."""
    folder = CACHE / "demo"
    if not (folder / "val.txt").exists():
        run(
            [
                sys.executable,
                "-m",
                "mpilearn",
                "make-data",
                str(folder),
                "--files",
                "4",
                "--val-files",
                "1",
                "--events-per-file",
                "500",
                "--shape",
                "25,25,25",
                "--seed",
                "1",
            ],
            timeout=600,
            env=rank_env(1),
        )
    return folder


# ---- results ---------------------------------------------------------------
def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def write_result(name: str, result: dict[str, Any], out: Path | None = None) -> Path:
    """benchmarks/results/NAME.json (the latest run) and a dated copy under
    results/runs/ (every run is kept, so two runs can be reported side by side)."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1, default=_jsonable)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    if out is None:
        stamp = result.get("date", now()).replace(":", "").replace("-", "")[:15]
        kept = RESULTS / "runs" / f"{name}-{stamp}{'-quick' if result.get('quick') else ''}.json"
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(text)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if magnitude < 100 else f"{value:.0f}"


def summary_of(name: str, rows: list[dict[str, Any]], limit: int = 4) -> str:
    """`name: metric median (min-max) [target met], ...` for rows with a target first."""
    chosen = [r for r in rows if r.get("target")] or rows
    parts = []
    for r in chosen[:limit]:
        verdict = "" if r.get("met") is None else (" met" if r["met"] else " MISSED")
        target = f" [{r['target']}{verdict}]" if r.get("target") else ""
        parts.append(f"{r['metric']} {fmt(r['median'])} ({fmt(r['min'])}-{fmt(r['max'])}){target}")
    more = f" (+{len(chosen) - limit} more)" if len(chosen) > limit else ""
    return f"{name}: " + "; ".join(parts) + more
