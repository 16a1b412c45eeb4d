"""Defaults that depend on the run, resolved once the number of workers and
the model's optimizer are known, so that N workers train as well as one
process. Every "auto" option becomes a concrete value with its reason; the
resolved configuration is what the run uses and what history.json records.

The rules, and the measurements behind them, are in the README ("Choosing an
algorithm") and docs/benchmarks.md (time-to-accuracy).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import RunConfig

# Optimizers that divide by a running gradient scale: the square-root rule is theirs
# (Malladi et al. 2022, "On the SDEs and scaling rules for adaptive gradient algorithms").
ADAPTIVE_OPTIMIZERS = frozenset(
    {"adam", "adamw", "adamax", "nadam", "rmsprop", "adagrad", "adadelta", "adafactor", "lion", "lamb", "ftrl"}
)
# Epochs of gradual warmup toward a scaled learning rate (Goyal et al. 2017 warm up over 5 of 90).
WARMUP_EPOCHS = 1.0
# Why --gem-proxy model is GEM's default (measured: README, "Defaults with N workers").
GEM_PROXY_WHY = "measured closer to one process than the momentum-SGD proxy"
# DiLoCo's --inner-steps auto: H = INNER_STEPS, or a worker's steps per epoch when an epoch is shorter (a round
# also ends with the epoch). Measured (README, "Defaults with N workers"): in rounds with Nesterov outer momentum,
# H 2-4 overshoot (0.78-0.88 of one process), H 8 and 16 reach 1.01; 16 sends half the bytes of 8.
INNER_STEPS = 16
# Why DiLoCo runs in rounds unless --no-synchronous (measured: README, "Defaults with N workers").
DILOCO_SYNCHRONOUS_WHY = "rounds of all workers, as in the DiLoCo paper; measured closer to one process than each pseudo-gradient as it arrives"


def optimizer_name(optimizer: Any) -> str:
    """'adam' for a Keras Adam instance or for the string 'Adam'."""
    return (optimizer if isinstance(optimizer, str) else type(optimizer).__name__).lower()


def scaling_for(optimizer: Any) -> str:
    """sqrt for adaptive optimizers; linear for SGD and momentum (Goyal et al. 2017)."""
    return "sqrt" if optimizer_name(optimizer) in ADAPTIVE_OPTIMIZERS else "linear"


def inner_steps_for(steps_per_epoch: int) -> tuple[int, str]:
    """DiLoCo's H for a worker that takes `steps_per_epoch` batches an epoch, and why."""
    steps = max(1, min(INNER_STEPS, steps_per_epoch))
    why = (
        f"--inner-steps {steps} by --inner-steps auto: {INNER_STEPS}, or an epoch's {steps_per_epoch} steps when fewer"
    )
    return steps, why


def factor_text(scaling: str, workers: int) -> str:
    return {"linear": f"x {workers}", "sqrt": f"x sqrt({workers})"}.get(scaling, "x 1")


