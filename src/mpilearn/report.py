"""`mpilearn report`: PNG plots and a text summary of one or more runs.

Reads what a run wrote into its directory: history.json (always),
monitor.json (`--monitor`), the timeline JSON (`--timeline FILE`, found
through the path in history.json's config), and for a hyperparameter search
directory study.db / best.json (plotted with Optuna's matplotlib views when
optuna is importable). Several run directories are overlaid in one set of
curves to compare algorithms. matplotlib draws with the Agg backend: no
display needed, as on a cluster's login node.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import ConfigError
from .rundir import HISTORY, atomic_write_bytes

MONITOR = "monitor.json"
STUDY_DB = "study.db"
BEST = "best.json"
SUMMARY = "summary.txt"
DPI = 100
# Span names drawn in a fixed order and colour; others follow.
SPAN_ORDER = (
    "compute",
    "exchange",
    "wait",
    "apply",
    "reply",
    "allreduce",
    "validate",
    "validate (background)",
    "callbacks",
    "exchange up",
    "checkpoint",
)


@dataclass
class Run:
    path: Path
    label: str
    history: dict[str, Any] = field(default_factory=dict)
    monitor: dict[str, Any] | None = None
    timeline: list[dict[str, Any]] | None = None
    timeline_path: Path | None = None
    best: dict[str, Any] | None = None

    @property
    def has_history(self) -> bool:
        return bool(self.history)

    @property
    def epoch_rows(self) -> list[dict[str, Any]]:
        """Validations after epochs, and the final one (kind "updates" rows are --validate-every)."""
        return [r for r in self.history.get("epochs", []) if r.get("kind", "epoch") == "epoch"]

    @property
    def update_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.history.get("epochs", []) if r.get("kind") == "updates"]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} cannot be read as JSON: {exc}") from None


def _label(path: Path, history: dict[str, Any]) -> str:
    config = history.get("config", {})
    algo = config.get("algorithm", {}).get("name")
    workers = len(history.get("workers", {}))
    details = ", ".join(x for x in (algo, f"{workers} workers" if workers else "") if x)
    return f"{path.name} ({details})" if details else path.name


def _find_timeline(run_dir: Path, history: dict[str, Any]) -> Path | None:
    named = history.get("config", {}).get("timeline") or ""
    candidates = []
    if named:
        candidates += [Path(named), run_dir / named, run_dir / Path(named).name]
    candidates.append(run_dir / "timeline.json")
    return next((c for c in candidates if c.is_file()), None)


def load_run(path: str | Path) -> Run:
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise ConfigError(f"report: {run_dir} is not a directory")
    history_path, best_path = run_dir / HISTORY, run_dir / BEST
    if not history_path.is_file() and not best_path.is_file() and not (run_dir / STUDY_DB).is_file():
        raise ConfigError(f"report: {run_dir} has no {HISTORY} (nor {BEST} of a search): is it a run directory?")
    history = _read_json(history_path) if history_path.is_file() else {}
    run = Run(run_dir, _label(run_dir, history), history)
    if (run_dir / MONITOR).is_file():
        run.monitor = _read_json(run_dir / MONITOR)
    timeline_path = _find_timeline(run_dir, history)
    if timeline_path is not None:
        document = _read_json(timeline_path)
        run.timeline = document.get("traceEvents", document) if isinstance(document, dict) else document
        run.timeline_path = timeline_path
    if best_path.is_file():
        run.best = _read_json(best_path)
    return run


# ---- numbers -----------------------------------------------------------------------
def timeline_summary(events: Sequence[dict[str, Any]]) -> tuple[dict[int, str], dict[int, dict[str, float]], float]:
    """(rank -> row name, rank -> span name -> seconds, wall seconds covered)."""
    names: dict[int, str] = {}
    seconds: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    first, last = math.inf, -math.inf
    for event in events:
        pid = int(event.get("pid", 0))
        if event.get("ph") == "M" and event.get("name") == "process_name":
            names[pid] = event.get("args", {}).get("name", f"rank {pid}")
        elif event.get("ph") == "X":
            seconds[pid][event["name"]] += event.get("dur", 0.0) / 1e6
            first = min(first, event["ts"])
            last = max(last, event["ts"] + event.get("dur", 0.0))
    wall = (last - first) / 1e6 if last > first else 0.0
    return names, {k: dict(v) for k, v in sorted(seconds.items())}, wall


def worker_throughput(history: dict[str, Any]) -> dict[str, list[float]]:
    """Worker -> samples/s in each epoch (from per-epoch samples and end times)."""
    out: dict[str, list[float]] = {}
    for worker, stats in history.get("workers", {}).items():
        samples, ends = stats.get("samples"), stats.get("epoch_end_s")
        if not samples or not ends:
            continue
        n = min(len(samples), len(ends))
        rates, previous = [], 0.0
        for s, end in zip(samples[-n:], ends[-n:]):
            rates.append(s / (end - previous) if end > previous else float("nan"))
            previous = end
        out[worker] = rates
    return out


def _span_order(names: set[str]) -> list[str]:
    return [n for n in SPAN_ORDER if n in names] + sorted(names - set(SPAN_ORDER))


def _updates_word(algorithm: Any) -> str:
    """What one update of history.json is: a master's step, or a step every peer takes together."""
    from .algorithms import registry

    try:
        has_master = registry.spec_of(str(algorithm)).has_master
    except Exception:  # an algorithm this version does not know
        return "updates"
    return "master updates" if has_master else "optimizer steps (every rank, together)"


