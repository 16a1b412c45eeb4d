"""`train`: cases of training throughput, run side by side in one job and
repeated in rotating order: plain `model.fit` (rank 0 alone; the other ranks
wait without spinning), `mpilearn.fit` with an algorithm on every rank (or on
a subset), and PyTorch DistributedDataParallel on every rank."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .inputs import build_model, training_data
from .world import Ranks, load, set_threads


def _steady(times: list[float], samples: list[float]) -> float | None:
    """Throughput after the first epoch (start-up and first-batch costs excluded)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (samples[-1] - samples[0]) / (times[-1] - times[0])


def _rates(marks: list[float], per_epoch: int) -> dict[str, Any]:
    """Throughput of a run timed at its start and at each epoch end, `per_epoch` samples an epoch."""
    epochs = marks[1:]
    return {
        "samples_per_s": per_epoch * len(epochs) / (marks[-1] - marks[0]),
        "steady_samples_per_s": _steady(epochs, [per_epoch * (i + 1) for i in range(len(epochs))]),
        "train_time_s": marks[-1] - marks[0],
        "samples": per_epoch * len(epochs),
    }


def _case_fit(spec: dict[str, Any], case: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    import keras

    n = spec["batches"] * spec["batch"]
    x, y = x[:n], y[:n]
    model = build_model(spec, x.shape[1:], y.shape[1])
    marks: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            marks.append(time.perf_counter())

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            marks.append(time.perf_counter())

    set_threads(case.get("threads", 1))
    profile = _profiler(spec, case)
    model.fit(x, y, batch_size=spec["batch"], epochs=spec["epochs"], shuffle=True, verbose=0, callbacks=[Timer()])
    _save_profile(profile, spec, case)
    return _rates(marks, n)


_SUBCOMMS: dict[Any, Any] = {}


def _subcomm(ranks: Ranks, k: int) -> Any:
    """The first k ranks of COMM_WORLD as an mpilearn Communicator (None on
    the others). Collective: every rank calls it."""
    if k not in _SUBCOMMS:
        from mpilearn.comm import Communicator

        part = ranks.comm.Split(0 if ranks.rank < k else ranks.MPI.UNDEFINED, ranks.rank)
        _SUBCOMMS[k] = Communicator(part) if part != ranks.MPI.COMM_NULL else None
    return _SUBCOMMS[k]


def _self_comm(ranks: Ranks) -> Any:
    """This rank alone, as an mpilearn Communicator."""
    if "self" not in _SUBCOMMS:
        from mpilearn.comm import Communicator

        _SUBCOMMS["self"] = Communicator(ranks.MPI.COMM_SELF)
    return _SUBCOMMS["self"]


def _mpilearn_fit(
    spec: dict[str, Any],
    case: dict[str, Any],
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    run_dir: str,
    timeline: str,
    comm: Any,
) -> dict[str, Any]:
    """mpilearn.fit on `comm` (None: all ranks)."""
    import mpilearn

    return mpilearn.fit(
        model,
        (x, y),
        comm=comm,
        epochs=spec["epochs"],
        batch_size=spec["batch"],
        algorithm=case["algo"],
        sync_every=case.get("sync_every", 1),
        **({"bucket_mb": case["bucket_mb"]} if "bucket_mb" in case else {}),
        **({"pipeline": case["pipeline"]} if "pipeline" in case else {}),
        threads=case.get("threads", 1),
        run_dir=run_dir,
        quiet=True,
        progress="lines",
        timeline=timeline,
        log_level="error",
    )


def _case_mpilearn(
    spec: dict[str, Any], case: dict[str, Any], x: np.ndarray, y: np.ndarray, ranks: Ranks, repeat: int
) -> dict[str, Any] | None:
    algo = case["algo"]
    size = case.get("ranks") or ranks.size
    if case.get("independent"):  # `size` ranks each train alone at once: the machine's bound with no exchange
        if ranks.rank >= size:
            return None
        comm = _self_comm(ranks)
        workers = 1
    else:
        comm = _subcomm(ranks, size) if size < ranks.size else None
        if size < ranks.size and comm is None:
            return None  # not in this case: wait in the barrier that follows
        workers = size if algo == "allreduce" or size == 1 else size - 1
    n = workers * spec["batches"] * spec["batch"]
    x, y = x[:n], y[:n]
    model = build_model(spec, x.shape[1:], y.shape[1])
    timeline = ""
    if spec.get("timeline_dir") and repeat == 0:
        timeline = str(Path(spec["timeline_dir"]) / f"timeline-{spec['label']}-{case['name']}.json")
    elif case.get("spans"):
        timeline = str(Path(spec["tmp"]) / f"timeline-{case['name']}-{repeat}.json")
    run_dir = tempfile.mkdtemp(prefix="run-", dir=spec["tmp"])
    profile = _profiler(spec, case)
    history = _mpilearn_fit(spec, case, model, x, y, run_dir, timeline, comm)
    _save_profile(profile, spec, case, ranks.rank)
    set_threads(spec["threads"])
    if ranks.rank != 0:
        return None
    rows = [r for r in history["epochs"] if r.get("kind") != "updates" and "time_s" in r][: spec["epochs"]]
    copies = size if case.get("independent") else 1  # rank 0's rate times the ranks running alike beside it
    steady = _steady([r["time_s"] for r in rows], [r["samples_seen"] for r in rows])
    return {
        "samples_per_s": history["samples_per_s"] * copies,
        "steady_samples_per_s": steady * copies if steady else steady,
        "train_time_s": history["train_time_s"],
        "samples": history["samples_seen"],
        "processes": size,
        "workers": workers,
        "timeline": timeline or None,
        "updates": history.get("updates"),
        "spans": _span_totals(timeline) if timeline else None,
    }


def _span_totals(path: str) -> dict[str, dict[str, list[float]]]:
    """Per rank and span name: [count, total seconds] of an mpilearn timeline."""
    totals: dict[str, dict[str, list[float]]] = {}
    for event in json.loads(Path(path).read_text())["traceEvents"]:
        if event.get("ph") == "X" and event.get("tid", 0) == 0:
            entry = totals.setdefault(str(event["pid"]), {}).setdefault(event["name"], [0, 0.0])
            entry[0] += 1
            entry[1] += event["dur"] / 1e6
    return totals


_DDP_READY = False


def _case_ddp(
    spec: dict[str, Any], case: dict[str, Any], x: np.ndarray, y: np.ndarray, ranks: Ranks
) -> dict[str, Any] | None:
    """The same torch module under DistributedDataParallel (gloo), the loop a
    PyTorch user writes: zero_grad, forward, loss, backward (DDP averages the
    gradients during it), Adam step."""
    global _DDP_READY
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mpilearn.models import load_builder

    if not _DDP_READY:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{spec['port']}", rank=ranks.rank, world_size=ranks.size
        )
        _DDP_READY = True
    set_threads(case.get("threads", 1))
    per_rank = spec["batches"] * spec["batch"]
    xs = torch.from_numpy(np.ascontiguousarray(x[ranks.rank * per_rank : (ranks.rank + 1) * per_rank]))
    labels = torch.from_numpy(
        np.ascontiguousarray(y[ranks.rank * per_rank : (ranks.rank + 1) * per_rank].argmax(axis=1))
    )
    path, function = spec["model"].rsplit(":", 1)
    torch.manual_seed(spec.get("seed", 0))
    module = load_builder(path, function)(input_shape=tuple(x.shape[1:]), num_classes=y.shape[1])
    model = DistributedDataParallel(module)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.get("lr") or 1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(ranks.rank)
    batch = spec["batch"]
    dist.barrier()
    marks = [time.perf_counter()]
    for _ in range(spec["epochs"]):
        order = torch.randperm(per_rank, generator=generator)
        for start in range(0, per_rank, batch):
            index = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[index]), labels[index])
            loss.backward()
            optimizer.step()
        dist.barrier()
        marks.append(time.perf_counter())
    set_threads(spec["threads"])
    if ranks.rank != 0:
        return None
    return {**_rates(marks, per_rank * ranks.size), "workers": ranks.size}


