"""Model specifications: built-in models, Python builders, .keras and JSON files.

Keras is imported inside the functions, so importing this module never fixes
the Keras backend before the command line has chosen it.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ConfigError, ModelError
from .userfile import import_file


def calo_cnn(
    input_shape: tuple[int, ...], num_classes: int, filters: int = 8, dense: int = 32, dropout: float = 0.0
) -> Any:
    """The calorimeter CNN of the demo: two 3D convolutions on the energy
    deposits, then a small dense classifier (about 35k parameters at 25^3)."""
    import keras
    from keras import layers

    if min(input_shape[:3]) < 10:
        raise ModelError(f"calo-cnn needs calorimeter images of at least 10x10x10 cells, got {tuple(input_shape[:3])}")
    inputs = keras.Input(tuple(input_shape), name="deposits")
    x = inputs if len(input_shape) == 4 else layers.Reshape((*input_shape, 1))(inputs)
    x = layers.Conv3D(filters, 3, activation="relu")(x)
    x = layers.MaxPooling3D(2)(x)
    x = layers.Conv3D(2 * filters, 3, activation="relu")(x)
    x = layers.MaxPooling3D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense, activation="relu")(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="calo_cnn")


def mlp(
    input_shape: tuple[int, ...], num_classes: int, units: int = 128, layers_count: int = 2, dropout: float = 0.0
) -> Any:
    """A dense network on the flattened input: the cheap model of tests and benchmarks."""
    import keras
    from keras import layers

    inputs = keras.Input(tuple(input_shape), name="inputs")
    x = layers.Flatten()(inputs)
    for _ in range(layers_count):
        x = layers.Dense(units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax" if num_classes > 1 else None)(x)
    return keras.Model(inputs, outputs, name="mlp")


BUILTIN_MODELS: dict[str, Callable[..., Any]] = {"calo-cnn": calo_cnn, "mlp": mlp}


def describe_builtins() -> list[tuple[str, str]]:
    """(name, the first sentence of its docstring), whole even when it spans lines."""
    out = []
    for name, fn in BUILTIN_MODELS.items():
        text = " ".join((fn.__doc__ or "").split())
        end = text.find(". ")
        out.append((name, text if end < 0 else text[: end + 1]))
    return out


def load_builder(path: str, function: str) -> Callable[..., Any]:
    """Import `function` from the Python file `path` without touching sys.path order."""
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"model file {path} does not exist")
    # A stable name: a saved model that pickles the user's classes (a torch
    # module inside model.keras) can be loaded again after load_builder.
    module = _import_file(file)
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ModelError(f"model file {path} has no function {function!r}")
    return builder


def _import_file(file: Path) -> Any:
    return import_file(file, ModelError, f"model file {file}")


def _call_builder(builder: Callable[..., Any], what: str, kwargs: dict[str, Any]) -> Any:
    """Call with the keyword arguments the builder accepts; it may ignore
    input_shape and num_classes, but a --model-arg it cannot take is an error."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    automatic = {"input_shape", "num_classes"}
    accepted = {}
    for key, value in kwargs.items():
        if takes_any or key in params:
            accepted[key] = value
        elif key not in automatic:
            raise ModelError(
                f"{what} takes no argument {key!r} (given by --model-arg); it takes: {', '.join(params) or 'nothing'}"
            )
    try:
        return builder(**accepted)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{what} raised {type(exc).__name__}: {exc}") from None


APPLICATIONS_PREFIX = "keras.applications."


def load_custom_objects(path: str | None) -> dict[str, Any]:
    """Every class and function a Python file defines, for loading .keras and
    JSON models that use custom layers, losses or metrics."""
    if not path:
        return {}
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"--custom-objects {path} does not exist")
    module = _import_file(file)
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    }


