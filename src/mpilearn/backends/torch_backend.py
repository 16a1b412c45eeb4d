"""Keras on PyTorch: gradients from torch autograd, variables as torch tensors."""

from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch

from . import torch_optim
from .base import FlatBackend


def random_state_kept() -> Any:
    """torch's global generators (CPU, and the current GPU's) back as they were after the block."""
    return torch.random.fork_rng(devices=[torch.cuda.current_device()] if torch.cuda.is_available() else [])


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the first parallel op
        pass


def _to_tensor(data: Any) -> Any:
    if isinstance(data, np.ndarray):
        return torch.from_numpy(data)
    if isinstance(data, (list, tuple)):
        return type(data)(_to_tensor(d) for d in data)
    if isinstance(data, dict):
        return {k: _to_tensor(v) for k, v in data.items()}
    return data


class KerasModelBackend(FlatBackend):
    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self._sizes = self.layout.trainable_sizes + self.layout.state_sizes
        self._offsets = [0, *itertools.accumulate(self._sizes)][:-1]
        # Gradient hooks (accumulate_gradients with `ready`): the tensors hooked, the handles,
        # and while a backward runs (flat target, ready, which variables reported).
        self._hooked: list[torch.Tensor] = []
        self._hook_handles: list[Any] = []
        self._sink: tuple[torch.Tensor, Callable[[int], None], list[bool]] | None = None
        # The model's own optimizer runs through torch's fused kernels when it can.
        self.fast_optimizer = True
        # One fused path per optimizer that applies gradients here (the model's; DiLoCo's outer one, EASGD's), None: Keras.
        self._fused_paths: dict[int, torch_optim.FusedApply | None] = {}

    def _tensors(self) -> list[torch.Tensor]:
        return [v.value for v in self.trainable + self.state]

    @torch.no_grad()
    def get_weights(self, out: np.ndarray) -> None:
        target = torch.from_numpy(out)
        offset = 0
        for tensor, size in zip(self._tensors(), self._sizes):
            target[offset : offset + size].copy_(tensor.reshape(-1))
            offset += size

    @torch.no_grad()
    def set_weights(self, flat: np.ndarray) -> None:
        source = torch.from_numpy(flat)
        offset = 0
        for tensor, size in zip(self._tensors(), self._sizes):
            tensor.copy_(source[offset : offset + size].view(tensor.shape))
            offset += size

    @torch.no_grad()
    def add_state(self, delta: np.ndarray) -> None:
        source = torch.from_numpy(delta)
        offset = 0
        for variable, size in zip(self.state, self.layout.state_sizes):
            variable.value.add_(source[offset : offset + size].view(tuple(variable.shape)))
            offset += size

    def accumulate_gradients(
        self,
        x: Any,
        y: Any,
        out: np.ndarray,
        sample_weight: np.ndarray | None = None,
        ready: Callable[[int], None] | None = None,
        progress: Callable[[], None] | None = None,
    ) -> float:
        model = self.model
        x, y, sample_weight = _to_tensor(x), _to_tensor(y), _to_tensor(sample_weight)
        for variable in self.trainable:
            variable.value.grad = None
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        if ready is None:
            loss.backward()
            self._add_gradients(out, range(len(self.trainable)))
            return float(loss.detach())
        # Each variable's gradient goes into `out` from its post-accumulate-grad hook, the moment
        # autograd has it, and `ready` hears of it there: inside backward, not after it.
        self._hook_gradients()
        if progress is not None:
            _between_operations(loss, progress)
        self._sink = (torch.from_numpy(out), ready, [False] * len(self.trainable))
        started = time.time()
        try:
            loss.backward()
        finally:
            sink, self._sink = self._sink, None
        self.last_backward = (started, time.time())
        # Variables that do not affect the loss get no hook call: zero gradients, ready now.
        self._add_gradients(out, [i for i, seen in enumerate(sink[2]) if not seen], ready)
        return float(loss.detach())

    @torch.no_grad()
    def _add_gradients(
        self, out: np.ndarray, indices: Iterable[int], ready: Callable[[int], None] | None = None
    ) -> None:
        target = torch.from_numpy(out)
        for index in indices:
            grad = self.trainable[index].value.grad
            if grad is not None:  # None: the variable does not affect the loss
                start = self._offsets[index]
                target[start : start + self._sizes[index]].add_(grad.reshape(-1))
            if ready is not None:
                ready(index)

    def _hook_gradients(self) -> None:
        """One post-accumulate-grad hook per trainable tensor (again if a tensor was replaced)."""
        tensors = [v.value for v in self.trainable]
        if len(self._hooked) == len(tensors) and all(a is b for a, b in zip(self._hooked, tensors)):
            return
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = [t.register_post_accumulate_grad_hook(self._hook(i)) for i, t in enumerate(tensors)]
        self._hooked = tensors

    def _hook(self, index: int) -> Callable[[torch.Tensor], None]:
        start, size = self._offsets[index], self._sizes[index]

        @torch.no_grad()
        def hook(tensor: torch.Tensor) -> None:
            sink = self._sink
            if sink is None or tensor.grad is None:  # not a backward of accumulate_gradients(ready=...)
                return
            target, ready, seen = sink
            target[start : start + size].add_(tensor.grad.reshape(-1))
            seen[index] = True
            ready(index)

        return hook

    @torch.no_grad()
    def apply_gradients(self, grads: np.ndarray, optimizer: Any = None) -> None:
        source = torch.from_numpy(grads)
        tensors = []
        offset = 0
        for variable, size in zip(self.trainable, self.layout.trainable_sizes):
            tensors.append(source[offset : offset + size].view(tuple(variable.shape)))
            offset += size
        target = optimizer or self.model.optimizer
        fused = self._fused_for(target)
        if fused is not None:
            fused.step(tensors)
        else:
            target.apply(tensors, self.trainable)

    @property
    def _fused(self) -> torch_optim.FusedApply | None:
        """The model optimizer's fused path, once it has run."""
        return self._fused_paths.get(id(self.model.optimizer))

    def _fused_for(self, optimizer: Any) -> torch_optim.FusedApply | None:
        if not self.fast_optimizer:
            return None
        key = id(optimizer)
        if key not in self._fused_paths:
            self._fused_paths[key] = (
                torch_optim.FusedApply(optimizer, self.trainable)
                if torch_optim.supports(optimizer, self.trainable)
                else None
            )
        return self._fused_paths[key]

    def sync_optimizer(self) -> None:
        """Bring the Keras optimizers' variables up to date (before saving)."""
        for fused in self._fused_paths.values():
            if fused is not None:
                fused.save_to_keras()

    def reload_optimizer(self) -> None:
        """Take the Keras optimizers' variables as the state (after restoring them)."""
        for fused in self._fused_paths.values():
            if fused is not None:
                fused.load_from_keras()


