"""Update rules against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mpilearn.algorithms.rules import (
    elastic_alpha,
    elastic_exchange,
    gem_scale,
    lr_factor,
    mean_gradient,
    mean_of,
    staleness_factor,
    state_delta,
)
from mpilearn.comm.topology import Role, Topology
from mpilearn.errors import ConfigError


def test_easgd_center_moves_by_alpha_times_difference() -> None:
    center = np.array([0.0, 1.0, -2.0], np.float32)
    worker = np.array([1.0, 3.0, -2.0], np.float32)
    alpha = elastic_alpha(0.9, 3)  # beta / p
    assert alpha == pytest.approx(0.3)
    diff = np.zeros(3, np.float32)
    old = center.copy()
    elastic_exchange(center, [worker], alpha, [diff])
    np.testing.assert_allclose(diff, alpha * (worker - old), rtol=1e-6)
    np.testing.assert_allclose(center, old + alpha * (worker - old), rtol=1e-6)
    np.testing.assert_allclose(worker - diff, worker - alpha * (worker - old), rtol=1e-6)  # the worker's move


def test_synchronous_easgd_uses_the_old_center_for_every_worker() -> None:
    center = np.zeros(2, np.float32)
    workers = [np.array([1.0, 0.0], np.float32), np.array([0.0, 2.0], np.float32)]
    diffs = [np.zeros(2, np.float32), np.zeros(2, np.float32)]
    elastic_exchange(center, workers, 0.5, diffs)
    np.testing.assert_allclose(diffs[0], [0.5, 0.0])
    np.testing.assert_allclose(diffs[1], [0.0, 1.0])
    np.testing.assert_allclose(center, [0.5, 1.0])  # center + alpha * sum(x_i - center)


def test_gem_scale_matches_hand_computation_and_is_clipped() -> None:
    momentum = np.array([1.0, -2.0, 0.1, 10.0], np.float32)
    central = np.array([0.5, 1.0, 1.0, 0.0], np.float32)
    update = np.array([0.25, -0.5, 0.1, 0.1], np.float32)
    out = np.zeros(4, np.float32)
    gem_scale(momentum, central, update, kappa=2.0, out=out)
    # (2*|m| - |c|) / |u|: (2-0.5)/0.25 = 6 -> clipped to 5; (4-1)/0.5 = 6 -> 5; (0.2-1)/0.1 < 0 -> 0; 20/0.1 -> 5
    np.testing.assert_allclose(out, [5.0, 5.0, 0.0, 5.0])
    gem_scale(np.array([1.0], np.float32), np.array([0.5], np.float32), np.array([0.5], np.float32), 1.0, out[:1])
    assert out[0] == pytest.approx(1.0)  # (1 - 0.5) / 0.5


def test_mean_and_deltas() -> None:
    grads = np.array([2.0, 4.0], np.float32)
    mean_gradient(grads, 2)
    np.testing.assert_allclose(grads, [1.0, 2.0])
    out = np.zeros(2, np.float32)
    state_delta(np.array([3.0, 1.0], np.float32), np.array([1.0, 1.0], np.float32), out)
    np.testing.assert_allclose(out, [2.0, 0.0])
    np.testing.assert_allclose(mean_of([np.ones(2, np.float32), 3 * np.ones(2, np.float32)], out), [2.0, 2.0])


@pytest.mark.parametrize(
    "progress, workers, scaling, warmup, expected",
    [
        (0.0, 4, "none", 0.0, 1.0),
        (0.0, 4, "linear", 0.0, 4.0),
        (3.0, 9, "sqrt", 0.0, 3.0),
        (0.0, 4, "linear", 2.0, 1.0),  # Goyal: warmup starts at the single-worker rate
        (1.0, 4, "linear", 2.0, 2.5),
        (2.0, 4, "linear", 2.0, 4.0),
        (0.5, 4, "none", 1.0, 0.5),  # without scaling the warmup rises from zero
    ],
)
def test_learning_rate_factor(progress, workers, scaling, warmup, expected) -> None:
    assert lr_factor(progress, workers, scaling, warmup) == pytest.approx(expected)
    assert math.isfinite(expected)


def test_staleness_rule_divides_the_rate_by_the_staleness() -> None:
    assert [staleness_factor(s) for s in (0, 1, 2, 4)] == [1.0, 1.0, 0.5, 0.25]
    assert lr_factor(5.0, 4, "staleness", 0.0) == 1.0  # the division is per update, not per epoch


@pytest.mark.parametrize(
    "algo, optimizer, processes, scaling, warmup",
    [
        ("sync", "adam", 3, "sqrt", 1.0),  # Malladi et al. 2022 for adaptive optimizers
        ("allreduce", "sgd", 4, "linear", 1.0),  # Goyal et al. 2017 for SGD and momentum
        ("sync", "adam", 2, "none", 0.0),  # one worker: nothing to scale
        ("downpour", "adam", 5, "none", 0.0),
        ("easgd", "adam", 3, "none", 0.0),  # its rule sets --elastic-lr x (workers + 1) instead
        ("gem", "adam", 3, "linear", 1.0),  # the proxy (a copy of Adam, or the momentum SGD) x N
    ],
)
def test_auto_learning_rate_rule_per_algorithm_and_optimizer(algo, optimizer, processes, scaling, warmup) -> None:
    from mpilearn import models
    from mpilearn.algorithms import defaults
    from mpilearn.config import AlgorithmConfig, ModelConfig, RunConfig

    config = RunConfig(model=ModelConfig(optimizer=optimizer), algorithm=AlgorithmConfig(name=algo))
    workers = Topology(processes, peers_only=algo == "allreduce").num_workers
    compiled = models.make_optimizer(optimizer, None)
    resolved, reasons = defaults.resolve(config, workers, compiled)
    assert (resolved.algorithm.lr_scaling, resolved.algorithm.warmup_epochs) == (scaling, warmup)
    assert (scaling == "none" and algo != "easgd") == (not any("--lr-scaling auto" in r for r in reasons))
    # What the user sets is kept.
    explicit = config.replace(algorithm=AlgorithmConfig(name=algo, lr_scaling="linear", warmup_epochs=0.5))
    assert defaults.resolve(explicit, workers, compiled)[0].algorithm == explicit.algorithm


def test_topology_layouts() -> None:
    flat = Topology(4)
    assert [flat.role(r) for r in range(4)] == [Role.MASTER, Role.WORKER, Role.WORKER, Role.WORKER]
    assert flat.parent(3) == 0 and flat.children(0) == (1, 2, 3)
    tree = Topology(7, masters=3)
    assert tree.submasters == (1, 2) and tree.workers == (3, 4, 5, 6)
    assert tree.block(1) == (3, 4) and tree.block(2) == (5, 6)
    assert tree.parent(5) == 2 and tree.parent(2) == 0 and tree.children(0) == (1, 2)
    peers = Topology(3, peers_only=True)
    assert peers.role(0) is Role.PEER and peers.num_workers == 3
    assert Topology(1).role(0) is Role.SOLO
    with pytest.raises(ConfigError, match="--masters 4 needs more than 4 processes"):
        Topology(4, masters=4)
    with pytest.raises(ConfigError, match="leaves a sub-master without workers"):
        Topology(4, masters=3)


def test_sharded_server_layout_and_slices() -> None:
    from mpilearn.flat import FlatLayout
    from mpilearn.roles.shards import gather_slice, scatter_slice, shard_ranges, slice_layout

    sharded = Topology(6, servers=3)
    assert [sharded.role(r) for r in range(6)] == [
        Role.MASTER,
        Role.SERVER,
        Role.SERVER,
        Role.WORKER,
        Role.WORKER,
        Role.WORKER,
    ]
    assert sharded.server_ranks == (0, 1, 2) and sharded.workers == (3, 4, 5) and sharded.children(2) == (3, 4, 5)
    for args, message in (
        ((3,), "--servers 3 needs more than 3 processes"),
        ((4, 2), "does not combine with --masters 2"),
    ):
        with pytest.raises(ConfigError, match=message):
            Topology(args[0], masters=args[1] if len(args) > 1 else 1, servers=3 if len(args) == 1 else 2)
    # Each server gets a share of the trainable part and of the layer state; the slices cover the vector once.
    layout = FlatLayout(((5, 2), (3,)), ((4,),))
    flat = np.arange(layout.size, dtype=np.float32)
    back = np.full_like(flat, -1.0)
    for index in range(3):
        ranges = shard_ranges(layout, 3, index)
        piece = np.empty(slice_layout(ranges).size, dtype=np.float32)
        gather_slice(flat, ranges, piece)
        assert slice_layout(ranges).num_trainable in (4, 5) and slice_layout(ranges).num_state in (1, 2)
        scatter_slice(piece, ranges, back)
    np.testing.assert_array_equal(back, flat)


def test_easgd_workers_copy_the_model_optimizer_at_workers_plus_one_times_its_rate() -> None:
    from mpilearn import models
    from mpilearn.algorithms import defaults
    from mpilearn.config import AlgorithmConfig, RunConfig

    config = RunConfig(algorithm=AlgorithmConfig(name="easgd"))
    resolved, _ = defaults.resolve(config, 2, models.make_optimizer("adam", 0.002))
    assert resolved.algorithm.elastic_lr == pytest.approx(0.006)  # x (2 + 1)
    copy = models.worker_optimizer("model", models.make_optimizer("adam", 0.002), resolved.algorithm.elastic_lr, None)
    assert type(copy).__name__ == "Adam" and float(copy.learning_rate) == pytest.approx(0.006)


@pytest.mark.parametrize("steps_per_epoch, expected", [(1, 1), (12, 12), (37, 16), (10_000, 16)])
def test_diloco_defaults_rounds_of_inner_steps_auto(steps_per_epoch: int, expected: int) -> None:
    from mpilearn.algorithms import defaults
    from mpilearn.config import AlgorithmConfig, RunConfig

    assert defaults.INNER_STEPS == 16  # the measured rule (README)
    config = RunConfig(algorithm=AlgorithmConfig(name="diloco"))
    assert config.algorithm.inner_steps == "auto" and config.algorithm.synchronous is None
    resolved, reasons = defaults.resolve(config, 2, "adam", steps_per_epoch)
    assert resolved.algorithm.inner_steps == expected == resolved.algorithm.exchange_every
    assert any(r.startswith(f"--inner-steps {expected} by --inner-steps auto") for r in reasons)
    # Rounds unless told otherwise (the paper's form, measured closer to one process); EASGD stays asynchronous.
    assert resolved.algorithm.synchronous is True and resolved.algorithm.lockstep
    assert any(r.startswith("--synchronous by default for diloco") for r in reasons)
    asynchronous = config.replace(algorithm=AlgorithmConfig(name="diloco", synchronous=False))
    assert defaults.resolve(asynchronous, 2, "adam", steps_per_epoch)[0].algorithm.lockstep is False
    easgd = defaults.resolve(RunConfig(algorithm=AlgorithmConfig(name="easgd")), 2, "adam")[0].algorithm
    assert easgd.synchronous is None and not easgd.lockstep
    # Before the data is read (--print-config) the H rule is named, not applied; explicit values are kept.
    assert defaults.resolve(config, 2, "adam")[0].algorithm.inner_steps == "auto"
    explicit = config.replace(algorithm=AlgorithmConfig(name="diloco", inner_steps=5))
    assert defaults.resolve(explicit, 2, "adam", steps_per_epoch)[0].algorithm.inner_steps == 5
    with pytest.raises(ConfigError, match="--inner-steps"):
        AlgorithmConfig(name="diloco", inner_steps=0)
