"""What the measured ranks train on: the models and the data of a spec."""

from __future__ import annotations

from typing import Any

import numpy as np


def build_model(spec: dict[str, Any], input_shape: tuple[int, ...], classes: int) -> Any:
    """The same model for every case, built and compiled as `mpilearn train` does."""
    import keras

    from mpilearn import backends, models

    keras.utils.set_random_seed(spec.get("seed", 0))
    model = models.build_model(spec["model"], input_shape, classes, dict(spec.get("model_args", {})))
    loss: Any = "categorical_crossentropy"
    if backends.outputs_logits(model):
        loss = models.loss_for("categorical_crossentropy", True, (classes,), "float32")
    models.compile_model(
        model, spec.get("optimizer", "adam"), spec.get("lr"), loss, tuple(spec.get("metrics", ("accuracy",)))
    )
    return model


def dense_stack(parameters: int, layers: int = 4) -> Any:
    """`layers` square Dense layers holding about `parameters` weights."""
    import keras

    width = max(8, int(round((parameters / layers) ** 0.5)))
    inputs = keras.Input((width,))
    x = inputs
    for _ in range(layers):
        x = keras.layers.Dense(width)(x)
    return keras.Model(inputs, x)


def training_data(spec: dict[str, Any], needed: int) -> tuple[np.ndarray, np.ndarray]:
    """`needed` samples of the spec's data: {"random": [features, classes]} (a tiny problem for loop
    overheads) or an .npz file of x and y."""
    if isinstance(spec["data"], dict):
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
    return x, y