def _between_operations(loss: torch.Tensor, progress: Callable[[], None]) -> None:
    """`progress()` before each operation of this loss's backward: MPI moves a message only inside
    its calls, and the gradient hooks alone come seldom (none inside a long convolution's backward).
    The hooks go on this step's graph nodes, which die with it; not on the parameters' gradient
    accumulators, which outlive it."""

    def hook(grad_outputs: Any) -> None:
        progress()

    seen: set[Any] = set()
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen or type(node).__name__ == "AccumulateGrad":
            continue
        seen.add(node)
        node.register_prehook(hook)
        stack.extend(child for child, _ in node.next_functions)


def wrap_module(module: Any, input_shape: tuple[int, ...]) -> Any:
    """A plain torch.nn.Module as a Keras model, so every algorithm, the
    master's optimizer, validation and saving treat it like any Keras model.
    Floating-point buffers (BatchNorm running statistics) become non-trainable
    Keras variables sharing the buffers' memory, so they travel like Keras
    layer state."""
    import keras

    was_training = module.training
    module.eval()
    with torch.no_grad():  # one dummy pass tells Keras the output shape
        probe = module(torch.zeros((2, *input_shape)))
    module.train(was_training)
    inputs = keras.Input(tuple(input_shape), name="inputs")
    outputs = TrackedTorchModule(module, output_shape=(None, *probe.shape[1:]))(inputs)
    return keras.Model(inputs, outputs, name=type(module).__name__)


def is_module(obj: Any) -> bool:
    return isinstance(obj, torch.nn.Module)


def outputs_logits(model: Any) -> bool:
    """A model made by wrap_module (its outputs are the module's logits)."""
    return any(isinstance(layer, TrackedTorchModule) for layer in getattr(model, "layers", ()))


def _tracked_module_class() -> type:
    import keras
    from keras.layers import TorchModuleWrapper

    @keras.saving.register_keras_serializable(package="mpilearn")
    class TrackedTorchModule(TorchModuleWrapper):
        def _track_module_parameters(self) -> None:
            super()._track_module_parameters()
            for buffer in self.module.buffers():
                if buffer.is_floating_point():
                    self._track_variable(keras.Variable(initializer=buffer, trainable=False))

    return TrackedTorchModule


TrackedTorchModule = _tracked_module_class()
