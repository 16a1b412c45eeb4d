"""Search spaces: a TOML or YAML file of one table per parameter, or a
Python function `search_space(trial)` for conditional spaces.

File format (TOML; YAML has the same structure):

    [lr]
    type = "float"          # int | float | categorical
    low = 1e-4
    high = 1e-2
    log = true              # optional, int and float
    step = ...              # optional, int and float, not with log

    [optimizer]
    type = "categorical"
    choices = ["adam", "sgd"]

A Python space is called with the Optuna trial on the coordinator and returns
a dict of the values to apply (usually the trial.suggest_* results; derived or
fixed values are allowed) or None to apply `trial.params`.
"""

from __future__ import annotations

import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from .. import models
from ..config import RunConfig
from ..errors import ConfigError, ModelError
from ..userfile import read_text
from .settings import RESERVED, TRAINING_OPTIONS, apply_settings, normalize_name

TYPES = ("int", "float", "categorical")
KEYS = ("type", "low", "high", "log", "step", "choices")
SPACE_FUNCTION = "search_space"


@dataclass(frozen=True)
class SearchSpace:
    """Either fixed distributions (file) or a define-by-run function."""

    source: str
    distributions: Mapping[str, BaseDistribution] | None = None
    function: Callable[[Any], Any] | None = None

    def sample(self, study: optuna.Study) -> tuple[optuna.Trial, dict[str, Any]]:
        """Ask the study for a trial; returns it and the values to apply."""
        if self.distributions is not None:
            trial = study.ask(dict(self.distributions))
            return trial, dict(trial.params)
        assert self.function is not None
        trial = study.ask()
        try:
            returned = self.function(trial)
        except Exception as exc:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise ModelError(f"search space {self.source} raised {type(exc).__name__}: {exc}") from None
        if returned is None:
            return trial, dict(trial.params)
        if not isinstance(returned, Mapping):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise ModelError(
                f"search space {self.source} must return a dict of values or None, got {type(returned).__name__}"
            )
        return trial, {**trial.params, **{normalize_name(str(k)): v for k, v in returned.items()}}


# ---- files -------------------------------------------------------------------
def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_parameter(name: str, spec: Any, where: str) -> BaseDistribution:
    """One table of a space file -> an Optuna distribution, with errors that
    name the file, the parameter and the key."""
    here = f"{where}: [{name}]"
    if not isinstance(spec, Mapping):
        raise ConfigError(f'{here} must be a table with type = "int", "float" or "categorical", got {spec!r}')
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise ConfigError(f"{here} has unknown key {unknown[0]!r}; allowed: {', '.join(KEYS)}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"{here} needs type = one of {', '.join(TYPES)}; got {kind!r}")
    if kind == "categorical":
        extra = sorted(set(spec) & {"low", "high", "log", "step"})
        if extra:
            raise ConfigError(f"{here}: a categorical parameter takes choices, not {extra[0]!r}")
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"{here} needs choices = a non-empty list, got {choices!r}")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ConfigError(f"{here}: choice {choice!r} must be a number, a string, a boolean or null")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{here}: choices repeat a value: {list(choices)!r}")
        return CategoricalDistribution(list(choices))
    if "choices" in spec:
        raise ConfigError(f'{here}: choices belong to type = "categorical", not {kind!r}')
    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"{here} needs {key} (a number)")
        if not _number(spec[key]):
            raise ConfigError(f"{here}: {key} must be a finite number, got {spec[key]!r}")
    low, high = spec["low"], spec["high"]
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{here}: log must be true or false, got {log!r}")
    if low > high:
        raise ConfigError(f"{here}: low {low!r} is greater than high {high!r}")
    if log and low <= 0:
        raise ConfigError(f"{here}: log = true needs low > 0, got {low!r}")
    if step is not None:
        if log:
            raise ConfigError(f"{here}: step cannot be combined with log = true")
        if not _number(step) or step <= 0:
            raise ConfigError(f"{here}: step must be a positive number, got {step!r}")
    if kind == "int":
        for key, value in (("low", low), ("high", high), ("step", step)):
            if value is not None and not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
                raise ConfigError(f"{here}: {key} of an int parameter must be a whole number, got {value!r}")
        return IntDistribution(int(low), int(high), log=log, step=int(step) if step is not None else 1)
    return FloatDistribution(float(low), float(high), log=log, step=float(step) if step is not None else None)


