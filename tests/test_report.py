"""`mpilearn report`: PNGs and summary.txt from run directories (no MPI needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from mpilearn.errors import ConfigError
from mpilearn.report import timeline_summary, worker_throughput, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _history(algo: str, losses: list[float], staleness: dict[str, int] | None = None, timeline: str = "") -> dict:
    epochs = []
    for i, loss in enumerate(losses, start=1):
        epochs.append(
            {
                "epoch": i,
                "val_loss": loss,
                "val_accuracy": 1 - loss / 3,
                "train_loss": loss + 0.1,
                "updates": 10 * i,
                "samples_seen": 320 * i,
                "time_s": 1.0 * i,
            }
        )
    epochs.insert(
        1,
        {
            "epoch": 1.5,
            "kind": "updates",
            "val_loss": losses[0] - 0.05,
            "val_accuracy": 0.5,
            "train_loss": 1.0,
            "updates": 15,
            "samples_seen": 480,
            "time_s": 1.5,
        },
    )
    return {
        "config": {
            "algorithm": {"name": algo, "sync_every": 1},
            "epochs": len(losses),
            "data": {"batch_size": 16},
            "timeline": timeline,
        },
        "epochs": epochs,
        "train_time_s": 1.0 * len(losses),
        "samples_seen": 320 * len(losses),
        "samples_per_s": 320.0,
        "updates": 10 * len(losses),
        "stopped_early": False,
        "staleness": staleness or {},
        "dropped_updates": 0,
        "workers": {
            str(w): {
                "train_loss": [loss + 0.01 * w for loss in losses],
                "samples": [160] * len(losses),
                "epoch_end_s": [1.0 * (i + 1) for i in range(len(losses))],
            }
            for w in (1, 2)
        },
    }


def _timeline() -> dict:
    events = []
    for rank, role in enumerate(("master", "worker", "worker")):
        events.append(
            {"name": "process_name", "ph": "M", "pid": rank, "tid": 0, "args": {"name": f"rank {rank} {role}"}}
        )
        spans = ("wait", "apply", "reply") if rank == 0 else ("compute", "exchange")
        t = 1e6
        for step in range(20):
            for name in spans:
                events.append(
                    {
                        "name": name,
                        "cat": role,
                        "ph": "X",
                        "pid": rank,
                        "tid": 0,
                        "ts": t,
                        "dur": 1000.0 * (1 + step % 3),
                    }
                )
                t += 1000.0 * (1 + step % 3)
    events.append(
        {"name": "validate (background)", "cat": "master", "ph": "X", "pid": 0, "tid": 1, "ts": 1.01e6, "dur": 5000.0}
    )
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def _monitor() -> dict:
    return {
        "interval_s": 1.0,
        "ranks": [
            {
                "rank": r,
                "role": "worker" if r else "master",
                "host": "h",
                "pid": 1,
                "start_time": 100.0 + r,
                "t": [1.0, 2.0, 3.0],
                "cpu_percent": [50.0, 90.0, 95.0],
                "rss_mb": [500.0, 510.0, 520.0],
                "threads": [4, 4, 4],
                "gpu": [],
            }
            for r in range(3)
        ],
    }


def _run_dir(path: Path, algo: str, losses: list[float], extras: bool = True) -> Path:
    path.mkdir(parents=True)
    (path / "history.json").write_text(
        json.dumps(
            _history(algo, losses, {"0": 5, "1": 12, "2": 3} if extras else None, "timeline.json" if extras else "")
        )
    )
    if extras:
        (path / "timeline.json").write_text(json.dumps(_timeline()))
        (path / "monitor.json").write_text(json.dumps(_monitor()))
    return path


def _is_png(path: Path) -> bool:
    return path.stat().st_size > 5000 and path.read_bytes()[:8] == PNG_MAGIC


def test_one_run_gets_every_plot_and_a_summary(tmp_path: Path) -> None:
    run = _run_dir(tmp_path / "downpour", "downpour", [1.0, 0.7, 0.5])
    written = write_report([run])
    names = {p.name for p in written}
    assert names == {"curves.png", "workers.png", "staleness.png", "timeline.png", "monitor.png", "summary.txt"}
    assert all(_is_png(p) for p in written if p.suffix == ".png")
    summary = (run / "summary.txt").read_text()
    assert "algorithm downpour" in summary and "best val_loss 0.5000 at epoch 3" in summary
    assert "staleness: mean 0.90, max 2" in summary
    assert "rank 1 worker" in summary and "compute" in summary and "validate (background)" in summary


def test_several_runs_are_overlaid_into_a_compare_folder(tmp_path: Path) -> None:
    a = _run_dir(tmp_path / "a", "downpour", [1.0, 0.7, 0.5])
    b = _run_dir(tmp_path / "b", "easgd", [1.1, 0.9, 0.8], extras=False)
    written = write_report([a, b], tmp_path / "out")
    names = {p.name for p in written}
    assert {"curves.png", "a_workers.png", "b_workers.png", "a_timeline.png", "summary.txt"} <= names
    assert "b_timeline.png" not in names and "b_staleness.png" not in names  # b wrote neither
    assert all(_is_png(p) for p in written if p.suffix == ".png")
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "algorithm downpour" in summary and "algorithm easgd" in summary


def test_numbers_behind_the_plots() -> None:
    names, seconds, wall = timeline_summary(_timeline()["traceEvents"])
    assert names[0] == "rank 0 master" and set(seconds) == {0, 1, 2}
    assert seconds[1]["compute"] == pytest.approx(sum(0.001 * (1 + s % 3) for s in range(20)))
    assert seconds[0]["validate (background)"] == pytest.approx(0.005)
    assert wall == pytest.approx(3 * 39 * 0.001)  # from the first span to the master's last: 3 spans x 39 ms
    rates = worker_throughput(_history("downpour", [1.0, 0.5]))
    assert rates["1"] == [160.0, 160.0]


def test_not_a_run_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has no history.json"):
        write_report([tmp_path])
    result = run_cli(["report", str(tmp_path / "missing")], timeout=60)
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_search_directory_gets_optuna_plots(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="mpilearn", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(
        lambda t: (t.suggest_float("lr", 1e-4, 1e-1, log=True) - 0.01) ** 2 + t.suggest_int("units", 8, 64) / 1e3,
        n_trials=6,
    )
    (tmp_path / "best.json").write_text(
        json.dumps(
            {
                "study": "mpilearn",
                "storage": storage,
                "metric": "val_loss",
                "counts": {"finished": 6},
                "best": {"value": study.best_value, "params": study.best_params},
            }
        )
    )
    written = {p.name: p for p in write_report([tmp_path])}
    assert {"hpo_history.png", "hpo_importances.png", "summary.txt"} <= set(written)
    assert _is_png(written["hpo_history.png"]) and _is_png(written["hpo_importances.png"])
    line = next(x for x in written["summary.txt"].read_text().splitlines() if x.startswith("search:"))
    # Plain words and rounded figures, not a raw dict: "search: 6 finished; best val_loss 0.0123 with lr=0.0101, units=8"
    assert "6 finished" in line and "{" not in line and f"val_loss {study.best_value:.4g} with lr=" in line, line