def summary_text(runs: Sequence[Run]) -> str:
    lines: list[str] = []
    for run in runs:
        lines.append(f"== {run.label}  [{run.path}]")
        history = run.history
        if history:
            config = history.get("config", {})
            algo = config.get("algorithm", {})
            trained = sum(1 for r in run.epoch_rows if not r.get("final"))
            lines.append(
                f"algorithm {algo.get('name')}  sync-every {algo.get('sync_every')}  workers {len(history.get('workers', {}))}  "
                f"epochs {trained}/{config.get('epochs')}  batch {config.get('data', {}).get('batch_size')}"
            )
            rate = history.get("samples_per_s")
            lines.append(
                f"trained {history.get('samples_seen')} samples in {history.get('train_time_s', 0):.1f}s"
                + (f" ({rate:.0f} samples/s)" if rate else "")
                + f", {history.get('updates')} {_updates_word(algo.get('name'))}"
                + ("  STOPPED EARLY" if history.get("stopped_early") else "")
            )
            rows = run.epoch_rows
            if rows:
                last = rows[-1]
                lines.append(
                    "final: "
                    + "  ".join(
                        f"{k} {v:.4f}"
                        for k, v in last.items()
                        if (k.startswith("val_") or k == "train_loss") and isinstance(v, (int, float))
                    )
                )
                for key in sorted({k for r in rows for k in r if k.startswith("val_")}):
                    values = [
                        (r[key], r["epoch"])
                        for r in rows
                        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
                    ]
                    if values:
                        best = (min if "loss" in key else max)(
                            values, key=lambda v: v[0]
                        )  # first epoch that reached it
                        lines.append(f"best {key} {best[0]:.4f} at epoch {best[1]}")
            staleness = {int(k): v for k, v in history.get("staleness", {}).items()}
            if staleness:
                total = sum(staleness.values())
                mean = sum(k * v for k, v in staleness.items()) / total
                lines.append(
                    f"staleness: mean {mean:.2f}, max {max(staleness)} master steps over {total} updates; "
                    f"dropped {history.get('dropped_updates', 0)}"
                )
        if run.timeline:
            names, seconds, wall = timeline_summary(run.timeline)
            lines.append(f"timeline ({run.timeline_path}, {wall:.2f}s):")
            for rank, spans in seconds.items():
                total = sum(spans.values())
                parts = "  ".join(
                    f"{n} {spans[n]:.2f}s ({100 * spans[n] / wall:.0f}%)" if wall else f"{n} {spans[n]:.2f}s"
                    for n in _span_order(set(spans))
                )
                lines.append(f"  {names.get(rank, f'rank {rank}'):18s} {parts}  [busy {total:.2f}s]")
        if run.monitor:
            for record in run.monitor.get("ranks", []):
                cpu, rss = record.get("cpu_percent") or [0], record.get("rss_mb") or [0]
                lines.append(
                    f"monitor rank {record.get('rank')} {record.get('role')}: cpu mean {sum(cpu) / len(cpu):.0f}% "
                    f"max {max(cpu):.0f}%, rss max {max(rss):.0f} MB"
                )
        if run.best:
            lines.append(_search_line(run.best))
        lines.append("")
    return "\n".join(lines)


