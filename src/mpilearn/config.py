"""Frozen, typed configuration of a run.

Rank 0 resolves one `RunConfig` and broadcasts it, so every rank works from
the same values. Each dataclass checks its own fields in `__post_init__` and
names the option, the value received and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

from .algorithms import registry
from .data.options import (
    DEFAULT_COPY_COMMAND,
    EVEN_POLICIES,
    SHUFFLE_CHUNK,
    SHUFFLE_WINDOW,
    parse_copy_command,
    parse_size,
    split_names,
)
from .errors import ConfigError
from . import option_values

if TYPE_CHECKING:
    from .algorithms.registry import AlgorithmSpec

ALGORITHMS = registry.names()
COMPRESSIONS = ("none", "fp16", "bf16")
LR_SCALINGS = ("auto", "none", "linear", "sqrt", "staleness")
GEM_PROXIES = ("model", "momentum")
PIPELINE_MODES = ("auto", "on", "off")
SHARD_MODES = ("files", "samples")
LOG_LEVELS = ("debug", "info", "warning", "error")
PROGRESS_MODES = ("auto", "bar", "lines")
TARGET_OPS = option_values.TARGET_OPS
BACKENDS = ("torch", "jax", "tensorflow")
# --tensorboard without a directory: a folder of the run directory.
DEFAULT_TENSORBOARD = "{run_dir}/tensorboard"

# Key of a field's metadata that holds its option settings (see opt and options.py).
OPTION = "mpilearn.option"


def opt(
    flag: str = "",
    *,
    cli: bool = True,
    fit: bool = True,
    fit_name: str = "",
    help: str = "",
    short: str = "",
    group: str = "",
    metavar: str | None = None,
    choices: tuple[Any, ...] | None = None,
    parse: Any = None,
    append: bool = False,
    const: Any = None,
) -> dict[str, Any]:
    """Metadata of a field whose option is not the convention's. By default a
    field is the option --field-name (of `mpilearn train`, config files and
    `mpilearn.fit`) whose help is the comment above the field; `flag` renames
    it, `cli`/`fit` leave it out of the command line / of fit, `parse` turns the
    command line's text into the field's value (or a dict of several fields),
    `append` makes it repeatable, `const` is the value of the bare flag."""
    settings = dict(
        flag=flag,
        cli=cli,
        fit=fit,
        fit_name=fit_name,
        help=help,
        short=short,
        group=group,
        metavar=metavar,
        choices=choices,
        parse=parse,
        append=append,
    )
    if const is not None:
        settings["const"] = const
    return {OPTION: settings}


def _positive_int(option: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{option} must be a positive integer, got {value!r}")


def _non_negative_int(option: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{option} must be an integer >= 0, got {value!r}")


def _choice(option: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{option} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where the samples come from and how they are cut into batches."""

    # Training and validation HDF5 files, in file-list order (--train, --val; fit's train, validation).
    train_files: tuple[str, ...] = field(default=(), metadata=opt(cli=False, fit=False))
    val_files: tuple[str, ...] = field(default=(), metadata=opt(cli=False, fit=False))
    # HDF5 names of the model inputs and targets: a dataset, a group (its datasets sorted by
    # key: several inputs or targets) or comma-separated datasets.
    features_name: str = "features"
    labels_name: str = "labels"
    # HDF5 dataset of per-sample loss weights ("" = unweighted).
    sample_weights_name: str = ""
    # Samples per gradient computation on one worker.
    batch_size: int = field(default=32, metadata=opt("--batch"))
    # "files": each file read by one worker; "samples": every worker reads an equal contiguous slice of all samples.
    shard: Literal["files", "samples"] = "files"
    # Batches read ahead by a background thread on each worker (0 = read inline).
    prefetch: int = 2
    # A batch function path/to/file.py:function instead of HDF5 files (see data/python_sources.py).
    train_function: str = field(default="", metadata=opt(cli=False, fit=False))
    val_function: str = field(default="", metadata=opt(cli=False, fit=False))
    # Chunk-wise shuffle: contiguous samples read at once (the order of chunks is shuffled every epoch) ...
    shuffle_chunk: int = SHUFFLE_CHUNK
    # Chunk-wise shuffle: chunks whose samples are shuffled together (memory: chunk * window samples).
    shuffle_window: int = SHUFFLE_WINDOW
    # Lockstep algorithms: "cycle" smaller shards up to the largest one's batches, or "drop" the batches
    # of larger shards beyond the smallest one's.
    even_policy: Literal["cycle", "drop"] = "cycle"
    # Read each worker's whole shard into memory before training.
    preload: bool = False
    # --preload: most memory a worker's shard may take ("8G"; "" = what the machine has); without --preload, most
    # memory the validation batches read ahead may take.
    memory_limit: str = ""
    # Node-local directory that the files each node needs are copied to ahead of use.
    cache_dir: str = ""
    # Command that copies {src} to {dst} for --cache-dir, run without a shell (e.g. 'xrdcp -s {src} {dst}').
    copy_command: str = DEFAULT_COPY_COMMAND

    def __post_init__(self) -> None:
        _positive_int("--batch", self.batch_size)
        _non_negative_int("--prefetch", self.prefetch)
        _choice("--shard", self.shard, SHARD_MODES)
        _positive_int("--shuffle-chunk", self.shuffle_chunk)
        _positive_int("--shuffle-window", self.shuffle_window)
        _choice("--even-policy", self.even_policy, EVEN_POLICIES)
        for option, name in (
            ("--features-name", self.features_name),
            ("--labels-name", self.labels_name),
            ("--sample-weights-name", self.sample_weights_name),
        ):
            if not name and option != "--sample-weights-name":
                raise ConfigError(f"{option} must not be empty")
            if name and not all(split_names(name)):
                raise ConfigError(f"{option} {name!r} has an empty name in its comma-separated list")
        if self.memory_limit:  # --preload's limit, and the most a streamed validation holds at once
            parse_size(self.memory_limit)
        if self.cache_dir:
            if self.preload:
                raise ConfigError(
                    "--preload reads every file once into memory, --cache-dir copies files to read them "
                    "every epoch: use one or the other"
                )
            parse_copy_command(self.copy_command)

    @property
    def memory_limit_bytes(self) -> int | None:
        return parse_size(self.memory_limit) if self.memory_limit else None


