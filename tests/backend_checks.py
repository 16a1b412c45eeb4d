"""The checks behind tests/test_backends.py, run as a script in a fresh process per backend
(`KERAS_BACKEND=<name> python backend_checks.py`): the Keras backend is fixed when keras is
imported. Prints its measurements as one `RESULT {json}` line."""

import json

import numpy as np
import keras
from mpilearn import backends

backends.set_threads(1)
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
X = rng.normal(size=(8, 6)).astype("float32")
Y = np.eye(3, dtype="float32")[rng.integers(0, 3, size=8)]


def build(dropout=0.0, optimizer=None):
    """Dense -> BatchNormalization -> relu -> Dense, compiled with SGD(lr=1) by default."""
    inputs = keras.Input((6,))
    x = keras.layers.Dense(5)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)
    x = keras.layers.Activation("relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer or keras.optimizers.SGD(learning_rate=1.0), loss="categorical_crossentropy")
    return model


def start_weights(layout):
    """The same weights in every backend (Keras initialisers differ per
    backend): trainables from a seeded normal, moving means near 0 and
    moving variances near 1."""
    r = np.random.default_rng(1)
    flat = np.empty(layout.size, np.float32)
    flat[: layout.num_trainable] = r.normal(scale=0.5, size=layout.num_trainable)
    flat[layout.num_trainable :] = r.uniform(0.5, 1.5, size=layout.num_state)
    return flat


def diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


out = {}
model = build()
backend = backends.for_model(model)
layout = backend.layout
T = layout.num_trainable
w0 = start_weights(layout)

# Layout: model.trainable_variables, then the float non-trainable weights.
state_vars = [v for v in model.non_trainable_weights if "float" in str(v.dtype)]
out["layout_order"] = layout.trainable_shapes == tuple(
    tuple(v.shape) for v in model.trainable_variables
) and layout.state_shapes == tuple(tuple(v.shape) for v in state_vars)
out["num_state"] = layout.num_state

# (a) Round trip, copied in (the caller reuses its buffer), in the flat order.
flat = w0.copy()
backend.set_weights(flat)
flat[:] = -7.0
got = np.full(layout.size, np.nan, np.float32)
backend.get_weights(got)
out["round_trip"] = diff(got, w0)
keras_view = np.concatenate(
    [keras.ops.convert_to_numpy(v).reshape(-1) for v in list(model.trainable_variables) + state_vars]
)
out["order_vs_keras"] = diff(keras_view, w0)

# (b) Gradients against Keras's own train_on_batch with SGD(lr=1), for a full
# and a smaller batch; then accumulation.
for n in (8, 5):
    backend.set_weights(w0)
    grads = np.zeros(T, np.float32)
    loss = backend.accumulate_gradients(X[:n], Y[:n], grads)
    after = np.empty(layout.size, np.float32)
    backend.get_weights(after)
    backend.set_weights(w0)
    ref_loss = model.train_on_batch(X[:n], Y[:n])
    ref = np.empty(layout.size, np.float32)
    backend.get_weights(ref)
    out[f"grad_vs_keras_{n}"] = diff(grads, w0[:T] - ref[:T])
    out[f"loss_vs_keras_{n}"] = abs(loss - float(np.asarray(ref_loss).reshape(-1)[0]))
    # (c) moving statistics updated as model.fit updates them
    out[f"state_changed_{n}"] = diff(after[T:], w0[T:])
    out[f"state_vs_keras_{n}"] = diff(after[T:], ref[T:])
    out[f"grad_norm_{n}"] = float(np.linalg.norm(grads))
    if n == 8:
        out["loss"] = loss
        out["grads"] = grads.tolist()
# Sample weights weight the loss as in model.fit(sample_weight=...).
SW = np.linspace(0.0, 2.0, 8).astype(np.float32)
backend.set_weights(w0)
grads = np.zeros(T, np.float32)
loss = backend.accumulate_gradients(X, Y, grads, sample_weight=SW)
backend.set_weights(w0)
ref_loss = model.train_on_batch(X, Y, sample_weight=SW)
backend.get_weights(ref)
out["weighted_grad_vs_keras"] = diff(grads, w0[:T] - ref[:T])
out["weighted_loss_vs_keras"] = abs(loss - float(np.asarray(ref_loss).reshape(-1)[0]))
out["weighted_differs"] = diff(grads, np.asarray(out["grads"], np.float32))

backend.set_weights(w0)
twice = np.zeros(T, np.float32)
backend.accumulate_gradients(X, Y, twice)
once = twice.copy()
backend.accumulate_gradients(X, Y, twice)
out["accumulates"] = diff(twice, 2 * once)


def ready_calls(backend, x, y):
    """accumulate_gradients with `ready`: (its gradients, without it, [(index, time, what `out` held of it)])."""
    import time

    n = backend.layout.num_trainable
    plain = np.zeros(n, np.float32)
    backend.accumulate_gradients(x, y, plain)
    grads = np.zeros(n, np.float32)
    offsets = np.cumsum((0,) + backend.layout.trainable_sizes)
    calls = []

    def ready(i):
        calls.append((i, time.time(), grads[offsets[i] : offsets[i + 1]].copy()))

    backend.accumulate_gradients(x, y, grads, ready=ready)
    held = all(diff(g, grads[offsets[i] : offsets[i + 1]]) == 0.0 for i, _, g in calls)
    return grads, plain, calls, held


# `ready`: once per variable, each gradient in `out` when it is reported; the gradients are those without it.
backend.set_weights(w0)
grads, plain, calls, held = ready_calls(backend, X, Y)
out["ready_indices"] = [i for i, _, _ in calls]
out["ready_grads_vs_plain"] = diff(grads, plain)
out["ready_held"] = held
backward = backend.last_backward
out["ready_inside_backward"] = backward is not None and all(backward[0] <= t <= backward[1] for _, t, _ in calls)

if keras.backend.backend() == "torch":  # a plain torch.nn.Module: its parameters report from inside backward too
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    wrapped = backends.wrap_foreign_model(module, (6,))
    wrapped.compile(optimizer="sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    module_backend = backends.for_model(wrapped)
    grads, plain, calls, held = ready_calls(module_backend, X, Y)
    backward = module_backend.last_backward
    out["module_ready"] = {
        "indices": [i for i, _, _ in calls],
        "grads_vs_plain": diff(grads, plain),
        "grad_norm": float(np.linalg.norm(grads)),
        "held": held,
        "inside_backward": backward is not None and all(backward[0] <= t <= backward[1] for _, t, _ in calls),
    }

# (c) add_state adds to the layer state only.
backend.set_weights(w0)
delta = np.linspace(-1, 1, layout.num_state).astype(np.float32)
backend.add_state(delta)
got = np.empty(layout.size, np.float32)
backend.get_weights(got)
out["add_state"] = diff(got[T:], w0[T:] + delta)
out["add_state_trainable_kept"] = diff(got[:T], w0[:T])

# (d) apply_gradients: the compiled SGD(lr=1), and an optimizer passed in.
g = np.random.default_rng(2).normal(size=T).astype(np.float32)
backend.set_weights(w0)
backend.apply_gradients(g)
backend.get_weights(got)
out["sgd_compiled"] = diff(got[:T], w0[:T] - g)
out["sgd_state_kept"] = diff(got[T:], w0[T:])
backend.set_weights(w0)
backend.apply_gradients(g, keras.optimizers.SGD(learning_rate=0.1))
backend.get_weights(got)
out["sgd_passed"] = diff(got[:T], w0[:T] - 0.1 * g)


# The compiled stateful optimizer (the path a backend may speed up) against
# Keras's eager apply on a twin model; then sync_optimizer and reload_optimizer.
def as_tensors(flat_grads):
    pieces, offset = [], 0
    for shape, size in zip(layout.trainable_shapes, layout.trainable_sizes):
        pieces.append(keras.ops.convert_to_tensor(flat_grads[offset : offset + size].reshape(shape)))
        offset += size
    return pieces


def step_grads(step):
    return np.random.default_rng(10 + step).normal(size=T).astype(np.float32)


adam_model = build(optimizer=keras.optimizers.Adam(learning_rate=0.01))
adam_backend = backends.for_model(adam_model)
adam_backend.set_weights(w0)
twin = build(optimizer=keras.optimizers.Adam(learning_rate=0.01))
twin_backend = backends.for_model(twin)
twin_backend.set_weights(w0)
for step in range(3):
    adam_backend.apply_gradients(step_grads(step))
    twin.optimizer.apply(as_tensors(step_grads(step)), twin.trainable_variables)
adam_backend.sync_optimizer()
adam_backend.get_weights(got)
twin_backend.get_weights(ref)
out["adam_vs_keras"] = diff(got[:T], ref[:T])
out["adam_moved"] = diff(got[:T], w0[:T])
out["adam_iterations"] = int(keras.ops.convert_to_numpy(adam_model.optimizer.iterations))
out["adam_slots_vs_keras"] = max(
    diff(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for a, b in zip(adam_model.optimizer.variables, twin.optimizer.variables)
)
# Restore another history into the Keras optimizer (as from a checkpoint), reload, step on.
other = build(optimizer=keras.optimizers.Adam(learning_rate=0.01))
other_backend = backends.for_model(other)
other_backend.set_weights(w0)
other.optimizer.apply(as_tensors(step_grads(7)), other.trainable_variables)
other_backend.get_weights(ref)
adam_backend.set_weights(ref)
for mine, theirs in zip(adam_model.optimizer.variables, other.optimizer.variables):
    mine.assign(keras.ops.convert_to_numpy(theirs))
adam_backend.reload_optimizer()
adam_backend.apply_gradients(step_grads(8))
other.optimizer.apply(as_tensors(step_grads(8)), other.trainable_variables)
adam_backend.get_weights(got)
other_backend.get_weights(ref)
out["adam_reloaded_vs_keras"] = diff(got[:T], ref[:T])

# Dropout draws a new mask each step (seed state advances).
dropped = build(dropout=0.5)
dropped_backend = backends.for_model(dropped)
dropped_backend.set_weights(start_weights(dropped_backend.layout))
scratch = np.zeros(dropped_backend.layout.num_trainable, np.float32)
losses = [dropped_backend.accumulate_gradients(X, Y, scratch) for _ in range(4)]
out["dropout_losses"] = losses

# The caller reuses its buffers at once (the next receive, the next gradient
# sum): the backend must be done with them when a call returns, also for
# vectors large enough that a backend could alias them instead of copying.
big = keras.Sequential([keras.Input((256,)), keras.layers.Dense(256), keras.layers.BatchNormalization()])
big.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="mse")
big_backend = backends.for_model(big)
big_layout = big_backend.layout
base = np.random.default_rng(3).normal(size=big_layout.size).astype(np.float32)
ones = np.ones(big_layout.num_trainable, np.float32)
bump = np.ones(big_layout.num_state, np.float32)
seen = np.empty(big_layout.size, np.float32)
expected = base.copy()
expected[: big_layout.num_trainable] -= 1.0
expected[big_layout.num_trainable :] += 1.0
worst = 0.0
for _ in range(20):
    buffer = base.copy()
    big_backend.set_weights(buffer)
    buffer[:] = 0.0
    grads, delta = ones.copy(), bump.copy()
    big_backend.apply_gradients(grads)
    grads[:] = 0.0
    big_backend.add_state(delta)
    delta[:] = 0.0
    big_backend.get_weights(seen)
    worst = max(worst, diff(seen, expected))
out["buffers_reused"] = worst

out["backend"] = backends.active_name()
print("RESULT " + json.dumps(out))
