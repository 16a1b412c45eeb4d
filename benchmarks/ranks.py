"""The measuring side of the benchmarks: `python -m benchmarks.ranks KIND SPEC OUT`.

Started by the harness under `mpiexec` (or as a plain process) with its
thread pools already capped. Rank 0 writes OUT (JSON). Kinds:

- `train`: cases of training throughput, run side by side in one job and
  repeated in rotating order: plain `model.fit` (rank 0 alone; the other
  ranks wait without spinning), `mpilearn.fit` with an algorithm on every
  rank, and PyTorch DistributedDataParallel on every rank.
- `transport`: ping-pong and allreduce bandwidth of mpilearn's Communicator
  against raw mpi4py, and the CPU a waiting rank burns.
- `master`: one master's optimizer step on flat vectors of several sizes,
  with the copy bandwidth of the same process.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# ===========================================================================
# train
# ===========================================================================
class _Ranks:
    """COMM_WORLD, with a barrier that sleeps instead of spinning, so that a
    rank left out of a single-process case does not steal a core."""

    def __init__(self) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    def barrier(self) -> None:
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(0.001)

    def bcast(self, obj: Any) -> Any:
        return self.comm.bcast(obj, root=0)

    def gather(self, obj: Any) -> Any:
        return self.comm.gather(obj, root=0)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _build_model(spec: dict[str, Any], input_shape: tuple[int, ...], classes: int) -> Any:
    """The same model for every case, built and compiled as `mpilearn train` does."""
    import keras

    from mpilearn import backends, models

    keras.utils.set_random_seed(spec.get("seed", 0))
    model = models.build_model(spec["model"], input_shape, classes, dict(spec.get("model_args", {})))
    loss: Any = "categorical_crossentropy"
    if backends.outputs_logits(model):
        loss = models.loss_for("categorical_crossentropy", True, (classes,), "float32")
    models.compile_model(model, spec.get("optimizer", "adam"), spec.get("lr"), loss, tuple(spec.get("metrics", ("accuracy",))))
    return model


def _steady(times: list[float], samples: list[float]) -> float | None:
    """Throughput after the first epoch (start-up and first-batch costs excluded)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (samples[-1] - samples[0]) / (times[-1] - times[0])