@dataclass(frozen=True)
class ModelConfig:
    """How the command line builds and compiles the model (mpilearn.fit takes a model instead)."""

    # Built-in name (see `mpilearn models`), path/to/file.py:function, a .keras file, or a Keras JSON file.
    spec: str = field(default="calo-cnn", metadata=opt("--model"))
    # Keyword argument for the model builder (repeatable).
    model_args: tuple[tuple[str, Any], ...] = field(
        default=(), metadata=opt("--model-arg", append=True, metavar="KEY=VALUE", parse=option_values.model_args)
    )
    # Any optimizer name Keras knows.
    optimizer: str = "adam"
    # Learning rate (none: the optimizer's default).
    learning_rate: float | None = field(default=None, metadata=opt("--lr"))
    # Python file whose classes and functions are custom objects for .keras / JSON models.
    custom_objects: str | None = None
    # Keras loss (none: chosen from the labels, see models.default_loss).
    loss: str | None = None
    # Comma-separated Keras metrics (none: accuracy for classification).
    metrics: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.spec:
            raise ConfigError("--model must not be empty")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"--lr must be a positive number, got {self.learning_rate!r}")

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return dict(self.model_args)


@dataclass(frozen=True)
class AlgorithmConfig:
    """The distributed training rule and its knobs."""

    # Training algorithm (see `mpilearn info`; a name in algorithms/registry.py).
    name: str = field(default=registry.DEFAULT, metadata=opt("--algo", fit_name="algorithm", choices=ALGORITHMS))
    # Batches a worker accumulates (EASGD: local steps it takes) before each exchange.
    sync_every: int = 1
    # EASGD: moving rate beta (alpha = beta / workers).
    elastic_force: float = 0.9
    # EASGD: the workers' learning rate (none: their optimizer's; under --lr-scaling auto x (workers + 1)).
    elastic_lr: float | None = None
    # EASGD: the workers' Nesterov momentum (0: plain EASGD, > 0: EAMSGD).
    elastic_momentum: float = 0.0
    # EASGD: the workers' own optimizer ("model": a copy of the model's compiled optimizer).
    worker_optimizer: str = "model"
    # EASGD, DiLoCo: exchange with all workers at once instead of whoever is ready (auto: on for DiLoCo, as in its paper; off for EASGD).
    synchronous: bool | None = None
    # Inner steps H each DiLoCo worker takes with the model's optimizer between two exchanges (auto: 16, or an epoch's steps when fewer; --print-config and the log show the choice).
    inner_steps: int | Literal["auto"] = field(
        default="auto", metadata=opt(metavar="H|auto", parse=option_values.inner_steps)
    )
    # Learning rate of DiLoCo's outer Nesterov SGD on the master (the paper's 0.7).
    outer_lr: float = 0.7
    # Nesterov momentum of DiLoCo's outer SGD (the paper's 0.9; the synchronous form only).
    outer_momentum: float = 0.9
    # GEM: the proxy whose energy the workers match ("model": a copy of the model's compiled optimizer; "momentum": momentum SGD at --gem-lr).
    gem_proxy: Literal["model", "momentum"] = "model"
    # GEM: learning rate of the momentum-SGD proxy (--gem-proxy momentum).
    gem_lr: float = 0.01
    # GEM: momentum of the momentum-SGD proxy (--gem-proxy momentum).
    gem_momentum: float = 0.9
    # GEM: the energy factor kappa.
    gem_kappa: float = 1.0
    # allreduce: number format of the exchanged gradients.
    compression: Literal["none", "fp16", "bf16"] = "none"
    # allreduce: gradients go out in buckets of this many MiB, last layers first, each reduced while backward still computes the earlier layers' (torch); 0: one allreduce of all gradients after backward; none: a quarter of the gradients, at most 25 MiB.
    bucket_mb: float | None = None
    # Asynchronous algorithms with a master: a worker computes its next batch while its update and the master's answer are in flight, and takes the answer one batch later (each update one step staler); auto: off (faster on the mlp, but 2 workers reached a worse accuracy: docs/benchmarks.md).
    pipeline: Literal["auto", "on", "off"] = "auto"
    # Asynchronous modes: drop updates computed on weights more than this many master steps old.
    max_staleness: int | None = None
    # Masters in a two-level tree: 1 = a single master; M >= 2 = a top master and M-1 sub-masters.
    masters: int = 1
    # Sharded parameter servers: the central weights split into S contiguous slices, one a server rank.
    servers: int = 1
    # Learning rate vs the number of workers: x N (linear), x sqrt(N), / each update's staleness, none, or auto: per algorithm and optimizer (--print-config shows the choice).
    lr_scaling: Literal["auto", "none", "linear", "sqrt", "staleness"] = "auto"
    # Epochs of linear warmup to the scaled learning rate (Goyal et al. 2017; none: 1 when the rate is scaled, else 0).
    warmup_epochs: float | None = None

    def __post_init__(self) -> None:
        spec = registry.spec_of(self.name)
        _positive_int("--sync-every", self.sync_every)
        _choice("--compression", self.compression, COMPRESSIONS)
        if self.bucket_mb is not None and not self.bucket_mb >= 0:
            raise ConfigError(f"--bucket-mb must be >= 0, got {self.bucket_mb!r}")
        _choice("--lr-scaling", self.lr_scaling, LR_SCALINGS)
        _choice("--gem-proxy", self.gem_proxy, GEM_PROXIES)
        _positive_int("--masters", self.masters)
        _positive_int("--servers", self.servers)
        if self.inner_steps != "auto":
            _positive_int("--inner-steps", self.inner_steps)
        if not self.outer_lr > 0:
            raise ConfigError(f"--outer-lr must be a positive number, got {self.outer_lr!r}")
        if not 0 <= self.outer_momentum < 1:
            raise ConfigError(f"--outer-momentum must be in [0, 1), got {self.outer_momentum!r}")
        if "inner_steps" in spec.options and self.sync_every != 1:
            raise ConfigError(
                f"--sync-every {self.sync_every}: --algo {self.name} exchanges every --inner-steps "
                f"({self.inner_steps}) batches"
            )
        if not 0 < self.elastic_force <= 1:
            raise ConfigError(f"--elastic-force must be in (0, 1], got {self.elastic_force!r}")
        if self.elastic_lr is not None and not self.elastic_lr > 0:
            raise ConfigError(f"--elastic-lr must be a positive number, got {self.elastic_lr!r}")
        for option, value in (("--elastic-momentum", self.elastic_momentum), ("--gem-momentum", self.gem_momentum)):
            if not 0 <= value < 1:
                raise ConfigError(f"{option} must be in [0, 1), got {value!r}")
        for option, value in (("--gem-lr", self.gem_lr), ("--gem-kappa", self.gem_kappa)):
            if not value > 0:
                raise ConfigError(f"{option} must be a positive number, got {value!r}")
        if self.max_staleness is not None:
            _non_negative_int("--max-staleness", self.max_staleness)
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise ConfigError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs!r}")
        if self.servers > 1 and not spec.has_master:
            raise ConfigError(f"--servers {self.servers} shards a master's weights; --algo {self.name} has no master")
        if self.servers > 1 and self.masters > 1:
            raise ConfigError(
                f"--servers {self.servers} and --masters {self.masters}: sharded servers replace the tree "
                "of masters; use one or the other"
            )
        if self.masters > 1 and not spec.trees:
            raise ConfigError(
                f"--masters {self.masters} works with --algo "
                f"{' or '.join(registry.names(lambda s: s.trees))}, not {self.name}"
            )
        _choice("--pipeline", self.pipeline, PIPELINE_MODES)
        if self.pipeline == "on" and (not spec.has_master or spec.lockstep(self)):
            form = "synchronous" in spec.options  # lockstep by --synchronous (or its default): one form of two
            raise ConfigError(
                f"--pipeline on is for asynchronous algorithms with a master: --algo {self.name}"
                f"{' --synchronous' if form else ''} exchanges in lockstep, and overlapping would break its "
                f"equivalence to one process{'; its asynchronous form (--no-synchronous) takes it' if form else ''}"
            )
        if self.elastic_momentum and self.worker_optimizer.lower() not in ("sgd", "model"):
            raise ConfigError(f"--elastic-momentum needs --worker-optimizer sgd, got {self.worker_optimizer!r}")
        # Other algorithms' knobs are ignored (a config file's EASGD knobs stay valid under --algo downpour),
        # but gradients compressed by no one would mislead.
        if self.compression != "none" and "compression" not in spec.options:
            raise ConfigError(
                f"--compression {self.compression} applies to --algo {' or '.join(registry.owners('compression'))} only"
            )

    @property
    def spec(self) -> "AlgorithmSpec":
        return registry.spec_of(self.name)

    @property
    def has_master(self) -> bool:
        return self.spec.has_master

    @property
    def is_synchronous(self) -> bool:
        """--synchronous as given, else the algorithm's own form (DiLoCo: rounds; EASGD: whoever is ready)."""
        return self.spec.synchronous_default if self.synchronous is None else self.synchronous

    @property
    def lockstep(self) -> bool:
        """True when every worker must take the same number of steps per epoch."""
        return self.spec.lockstep(self)

    @property
    def pipelined(self) -> bool:
        """Workers overlap each exchange with their next batch (--pipeline; auto: the algorithm's default)."""
        if self.pipeline == "auto":
            return self.spec.pipeline_default and not self.lockstep
        return self.pipeline == "on"

    @property
    def exchange_every(self) -> int:
        """Batches a worker trains between two exchanges (--sync-every; DiLoCo: --inner-steps)."""
        return self.spec.exchange_every(self)


