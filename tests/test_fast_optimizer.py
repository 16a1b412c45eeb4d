"""The master's fast optimizer path keeps the Keras optimizer's semantics."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.skip("the fused path belongs to the torch backend", allow_module_level=True)

from mpilearn.backends import for_model  # noqa: E402
from mpilearn.backends.torch_optim import supports  # noqa: E402

optimizers, schedules = keras.optimizers, keras.optimizers.schedules


def _excluding_biases(optimizer):
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


# Each optimizer with the fused path: defaults, its own options, weight decay (with exclusions), schedules.
CASES = {
    "adam": lambda: optimizers.Adam(0.01),
    "adam-custom": lambda: optimizers.Adam(0.003, beta_1=0.8, epsilon=1e-4),
    "adam-amsgrad": lambda: optimizers.Adam(0.01, beta_2=0.9, amsgrad=True),
    "adam-decay": lambda: optimizers.Adam(0.01, weight_decay=0.05),
    "adamw": lambda: optimizers.AdamW(0.01),
    "adamw-custom": lambda: optimizers.AdamW(0.005, weight_decay=0.1, beta_1=0.85, beta_2=0.99, epsilon=1e-5),
    "adamw-exclude-amsgrad": lambda: _excluding_biases(optimizers.AdamW(0.01, weight_decay=0.2, amsgrad=True)),
    "adamw-schedule": lambda: optimizers.AdamW(schedules.ExponentialDecay(0.02, 3, 0.5), weight_decay=0.1),
    "sgd": lambda: optimizers.SGD(0.1),
    "sgd-momentum": lambda: optimizers.SGD(0.05, momentum=0.9),
    "sgd-nesterov": lambda: optimizers.SGD(0.7, momentum=0.9, nesterov=True),
    "sgd-decay-exclude-cosine": lambda: _excluding_biases(
        optimizers.SGD(schedules.CosineDecay(0.1, 8), momentum=0.9, weight_decay=0.05)
    ),
    "rmsprop": lambda: optimizers.RMSprop(0.01),
    "rmsprop-centered": lambda: optimizers.RMSprop(0.01, rho=0.8, centered=True, epsilon=1e-5),
    "rmsprop-momentum": lambda: optimizers.RMSprop(0.005, momentum=0.9, epsilon=1e-3),
    "rmsprop-centered-momentum-decay": lambda: optimizers.RMSprop(
        0.005, rho=0.95, momentum=0.5, centered=True, weight_decay=0.02
    ),
    "rmsprop-callable-rate": lambda: optimizers.RMSprop(lambda: 0.003),
    "adagrad": lambda: optimizers.Adagrad(0.1),
    "adagrad-custom": lambda: optimizers.Adagrad(0.05, initial_accumulator_value=0.5, epsilon=1e-3),
    "adagrad-piecewise-decay": lambda: optimizers.Adagrad(
        schedules.PiecewiseConstantDecay([3, 6], [0.1, 0.05, 0.01]), initial_accumulator_value=0.0, weight_decay=0.1
    ),
    "nadam": lambda: optimizers.Nadam(0.01),
    "nadam-custom": lambda: optimizers.Nadam(0.003, beta_1=0.8, beta_2=0.99, epsilon=1e-5, weight_decay=0.01),
    "nadam-inverse-time": lambda: optimizers.Nadam(schedules.InverseTimeDecay(0.01, 2, 0.5)),
}


def _model(make_optimizer, fast=True):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(30), keras.layers.Dense(3)])
    model.compile(optimizer=make_optimizer(), loss="mse")
    backend = for_model(model)
    backend.fast_optimizer = fast  # False: the reference, Keras's own implementation
    return backend


def _steps(backends, steps, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        grads = rng.normal(size=backends[0].layout.num_trainable).astype(np.float32)
        for backend in backends:
            backend.apply_gradients(grads.copy())


def _assert_same(fast, reference):
    got, want = (np.empty(fast.layout.size, np.float32) for _ in range(2))
    fast.get_weights(got)
    reference.get_weights(want)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    fast.sync_optimizer()  # the Keras variables carry the state for checkpoints and model.keras
    mine, theirs = fast.model.optimizer.variables, reference.model.optimizer.variables
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(np.asarray(a.numpy()), np.asarray(b.numpy()), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make_optimizer", list(CASES.values()), ids=list(CASES))
def test_fused_path_matches_keras_optimizer(make_optimizer) -> None:
    fast, reference = _model(make_optimizer), _model(make_optimizer, fast=False)
    _steps([fast, reference], 10, seed=0)
    assert fast._fused is not None  # the fast path really ran
    assert reference._fused is None
    _assert_same(fast, reference)
    assert int(fast.model.optimizer.iterations.numpy()) == 10


@pytest.mark.parametrize("name", ["adam", "adamw-exclude-amsgrad", "sgd-momentum", "rmsprop-centered-momentum-decay",
                                  "adagrad-custom", "nadam-custom"])  # fmt: skip
def test_state_round_trip_resumes_exactly(name) -> None:
    """A checkpoint of the fused path's optimizer state, restored into another
    run whose fused path already stepped (as a restore at an epoch end does),
    continues as Keras continues the uninterrupted run."""
    make_optimizer = CASES[name]
    fast, reference = _model(make_optimizer), _model(make_optimizer, fast=False)
    _steps([fast, reference], 4, seed=1)
    fast.sync_optimizer()
    weights = np.empty(fast.layout.size, np.float32)
    fast.get_weights(weights)
    saved = [np.array(v.numpy()) for v in fast.model.optimizer.variables]

    resumed = _model(make_optimizer)
    _steps([resumed], 7, seed=2)  # another history, to be replaced
    assert resumed._fused is not None
    resumed.set_weights(weights)
    for variable, value in zip(resumed.model.optimizer.variables, saved):
        variable.assign(value)
    resumed.reload_optimizer()
    assert int(resumed.model.optimizer.iterations.numpy()) == 4
    _steps([resumed, reference], 5, seed=3)
    _assert_same(resumed, reference)


@pytest.mark.parametrize("name", ["adamw-custom", "nadam-custom"])
def test_model_keras_file_carries_the_fused_state(name, tmp_path) -> None:
    """model.keras saved after fused steps holds Keras's optimizer state: a run
    loaded from it continues on the fused path as Keras's uninterrupted run."""
    fast, reference = _model(CASES[name]), _model(CASES[name], fast=False)
    _steps([fast, reference], 4, seed=7)
    fast.sync_optimizer()
    path = tmp_path / "model.keras"
    fast.model.save(path)
    resumed = for_model(keras.saving.load_model(path))
    assert int(resumed.model.optimizer.iterations.numpy()) == 4
    _steps([resumed, reference], 4, seed=8)
    assert resumed._fused is not None
    _assert_same(resumed, reference)