def build_model(
    spec: str,
    input_shape: tuple[int, ...] | list[tuple[int, ...]],
    num_classes: int | list[int],
    model_args: dict[str, Any] | None = None,
    custom_objects: dict[str, Any] | None = None,
) -> Any:
    """Turn a model SPEC into an (uncompiled) Keras model."""
    import keras

    kwargs = {"input_shape": tuple(input_shape), "num_classes": num_classes, **(model_args or {})}
    if spec.startswith(APPLICATIONS_PREFIX):
        name = spec[len(APPLICATIONS_PREFIX) :]
        application = getattr(keras.applications, name, None)
        if not callable(application):
            raise ModelError(f"unknown model {spec!r}: keras.applications has no {name!r}")
        arguments = {"weights": None, "input_shape": tuple(input_shape), "classes": num_classes, **(model_args or {})}
        model = _call_builder(application, spec, arguments)
    elif spec in BUILTIN_MODELS:
        model = _call_builder(BUILTIN_MODELS[spec], f"built-in model {spec!r}", kwargs)
    elif ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        path, function = spec.rsplit(":", 1)
        model = _call_builder(load_builder(path, function), f"{path}:{function}", kwargs)
    elif spec.endswith(".keras"):
        if not Path(spec).is_file():
            raise ModelError(f"model file {spec} does not exist")
        try:
            with tensorflow_unloaded():
                model = keras.saving.load_model(spec, compile=False, custom_objects=custom_objects)
        except Exception as exc:
            raise ModelError(f"model file {spec} cannot be loaded: {type(exc).__name__}: {exc}") from None
    elif spec.endswith(".json"):
        try:
            text = Path(spec).read_text()
            json.loads(text)
        except FileNotFoundError:
            raise ModelError(f"model file {spec} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"model file {spec} is not valid JSON: {exc}") from None
        try:
            model = keras.models.model_from_json(text, custom_objects=custom_objects)
        except Exception as exc:
            raise ModelError(f"model file {spec} is not a Keras architecture: {type(exc).__name__}: {exc}") from None
    else:
        raise ModelError(
            f"unknown model {spec!r}: give a built-in name ({', '.join(BUILTIN_MODELS)}), "
            "path/to/file.py:function, a .keras file or a Keras JSON file"
        )
    if not isinstance(model, keras.Model):
        from . import backends

        wrapped = backends.wrap_foreign_model(model, tuple(input_shape))  # type: ignore[arg-type]  # one input
        if wrapped is None:
            raise ModelError(f"model {spec!r} is a {type(model).__name__}, not a keras.Model or torch.nn.Module")
        model = wrapped
    return model


# Loss names a PyTorch user knows, for models whose outputs are logits.
TORCH_LOSSES = {
    "cross_entropy": "crossentropy",
    "crossentropy": "crossentropy",
    "mse_loss": "mean_squared_error",
    "l1_loss": "mean_absolute_error",
    "bce_with_logits": "binary_crossentropy",
    "binary_cross_entropy_with_logits": "binary_crossentropy",
}


def loss_for(name: str, logits: bool, label_shape: tuple[int, ...], label_dtype: str) -> Any:
    """The Keras loss for `name`; with logits (torch modules), cross-entropies
    take logits like torch.nn.CrossEntropyLoss does."""
    import keras

    if not logits:
        return name
    name = TORCH_LOSSES.get(name, name)
    if name in ("crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy"):
        if name == "sparse_categorical_crossentropy" or "int" in label_dtype:
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        return keras.losses.CategoricalCrossentropy(from_logits=True)
    if name == "binary_crossentropy":
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return name


def default_loss(label_shape: tuple[int, ...], label_dtype: str) -> str:
    """Cross-entropy for classification labels, mean squared error otherwise."""
    if "int" in label_dtype:
        return "sparse_categorical_crossentropy"
    if len(label_shape) == 1 and label_shape[0] > 1:
        return "categorical_crossentropy"
    return "mean_squared_error"


def default_metrics(loss: str) -> tuple[str, ...]:
    return ("accuracy",) if "crossentropy" in TORCH_LOSSES.get(loss, loss) else ()


def make_optimizer(name: str, learning_rate: float | None, momentum: float = 0.0) -> Any:
    """A Keras optimizer by name; a momentum > 0 means Nesterov momentum (SGD)."""
    import keras

    config: dict[str, Any] = {}
    if learning_rate is not None:
        config["learning_rate"] = learning_rate
    if momentum:
        config.update(momentum=momentum, nesterov=True)
    try:
        return keras.optimizers.get({"class_name": name, "config": config})
    except (ValueError, TypeError) as exc:
        known = sorted(
            n.lower()
            for n in dir(keras.optimizers)
            if isinstance(getattr(keras.optimizers, n), type) and n != "Optimizer"
        )
        raise ConfigError(f"unknown optimizer {name!r} (--optimizer); Keras knows: {', '.join(known)}") from exc


def worker_optimizer(name: str, compiled: Any, lr: float | None, model_lr: float | None, momentum: float = 0.0) -> Any:
    """A worker's own optimizer: a fresh copy of the model's compiled one ("model") or one by name,
    at `lr` when given (else the compiled rate; a named one: the model's --lr, else 0.01)."""
    if name == "model":
        optimizer = type(compiled).from_config(compiled.get_config())
        if lr is not None:
            optimizer.learning_rate = lr
        return optimizer
    return make_optimizer(name, lr or model_lr or 0.01, momentum)


def compile_model(model: Any, optimizer: str, learning_rate: float | None, loss: Any, metrics: tuple[str, ...]) -> None:
    import keras

    try:
        keras.losses.get(loss)
    except (ValueError, TypeError):
        raise ConfigError(f"unknown loss {loss!r} (--loss)") from None
    for metric in metrics:
        try:
            keras.metrics.get(metric)
        except (ValueError, TypeError):
            if metric not in ("accuracy", "acc"):
                raise ConfigError(f"unknown metric {metric!r} (--metrics)") from None
    outputs = len(getattr(model, "outputs", None) or ())
    # Several outputs (an HDF5 group of targets): Keras wants the metrics once per output.
    per_output = [list(metrics) for _ in range(outputs)] if outputs > 1 and metrics else list(metrics)
    model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=loss, metrics=per_output)


