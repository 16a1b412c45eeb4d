"""The algorithm registry: every spec is complete, and the loops get their rules and flags from it."""

from __future__ import annotations

import dataclasses

import pytest

from mpilearn.algorithms import registry
from mpilearn.algorithms.registry import Scaled
from mpilearn.config import ALGORITHMS, AlgorithmConfig, RunConfig
from mpilearn.errors import ConfigError


def test_every_spec_is_complete_and_names_real_options() -> None:
    fields = {f.name for f in dataclasses.fields(AlgorithmConfig)}
    assert ALGORITHMS == registry.names() and len(set(ALGORITHMS)) == len(ALGORITHMS)
    assert AlgorithmConfig().name == registry.DEFAULT
    for spec in registry.SPECS:
        assert spec.description and set(spec.options) <= fields, spec.name
        assert (spec.client is not None and spec.center is not None) == spec.has_master, spec.name
        assert (spec.scales is Scaled.PEERS) == (not spec.has_master), spec.name
        assert not spec.trees or spec.has_master, spec.name
        # Workers own an optimizer when they scale it (EASGD) or step their proxy with it (GEM).
        assert (spec.worker_optimizer is not None) == (spec.scales in (Scaled.WORKER, Scaled.PROXY)), spec.name
        assert AlgorithmConfig(name=spec.name).has_master == spec.has_master
    with pytest.raises(
        ConfigError, match="--algo must be one of downpour, sync, easgd, gem, diloco, allreduce; got 'adam'"
    ):
        AlgorithmConfig(name="adam")


def test_lockstep_and_trees_come_from_the_spec() -> None:
    assert [AlgorithmConfig(name=n).lockstep for n in ALGORITHMS] == [False, True, False, False, True, True]
    assert AlgorithmConfig(name="easgd", synchronous=True).lockstep
    assert not AlgorithmConfig(name="diloco", synchronous=False).lockstep
    assert registry.names(lambda s: s.trees) == ("downpour", "easgd")
    assert registry.names(lambda s: s.own_train_step) == ("downpour", "easgd")
    with pytest.raises(ConfigError, match="--masters 2 works with --algo downpour or easgd, not gem"):
        AlgorithmConfig(name="gem", masters=2)
    with pytest.raises(ConfigError, match="--compression fp16 applies to --algo allreduce only"):
        AlgorithmConfig(name="sync", compression="fp16")
    assert len(registry.describe()) == len(ALGORITHMS)


def test_the_pipeline_is_for_asynchronous_masters_only() -> None:
    for name in ("downpour", "easgd", "gem", "diloco"):
        assert AlgorithmConfig(name=name, synchronous=False, pipeline="on").pipelined, name
    assert not any(AlgorithmConfig(name=n).pipelined for n in ALGORITHMS)  # auto: off until it measures faster
    assert not AlgorithmConfig(name="sync", pipeline="off").pipelined
    for name, synchronous in (("sync", None), ("allreduce", None), ("easgd", True), ("diloco", None)):
        with pytest.raises(ConfigError, match=f"^--pipeline on .*: --algo {name}.* exchanges in lockstep"):
            AlgorithmConfig(name=name, synchronous=synchronous, pipeline="on")


def test_rules_from_the_spec_step_the_optimizer_the_spec_says() -> None:
    import keras

    from mpilearn.backends import for_model

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    backend = for_model(model)
    for spec in registry.SPECS:
        if not spec.has_master:
            continue
        config = AlgorithmConfig(name=spec.name)
        assert spec.client is not None and spec.center is not None
        center = spec.center(config, backend, 2, False)
        assert (center.optimizer is model.optimizer) == (spec.scales is Scaled.MASTER), spec.name
        if spec.trees:  # the top of a tree takes its sub-masters' deltas: no optimizer of its own
            assert spec.center(config, backend, 2, True).optimizer is None, spec.name
        own = spec.worker_optimizer(RunConfig(algorithm=config), model.optimizer) if spec.worker_optimizer else None
        client = spec.client(config, backend, own, False)
        assert all(callable(getattr(client, m)) for m in ("train", "fill", "absorb")), spec.name