# ---- plots -------------------------------------------------------------------------


def _search_line(best: dict[str, Any]) -> str:
    """`search: 8 complete, 2 pruned; best val_loss 0.4213 (trial 3) with lr=0.00123, optimizer=adam`."""
    counts = ", ".join(f"{n} {state.lower()}" for state, n in (best.get("counts") or {}).items() if n)
    top = best.get("best") or {}
    value = top.get("value")
    shown = f"{value:.4g}" if isinstance(value, (int, float)) else "none"
    trial = f" (trial {top['number']})" if "number" in top else ""
    params = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in (top.get("params") or {}).items()
    )
    return f"search: {counts or 'no trials'}; best {best.get('metric')} {shown}{trial}" + (
        f" with {params}" if params else ""
    )


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(runs: Sequence[Run], path: Path) -> Path | None:
    runs = [r for r in runs if r.epoch_rows or r.update_rows]
    if not runs:
        return None
    plt = _pyplot()
    metrics = sorted(
        {k for r in runs for row in r.history["epochs"] for k in row if k.startswith("val_") and k != "val_loss"}
    )
    panels = 1 + len(metrics)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, run in enumerate(runs):
        color = colors[index % len(colors)]
        label = run.label if len(runs) > 1 else None
        rows, updates = run.epoch_rows, run.update_rows
        ax = axes[0][0]
        train = [(r["epoch"], r["train_loss"]) for r in rows if "train_loss" in r]
        if train:
            ax.plot(*zip(*train), "--o", color=color, ms=3, label=f"train {label or ''}".strip())
        val = [(r["epoch"], r["val_loss"]) for r in rows if "val_loss" in r]
        if val:
            ax.plot(*zip(*val), "-o", color=color, ms=4, label=f"validation {label or ''}".strip())
        extra = [(r["epoch"], r["val_loss"]) for r in updates if "val_loss" in r]
        if extra:
            ax.plot(
                *zip(*extra), ":", color=color, alpha=0.7, label=f"validation every N updates {label or ''}".strip()
            )
        for m, key in enumerate(metrics, start=1):
            points = [(r["epoch"], r[key]) for r in rows if key in r]
            if points:
                axes[0][m].plot(*zip(*points), "-o", color=color, ms=4, label=label)
            extra = [(r["epoch"], r[key]) for r in updates if key in r]
            if extra:
                axes[0][m].plot(*zip(*extra), ":", color=color, alpha=0.7)
    axes[0][0].set_title("loss")
    axes[0][0].set_ylabel("loss")
    for m, key in enumerate(metrics, start=1):
        axes[0][m].set_title(key.replace("val_", "validation "))
        axes[0][m].set_ylabel(key)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(
        "training and validation per epoch" + (" (compare)" if len(runs) > 1 else f": {runs[0].label}"), fontsize=10
    )
    return _save(fig, path)


