"""Options of a hyperparameter search, frozen and checked like RunConfig."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import RunConfig, _choice, _non_negative_int, _positive_int
from ..errors import ConfigError

SAMPLERS = ("tpe", "gp", "cmaes", "nsga2")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("minimize", "maximize")
# The SQLite file of the study inside the run directory (unless --storage).
STUDY_DB = "study.db"
BEST = "best.json"
TRIALS_DIR = "trials"


def default_direction(metric: str) -> str:
    """Losses and errors go down; accuracy, AUC and the like go up."""
    lowered = metric.lower()
    return "minimize" if "loss" in lowered or "error" in lowered else "maximize"


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search needs, identical on every rank."""

    # Training options every trial starts from (the trial's values override them).
    run: RunConfig = field(default_factory=RunConfig)
    # TOML/YAML file, or path/to/file.py:function; "" = search_space() of the model file.
    space: str = ""
    # Finished trials (complete, pruned or failed) the study ends with.
    trials: int = 10
    # Ranks per block; every rank but the coordinator belongs to exactly one block
    # (0: a single block of all of them, resolved when the job size is known).
    block_size: int = 0
    # K-fold cross-validation over the training files (1 = train on --train, score on --val).
    n_fold: int = 1
    sampler: str = "tpe"
    # Random trials before a model-based sampler starts (None: Optuna's default).
    sampler_startup_trials: int | None = None
    # NSGA-II population per generation.
    population: int = 10
    pruner: str = "none"
    # Median pruner: completed trials before pruning starts, epochs before a trial can be pruned.
    pruner_startup_trials: int = 5
    pruner_warmup_epochs: int = 0
    # Optuna storage URL; "" = sqlite:///RUN_DIR/study.db.
    storage: str = ""
    study_name: str = "mpilearn"
    # Continue the study found in the storage instead of refusing to touch it.
    resume: bool = False
    # History key the objective reads (its last validation), and which way is better.
    metric: str = "val_loss"
    direction: str = ""

    def __post_init__(self) -> None:
        _positive_int("--trials", self.trials)
        _non_negative_int("--block-size", self.block_size)
        _positive_int("--n-fold", self.n_fold)
        _choice("--sampler", self.sampler, SAMPLERS)
        _choice("--pruner", self.pruner, PRUNERS)
        if self.sampler_startup_trials is not None:
            _non_negative_int("--sampler-startup-trials", self.sampler_startup_trials)
        _positive_int("--population", self.population)
        if self.sampler == "nsga2" and self.population < 2:
            raise ConfigError(f"--population must be at least 2 for --sampler nsga2, got {self.population}")
        _non_negative_int("--pruner-startup-trials", self.pruner_startup_trials)
        _non_negative_int("--pruner-warmup-epochs", self.pruner_warmup_epochs)
        if not self.study_name:
            raise ConfigError("--study-name must not be empty")
        if not (self.metric.startswith("val_") or self.metric == "train_loss"):
            raise ConfigError(
                f"--metric must name a validation result such as val_loss or val_accuracy (or train_loss), got {self.metric!r}"
            )
        if self.direction:
            _choice("--direction", self.direction, DIRECTIONS)
        if self.n_fold == 1 and not self.run.data.val_files:
            raise ConfigError("--val is required: each trial is scored on the validation files (or use --n-fold K)")
        if self.n_fold > 1 and self.block_size and self.block_size % self.n_fold:
            raise ConfigError(
                f"--n-fold {self.n_fold} splits each block into {self.n_fold} equal sub-blocks, "
                f"but --block-size {self.block_size} is not a multiple of {self.n_fold}"
            )
        if self.resume and not self.run.run_dir and not self.storage:
            raise ConfigError("--resume needs the search's directory: --resume RUN_DIR (or --run-dir RUN_DIR --resume)")

    @property
    def goal(self) -> str:
        """The direction, given or implied by the metric's name."""
        return self.direction or default_direction(self.metric)