def resolve(
    config: RunConfig, workers: int, optimizer: Any, steps_per_epoch: int | None = None
) -> tuple[RunConfig, tuple[str, ...]]:
    """The configuration with every "auto" replaced, and one line per choice
    saying why. `optimizer` is the model's compiled optimizer (or its name);
    `steps_per_epoch` a worker's batches per epoch (None: not known yet, before
    the data is read: DiLoCo's --inner-steps auto then stays auto)."""
    algorithm = config.algorithm
    reasons: list[str] = []
    changes: dict[str, Any] = {}
    if algorithm.synchronous is None and algorithm.spec.synchronous_default:
        changes["synchronous"] = True
        reasons.append(f"--synchronous by default for {algorithm.name}: {DILOCO_SYNCHRONOUS_WHY}")
    if algorithm.name == "diloco" and algorithm.inner_steps == "auto":
        if steps_per_epoch is None:
            reasons.append(
                f"--inner-steps auto: {INNER_STEPS}, or a worker's steps per epoch when fewer, "
                "chosen once the training data is read"
            )
        else:
            changes["inner_steps"], why = inner_steps_for(steps_per_epoch)
            reasons.append(why)
    # A name (--print-config, before any model exists): its rate is --lr, or Keras's default (None here).
    name, scheduled = optimizer_name(optimizer), _has_schedule(optimizer)
    lr = config.model.learning_rate if isinstance(optimizer, str) else constant_rate(optimizer)
    if algorithm.name == "easgd":
        if algorithm.worker_optimizer == "model" and algorithm.elastic_momentum:
            changes["worker_optimizer"] = "sgd"
            reasons.append("--worker-optimizer sgd: --elastic-momentum asks for Nesterov momentum SGD (EAMSGD)")
        own = changes.get("worker_optimizer", algorithm.worker_optimizer)
        if own != "model":  # the rate of a named worker optimizer: --elastic-lr, else --lr, else 0.01
            name, lr = own.lower(), config.model.learning_rate or 0.01
        lr = algorithm.elastic_lr or lr
        reasons.append(
            f"workers' optimizer: {'a copy of the model' + chr(39) + 's' if own == 'model' else own} "
            f"({name}, lr {_number(lr)}{' by --elastic-lr' if algorithm.elastic_lr else ''})"
        )
    if algorithm.name == "gem":  # the rule scales the proxy: a copy of the model's optimizer, or a momentum SGD
        if algorithm.gem_proxy == "momentum":
            name, lr = "the momentum-SGD proxy", algorithm.gem_lr
        reasons.append(
            f"--gem-proxy {algorithm.gem_proxy}: "
            + (
                f"the workers match the energy of a copy of the model's optimizer ({name}); {GEM_PROXY_WHY}"
                if algorithm.gem_proxy == "model"
                else "a momentum SGD at --gem-lr (the paper's proxy)"
            )
        )
    scaling: str = algorithm.lr_scaling
    if scaling == "auto":
        rule, scaling = algorithm.spec.lr_rule, "none"
        if workers > 1 and rule != "none" and scheduled:
            reasons.append("--lr-scaling none: the optimizer follows its own learning-rate schedule")
        elif workers > 1 and rule == "batch":
            scaling = scaling_for(name)
            reasons.append(
                f"lr {_number(lr)} {factor_text(scaling, workers)} by --lr-scaling auto: {workers} workers "
                f"average their gradients into one step of {workers}x the batch; {scaling} rule for {name}"
            )
        elif workers > 1 and rule == "energy":
            # Energy matching moves the center like one proxy whatever the number of workers, so the
            # proxy's pace per sample falls N-fold unless its rate rises N-fold (the linear rule of SGD).
            scaling = "linear"
            what = "--gem-lr" if algorithm.gem_proxy == "momentum" else "the proxy's lr"
            reasons.append(
                f"{what} {_number(lr)} x {workers} by --lr-scaling auto: the {workers} workers' matched "
                f"updates together carry one proxy's energy; linear rule for {name}"
            )
        elif workers > 1 and rule == "elastic":
            # Elastic moves keep the sum of the center and the workers, so the center, pulled to their
            # mean, takes 1/(p+1) of the p workers' summed steps: x (p+1) restores one process's pace.
            if lr is not None:
                changes["elastic_lr"] = lr * (workers + 1)
            reasons.append(
                f"--elastic-lr {_number(lr)} x {workers + 1} by --lr-scaling auto: "
                f"elastic moves keep the mean of the center and {workers} workers, which moves by "
                f"1/{workers + 1} of the workers' summed steps"
            )
        changes["lr_scaling"] = scaling
    if algorithm.warmup_epochs is None:
        warmup = WARMUP_EPOCHS if scaling in ("linear", "sqrt") and workers > 1 else 0.0
        changes["warmup_epochs"] = warmup
        if warmup:
            reasons.append(
                f"--warmup-epochs {warmup:g} by default: the scaled rate is reached gradually (Goyal et al. 2017)"
            )
    if changes:
        config = config.replace(algorithm=dataclasses.replace(algorithm, **changes))
    return config, tuple(reasons)


def _number(value: float | None) -> str:
    return "(the optimizer's default)" if value is None else f"{value:.3g}"


def _has_schedule(optimizer: Any) -> bool:
    if isinstance(optimizer, str):
        return False
    import keras

    return isinstance(getattr(optimizer, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule)


def constant_rate(optimizer: Any) -> float | None:
    """The optimizer's learning rate, None when it follows a schedule."""
    return None if optimizer is None or _has_schedule(optimizer) else float(optimizer.learning_rate)


def rate_is_controlled(algorithm: Any) -> bool:
    """The loops rewrite the learning rate (scaling, warmup or the staleness rule) of a resolved configuration."""
    return algorithm.lr_scaling in ("linear", "sqrt", "staleness") or bool(algorithm.warmup_epochs)