def _case_fit(spec: dict[str, Any], case: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    import keras

    n = spec["batches"] * spec["batch"]
    x, y = x[:n], y[:n]
    model = _build_model(spec, x.shape[1:], y.shape[1])
    marks: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            marks.append(time.perf_counter())

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            marks.append(time.perf_counter())

    _set_threads(case.get("threads", 1))
    profile = _profiler(spec, case)
    model.fit(x, y, batch_size=spec["batch"], epochs=spec["epochs"], shuffle=True, verbose=0, callbacks=[Timer()])
    _save_profile(profile, spec, case)
    epochs = marks[1:]
    return {
        "samples_per_s": n * spec["epochs"] / (marks[-1] - marks[0]),
        "steady_samples_per_s": _steady(epochs, [n * (i + 1) for i in range(len(epochs))]),
        "train_time_s": marks[-1] - marks[0],
        "samples": n * spec["epochs"],
    }


_SUBCOMMS: dict[Any, Any] = {}


def _subcomm(ranks: _Ranks, k: int) -> Any:
    """The first k ranks of COMM_WORLD as an mpilearn Communicator (None on
    the others). Collective: every rank calls it."""
    if k not in _SUBCOMMS:
        from mpilearn.comm import Communicator

        part = ranks.comm.Split(0 if ranks.rank < k else ranks.MPI.UNDEFINED, ranks.rank)
        _SUBCOMMS[k] = Communicator(part) if part != ranks.MPI.COMM_NULL else None
    return _SUBCOMMS[k]


def _self_comm(ranks: _Ranks) -> Any:
    """This rank alone, as an mpilearn Communicator."""
    if "self" not in _SUBCOMMS:
        from mpilearn.comm import Communicator

        _SUBCOMMS["self"] = Communicator(ranks.MPI.COMM_SELF)
    return _SUBCOMMS["self"]


def _mpilearn_fit(spec: dict[str, Any], case: dict[str, Any], model: Any, x: np.ndarray, y: np.ndarray,
                  run_dir: str, timeline: str, comm: Any) -> dict[str, Any]:
    """mpilearn.fit on `comm` (None: all ranks)."""
    import mpilearn

    return mpilearn.fit(model, (x, y), comm=comm, epochs=spec["epochs"], batch_size=spec["batch"], algorithm=case["algo"],
                        sync_every=case.get("sync_every", 1), threads=case.get("threads", 1), run_dir=run_dir, quiet=True,
                        progress="lines", timeline=timeline, log_level="error")


def _case_mpilearn(spec: dict[str, Any], case: dict[str, Any], x: np.ndarray, y: np.ndarray, ranks: _Ranks, repeat: int) -> dict[str, Any] | None:
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
    model = _build_model(spec, x.shape[1:], y.shape[1])
    timeline = ""
    if spec.get("timeline_dir") and repeat == 0:
        timeline = str(Path(spec["timeline_dir"]) / f"timeline-{spec['label']}-{case['name']}.json")
    elif case.get("spans"):
        timeline = str(Path(spec["tmp"]) / f"timeline-{case['name']}-{repeat}.json")
    run_dir = tempfile.mkdtemp(prefix="run-", dir=spec["tmp"])
    profile = _profiler(spec, case)
    history = _mpilearn_fit(spec, case, model, x, y, run_dir, timeline, comm)
    _save_profile(profile, spec, case, ranks.rank)
    _set_threads(spec["threads"])
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


def _case_ddp(spec: dict[str, Any], case: dict[str, Any], x: np.ndarray, y: np.ndarray, ranks: _Ranks) -> dict[str, Any] | None:
    """The same torch module under DistributedDataParallel (gloo), the loop a
    PyTorch user writes: zero_grad, forward, loss, backward (DDP averages the
    gradients during it), Adam step."""
    global _DDP_READY
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mpilearn.models import load_builder

    if not _DDP_READY:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{spec['port']}", rank=ranks.rank, world_size=ranks.size)
        _DDP_READY = True
    _set_threads(case.get("threads", 1))
    per_rank = spec["batches"] * spec["batch"]
    xs = torch.from_numpy(np.ascontiguousarray(x[ranks.rank * per_rank : (ranks.rank + 1) * per_rank]))
    labels = torch.from_numpy(np.ascontiguousarray(y[ranks.rank * per_rank : (ranks.rank + 1) * per_rank].argmax(axis=1)))
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
    _set_threads(spec["threads"])
    if ranks.rank != 0:
        return None
    total = per_rank * ranks.size
    epochs = marks[1:]
    return {
        "samples_per_s": total * spec["epochs"] / (marks[-1] - marks[0]),
        "steady_samples_per_s": _steady(epochs, [total * (i + 1) for i in range(len(epochs))]),
        "train_time_s": marks[-1] - marks[0],
        "samples": total * spec["epochs"],
        "workers": ranks.size,
    }


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

    model = _build_model(spec, x.shape[1:], y.shape[1])
    model.fit(x[: 2 * spec["batch"]], y[: 2 * spec["batch"]], batch_size=spec["batch"], epochs=1, verbose=0)
    if any(case["kind"] == "ddp" for case in spec["cases"]):
        import torch.distributed  # noqa: F401


def train(spec: dict[str, Any]) -> dict[str, Any] | None:
    ranks = _Ranks()
    _set_threads(spec["threads"])
    needed = max(ranks.size, 1) * spec["batches"] * spec["batch"]
    if isinstance(spec["data"], dict):  # {"random": [features, classes]}: a tiny problem for loop overheads
        features, classes = spec["data"]["random"]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((needed, features)).astype(np.float32)
        y = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, needed)]
    else:
        data = np.load(spec["data"], mmap_mode="r")
        x = np.ascontiguousarray(data["x"][:needed])
        y = np.ascontiguousarray(data["y"][:needed])
    if len(x) < needed:
        raise SystemExit(f"{spec['data']} holds {len(x)} samples, {needed} needed")
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
            before = _load()
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
                outcome.update(repeat=repeat, load_before=before, load_after=_load(), wall_s=round(time.time() - began, 2))
                results[case["name"]].append(outcome)
                print(f"[bench] {spec.get('label', '')} {case['name']} (job of {ranks.size}) repeat {repeat}: "
                      f"{outcome['steady_samples_per_s'] or 0:.1f} samples/s steady, {outcome['samples_per_s']:.1f} overall, "
                      f"load {before[0]}", flush=True)
    if ranks.rank != 0:
        return None
    params = _build_model(spec, x.shape[1:], y.shape[1]).count_params()
    return {"size": ranks.size, "cases": results, "seconds": round(time.time() - started, 1), "params": int(params),
            "batch": spec["batch"]}