def test_restored_iteration_count_without_reload_is_followed() -> None:
    """Adam's bias correction follows the Keras iteration count even when it is
    set without reload_optimizer (torch's step counter is resynchronised)."""
    fast, reference = _model(CASES["adamw"]), _model(CASES["adamw"], fast=False)
    _steps([fast, reference], 3, seed=4)
    for backend in (fast, reference):
        backend.model.optimizer.iterations.assign(20)
    _steps([fast, reference], 3, seed=5)
    _assert_same(fast, reference)


def test_unsupported_optimizers_fall_back_to_keras() -> None:
    for make in CASES.values():
        assert supports(make())
    assert not supports(optimizers.Adam(clipnorm=1.0))
    assert not supports(optimizers.AdamW(global_clipnorm=1.0))
    assert not supports(optimizers.RMSprop(clipvalue=0.5))
    assert not supports(optimizers.Adagrad(use_ema=True))
    assert not supports(optimizers.Nadam(gradient_accumulation_steps=2))
    assert not supports(optimizers.SGD(loss_scale_factor=128.0))
    assert not supports(optimizers.LossScaleOptimizer(optimizers.Adam()))
    assert not supports(optimizers.Adamax())
    assert not supports(optimizers.Lion())

    class Custom(optimizers.Adam):  # a subclass may change the update
        pass

    assert not supports(Custom())
    constrained = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_constraint="non_neg")])
    assert supports(optimizers.Adam())
    assert not supports(optimizers.Adam(), constrained.trainable_variables)


@pytest.mark.parametrize(
    "make_optimizer",
    [lambda: optimizers.RMSprop(0.01, clipnorm=0.5), lambda: optimizers.Nadam(0.01, use_ema=True)],
    ids=["rmsprop-clipnorm", "nadam-ema"],
)
def test_fall_back_runs_keras(make_optimizer) -> None:
    """An unsupported configuration steps through Keras's own apply (same result, no fused path)."""
    fast, reference = _model(make_optimizer), _model(make_optimizer, fast=False)
    _steps([fast, reference], 3, seed=6)
    assert fast._fused is None and fast._fused_paths  # asked for, and refused
    got, want = (np.empty(fast.layout.size, np.float32) for _ in range(2))
    fast.get_weights(got)
    reference.get_weights(want)
    np.testing.assert_array_equal(got, want)