def plot_workers(run: Run, path: Path) -> Path | None:
    workers = run.history.get("workers", {})
    if not workers:
        return None
    plt = _pyplot()
    rates = worker_throughput(run.history)
    fig, axes = plt.subplots(1, 2 if rates else 1, figsize=(10.5 if rates else 5.5, 3.8), squeeze=False)
    for worker, stats in sorted(workers.items(), key=lambda kv: int(kv[0])):
        losses = stats.get("train_loss", [])
        axes[0][0].plot(range(1, len(losses) + 1), losses, "-o", ms=3, label=f"worker rank {worker}")
    axes[0][0].set_title("training loss per worker")
    axes[0][0].set_xlabel("epoch")
    axes[0][0].set_ylabel("mean batch loss")
    if rates:
        for worker, values in sorted(rates.items(), key=lambda kv: int(kv[0])):
            axes[0][1].plot(range(1, len(values) + 1), values, "-o", ms=3, label=f"worker rank {worker}")
        axes[0][1].set_title("throughput per worker")
        axes[0][1].set_xlabel("epoch")
        axes[0][1].set_ylabel("samples/s")
        axes[0][1].set_ylim(bottom=0)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(run.label, fontsize=10)
    return _save(fig, path)


def plot_staleness(run: Run, path: Path) -> Path | None:
    staleness = {int(k): v for k, v in run.history.get("staleness", {}).items()}
    if not staleness:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    keys = sorted(staleness)
    ax.bar(keys, [staleness[k] for k in keys], width=0.8)
    ax.set_xlabel("staleness (master steps between the weights used and the update's arrival)")
    ax.set_ylabel("updates")
    dropped = run.history.get("dropped_updates", 0)
    ax.set_title(
        f"staleness of asynchronous updates: {run.label}" + (f" ({dropped} dropped)" if dropped else ""), fontsize=9
    )
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_timeline(run: Run, path: Path, window_s: float = 1.0) -> Path | None:
    """Time per span name per rank (stacked), and a Gantt view of a short window."""
    if not run.timeline:
        return None
    names, seconds, wall = timeline_summary(run.timeline)
    if not seconds:
        return None
    plt = _pyplot()
    spans = _span_order({n for s in seconds.values() for n in s})
    palette = plt.get_cmap("tab10")
    colour = {name: palette(i % 10) for i, name in enumerate(spans)}
    ranks = sorted(seconds)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 2.2 + 0.9 * len(ranks)), gridspec_kw={"height_ratios": [1, 1]})
    for rank_index, rank in enumerate(ranks):
        left = 0.0
        for name in spans:
            value = seconds[rank].get(name, 0.0)
            if value:
                top.barh(
                    rank_index,
                    value,
                    left=left,
                    color=colour[name],
                    label=name
                    if rank_index == 0 or name not in {n for r in ranks[:rank_index] for n in seconds[r]}
                    else None,
                )
                left += value
    top.set_yticks(range(len(ranks)), [names.get(r, f"rank {r}") for r in ranks])
    top.invert_yaxis()
    top.set_xlabel(f"seconds (run covered {wall:.2f}s)")
    top.set_title(f"time per activity and rank: {run.label}", fontsize=10)
    handles, labels = top.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    top.legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    top.grid(alpha=0.3, axis="x")
    # Gantt view of the busiest window (most span starts): where the exchanges happen.
    events = [e for e in run.timeline if e.get("ph") == "X"]
    start = min(e["ts"] for e in events)
    end = max(e["ts"] + e["dur"] for e in events)
    window_s = min(window_s, (end - start) / 1e6)
    lo = _busiest(sorted(e["ts"] for e in events), window_s * 1e6)
    hi = lo + window_s * 1e6
    for event in events:
        if event["ts"] + event["dur"] < lo or event["ts"] > hi:
            continue
        row = ranks.index(int(event["pid"])) + 0.4 * int(event.get("tid", 0))
        begin, stop = max(event["ts"], lo), min(event["ts"] + event["dur"], hi)
        bottom.barh(
            row,
            (stop - begin) / 1e3,
            left=(begin - lo) / 1e3,
            height=0.35 if event.get("tid") else 0.7,
            color=colour[event["name"]],
        )
    bottom.set_yticks(range(len(ranks)), [names.get(r, f"rank {r}") for r in ranks])
    bottom.invert_yaxis()
    bottom.set_xlabel(
        f"milliseconds from {(lo - start) / 1e6:.1f}s: the busiest {window_s:.2f}s of the run (thin bars: helper threads)"
    )
    bottom.set_xlim(0, (hi - lo) / 1e3)
    bottom.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, path)