# ===========================================================================
# transport
# ===========================================================================
def _timed_blocks(ranks: _Ranks, run_block: Callable[[int], None], iterations: int) -> float:
    ranks.comm.Barrier()
    start = time.perf_counter()
    run_block(iterations)
    elapsed = time.perf_counter() - start
    return float(ranks.comm.allreduce(elapsed, op=ranks.MPI.MAX))


def transport(spec: dict[str, Any]) -> dict[str, Any] | None:
    from mpilearn.comm import Communicator

    ranks = _Ranks()
    MPI = ranks.MPI
    if ranks.size != 2:
        raise SystemExit("the transport benchmark runs on exactly 2 ranks")
    ours = Communicator(MPI.COMM_WORLD)
    # The same Communicator with a shorter longest sleep between polls (mpilearn's RunConfig.poll_max_s).
    fast = Communicator(MPI.COMM_WORLD, spec.get("fast_poll_s", 5e-5))
    raw = MPI.COMM_WORLD.Dup()
    peer = 1 - ranks.rank
    tag = 11
    out: dict[str, Any] = {"pingpong": {}, "allreduce": {}, "poll_max_s": ours.poll_max_s, "fast_poll_s": fast.poll_max_s}

    for floats in spec["sizes"]:
        buffer = np.zeros(int(floats), dtype=np.float32)  # zeros: repeated sums stay finite

        def pingpong_with(comm: Any) -> Callable[[int], None]:
            def pingpong(k: int) -> None:
                for _ in range(k):
                    if ranks.rank == 0:
                        comm.send(buffer, peer, tag)
                        comm.recv(buffer, peer, tag)
                    else:
                        comm.recv(buffer, peer, tag)
                        comm.send(buffer, peer, tag)

            return pingpong

        def allreduce_with(comm: Any) -> Callable[[int], None]:
            def allreduce(k: int) -> None:
                for _ in range(k):
                    comm.allreduce_sum(buffer)

            return allreduce

        ours_pingpong, fast_pingpong = pingpong_with(ours), pingpong_with(fast)
        ours_allreduce, fast_allreduce = allreduce_with(ours), allreduce_with(fast)

        def raw_pingpong(k: int) -> None:
            for _ in range(k):
                if ranks.rank == 0:
                    raw.Send([buffer, MPI.FLOAT], peer, tag)
                    raw.Recv([buffer, MPI.FLOAT], peer, tag)
                else:
                    raw.Recv([buffer, MPI.FLOAT], peer, tag)
                    raw.Send([buffer, MPI.FLOAT], peer, tag)

        def raw_allreduce(k: int) -> None:
            for _ in range(k):
                raw.Allreduce(MPI.IN_PLACE, [buffer, MPI.FLOAT], op=MPI.SUM)

        for kind, variants, moved in (
            ("pingpong", {"ours": ours_pingpong, "raw": raw_pingpong, "ours_fast_poll": fast_pingpong}, 2 * buffer.nbytes),
            ("allreduce", {"ours": ours_allreduce, "raw": raw_allreduce, "ours_fast_poll": fast_allreduce}, buffer.nbytes),
        ):
            # Iterations per block: about spec["block_s"] seconds of the raw call.
            probe = max(_timed_blocks(ranks, variants["raw"], 3) / 3, 1e-6)
            iterations = int(min(max(spec["block_s"] / probe, 3), 20000))
            iterations = ranks.bcast(iterations)
            rates: dict[str, list[float]] = {name: [] for name in variants}
            for rnd in range(spec["rounds"]):
                names = list(variants) if rnd % 2 == 0 else list(reversed(variants))  # alternate who goes first
                for name in names:
                    seconds = _timed_blocks(ranks, variants[name], iterations)
                    rates[name].append(moved * iterations / seconds)
            out[kind][str(int(floats))] = {"bytes": buffer.nbytes, "iterations": iterations, "bytes_per_s": rates}

    # A rank that waits 3 s for a message: CPU seconds burnt (ours polls with a sleep; MPICH's Recv spins).
    waits: dict[str, Any] = {}
    token = np.zeros(1, dtype=np.float32)
    for name in ("ours", "raw", "ours_fast_poll"):
        ranks.comm.Barrier()
        if ranks.rank == 0:
            time.sleep(spec["wait_s"])
            sent = time.monotonic()
            if name == "raw":
                raw.Send([token, MPI.FLOAT], peer, tag)
            else:
                (ours if name == "ours" else fast).send(token, peer, tag)
            info = {"sent": sent}
        else:
            wall, cpu = time.monotonic(), time.process_time()
            if name == "raw":
                raw.Recv([token, MPI.FLOAT], peer, tag)
            else:
                (ours if name == "ours" else fast).recv(token, peer, tag)
            info = {"received": time.monotonic(), "wall_s": time.monotonic() - wall, "cpu_s": time.process_time() - cpu}
        both = ranks.gather(info)
        if ranks.rank == 0:
            sender, receiver = both
            waits[name] = {
                "wall_s": receiver["wall_s"],
                "cpu_s": receiver["cpu_s"],
                "cpu_fraction": receiver["cpu_s"] / receiver["wall_s"],
                "wake_latency_s": receiver["received"] - sender["sent"],
            }
    out["wait"] = waits
    return out if ranks.rank == 0 else None