@dataclass(frozen=True)
class CheckpointConfig:
    """When checkpoints are written and whether this run resumes one."""

    # Write a checkpoint every this many epochs (0: never).
    every_epochs: int = field(default=0, metadata=opt("--checkpoint-every"))
    # Write a checkpoint at the first epoch end this many seconds after the last one (0: never).
    every_seconds: float = field(default=0.0, metadata=opt("--checkpoint-every-seconds"))
    # Checkpoints kept; older ones are deleted.
    keep: int = field(default=3, metadata=opt("--keep-checkpoints"))
    # Continue the run in run_dir from its latest checkpoint (--resume RUN_DIR).
    resume: bool = field(default=False, metadata=opt(cli=False))

    def __post_init__(self) -> None:
        _non_negative_int("--checkpoint-every", self.every_epochs)
        _positive_int("--keep-checkpoints", self.keep)
        if self.every_seconds < 0:
            raise ConfigError(f"--checkpoint-every-seconds must be >= 0, got {self.every_seconds!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.every_epochs or self.every_seconds)


@dataclass(frozen=True)
class CallbacksConfig:
    """Keras callbacks that command-line shortcuts build on the validating rank (see callbacks.py)."""

    # Keras EarlyStopping: stop when METRIC (val_loss, val_accuracy, loss) has not improved for PATIENCE validations.
    early_stopping: str = field(default="", metadata=opt(metavar="METRIC,PATIENCE", parse=option_values.early_stopping))
    patience: int = field(default=0, metadata=opt(cli=False))
    # Stop once METRIC OP VALUE holds, e.g. val_accuracy,>=,0.9.
    target_metric: str = field(default="", metadata=opt(metavar="METRIC,OP,VALUE", parse=option_values.target))
    target_op: str = field(default=">=", metadata=opt(cli=False))
    target_value: float = field(default=0.0, metadata=opt(cli=False))
    # Keras TensorBoard logs into DIR (bare flag: RUN_DIR/tensorboard); needs mpilearn[tensorboard].
    tensorboard: str = field(default="", metadata=opt(metavar="DIR", const=DEFAULT_TENSORBOARD))

    def __post_init__(self) -> None:
        _non_negative_int("--early-stopping patience", self.patience)
        _choice("--target-metric operator", self.target_op, TARGET_OPS)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, identical on every rank."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    # Passes over the training data.
    epochs: int = 5
    # Seed of the weights, the shuffles and the data order.
    seed: int = 0
    # Output directory; rank 0 fills in runs/<timestamp> when empty.
    run_dir: str = ""
    # Keras backend (none: $KERAS_BACKEND or torch).
    backend: str | None = field(default=None, metadata=opt(choices=BACKENDS, fit=False))
    # Compute threads per rank; None shares the node's cores among its ranks.
    threads: int | None = None
    # Logging level of every rank.
    log_level: str = field(default="info", metadata=opt(choices=LOG_LEVELS))
    # Chrome-trace JSON of every rank's activity ("" = none).
    timeline: str = ""
    # GPU machines: the master takes a GPU too (by default it stays on the CPU).
    master_gpu: bool = False
    # A NaN or infinite loss skips its batch (counted) instead of stopping the run.
    skip_bad_batches: bool = False
    # Seconds a rank waits for a peer before declaring it stuck (None: adaptive, see roles/watchdog.py).
    timeout: float | None = None
    # Longest sleep between two polls of a pending MPI request (seconds).
    poll_max_s: float = field(default=0.001, metadata=opt(cli=False))
    # Keras callbacks from command-line shortcuts (mpilearn.fit also takes callback objects).
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    # Validate every N master updates as well as after each epoch (0 = after epochs only).
    validate_every: int = 0
    # Validate a snapshot of the central weights in a background thread (runs with a master).
    background_validation: bool = False
    # Where validation runs: spread over the workers or peers, on rank 0 (master), or auto (spread over two or more).
    validate_on: Literal["auto", "workers", "master"] = "auto"
    # Progress on rank 0: a live bar on a terminal and log lines otherwise (auto), or either one.
    progress: str = field(default="auto", metadata=opt(choices=PROGRESS_MODES))
    # Print only errors and the final line.
    quiet: bool = field(default=False, metadata=opt(short="-q"))
    # Sample every rank's CPU and memory (and GPU) each second into RUN_DIR/monitor.json.
    monitor: bool = False

    def __post_init__(self) -> None:
        _positive_int("--epochs", self.epochs)
        _non_negative_int("--seed", self.seed)
        if self.threads is not None:
            _positive_int("--threads", self.threads)
        _choice("--log-level", self.log_level, LOG_LEVELS)
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--timeout must be a positive number of seconds, got {self.timeout!r}")
        if not 0 < self.poll_max_s <= 1:
            raise ConfigError(f"poll_max_s must be in (0, 1] seconds, got {self.poll_max_s!r}")
        _non_negative_int("--validate-every", self.validate_every)
        _choice("--validate-on", self.validate_on, ("auto", "workers", "master"))
        if self.validate_on == "workers" and self.background_validation:
            raise ConfigError(
                "--background-validation validates on rank 0 in a thread: it does not go with --validate-on workers"
            )
        servers = self.algorithm.servers
        if servers > 1 and (self.validate_every or self.background_validation):
            raise ConfigError(
                f"--servers {servers}: rank 0 holds the full weights at epoch ends only, so it validates "
                "there; drop --validate-every and --background-validation"
            )
        _choice("--progress", self.progress, PROGRESS_MODES)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form, written to history.json."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        """Inverse of to_dict; unknown keys are refused, not ignored."""
        nested = {
            "data": DataConfig,
            "model": ModelConfig,
            "algorithm": AlgorithmConfig,
            "checkpoint": CheckpointConfig,
            "callbacks": CallbacksConfig,
        }
        return _build(cls, values, nested, prefix="")


def _build(cls: type, values: Mapping[str, Any], nested: Mapping[str, type], prefix: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown configuration key '{prefix}{unknown[0]}'; allowed: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name in nested and isinstance(value, Mapping):
            value = _build(nested[name], value, {}, prefix=f"{prefix}{name}.")
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    return cls(**kwargs)
