"""The algorithm registry: one frozen spec per training algorithm.

| algorithm | worker sends            | master applies              | master answers |
|-----------|-------------------------|-----------------------------|----------------|
| downpour  | mean gradient           | optimizer, as each arrives  | weights        |
| sync      | mean gradient           | optimizer, mean of a round  | weights        |
| easgd     | its weights             | elastic averaging           | elastic diff   |
| gem       | energy-matched step     | adds the step               | weights        |
| diloco    | pseudo-gradient after H | outer Nesterov SGD          | weights        |
|           | inner steps             | (mean of a round: sync)     |                |
| allreduce | (no master: gradients averaged with MPI Allreduce by all peers)  |

Everything outside this module asks the spec (`spec_of(name)` or
`AlgorithmConfig.spec`), never the name. Adding an algorithm means writing
its rules (clients.py, centers.py) and one `AlgorithmSpec` in `SPECS`.

This module imports the configuration types for annotations only, so
config.py can import it to check `--algo` and the options each algorithm takes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..backends.base import ModelBackend
from ..errors import ConfigError
from .centers import CenterRule, DeltaCenter, ElasticCenter, OptimizerCenter, OuterCenter
from .clients import ClientRule, DeltaClient, DilocoClient, ElasticClient, GemClient, GradientClient
from .rules import elastic_alpha

if TYPE_CHECKING:
    from ..config import AlgorithmConfig, RunConfig


class Scaled(enum.Enum):
    """Which optimizer --lr-scaling and --warmup-epochs act on."""

    MASTER = "the master's optimizer"
    WORKER = "each worker's own optimizer"
    PROXY = "each worker's proxy step"
    PEERS = "every peer's optimizer"
    INNER = "each worker's compiled optimizer (its inner steps)"


# (config, backend, the worker's own optimizer or None, the model trains through its own train_step)
ClientFactory = Callable[["AlgorithmConfig", ModelBackend, Any, bool], ClientRule]
# (config, backend, clients served, the clients send weight deltas: top of a tree or own train_step)
CenterFactory = Callable[["AlgorithmConfig", ModelBackend, int, bool], CenterRule]
# (config, backend): how a sub-master talks to the top master
UpstreamFactory = Callable[["AlgorithmConfig", ModelBackend], ClientRule]


def _never(config: AlgorithmConfig) -> bool:
    return False


def _always(config: AlgorithmConfig) -> bool:
    return True


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    # One line for `mpilearn info` and --help.
    description: str
    # False: peers average gradients among themselves (no master, no client/center rules).
    has_master: bool
    scales: Scaled
    # Every worker takes the same number of steps per epoch (may depend on options: use `lockstep(config)`).
    lockstep_rule: Callable[[AlgorithmConfig], bool] = _never
    client: ClientFactory | None = None
    center: CenterFactory | None = None
    # Sub-masters of a tree (--masters >= 2) talk upward with this rule; None: no trees.
    upstream: UpstreamFactory | None = None
    # Builds the workers' own optimizer from the run's options (None: workers only compute gradients).
    # (the run's options, the model's compiled optimizer).
    worker_optimizer: Callable[[RunConfig, Any], Any] | None = None
    # How --lr-scaling auto follows the number of workers (algorithms/defaults.py): "batch" (the gradients
    # of N workers make one step: N times the batch), "elastic" (EASGD: the center takes 1/(N+1) of the
    # workers' summed steps), "energy" (GEM: N workers together move like one proxy) or "none" (downpour:
    # lr / staleness measured worse, see the README).
    lr_rule: str = "none"
    # Trains models that define their own train_step (weight deltas instead of gradients).
    own_train_step: bool = False
    # AlgorithmConfig fields only this algorithm (and others listing them) reads; common ones are not listed.
    options: tuple[str, ...] = ()
    # --pipeline auto turns the pipelined worker on (see AlgorithmConfig.pipelined): only where it measured
    # faster in samples/s at equal time to accuracy (docs/benchmarks.md).
    pipeline_default: bool = False
    # Batches a worker trains between two exchanges with its master.
    exchange_every: Callable[[AlgorithmConfig], int] = lambda config: config.sync_every
    # The form when --synchronous is not given (an algorithm listing "synchronous" in its options).
    synchronous_default: bool = False

    def lockstep(self, config: AlgorithmConfig) -> bool:
        return self.lockstep_rule(config)

    @property
    def trees(self) -> bool:
        """Supports a two-level tree of masters (--masters >= 2)."""
        return self.upstream is not None


def _downpour_client(
    config: AlgorithmConfig, backend: ModelBackend, optimizer: Any, own_train_step: bool
) -> ClientRule:
    return DeltaClient(backend) if own_train_step else GradientClient(backend)


def _gradient_client(
    config: AlgorithmConfig, backend: ModelBackend, optimizer: Any, own_train_step: bool
) -> ClientRule:
    return GradientClient(backend)


def _downpour_center(config: AlgorithmConfig, backend: ModelBackend, clients: int, deltas: bool) -> CenterRule:
    return DeltaCenter(backend) if deltas else OptimizerCenter(backend)


def _optimizer_center(config: AlgorithmConfig, backend: ModelBackend, clients: int, deltas: bool) -> CenterRule:
    return OptimizerCenter(backend)


def _delta_upstream(config: AlgorithmConfig, backend: ModelBackend) -> ClientRule:
    return DeltaClient(backend)


def _elastic_client(config: AlgorithmConfig, backend: ModelBackend, optimizer: Any, own_train_step: bool) -> ClientRule:
    return ElasticClient(backend, optimizer, own_train_step)


def _elastic_center(config: AlgorithmConfig, backend: ModelBackend, clients: int, deltas: bool) -> CenterRule:
    return ElasticCenter(backend, elastic_alpha(config.elastic_force, clients), clients)


def _elastic_upstream(config: AlgorithmConfig, backend: ModelBackend) -> ClientRule:
    return ElasticClient(backend)


def _elastic_worker_optimizer(config: RunConfig, compiled: Any) -> Any:
    from .. import models

    algorithm = config.algorithm
    return models.worker_optimizer(
        algorithm.worker_optimizer,
        compiled,
        algorithm.elastic_lr,
        config.model.learning_rate,
        algorithm.elastic_momentum,
    )


def _gem_client(config: AlgorithmConfig, backend: ModelBackend, optimizer: Any, own_train_step: bool) -> ClientRule:
    return GemClient(backend, config.gem_lr, config.gem_momentum, config.gem_kappa, optimizer)


def _gem_proxy_optimizer(config: RunConfig, compiled: Any) -> Any:
    """--gem-proxy model: a copy of the compiled optimizer; momentum: none (the client's own momentum SGD)."""
    from .. import models

    if config.algorithm.gem_proxy != "model":
        return None
    return models.worker_optimizer("model", compiled, None, config.model.learning_rate)


def _delta_center(config: AlgorithmConfig, backend: ModelBackend, clients: int, deltas: bool) -> CenterRule:
    return DeltaCenter(backend)


def _synchronous_option(config: AlgorithmConfig) -> bool:
    return config.is_synchronous


def _inner_steps(config: AlgorithmConfig) -> int:
    if config.inner_steps == "auto":  # algorithms/defaults.py resolves it once the steps per epoch are known
        raise ValueError("--inner-steps auto is resolved when training starts")
    return config.inner_steps


def _diloco_client(config: AlgorithmConfig, backend: ModelBackend, optimizer: Any, own_train_step: bool) -> ClientRule:
    return DilocoClient(backend)


def _diloco_center(config: AlgorithmConfig, backend: ModelBackend, clients: int, deltas: bool) -> CenterRule:
    from .. import models

    # Nesterov momentum on the mean of a round (the paper); the asynchronous form steps without it: momentum
    # on each stale pseudo-gradient as it arrives diverged (val_loss 3.9 against 1.4, see the scale notes),
    # as Liu et al. 2024 (arXiv:2401.09135) found for asynchronous local SGD.
    momentum = config.outer_momentum if config.is_synchronous else 0.0
    outer = models.make_optimizer("sgd", config.outer_lr, momentum)
    return OuterCenter(backend, outer, clients, config.is_synchronous)


SPECS: tuple[AlgorithmSpec, ...] = (
    AlgorithmSpec(
        "downpour",
        "asynchronous SGD: the master applies each worker's gradient as it arrives",
        has_master=True,
        scales=Scaled.MASTER,
        client=_downpour_client,
        center=_downpour_center,
        upstream=_delta_upstream,
        own_train_step=True,
    ),
    AlgorithmSpec(
        "sync",
        "synchronous SGD: the master applies the mean gradient of one round of all workers",
        has_master=True,
        scales=Scaled.MASTER,
        lockstep_rule=_always,
        client=_gradient_client,
        center=_optimizer_center,
        lr_rule="batch",
    ),
    AlgorithmSpec(
        "easgd",
        "elastic averaging: workers take local steps and are pulled toward the master's center (--synchronous: all at once)",
        has_master=True,
        scales=Scaled.WORKER,
        lockstep_rule=_synchronous_option,
        client=_elastic_client,
        center=_elastic_center,
        upstream=_elastic_upstream,
        worker_optimizer=_elastic_worker_optimizer,
        own_train_step=True,
        lr_rule="elastic",
        options=("elastic_force", "elastic_lr", "elastic_momentum", "worker_optimizer", "synchronous"),
    ),
    AlgorithmSpec(
        "gem",
        "gradient energy matching: asynchronous proxy steps rescaled to match their energy",
        has_master=True,
        scales=Scaled.PROXY,
        client=_gem_client,
        center=_delta_center,
        worker_optimizer=_gem_proxy_optimizer,
        lr_rule="energy",
        options=("gem_proxy", "gem_lr", "gem_momentum", "gem_kappa"),
    ),
    AlgorithmSpec(
        "diloco",
        "local SGD (DiLoCo): workers take --inner-steps steps with the model's optimizer, the master applies "
        "Nesterov SGD to the mean of a round of pseudo-gradients, as in the paper (--no-synchronous: to each as it arrives)",
        has_master=True,
        scales=Scaled.INNER,
        lockstep_rule=_synchronous_option,
        client=_diloco_client,
        center=_diloco_center,
        options=("inner_steps", "outer_lr", "outer_momentum", "synchronous"),
        exchange_every=_inner_steps,
        # The paper's rounds: at 2 workers 1.01 of one process's accuracy, the asynchronous form 0.91 (README).
        synchronous_default=True,
    ),
    AlgorithmSpec(
        "allreduce",
        "no master: every peer averages gradients with MPI Allreduce and takes the same step",
        has_master=False,
        scales=Scaled.PEERS,
        lockstep_rule=_always,
        options=("compression", "bucket_mb"),
        lr_rule="batch",
    ),
)

# The algorithm of a run that names none.
DEFAULT = SPECS[0].name

_BY_NAME = {spec.name: spec for spec in SPECS}


def names(where: Callable[[AlgorithmSpec], bool] | None = None) -> tuple[str, ...]:
    """Registered names, in registry order (those with `where(spec)` true)."""
    return tuple(spec.name for spec in SPECS if where is None or where(spec))


def spec_of(name: str) -> AlgorithmSpec:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"--algo must be one of {', '.join(names())}; got {name!r}") from None


def owners(option: str) -> tuple[str, ...]:
    """The algorithms that read an algorithm-specific option (empty: a common option)."""
    return names(lambda spec: option in spec.options)


def describe() -> list[str]:
    """One line per algorithm: its name and what it does."""
    width = max(len(spec.name) for spec in SPECS)
    return [f"{spec.name:{width}s}  {spec.description}" for spec in SPECS]
