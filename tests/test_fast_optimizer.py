"""The master's fast optimizer path keeps the Keras optimizer's semantics."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("the fused path belongs to the torch backend", allow_module_level=True)

from mpilearn.backends import for_model  # noqa: E402


def _pair(make_optimizer):
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(30), keras.layers.Dense(3)])
        model.compile(optimizer=make_optimizer(), loss="mse")
        models.append(for_model(model))
    models[1].fast_optimizer = False  # the reference: Keras's own implementation
    return models


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: keras.optimizers.Adam(0.01),
        lambda: keras.optimizers.Adam(0.003, beta_1=0.8, epsilon=1e-4),
        lambda: keras.optimizers.SGD(0.1),
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        lambda: keras.optimizers.SGD(0.7, momentum=0.9, nesterov=True),
    ],
    ids=["adam", "adam-custom", "sgd", "sgd-momentum", "sgd-nesterov"],
)
def test_fused_path_matches_keras_optimizer(make_optimizer) -> None:
    fast, reference = _pair(make_optimizer)
    rng = np.random.default_rng(0)
    for _ in range(10):
        grads = rng.normal(size=fast.layout.num_trainable).astype(np.float32)
        fast.apply_gradients(grads.copy())
        reference.apply_gradients(grads.copy())
    assert fast._fused is not None  # the fast path really ran
    got, want = (np.empty(fast.layout.size, np.float32) for _ in range(2))
    fast.get_weights(got)
    reference.get_weights(want)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert int(fast.model.optimizer.iterations.numpy()) == 10
    fast.sync_optimizer()  # the Keras variables carry the state for checkpoints and model.keras
    for a, b in zip(fast.model.optimizer.variables, reference.model.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a.numpy()), np.asarray(b.numpy()), rtol=1e-5, atol=1e-7)


def test_unsupported_optimizers_fall_back_to_keras() -> None:
    from mpilearn.backends.torch_optim import supports

    assert supports(keras.optimizers.Adam())
    assert not supports(keras.optimizers.AdamW())
    assert not supports(keras.optimizers.Adam(clipnorm=1.0))
    assert supports(keras.optimizers.SGD(momentum=0.9, nesterov=True))
    assert not supports(keras.optimizers.RMSprop())