def _profiler(spec: dict[str, Any], case: dict[str, Any]) -> Any:
    if not spec.get("profile_dir") or case["name"] not in spec.get("profile_cases", [case["name"]]):
        return None
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    return profile


def _save_profile(profile: Any, spec: dict[str, Any], case: dict[str, Any], rank: int = 0) -> None:
    if profile is None:
        return
    profile.disable()
    path = Path(spec["profile_dir"]) / f"profile-{spec['label']}-{case['name']}-rank{rank}.prof"
    path.parent.mkdir(parents=True, exist_ok=True)
    profile.dump_stats(str(path))


def _warm_up(spec: dict[str, Any], x: np.ndarray, y: np.ndarray) -> None:
    """Imports and first kernels on every rank before anything is timed, so
    the first case of a job pays no more than the others."""
    import mpilearn.training  # noqa: F401  (imports of mpilearn.fit)

    model = build_model(spec, x.shape[1:], y.shape[1])
    model.fit(x[: 2 * spec["batch"]], y[: 2 * spec["batch"]], batch_size=spec["batch"], epochs=1, verbose=0)
    if any(case["kind"] == "ddp" for case in spec["cases"]):
        import torch.distributed  # noqa: F401


def train(spec: dict[str, Any]) -> dict[str, Any] | None:
    ranks = Ranks()
    set_threads(spec["threads"])
    x, y = training_data(spec, max(ranks.size, 1) * spec["batches"] * spec["batch"])
    cases = spec["cases"]
    results: dict[str, list[dict[str, Any] | None]] = {c["name"]: [] for c in cases}
    _warm_up(spec, x, y)
    ranks.barrier()
    started = time.time()
    for repeat in range(spec["repeats"]):
        shift = (repeat + spec.get("rotate_offset", 0)) % len(cases) if spec.get("rotate", True) else 0
        for case in cases[shift:] + cases[:shift]:  # rotating order: no case always runs first
            ranks.barrier()
            saved = {k: os.environ.get(k) for k in case.get("environ", {})}
            os.environ.update(case.get("environ", {}))  # e.g. a switch read by a prototype on PYTHONPATH
            before = load()
            began = time.time()
            if case["kind"] == "fit":
                outcome = _case_fit(spec, case, x, y) if ranks.rank == 0 else None
            elif case["kind"] == "mpilearn":
                outcome = _case_mpilearn(spec, case, x, y, ranks, repeat)
            elif case["kind"] == "ddp":
                outcome = _case_ddp(spec, case, x, y, ranks)
            else:
                raise SystemExit(f"unknown case kind {case['kind']!r}")
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            ranks.barrier()
            if outcome is not None:
                outcome.update(
                    repeat=repeat, load_before=before, load_after=load(), wall_s=round(time.time() - began, 2)
                )
                results[case["name"]].append(outcome)
                print(
                    f"[bench] {spec.get('label', '')} {case['name']} (job of {ranks.size}) repeat {repeat}: "
                    f"{outcome['steady_samples_per_s'] or 0:.1f} samples/s steady, {outcome['samples_per_s']:.1f} overall, "
                    f"load {before[0]}",
                    flush=True,
                )
    if ranks.rank != 0:
        return None
    params = build_model(spec, x.shape[1:], y.shape[1]).count_params()
    return {
        "size": ranks.size,
        "cases": results,
        "seconds": round(time.time() - started, 1),
        "params": int(params),
        "batch": spec["batch"],
    }