def _busiest(starts: list[float], width: float) -> float:
    """Start of the `width`-long window holding the most span starts."""
    best, best_count, first = starts[0], 0, 0
    for last, t in enumerate(starts):
        while t - starts[first] > width:
            first += 1
        if last - first + 1 > best_count:
            best, best_count = starts[first], last - first + 1
    return best


def plot_monitor(run: Run, path: Path) -> Path | None:
    if not run.monitor or not run.monitor.get("ranks"):
        return None
    plt = _pyplot()
    records = run.monitor["ranks"]
    gpus = [g for r in records for g in r.get("gpu", [])]
    panels = 3 if gpus else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    origin = min((r.get("start_time", 0.0) for r in records), default=0.0)
    for record in records:
        label = f"rank {record['rank']} {record['role']}"
        times = [record.get("start_time", 0.0) - origin + t for t in record["t"]]
        axes[0][0].plot(times, record["cpu_percent"], "-o", ms=2, label=label)
        axes[0][1].plot(times, record["rss_mb"], "-o", ms=2, label=label)
    axes[0][0].set_title("CPU (% of one core)")
    axes[0][1].set_title("resident memory (MB)")
    if gpus:
        by_index: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for sample in gpus:
            for gpu in sample["gpus"]:
                by_index[gpu["index"]].append((sample["t"], gpu["util_percent"]))
        for index, points in sorted(by_index.items()):
            axes[0][2].plot(*zip(*points), label=f"GPU {index}")
        axes[0][2].set_title("GPU utilisation (%)")
    for ax in axes[0]:
        ax.set_xlabel("seconds since start")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(run.label, fontsize=10)
    return _save(fig, path)


def plot_search(run: Run, out: Path, prefix: str = "") -> list[Path]:
    """Optuna's optimization history and parameter importances of a search directory."""
    from .optional import available

    if not (run.path / STUDY_DB).is_file() and not run.best:
        return []
    if not available("optuna"):
        return []
    import optuna
    from optuna.visualization import matplotlib as views

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = (run.best or {}).get("storage") or f"sqlite:///{run.path / STUDY_DB}"
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).is_file():
        storage = f"sqlite:///{run.path / STUDY_DB}"
    name = (run.best or {}).get("study")
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception:
        return []
    written = []
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib views experimental
        for view, file in (
            (views.plot_optimization_history, "hpo_history.png"),
            (views.plot_param_importances, "hpo_importances.png"),
        ):
            try:
                axes: Any = view(study)
            except Exception:  # e.g. importances need two finished trials with parameters
                continue
            figure: Any = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(7, 4)
            written.append(_save(figure, out / f"{prefix}{file}"))
    return written


def write_report(paths: Sequence[str | Path], out: str | Path | None = None) -> list[Path]:
    """Plots and summary.txt for the runs in `paths`; returns the files written."""
    if not paths:
        raise ConfigError("report: give at least one run directory")
    runs = [load_run(p) for p in paths]
    target = Path(out) if out else (runs[0].path if len(runs) == 1 else runs[0].path / "compare")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"report: --out {target} cannot be created: {exc.strerror or exc}") from None
    written: list[Path | None] = [plot_curves(runs, target / "curves.png")]
    for run in runs:
        prefix = "" if len(runs) == 1 else f"{run.path.name}_"
        written += [
            plot_workers(run, target / f"{prefix}workers.png"),
            plot_staleness(run, target / f"{prefix}staleness.png"),
            plot_timeline(run, target / f"{prefix}timeline.png"),
            plot_monitor(run, target / f"{prefix}monitor.png"),
        ]
        written += plot_search(run, target, prefix)
    summary = target / SUMMARY
    atomic_write_bytes(summary, summary_text(runs).encode())
    return [p for p in written if p is not None] + [summary]