def parse_space(table: Any, where: str) -> dict[str, BaseDistribution]:
    """A whole space file's content -> {name: distribution}."""
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(
            f'{where}: a search space needs at least one parameter table, such as [lr] with type = "float"'
        )
    space: dict[str, BaseDistribution] = {}
    for raw_name, spec in table.items():
        name = normalize_name(str(raw_name))
        if not name:
            raise ConfigError(f"{where}: a parameter has an empty name")
        if name in space:
            raise ConfigError(f"{where}: parameter {name!r} appears twice (- and _ are the same)")
        if name in RESERVED:
            raise ConfigError(f"{where}: [{raw_name}] is set from the data and cannot be searched")
        space[name] = parse_parameter(str(raw_name), spec, where)
    return space


def read_space_file(path: str) -> dict[str, BaseDistribution]:
    file = Path(path)
    text = read_text(file, ConfigError, f"--space {path}")
    suffix = file.suffix.lower()
    if suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--space {path} is not valid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        from ..optional import require

        require("yaml", f"--space {path}")
        import yaml

        try:
            table = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--space {path} is not valid YAML: {exc}") from None
    else:
        raise ConfigError(f"--space {path}: give a .toml, .yaml or .yml file, or path/to/file.py:function")
    return parse_space(table, path)


# ---- loading and checking ----------------------------------------------------------
def _model_file(spec: str) -> str | None:
    if ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        return spec.rsplit(":", 1)[0]
    return None


def load_space(spec: str, model_spec: str) -> SearchSpace:
    """--space (a file or file.py:function), or the model file's search_space()."""
    if spec:
        if ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
            path, function = spec.rsplit(":", 1)
            return SearchSpace(spec, function=_load_function(path, function))
        return SearchSpace(spec, distributions=read_space_file(spec))
    model_path = _model_file(model_spec)
    if model_path is not None:
        module_function = _find_function(model_path, SPACE_FUNCTION)
        if module_function is not None:
            return SearchSpace(f"{model_path}:{SPACE_FUNCTION}", function=module_function)
    raise ConfigError(
        "--space is required: a TOML or YAML file of parameters, or path/to/file.py:function "
        f"(a model file may instead define {SPACE_FUNCTION}(trial))"
    )


def _load_function(path: str, function: str) -> Callable[[Any], Any]:
    try:
        return models.load_builder(path, function)
    except ModelError as error:
        raise ConfigError(f"--space {path}:{function}: {error}") from None


def _find_function(path: str, function: str) -> Callable[[Any], Any] | None:
    try:
        return models.load_builder(path, function)
    except ModelError as error:
        if "has no function" in str(error):
            return None
        raise


def builder_arguments(model_spec: str) -> tuple[set[str] | None, str]:
    """Keyword arguments the model builder takes (None: any), and its name."""
    if model_spec in models.BUILTIN_MODELS:
        builder: Callable[..., Any] | None = models.BUILTIN_MODELS[model_spec]
        what = f"built-in model {model_spec!r}"
    elif _model_file(model_spec):
        path, function = model_spec.rsplit(":", 1)
        builder = models.load_builder(path, function)
        what = model_spec
    else:
        return set(), f"model {model_spec!r}"  # .keras and JSON files take no arguments
    if builder is None:
        return None, what
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return None, what
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None, what
    return {name for name in params if name not in RESERVED}, what


def _probe_values(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]  # type: ignore[attr-defined]


def check_space(space: SearchSpace, base: RunConfig) -> None:
    """Refuse a file space whose names or bounds cannot work, before any
    trial runs: each name must be a training option or a builder argument,
    and each bound or choice of a training option must pass its option's check."""
    if space.distributions is None:
        return  # a Python space is only known trial by trial
    accepted, what = builder_arguments(base.model.spec)
    for name, distribution in space.distributions.items():
        if name not in TRAINING_OPTIONS:
            if accepted is not None and name not in accepted:
                takes = ", ".join(sorted(accepted)) or "no arguments"
                raise ConfigError(
                    f"{space.source}: parameter {name!r} is neither a training option "
                    f"({', '.join(sorted(TRAINING_OPTIONS))}) nor an argument of {what} (it takes {takes})"
                )
            continue
        for value in _probe_values(distribution):
            try:
                apply_settings(base, {name: value})
            except ConfigError as error:
                raise ConfigError(f"{space.source}: [{name}] allows {value!r}, which fails: {error}") from None
