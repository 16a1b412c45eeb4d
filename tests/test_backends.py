"""The contract of every installed backend module (see backends/base.py).

The Keras backend is fixed per process when keras is imported, so each
backend's checks run in a fresh `KERAS_BACKEND=<name> python` process that
prints its measurements as JSON; the tests assert on them. References are
independent of the module under test: Keras's own `train_on_batch`, and Keras's
eager `optimizer.apply`.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from conftest import run_command

BACKENDS = ("torch", "jax", "tensorflow")

# Run as a script, once per backend (see the contract fixture).
CHECKS = Path(__file__).with_name("backend_checks.py")


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """Run the checks once per backend, in its own process; skip missing ones."""
    workdir = tmp_path_factory.mktemp("contract")
    results: dict[str, dict[str, Any]] = {}

    def run(name: str) -> dict[str, Any]:
        if not _installed(name):
            pytest.skip(f"{name} is not installed")
        if name not in results:  # a failed run is kept too: every test reports it, none reruns it
            done = run_command(
                [sys.executable, str(CHECKS)],
                timeout=300,
                cwd=workdir,
                env={"KERAS_BACKEND": name, "OMP_NUM_THREADS": "1"},
            )
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            ok = done.returncode == 0 and lines
            results[name] = json.loads(lines[-1][len("RESULT ") :]) if ok else {"error": done.output[-5000:]}
        assert "error" not in results[name], results[name].get("error")
        assert results[name]["backend"] == name
        return results[name]

    return run


@pytest.mark.parametrize("name", BACKENDS)
def test_flat_order_and_round_trip(contract: Callable[[str], dict[str, Any]], name: str) -> None:
    r = contract(name)
    assert r["layout_order"] and r["num_state"] == 10  # moving mean and variance of 5 units
    assert r["round_trip"] == 0.0  # copied in: the caller's buffer was overwritten afterwards
    assert r["order_vs_keras"] == 0.0
    assert r["buffers_reused"] < 1e-6  # set_weights, apply_gradients, add_state: inputs overwritten at once


@pytest.mark.parametrize("name", BACKENDS)
def test_gradients_equal_keras_train_on_batch_and_accumulate(
    contract: Callable[[str], dict[str, Any]], name: str
) -> None:
    r = contract(name)
    for n in (8, 5):  # full batch and the smaller last batch of an epoch
        assert r[f"grad_norm_{n}"] > 1e-2
        assert r[f"grad_vs_keras_{n}"] < 1e-5, n
        assert r[f"loss_vs_keras_{n}"] < 1e-5, n
    assert r["accumulates"] < 1e-5


@pytest.mark.parametrize("name", BACKENDS)
def test_gradients_are_reported_ready_once_each_last_variable_first(
    contract: Callable[[str], dict[str, Any]], name: str
) -> None:
    """The seam of the allreduce's buckets: `ready(i)` once per variable, with its gradient in place;
    on torch from inside backward (gradient hooks), for Keras models and plain modules alike."""
    r = contract(name)
    assert sorted(r["ready_indices"]) == [0, 1, 2, 3, 4, 5]  # Dense, BatchNormalization, Dense: 6 trainables
    assert r["ready_indices"][0] == 5  # the last layer's gradient comes first
    assert r["ready_grads_vs_plain"] < 1e-6 and r["ready_held"]
    if name == "torch":
        assert r["ready_inside_backward"]
        module = r["module_ready"]
        assert sorted(module["indices"]) == [0, 1, 2, 3] and module["indices"][0] in (2, 3)
        assert module["grad_norm"] > 1e-2 and module["grads_vs_plain"] < 1e-6 and module["held"]
        assert module["inside_backward"]


@pytest.mark.parametrize("name", BACKENDS)
def test_layer_state_trains_and_adds(contract: Callable[[str], dict[str, Any]], name: str) -> None:
    r = contract(name)
    for n in (8, 5):
        assert r[f"state_changed_{n}"] > 1e-3
        assert r[f"state_vs_keras_{n}"] < 1e-5
    assert r["add_state"] < 1e-6 and r["add_state_trainable_kept"] == 0.0


@pytest.mark.parametrize("name", BACKENDS)
def test_apply_gradients_steps_the_optimizer(contract: Callable[[str], dict[str, Any]], name: str) -> None:
    r = contract(name)
    assert r["sgd_compiled"] < 1e-6 and r["sgd_state_kept"] == 0.0
    assert r["sgd_passed"] < 1e-6
    assert r["adam_moved"] > 1e-3 and r["adam_vs_keras"] < 1e-6


@pytest.mark.parametrize("name", BACKENDS)
def test_optimizer_state_syncs_to_and_reloads_from_keras(contract: Callable[[str], dict[str, Any]], name: str) -> None:
    r = contract(name)
    assert r["adam_iterations"] == 3 and r["adam_slots_vs_keras"] < 1e-6
    assert r["adam_reloaded_vs_keras"] < 1e-6


@pytest.mark.parametrize("name", BACKENDS)
def test_sample_weights_weight_the_loss(contract: Callable[[str], dict[str, Any]], name: str) -> None:
    r = contract(name)
    assert r["weighted_differs"] > 1e-3
    assert r["weighted_grad_vs_keras"] < 1e-5 and r["weighted_loss_vs_keras"] < 1e-5


@pytest.mark.parametrize("name", BACKENDS)
def test_dropout_draws_new_masks(contract: Callable[[str], dict[str, Any]], name: str) -> None:
    losses = contract(name)["dropout_losses"]
    assert len(set(losses)) > 1, losses


def test_backends_agree(contract: Callable[[str], dict[str, Any]]) -> None:
    """Same model, weights and batch: the same loss and gradients everywhere."""
    installed = [name for name in BACKENDS if _installed(name)]
    if len(installed) < 2:
        pytest.skip("fewer than two backends installed")
    reference = contract(installed[0])
    for name in installed[1:]:
        r = contract(name)
        assert abs(r["loss"] - reference["loss"]) < 1e-4, (name, r["loss"], reference["loss"])
        assert np.max(np.abs(np.array(r["grads"]) - np.array(reference["grads"]))) < 1e-4, name
