"""The Optuna study of a search: storage, sampler, pruner, resume.

Only the coordinator opens the storage. Blocks send their intermediate values
to it and get the prune decision back, so there is exactly one writer: SQLite
stays safe (no lock contention, no shared-file-system locking across nodes),
and a search killed at any moment leaves a consistent database.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..errors import ConfigError
from ..log import get_logger
from .config import STUDY_DB, SearchConfig

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def storage_url(search: SearchConfig, run_dir: Path) -> str:
    return search.storage or f"sqlite:///{(run_dir / STUDY_DB).resolve()}"


def make_sampler(search: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    startup: dict[str, Any] = {}
    if search.sampler_startup_trials is not None:
        startup["n_startup_trials"] = search.sampler_startup_trials
    if search.sampler == "tpe":
        # constant_liar: blocks ask while others still train; running trials
        # count as bad guesses, so parallel blocks do not crowd one point.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, **startup)
    if search.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, **startup)
    if search.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **startup)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=search.population)


def make_pruner(search: SearchConfig, epochs_tuned: bool) -> optuna.pruners.BasePruner:
    if search.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=search.pruner_startup_trials, n_warmup_steps=search.pruner_warmup_epochs
        )
    if search.pruner == "hyperband":
        # One resource unit is one epoch; with epochs searched, Optuna learns the maximum.
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource="auto" if epochs_tuned else search.run.epochs
        )
    return optuna.pruners.NopPruner()


def _quiet_optuna() -> None:
    """The coordinator prints its own one-line summary per trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").propagate = False


def open_study(search: SearchConfig, url: str, epochs_tuned: bool) -> optuna.Study:
    """A new study, or the existing one with --resume (interrupted trials recovered)."""
    _quiet_optuna()
    log = get_logger()
    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception as exc:  # a bad URL or an unreachable database
        raise ConfigError(f"--storage {url} cannot be opened: {type(exc).__name__}: {exc}") from None
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    pruner = make_pruner(search, epochs_tuned)
    if search.study_name in existing:
        summary = existing[search.study_name]
        if not search.resume:
            raise ConfigError(
                f"{url} already holds study {search.study_name!r} with {summary.n_trials} trials: "
                "pass --resume to continue it, or choose another --run-dir or --study-name"
            )
        if summary.direction.name.lower() != search.goal:
            raise ConfigError(
                f"study {search.study_name!r} in {url} was made to {summary.direction.name.lower()}, "
                f"not {search.goal} (--direction)"
            )
        # A new seed per restart: replaying the first run's random draws would repeat its trials.
        sampler = make_sampler(search, search.run.seed + summary.n_trials)
        study = optuna.load_study(study_name=search.study_name, storage=storage, sampler=sampler, pruner=pruner)
        recovered = recover_interrupted(study)
        log.info(
            "resuming study %r: %d finished trials%s",
            search.study_name,
            count_finished(study),
            f", {len(recovered)} interrupted (marked failed and queued again: {', '.join(map(str, recovered))})"
            if recovered
            else "",
        )
        return study
    if search.resume:
        log.info("no study %r in %s yet: starting it", search.study_name, url)
    sampler = make_sampler(search, search.run.seed)
    study = optuna.create_study(
        storage=storage,
        study_name=search.study_name,
        direction=search.goal,  # type: ignore[arg-type]  # checked by the config
        sampler=sampler,
        pruner=pruner,
    )
    study.set_user_attr("metric", search.metric)
    return study


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a killed search: mark them failed and queue
    their parameters again, so the search still ends with --trials finished
    trials and the interrupted point is evaluated after all."""
    storage = study._storage  # noqa: SLF001 - the public Study has no way to annotate a trial by id
    numbers = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, "error", "interrupted: the search stopped while it ran")  # noqa: SLF001
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)  # noqa: SLF001
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
        numbers.append(trial.number)
    return numbers


def count_finished(study: optuna.Study) -> int:
    """Trials that count toward --trials: an interrupted one (requeued) does not."""
    return sum(not t.user_attrs.get("interrupted") for t in study.get_trials(deepcopy=False, states=FINISHED))


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as plain JSON (best.json, the final table, a report)."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.params,
        "settings": trial.user_attrs.get("settings", trial.params),
        "fold_values": trial.user_attrs.get("fold_values"),
        "fold_std": trial.user_attrs.get("fold_std"),
        "epochs": trial.user_attrs.get("epochs"),
        "seconds": trial.user_attrs.get("seconds"),
        "run_dir": trial.user_attrs.get("run_dir"),
        "error": trial.user_attrs.get("error"),
    }