@contextlib.contextmanager
def tensorflow_unloaded() -> Iterator[None]:
    """Inside: Keras takes TensorFlow as not installed unless it is the backend
    or already loaded. Keras imports TensorFlow whenever it is installed to
    seed it (set_random_seed) or to recognise its types (saving), which costs
    every rank of a torch or JAX run ~2 s and ~200 MB; objects of a module
    never loaded need no seeding or recognising."""
    import keras

    lazy_tf = getattr(sys.modules.get("keras.src.utils.module_utils"), "tensorflow", None)
    if (
        keras.backend.backend() == "tensorflow"
        or "tensorflow" in sys.modules
        or getattr(lazy_tf, "_available", 0) is not None
    ):
        yield  # TensorFlow loaded, known absent, or Keras's internals have changed
        return
    assert lazy_tf is not None
    lazy_tf._available = False
    try:
        yield
    finally:
        lazy_tf._available = None


def set_random_seed(seed: int) -> None:
    """`keras.utils.set_random_seed`, TensorFlow seeded only when it is loaded."""
    import keras

    with tensorflow_unloaded():
        keras.utils.set_random_seed(seed)


def reseed(model: Any, seed: int, worker: int, epoch: int) -> None:
    """Set the model's random-layer states (dropout and the like) from
    (seed, worker, epoch): every epoch is then reproducible on its own, which
    is what lets a resumed run replay exactly what it would have done."""
    import numpy as np

    # Layers built without a seed draw from the backend's global generator.
    set_random_seed(int(np.random.default_rng([seed, worker, epoch]).integers(0, 2**31)))
    for index, variable in enumerate(
        v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")
    ):
        start = np.random.default_rng([seed, worker, epoch, index]).integers(0, 2**30)
        variable.assign(np.array([start, 0]).astype(variable.dtype))


def has_own_train_step(model: Any) -> bool:
    """True when the model's class (not Keras) defines train_step, like a GAN
    with two optimizers: such a model trains through its own step, and
    workers send the change of their weights instead of gradients."""
    for cls in type(model).__mro__:
        if "train_step" in vars(cls):
            return not cls.__module__.startswith("keras.")
    return False
