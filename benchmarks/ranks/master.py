"""`master`: one master's optimizer step on flat vectors of several sizes,
with the copy bandwidth of the same process."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .inputs import dense_stack
from .world import load


# Bytes an update must touch per parameter (float32): reads and writes of the
# parameter, the gradient and the optimizer's slots.
TOUCHED_BYTES = {"adam": 28, "adamw": 28, "sgd": 12, "rmsprop": 20, "adagrad": 20, "nadam": 28}


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
            model = dense_stack(int(size))
            model.compile(optimizer=keras.optimizers.get(variant["optimizer"]), loss="mse")
            backend = backends.for_model(model)
            backend.fast_optimizer = bool(variant["fast"])
            setups[(int(size), name)] = backend
            n = backend.layout.num_trainable
            if int(size) not in grads:
                grads[int(size)] = np.random.default_rng(0).standard_normal(n).astype(np.float32) * np.float32(1e-3)
    out: dict[str, Any] = {"bandwidth": [], "update_bandwidth": [], "apply_s": {}, "reply_s": {}, "params": {}}
    out["fused_ran"] = {}
    for (size, name), backend in setups.items():
        out["params"][str(size)] = backend.layout.num_trainable
        for _ in range(2):  # warm-up (the fused path builds its state on the first step)
            backend.apply_gradients(grads[size])
        out["fused_ran"][f"{size}/{name}"] = getattr(backend, "_fused", None) is not None
    for repeat in range(spec["repeats"]):
        out["bandwidth"].append(_copy_bandwidth())
        out["update_bandwidth"].append(_update_bandwidth())
        for (size, name), backend in setups.items():
            times = []
            started = time.perf_counter()
            while len(times) < spec["min_steps"] or (
                time.perf_counter() - started < spec["min_time_s"] and len(times) < spec["max_steps"]
            ):
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
        print(
            f"[bench] master repeat {repeat}: copy bandwidth {out['bandwidth'][-1] / 1e9:.1f} GB/s, load {load()[0]}",
            flush=True,
        )
    out["load_after"] = load()
    return out
