"""Training algorithms: which client and center rules each one uses.

| algorithm | worker sends            | master applies              | master answers |
|-----------|-------------------------|-----------------------------|----------------|
| downpour  | mean gradient           | optimizer, as each arrives  | weights        |
| sync      | mean gradient           | optimizer, mean of a round  | weights        |
| easgd     | its weights             | elastic averaging           | elastic diff   |
| gem       | energy-matched step     | adds the step               | weights        |
| allreduce | (no master: gradients averaged with MPI Allreduce by all peers)  |
"""
from __future__ import annotations

from typing import Any

from ..backends import ModelBackend
from ..config import AlgorithmConfig
from .centers import CenterRule, DeltaCenter, ElasticCenter, OptimizerCenter
from .clients import ClientRule, DeltaClient, ElasticClient, GemClient, GradientClient
from .rules import elastic_alpha


# Algorithms that can train a model through its own train_step (weight deltas, not gradients).
OWN_STEP_ALGORITHMS = ("downpour", "easgd")


def worker_rule(
    config: AlgorithmConfig, backend: ModelBackend, worker_optimizer: Any = None, own_train_step: bool = False
) -> ClientRule:
    if config.name == "easgd":
        return ElasticClient(backend, worker_optimizer, own_train_step)
    if own_train_step:
        return DeltaClient(backend)
    if config.name == "gem":
        return GemClient(backend, config.gem_lr, config.gem_momentum, config.gem_kappa)
    return GradientClient(backend)


def center_rule(
    config: AlgorithmConfig, backend: ModelBackend, clients: int, top_of_tree: bool, own_train_step: bool = False
) -> CenterRule:
    """The rule of a master serving `clients` ranks; the top of a two-level
    tree takes deltas (Downpour) or elastic exchanges (EASGD) from its
    sub-masters, and so does a master whose model trains through its own step."""
    if config.name == "easgd":
        return ElasticCenter(backend, elastic_alpha(config.elastic_force, clients), clients)
    if config.name == "gem" or top_of_tree or own_train_step:
        return DeltaCenter(backend)
    return OptimizerCenter(backend)


def upstream_rule(config: AlgorithmConfig, backend: ModelBackend) -> ClientRule:
    """How a sub-master talks to the top master."""
    return ElasticClient(backend) if config.name == "easgd" else DeltaClient(backend)


__all__ = ["CenterRule", "ClientRule", "center_rule", "upstream_rule", "worker_rule"]
