"""The master's fast path: Keras optimizer semantics on torch's fused kernels.

The user's Keras optimizer stays the definition (its class, hyperparameters,
learning rate or schedule, weight decay, iteration count); for the common
cases this applies the same update in fewer passes over memory than Keras's
own torch implementation: Adam and AdamW through `torch.optim`'s fused
kernel (Keras's Adam is 11x slower on 1e7 parameters, see docs/benchmarks.md),
SGD, RMSprop, Adagrad and Nadam as in-place `torch._foreach_*` kernels. The
master's apply speed is what bounds how many workers one master can feed.
Anything not covered falls back to Keras (`supports`).

The optimizer's state stays in the Keras optimizer's own variables: torch's
Adam keeps its moments in the Keras tensors themselves and the foreach
kernels update the Keras slots in place, so checkpoints, `model.keras` and a
resumed run see Keras's state at any time.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable

import numpy as np
import torch

# Keras optimizer classes (by name under keras.optimizers) with a fast path.
KINDS = ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Nadam")
# Their float hyperparameters, read once when the path is built.
_HYPERPARAMETERS = {
    "Adam": ("beta_1", "beta_2", "epsilon"),
    "AdamW": ("beta_1", "beta_2", "epsilon"),
    "SGD": ("momentum",),
    "RMSprop": ("rho", "momentum", "epsilon"),
    "Adagrad": ("epsilon",),
    "Nadam": ("beta_1", "beta_2", "epsilon"),
}


def kind(optimizer: Any) -> str | None:
    """The KINDS entry `optimizer` is exactly (the backend's own subclass of
    it, not a user subclass with other semantics), else None."""
    import keras

    for name in KINDS:
        cls = getattr(keras.optimizers, name)
        if isinstance(optimizer, cls) and type(optimizer).__name__ == name:
            return name
    return None


def supports(optimizer: Any, variables: Any = None) -> bool:
    """Adam, AdamW (both also with amsgrad), SGD (plain, momentum, Nesterov),
    RMSprop (also centered, with momentum), Adagrad and Nadam, with a constant
    learning rate, a LearningRateSchedule or a callable, with or without
    weight decay (and its exclusions). Not: gradient clipping, EMA, gradient
    accumulation, loss scaling, non-number hyperparameters, or (given
    `variables`) variables with a constraint or overwrite_with_gradient."""
    import keras

    name = kind(optimizer)
    if name is None:
        return False
    plain = (
        getattr(optimizer, "clipnorm", None) is None
        and getattr(optimizer, "clipvalue", None) is None
        and getattr(optimizer, "global_clipnorm", None) is None
        and not getattr(optimizer, "use_ema", False)
        and not getattr(optimizer, "gradient_accumulation_steps", None)
        and getattr(optimizer, "loss_scale_factor", None) is None
        and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    )
    if not plain:
        return False
    numbers = [getattr(optimizer, attribute, None) for attribute in _HYPERPARAMETERS[name]]
    numbers.append(optimizer.weight_decay or 0.0)
    if not all(_is_number(value) for value in numbers):
        return False
    if name in ("Adam", "AdamW") and not isinstance(optimizer.amsgrad, bool):
        return False
    return variables is None or not any(
        getattr(v, "constraint", None) is not None or getattr(v, "overwrite_with_gradient", False) for v in variables
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (Real, np.floating, np.integer)) and not isinstance(value, bool) and math.isfinite(value)


def _float32(value: float) -> float:
    """`value` rounded to float32, as Keras computes its scalars (float32 tensors)."""
    return float(np.float32(value))


class FusedApply:
    """Applies `optimizer`'s update to `variables` with torch kernels.

    Each step reads the learning rate (constant, schedule at the current
    iteration, or callable) and the iteration count from the Keras optimizer
    and counts the iteration there. Weight decay is Keras's: each variable it
    applies to is first multiplied by 1 - weight_decay * lr, then the update
    runs on the undecayed gradient.

    Adam and AdamW: Keras adds epsilon to sqrt(v) before the bias correction,
    torch after it; passing torch eps / sqrt(1 - beta_2^t) makes the two
    equal. The weight decay runs inside torch's AdamW kernel (a second
    parameter group, without decay, holds the excluded variables).
    SGD, RMSprop, Adagrad, Nadam: Keras's own formulas (its epsilon inside the
    square root for RMSprop and Adagrad; Nadam's momentum cache u_t = beta_1
    (1 - 0.5 * 0.96^t) and its product, kept in Keras's variable) as
    in-place foreach kernels on the Keras slots.
    """

    def __init__(self, optimizer: Any, variables: list[Any]) -> None:
        name = kind(optimizer)
        if name is None:
            raise ValueError(f"no fused path for {type(optimizer).__name__}")
        if not optimizer.built:
            optimizer.build(variables)
        self.keras_optimizer = optimizer
        self.kind = name
        self.variables = variables
        self.params = [v.value for v in variables]
        self._index = [optimizer._get_variable_index(v) for v in variables]
        hyper = {attribute: float(getattr(optimizer, attribute)) for attribute in _HYPERPARAMETERS[name]}
        self.beta_1, self.beta_2 = hyper.get("beta_1", 0.0), hyper.get("beta_2", 0.0)
        self.epsilon, self.momentum, self.rho = (
            hyper.get("epsilon", 0.0),
            hyper.get("momentum", 0.0),
            hyper.get("rho", 0.0),
        )
        self.weight_decay = float(optimizer.weight_decay or 0.0)
        decays = [bool(self.weight_decay) and bool(optimizer._use_weight_decay(v)) for v in variables]
        self.decayed = [p for p, decay in zip(self.params, decays) if decay]
        self._torch_step = -1  # the iteration count torch's Adam state holds
        updates: dict[str, Callable[[list[torch.Tensor], float, int], None]] = {
            "Adam": self._adam,
            "AdamW": self._adam,
            "SGD": self._sgd,
            "RMSprop": self._rmsprop,
            "Adagrad": self._adagrad,
            "Nadam": self._nadam,
        }
        self._update = updates[name]
        if name in ("Adam", "AdamW"):
            groups = [
                {"params": [p for p, d in zip(self.params, decays) if d], "weight_decay": self.weight_decay},
                {"params": [p for p, d in zip(self.params, decays) if not d], "weight_decay": 0.0},
            ]
            self.amsgrad = bool(optimizer.amsgrad)
            self.torch_optimizer = torch.optim.AdamW(
                [g for g in groups if g["params"]],
                lr=1e-3,
                betas=(self.beta_1, self.beta_2),
                eps=self.epsilon,
                amsgrad=self.amsgrad,
                fused=True,
            )
            self._alias_adam_state()
        elif name == "SGD":
            self.nesterov = bool(getattr(optimizer, "nesterov", False))
            self.momentums = self._slots("momentums") if self.momentum != 0 else []
        elif name == "RMSprop":
            self.centered = bool(optimizer.centered)
            self.velocities = self._slots("_velocities")
            self.momentums = self._slots("_momentums") if self.momentum > 0 else []
            self.average_gradients = self._slots("_average_gradients") if self.centered else []
        elif name == "Adagrad":
            self.accumulators = self._slots("_accumulators")
        else:  # Nadam
            self.momentums, self.velocities = self._slots("_momentums"), self._slots("_velocities")

    def _slots(self, attribute: str) -> list[torch.Tensor]:
        """The tensors of the Keras optimizer's slot list `attribute`, in variable order."""
        slots = getattr(self.keras_optimizer, attribute)
        return [slots[i].value for i in self._index]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        optimizer = self.keras_optimizer
        lr = float(optimizer.learning_rate)  # read each step: schedules, warmup, ReduceLROnPlateau
        iteration = int(optimizer.iterations.numpy())
        if self.decayed and self.kind not in ("Adam", "AdamW"):  # Adam's decay runs in its kernel
            # Keras: variable * (1 - weight_decay * lr), the factor a float32 scalar.
            factor = np.float32(1.0) - np.float32(self.weight_decay) * np.float32(lr)
            torch._foreach_mul_(self.decayed, float(factor))
        self._update(grads, lr, iteration)
        optimizer.iterations.assign_add(1)

    def _sgd(self, grads: list[torch.Tensor], lr: float, iteration: int) -> None:
        if not self.momentums:
            torch._foreach_add_(self.params, grads, alpha=-lr)
            return
        torch._foreach_mul_(self.momentums, self.momentum)
        torch._foreach_add_(self.momentums, grads, alpha=-lr)
        if self.nesterov:
            torch._foreach_add_(self.params, self.momentums, alpha=self.momentum)
            torch._foreach_add_(self.params, grads, alpha=-lr)
        else:
            torch._foreach_add_(self.params, self.momentums)

    def _adam(self, grads: list[torch.Tensor], lr: float, iteration: int) -> None:
        if self._torch_step != iteration:  # the counter was set from outside (a restore)
            self._alias_adam_state()
        t = iteration + 1
        for group in self.torch_optimizer.param_groups:
            group["lr"] = lr
            group["eps"] = self.epsilon / math.sqrt(1.0 - self.beta_2**t)
        for param, grad in zip(self.params, grads):
            param.grad = grad
        self.torch_optimizer.step()
        for param in self.params:
            param.grad = None
        self._torch_step = t

    def _rmsprop(self, grads: list[torch.Tensor], lr: float, iteration: int) -> None:
        rho = self.rho
        torch._foreach_mul_(self.velocities, rho)
        torch._foreach_addcmul_(self.velocities, grads, grads, value=1 - rho)
        denominators = torch._foreach_add(self.velocities, self.epsilon)
        if self.centered:
            torch._foreach_mul_(self.average_gradients, rho)
            torch._foreach_add_(self.average_gradients, grads, alpha=1 - rho)
            torch._foreach_addcmul_(denominators, self.average_gradients, self.average_gradients, value=-1)
        torch._foreach_sqrt_(denominators)
        if self.momentums:
            torch._foreach_mul_(self.momentums, self.momentum)
            torch._foreach_addcdiv_(self.momentums, grads, denominators, value=lr)
            torch._foreach_sub_(self.params, self.momentums)
        else:
            torch._foreach_addcdiv_(self.params, grads, denominators, value=-lr)

    def _adagrad(self, grads: list[torch.Tensor], lr: float, iteration: int) -> None:
        torch._foreach_addcmul_(self.accumulators, grads, grads)
        denominators = torch._foreach_add(self.accumulators, self.epsilon)
        torch._foreach_sqrt_(denominators)
        torch._foreach_addcdiv_(self.params, grads, denominators, value=-lr)

    def _nadam(self, grads: list[torch.Tensor], lr: float, iteration: int) -> None:
        beta_1, beta_2 = self.beta_1, self.beta_2
        t = iteration + 1
        u_t = beta_1 * (1.0 - 0.5 * 0.96**t)
        u_next = beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
        u_product_var = self.keras_optimizer._u_product
        u_product = _float32(float(u_product_var.numpy()) * u_t)  # a float32 variable in Keras
        u_product_next = u_product * u_next
        u_product_var.assign(u_product)
        torch._foreach_mul_(self.momentums, beta_1)
        torch._foreach_add_(self.momentums, grads, alpha=1 - beta_1)
        torch._foreach_mul_(self.velocities, beta_2)
        torch._foreach_addcmul_(self.velocities, grads, grads, value=1 - beta_2)
        denominators = torch._foreach_div(self.velocities, 1 - beta_2**t)
        torch._foreach_sqrt_(denominators)
        torch._foreach_add_(denominators, self.epsilon)
        # Keras: variable -= lr * (u_next m / (1 - u_product_next) + (1 - u_t) g / (1 - u_product)) / denominator
        torch._foreach_addcdiv_(self.params, grads, denominators, value=-lr * (1 - u_t) / (1 - u_product))
        torch._foreach_addcdiv_(self.params, self.momentums, denominators, value=-lr * u_next / (1 - u_product_next))

    def _alias_adam_state(self) -> None:
        """torch's Adam state is the Keras optimizer's own moment tensors (no
        copy to keep in sync); only its step counter is torch's, set here from
        the Keras iteration count."""
        optimizer = self.keras_optimizer
        iteration = int(optimizer.iterations.numpy())
        moments = self._slots("_momentums"), self._slots("_velocities")
        maxima = self._slots("_velocity_hats") if self.amsgrad else [None] * len(self.params)
        for param, m, v, v_max in zip(self.params, *moments, maxima):
            state = {"step": torch.tensor(float(iteration), dtype=torch.float32), "exp_avg": m, "exp_avg_sq": v}
            if v_max is not None:
                state["max_exp_avg_sq"] = v_max
            self.torch_optimizer.state[param] = state
        self._torch_step = iteration

    def save_to_keras(self) -> None:
        """Nothing to copy: every kernel updates the Keras optimizer's own
        variables (checkpoints and model.keras carry the state the Keras way)."""

    def load_from_keras(self) -> None:
        """Start from the Keras optimizer's state (a resumed run): its
        variables are the state already; torch's Adam takes the iteration count."""
        if self.kind in ("Adam", "AdamW"):
            self._alias_adam_state()