# ===========================================================================
# master
# ===========================================================================
def _dense_stack(parameters: int, layers: int = 4) -> Any:
    """`layers` square Dense layers holding about `parameters` weights."""
    import keras

    width = max(8, int(round((parameters / layers) ** 0.5)))
    inputs = keras.Input((width,))
    x = inputs
    for _ in range(layers):
        x = keras.layers.Dense(width)(x)
    return keras.Model(inputs, x)


# Bytes an update must touch per parameter (float32): reads and writes of the
# parameter, the gradient and the optimizer's slots.
TOUCHED_BYTES = {"adam": 28, "sgd": 12, "rmsprop": 20}


def _copy_bandwidth(floats: int = 2**25, repeats: int = 7) -> float:
    """numpy copy of an out-of-cache array: (read + write) bytes per second."""
    src = np.ones(floats, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return 2 * src.nbytes / float(np.median(times))


def _update_bandwidth(floats: int = 2**25, repeats: int = 7) -> float:
    """numpy in-place add of out-of-cache arrays, a += b: (2 reads + 1 write)
    bytes per second, the access pattern of an optimizer step (no copy target)."""
    a = np.ones(floats, dtype=np.float32)
    b = np.ones(floats, dtype=np.float32)
    np.add(a, b, out=a)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.add(a, b, out=a)
        times.append(time.perf_counter() - start)
    return 3 * a.nbytes / float(np.median(times))


def master(spec: dict[str, Any]) -> dict[str, Any]:
    import keras

    from mpilearn import backends

    backends.set_threads(spec["threads"])
    variants = spec["variants"]  # name -> {"optimizer": "adam", "fast": true}
    setups: dict[tuple[int, str], Any] = {}
    grads: dict[int, np.ndarray] = {}
    for size in spec["sizes"]:
        for name, variant in variants.items():
            keras.utils.set_random_seed(0)
            model = _dense_stack(int(size))
            model.compile(optimizer=keras.optimizers.get(variant["optimizer"]), loss="mse")
            backend = backends.for_model(model)
            backend.fast_optimizer = bool(variant["fast"])
            setups[(int(size), name)] = backend
            n = backend.layout.num_trainable
            if int(size) not in grads:
                grads[int(size)] = (np.random.default_rng(0).standard_normal(n).astype(np.float32) * np.float32(1e-3))
    out: dict[str, Any] = {"bandwidth": [], "update_bandwidth": [], "apply_s": {}, "reply_s": {}, "params": {}}
    for (size, name), backend in setups.items():
        out["params"][str(size)] = backend.layout.num_trainable
        for _ in range(2):  # warm-up (the fused path builds its state on the first step)
            backend.apply_gradients(grads[size])
    for repeat in range(spec["repeats"]):
        out["bandwidth"].append(_copy_bandwidth())
        out["update_bandwidth"].append(_update_bandwidth())
        for (size, name), backend in setups.items():
            times = []
            started = time.perf_counter()
            while len(times) < spec["min_steps"] or (time.perf_counter() - started < spec["min_time_s"] and len(times) < spec["max_steps"]):
                t = time.perf_counter()
                backend.apply_gradients(grads[size])
                times.append(time.perf_counter() - t)
            out["apply_s"].setdefault(f"{size}/{name}", []).append(float(np.median(times)))
        for size in spec["sizes"]:
            backend = next(b for (s, _), b in setups.items() if s == int(size))
            flat = np.empty(backend.layout.size, dtype=np.float32)
            times = []
            for _ in range(spec["min_steps"]):
                t = time.perf_counter()
                backend.get_weights(flat)
                times.append(time.perf_counter() - t)
            out["reply_s"].setdefault(str(int(size)), []).append(float(np.median(times)))
        print(f"[bench] master repeat {repeat}: copy bandwidth {out['bandwidth'][-1] / 1e9:.1f} GB/s, load {_load()[0]}", flush=True)
    out["load_after"] = _load()
    return out


# ===========================================================================
# steps: CPU time of the pieces of one training step, in one process
# ===========================================================================
def steps(spec: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds (time.process_time: insensitive to other processes taking
    the core) per batch of: plain model.fit, the worker's gradient computation
    (backend.accumulate_gradients), the master's step (fused and Keras), and
    the flat weight copies of an exchange. Alternating blocks of 10 batches."""
    from mpilearn import backends

    _set_threads(spec["threads"])
    data = np.load(spec["data"], mmap_mode="r")
    batch, count = spec["batch"], 10
    x = np.ascontiguousarray(data["x"][: batch * count])
    y = np.ascontiguousarray(data["y"][: batch * count])
    out: dict[str, Any] = {}
    for model_spec in spec["models"]:
        model = _build_model({**spec, "model": model_spec}, x.shape[1:], y.shape[1])
        model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, verbose=0)
        backend = backends.for_model(model)
        flat = np.zeros(backend.layout.size, dtype=np.float32)
        grads = flat[: backend.layout.num_trainable]
        backend.accumulate_gradients(x[:batch], y[:batch], grads)
        grads[:] = 0.0
        backend.apply_gradients(grads)
        times: dict[str, list[float]] = {}

        def block(name: str, work: Callable[[int], None]) -> None:
            start = time.process_time()
            for i in range(count):
                work(i)
            times.setdefault(name, []).append((time.process_time() - start) / count)

        def keras_apply(_: int) -> None:
            backend.apply_gradients(grads, backend.model.optimizer)

        import keras

        sgd = keras.optimizers.SGD(0.01)  # what an EASGD worker steps with

        def keras_sgd(_: int) -> None:
            backend.apply_gradients(grads, sgd)

        for _ in range(spec["repeats"]):
            start = time.process_time()
            model.fit(x, y, batch_size=batch, verbose=0, shuffle=False)
            times.setdefault("fit step", []).append((time.process_time() - start) / count)
            block("worker gradients", lambda i: backend.accumulate_gradients(x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch], grads))
            grads[:] = 0.0
            block("fused optimizer step", lambda i: backend.apply_gradients(grads))
            block("keras optimizer step", keras_apply)
            block("keras sgd step (easgd worker)", keras_sgd)
            block("get_weights (one pass)", lambda i: backend.get_weights(flat))
            block("set_weights (one pass)", lambda i: backend.set_weights(flat))
        out[model_spec] = {"params": int(backend.layout.num_trainable), "cpu_s": times}
    return out


KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]] = {
    "train": train, "transport": transport, "master": master, "steps": steps}


def main(argv: list[str]) -> int:
    kind, spec_path, out_path = argv
    spec = json.loads(Path(spec_path).read_text())
    result = KINDS[kind](spec)
    if result is not None:
        result["load_end"] = _load()
        Path(out_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
