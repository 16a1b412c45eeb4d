"""`steps`: CPU time of the pieces of one training step, in one process."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .inputs import build_model
from .world import set_threads


def steps(spec: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds (time.process_time: insensitive to other processes taking
    the core) per batch of: plain model.fit, the worker's gradient computation
    (backend.accumulate_gradients), the master's step (fused and Keras), and
    the flat weight copies of an exchange. Alternating blocks of 10 batches."""
    from mpilearn import backends

    set_threads(spec["threads"])
    data = np.load(spec["data"], mmap_mode="r")
    batch, count = spec["batch"], 10
    x = np.ascontiguousarray(data["x"][: batch * count])
    y = np.ascontiguousarray(data["y"][: batch * count])
    out: dict[str, Any] = {}
    for model_spec in spec["models"]:
        model = build_model({**spec, "model": model_spec}, x.shape[1:], y.shape[1])
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
            block(
                "worker gradients",
                lambda i: backend.accumulate_gradients(
                    x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch], grads
                ),
            )
            grads[:] = 0.0
            block("fused optimizer step", lambda i: backend.apply_gradients(grads))
            block("keras optimizer step", keras_apply)
            block("keras sgd step (easgd worker)", keras_sgd)
            block("get_weights (one pass)", lambda i: backend.get_weights(flat))
            block("set_weights (one pass)", lambda i: backend.set_weights(flat))
        out[model_spec] = {"params": int(backend.layout.num_trainable), "cpu_s": times}
    return out
